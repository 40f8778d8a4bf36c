package ring

import (
	"fmt"
	"math/rand/v2"
	"os"
	"testing"
)

// scaleMembers returns count members named m0000..., joined in an order
// and given zones (zones > 0) drawn from rng.
func scaleMembers(rng *rand.Rand, count, zones int) []Member {
	ms := make([]Member, count)
	for i := range ms {
		ms[i].ID = fmt.Sprintf("m%04d", i)
		if zones > 0 {
			ms[i].Zone = fmt.Sprintf("z%d", rng.IntN(zones))
		}
	}
	rng.Shuffle(len(ms), func(i, j int) { ms[i], ms[j] = ms[j], ms[i] })
	return ms
}

// TestClaimAtScale grows a ring one join at a time to hundreds of members
// with P >= 4x members and checks, after every join, that every member
// holds within 10% (or one slot) of its fair share of replicas and that the
// join moved slots only to the newcomer and at most 1.1x the fewest it had
// to take (Ring.JoinOptimum); then that one member's leave moves only its
// slots. 200 members and P=1024 run always (about a second); 1,000
// members and P=4096, with and without zones, run with
// RINGKV_LONG_TESTS=1 (about a minute, and several with zones).
func TestClaimAtScale(t *testing.T) {
	cases := []struct {
		members, partitions, zones int
		long                       bool
	}{
		{members: 200, partitions: 1024},
		{members: 1000, partitions: 4096, long: true},
		{members: 1000, partitions: 4096, zones: 3, long: true},
	}
	long := os.Getenv("RINGKV_LONG_TESTS") != ""
	for _, tc := range cases {
		name := fmt.Sprintf("members=%d/P=%d/zones=%d", tc.members, tc.partitions, tc.zones)
		t.Run(name, func(t *testing.T) {
			if tc.long && !long {
				t.Skip("set RINGKV_LONG_TESTS=1 to run")
			}
			if raceEnabled {
				t.Skip("the race detector slows the claim ~100x; ring runs without it in CI")
			}
			seed := seeds(t, 1)[0]
			t.Logf("reproduce with: go test ./ring -run 'TestClaimAtScale/%s' -seed %d", name, seed)
			rng := rand.New(rand.NewPCG(seed, uint64(tc.members)))
			r, err := New(Config{Partitions: tc.partitions, ReplicationFactor: 3})
			if err != nil {
				t.Fatal(err)
			}
			worstJoin := 0.0
			for _, m := range scaleMembers(rng, tc.members, tc.zones) {
				prev := r
				if r, err = r.Join(m); err != nil {
					t.Fatalf("join %q: %v", m.ID, err)
				}
				checkBalanceBound(t, r)
				if len(prev.active) < r.cfg.ReplicationFactor {
					continue // growth: the newcomer enters every list
				}
				ratio := checkJoinMovement(t, prev, r, m.ID)
				worstJoin = max(worstJoin, ratio)
			}
			checkInvariants(t, r)
			b := r.Balance()
			reps, prims := counts(r)
			for id, c := range reps {
				if c < b.MinReplicas || c > b.MaxReplicas || prims[id] < b.MinPrimaries || prims[id] > b.MaxPrimaries {
					t.Fatalf("Balance %+v disagrees with the naive count of %q: %d replicas, %d primaries", b, id, c, prims[id])
				}
			}
			leaver := r.active[rng.IntN(len(r.active))].ID
			next, err := r.Leave(leaver)
			if err != nil {
				t.Fatal(err)
			}
			checkBalanceBound(t, next)
			checkLeave(t, r, next, leaver)
			t.Logf("%d members, P=%d, N=3: replicas %d..%d (fair %.2f, worst %.1f%%), primaries %d..%d (fair %.2f); worst join moved %.3fx its optimum; leave of %s moved %d slots",
				b.Members, tc.partitions, b.MinReplicas, b.MaxReplicas, b.FairReplicas, 100*b.ReplicaDeviation(),
				b.MinPrimaries, b.MaxPrimaries, b.FairPrimaries, worstJoin, leaver, Moved(r, next).Slots)
		})
	}
}

