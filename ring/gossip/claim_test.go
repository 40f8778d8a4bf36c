package gossip

import (
	"slices"
	"testing"

	"github.com/ringkv/ringkv/ring"
)

func alive(ids ...string) map[string]meta {
	m := make(map[string]meta)
	for _, id := range ids {
		m[id] = meta{Version: metaVersion, Zone: "zone-" + id}
	}
	return m
}

func TestClaimant(t *testing.T) {
	r := testRing(t, "b", "c", "d")
	left, err := r.Leave("b")
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name  string
		r     *ring.Ring
		alive map[string]meta
		want  string
	}{
		{name: "lowest joined and alive", r: r, alive: alive("a", "b", "c", "d"), want: "b"},
		{name: "lowest is dead", r: r, alive: alive("c", "d"), want: "c"},
		{name: "lowest is leaving", r: left, alive: alive("b", "c", "d"), want: "c"},
		{name: "none alive", r: r, alive: alive("x"), want: ""},
		{name: "empty ring", r: testRing(t), alive: alive("a"), want: ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if got := claimant(tc.r, tc.alive); got != tc.want {
				t.Fatalf("got %q, want %q", got, tc.want)
			}
		})
	}
}

func TestClaim(t *testing.T) {
	base := testRing(t, "b", "c")
	removed, err := base.Remove("c")
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name       string
		self       string
		r          *ring.Ring
		alive      map[string]meta
		wantJoined []string
	}{
		{name: "not the claimant", self: "c", r: base, alive: alive("a", "b", "c"), wantJoined: nil},
		{name: "nothing to do", self: "b", r: base, alive: alive("b", "c"), wantJoined: nil},
		{name: "joins absent nodes in ID order", self: "b", r: base, alive: alive("e", "a", "b", "c", "d"), wantJoined: []string{"a", "d", "e"}},
		{name: "leaves removed members out", self: "b", r: removed, alive: alive("b", "c", "d"), wantJoined: []string{"d"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			next, joined, err := claim(tc.self, tc.r, tc.alive)
			if err != nil {
				t.Fatalf("claim: %v", err)
			}
			if !slices.Equal(joined, tc.wantJoined) {
				t.Fatalf("joined: got %v, want %v", joined, tc.wantJoined)
			}
			if len(joined) == 0 {
				if next != nil {
					t.Fatalf("got a new ring with nothing joined")
				}
				return
			}
			if got, want := next.Version(), tc.r.Version()+uint64(len(joined)); got != want {
				t.Errorf("version: got %d, want %d (one per join)", got, want)
			}
			for _, id := range joined {
				m, _ := next.Member(id)
				if m.Status != ring.Joined || m.Zone != "zone-"+id {
					t.Errorf("%s: got %+v, want Joined in zone-%s", id, m, id)
				}
			}
		})
	}
}
