package ring

import (
	"errors"
	"fmt"
	"slices"
	"testing"
)

// TestSplit: a split doubles P, bumps the version, keeps the members, and
// gives every key a child of its partition with the same replicas; the
// split ring round-trips through its encoding.
func TestSplit(t *testing.T) {
	rings := grow(t, DefaultConfig(), 5, noZone)
	r := rings[5]
	s, err := r.Split()
	if err != nil {
		t.Fatal(err)
	}
	if s.Partitions() != 2*r.Partitions() || s.Version() != r.Version()+1 || !slices.Equal(s.Members(), r.Members()) {
		t.Fatalf("split of %v: %v", r, s)
	}
	for i := range 10000 {
		k := []byte(fmt.Sprintf("key-%d", i))
		p, c := r.PartitionOf(k), s.PartitionOf(k)
		if ch := Children(p); Parent(c) != p || c != ch[0] && c != ch[1] {
			t.Fatalf("key %q: partition %d under P=%d, %d under 2P: not its child", k, p, r.Partitions(), c)
		}
		if !slices.Equal(s.Replicas(c), r.Replicas(p)) {
			t.Fatalf("key %q: replicas %v after the split, %v before", k, s.Replicas(c), r.Replicas(p))
		}
	}
	for p := range uint32(r.Partitions()) {
		for _, c := range Children(p) {
			if Parent(c) != p || !slices.Equal(s.Replicas(c), r.Replicas(p)) {
				t.Fatalf("child %d of %d: replicas %v, parent's %v", c, p, s.Replicas(c), r.Replicas(p))
			}
		}
	}
	rb, sb := r.Balance(), s.Balance()
	if sb.MinReplicas != 2*rb.MinReplicas || sb.MaxReplicas != 2*rb.MaxReplicas || sb.ReplicaDeviation() != rb.ReplicaDeviation() {
		t.Fatalf("balance after the split %+v, before %+v: want every count doubled", sb, rb)
	}
	enc, err := s.MarshalBinary()
	if err != nil {
		t.Fatal(err)
	}
	d, err := Decode(enc)
	if err != nil || d.Hash() != s.Hash() || d.Partitions() != s.Partitions() {
		t.Fatalf("decode of the split ring: %v %v", d, err)
	}
	if !s.Newer(r) {
		t.Fatal("the split ring is not newer than its parent ring")
	}
}

// TestSplitThenGrow: after a split the claim spreads the children as it
// spreads any slot: a join takes slots only for the joiner, within 1.1x
// of the fewest it must take, and a leave moves only the leaver's slots;
// replica counts stay within 10% of fair (or two slots: a split doubles
// each member's distance from fair).
func TestSplitThenGrow(t *testing.T) {
	r := grow(t, DefaultConfig(), 7, noZone)[7]
	s, err := r.Split()
	if err != nil {
		t.Fatal(err)
	}
	for i := range 6 {
		next, err := s.Join(Member{ID: fmt.Sprintf("new%02d", i)})
		if err != nil {
			t.Fatal(err)
		}
		mv := Moved(s, next)
		opt := s.JoinOptimum()
		if mv.Copies != mv.CopiesTo[fmt.Sprintf("new%02d", i)] || float64(mv.Copies) > 1.1*float64(opt) || mv.Copies < opt {
			t.Fatalf("join %d after the split moved %d copies (%v), optimum %d", i, mv.Copies, mv.CopiesTo, opt)
		}
		b := next.Balance()
		t.Logf("join %d after the split: %d copies, optimum %d; replicas %d..%d of fair %.2f", i, mv.Copies, opt, b.MinReplicas, b.MaxReplicas, b.FairReplicas)
		if float64(b.MaxReplicas) > b.FairReplicas*1.1+2 || float64(b.MinReplicas) < b.FairReplicas*0.9-2 {
			t.Fatalf("after join %d: replicas %d..%d of fair %.2f", i, b.MinReplicas, b.MaxReplicas, b.FairReplicas)
		}
		s = next
	}
	left, err := s.Leave("new00")
	if err != nil {
		t.Fatal(err)
	}
	if mv := Moved(s, left); mv.Slots > s.Balance().MaxReplicas {
		t.Fatalf("a leave after the split moved %d slots, more than the leaver held", mv.Slots)
	}
}

func TestSplitLimit(t *testing.T) {
	r, err := New(Config{Partitions: MaxPartitions, ReplicationFactor: 3})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := r.Split(); !errors.Is(err, ErrInvalid) {
		t.Fatalf("split past MaxPartitions: %v, want ErrInvalid", err)
	}
}
