package ring

import (
	"fmt"
	"math"
	"slices"
	"testing"
)

// grow joins members named n0, n1, ... to an empty ring, the i-th in
// zone(i), and returns every ring along the way (rings[k] has k members).
func grow(t *testing.T, cfg Config, n int, zone func(i int) string) []*Ring {
	t.Helper()
	r, err := New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	rings := []*Ring{r}
	for i := range n {
		if r, err = r.Join(Member{ID: fmt.Sprintf("n%d", i), Zone: zone(i)}); err != nil {
			t.Fatal(err)
		}
		checkInvariants(t, r)
		checkJoin(t, rings[i], r, fmt.Sprintf("n%d", i))
		rings = append(rings, r)
	}
	return rings
}

func noZone(int) string { return "" }

// TestJoinBalance: a cluster grown by joins alone keeps every member's
// replica and primary counts at floor or ceil of fair.
func TestJoinBalance(t *testing.T) {
	rings := grow(t, DefaultConfig(), 9, noZone)
	t.Logf("joins only, P=64 N=3: members, replica counts, primary counts")
	for m := 1; m <= 9; m++ {
		r := rings[m]
		fr, fp := fair(r)
		reps, prims := counts(r)
		var rs, ps []int
		for _, a := range r.Active() {
			rs, ps = append(rs, reps[a.ID]), append(ps, prims[a.ID])
			if math.Abs(float64(reps[a.ID])-fr) >= 1 || math.Abs(float64(prims[a.ID])-fp) >= 1 {
				t.Errorf("%d members: %q holds %d replicas (fair %.2f), %d primaries (fair %.2f)", m, a.ID, reps[a.ID], fr, prims[a.ID], fp)
			}
		}
		t.Logf("%d %v %v", m, rs, ps)
	}
}

// spreadShort counts the partitions whose preference list spans fewer
// than want distinct zones.
func spreadShort(r *Ring, want int) int {
	short := 0
	for p := range r.Partitions() {
		var zs []string
		for _, id := range r.Replicas(uint32(p)) {
			m, _ := r.Member(id)
			if !slices.Contains(zs, m.Zone) {
				zs = append(zs, m.Zone)
			}
		}
		if len(zs) < want {
			short++
		}
	}
	return short
}

// TestZones: preference lists span distinct zones when enough zones exist,
// without giving up balance. Zones come after balance and minimal movement:
// a ring that passed through unequal zone sizes (7 and 8 members in 3
// zones) may keep a few lists short of a zone, which the joiner alone
// cannot always repair. Those are bounded here at P/16.
func TestZones(t *testing.T) {
	tests := []struct {
		name  string
		zones int
		exact []int // ring sizes where every list spans min(N, zones) zones
		near  []int // ring sizes where at most P/16 lists fall short
	}{
		{"three zones", 3, []int{3, 6}, []int{9}},
		{"two zones", 2, []int{2, 4, 6, 8}, nil},
		{"nine zones", 9, []int{3, 4, 5, 6, 7, 8, 9}, nil},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			want := min(3, tc.zones)
			rings := grow(t, DefaultConfig(), 9, func(i int) string { return fmt.Sprintf("z%d", i%tc.zones) })
			for _, m := range tc.exact {
				if got := spreadShort(rings[m], want); got != 0 {
					t.Errorf("%d members: got %d lists with fewer than %d zones, want 0", m, got, want)
				}
			}
			for _, m := range tc.near {
				got := spreadShort(rings[m], want)
				t.Logf("%d members: %d lists with fewer than %d zones", m, got, want)
				if got > 64/16 {
					t.Errorf("%d members: got %d lists with fewer than %d zones, want <= 4", m, got, want)
				}
			}
			if tc.zones > 3 {
				return
			}
			// Leave one member from each zone of a 9-member ring. The rings
			// in between have unequal zones, so lists may come out short;
			// bounded here at P/4.
			r := rings[9]
			for z := range tc.zones {
				var err error
				if r, err = r.Leave(fmt.Sprintf("n%d", z)); err != nil {
					t.Fatal(err)
				}
			}
			got := spreadShort(r, want)
			t.Logf("after leaves (%d members): %d lists with fewer than %d zones", len(r.Active()), got, want)
			if got > 64/4 {
				t.Errorf("after leaves: got %d lists with fewer than %d zones, want <= 16", got, want)
			}
		})
	}
}