// checkBalanceBound asserts that every Joined member of r holds within
// 10% of its fair share of replica slots, or within one slot of it.
func checkBalanceBound(t *testing.T, r *Ring) {
	t.Helper()
	b := r.Balance()
	for _, c := range []int{b.MinReplicas, b.MaxReplicas} {
		if ok, _ := within(c, b.FairReplicas); !ok {
			t.Fatalf("%d members: replica counts %d..%d, fair %.2f: beyond 10%% and one slot", b.Members, b.MinReplicas, b.MaxReplicas, b.FairReplicas)
		}
	}
}

// checkJoinMovement asserts that the join of id into prev, giving next,
// moved slots only to id, as many as id holds, and no more than 1.1x
// prev.JoinOptimum; it returns moved/optimum.
func checkJoinMovement(t *testing.T, prev, next *Ring, id string) float64 {
	t.Helper()
	mv := Moved(prev, next)
	opt := prev.JoinOptimum()
	held := len(next.PartitionsOf(id))
	if mv.Slots != held || mv.Copies != held || mv.CopiesTo[id] != held {
		t.Fatalf("join %q: %d slots and %d copies moved (%d to it), it holds %d", id, mv.Slots, mv.Copies, mv.CopiesTo[id], held)
	}
	ratio := float64(mv.Slots) / float64(opt)
	if mv.Slots < opt || ratio > 1.1 {
		t.Fatalf("join %q into %d members: moved %d slots, optimum %d (%.3fx, bound 1.1x)", id, len(prev.active), mv.Slots, opt, ratio)
	}
	return ratio
}

func TestMovedAndBalance(t *testing.T) {
	empty, _ := New(Config{Partitions: 4, ReplicationFactor: 2})
	if b := empty.Balance(); b != (Balance{}) || b.ReplicaDeviation() != 0 || b.PrimaryDeviation() != 0 {
		t.Fatalf("empty ring: got %+v", b)
	}
	if got := empty.JoinOptimum(); got != 4 {
		t.Fatalf("JoinOptimum of an empty ring: got %d, want 4 (the newcomer takes every partition)", got)
	}
	a, _ := empty.Join(Member{ID: "a"})
	ab, _ := a.Join(Member{ID: "b"})
	// a: every row [a]; ab: every row holds both, b first in two of them.
	mv := Moved(a, ab)
	if mv.Slots != 6 || mv.Copies != 4 || mv.CopiesTo["b"] != 4 {
		t.Fatalf("a -> a,b: got %+v, want 6 slots, 4 copies to b", mv)
	}
	b := ab.Balance()
	want := Balance{Members: 2, FairReplicas: 4, MinReplicas: 4, MaxReplicas: 4, FairPrimaries: 2, MinPrimaries: 2, MaxPrimaries: 2}
	if b != want {
		t.Fatalf("a,b: got %+v, want %+v", b, want)
	}
	if b.ReplicaDeviation() != 0 || b.PrimaryDeviation() != 0 {
		t.Fatalf("a,b: got deviations %v %v, want 0", b.ReplicaDeviation(), b.PrimaryDeviation())
	}
	abc, _ := ab.Join(Member{ID: "c"})
	if got := ab.JoinOptimum(); got != 2 {
		t.Fatalf("JoinOptimum of a,b (P=4, N=2): got %d, want 2", got)
	}
	if mv := Moved(ab, abc); mv.Copies != mv.CopiesTo["c"] || mv.Copies < 2 {
		t.Fatalf("a,b -> a,b,c: got %+v, want copies only to c, at least 2", mv)
	}
	if d := abc.Balance().PrimaryDeviation(); d <= 0 {
		t.Fatalf("3 members over 4 primaries: got deviation %v, want > 0", d)
	}
}
