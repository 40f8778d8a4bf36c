package ring

import (
	"encoding/binary"
	"errors"
	"fmt"
	"slices"
	"testing"

	"github.com/cespare/xxhash/v2"

	"github.com/ringkv/ringkv/internal/crc"
	"github.com/ringkv/ringkv/internal/partid"
)

func partidChildren(r *Ring, id uint32) [2]uint32 { return partid.Children(r.Base(), id) }

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

// TestSplitIDs: before any split ids are indexes and the ring encodes in
// format 1 as it always did; after two splits the ring keeps its base
// through encoding and joins, every key's id is a child of its id before
// the split, ids of every level are distinct, and Index and ReplicasOf
// know only the ring's own level.
func TestSplitIDs(t *testing.T) {
	r := grow(t, Config{Partitions: 16, ReplicationFactor: 3}, 4, noZone)[4]
	if r.Base() != 16 {
		t.Fatalf("base %d before a split", r.Base())
	}
	for p := range uint32(16) {
		if r.ID(p) != p {
			t.Fatalf("id of %d before a split: %d", p, r.ID(p))
		}
	}
	if enc, _ := r.MarshalBinary(); enc[2] != 1 {
		t.Fatalf("a ring that never split encodes in format %d", enc[2])
	}
	s1, err := r.Split()
	if err != nil {
		t.Fatal(err)
	}
	s2, err := s1.Split()
	if err != nil {
		t.Fatal(err)
	}
	if s2, err = s2.Join(Member{ID: "late"}); err != nil {
		t.Fatal(err)
	}
	enc, _ := s2.MarshalBinary()
	d, err := Decode(enc)
	if err != nil || d.Base() != 16 || d.Partitions() != 64 || d.Hash() != s2.Hash() || enc[2] != formatSplit {
		t.Fatalf("decode of a twice-split ring: %v %v (format %d)", d, err, enc[2])
	}
	seen := map[uint32]int{}
	for _, ring := range []*Ring{r, s1, s2} {
		for _, id := range ring.IDs() {
			if lvl, dup := seen[id]; dup {
				t.Fatalf("id %d of P=%d also of P=%d", id, ring.Partitions(), lvl)
			}
			seen[id] = ring.Partitions()
			p, ok := ring.Index(id)
			if !ok || ring.ID(p) != id || !slices.Equal(ring.ReplicasOf(id), ring.Replicas(p)) {
				t.Fatalf("P=%d: id %d indexes to %d %v", ring.Partitions(), id, p, ok)
			}
		}
	}
	if _, ok := s1.Index(r.ID(3)); ok {
		t.Fatal("a split ring indexes an id of its parent's level")
	}
	if s1.ReplicasOf(s2.ID(3)) != nil {
		t.Fatal("a ring gives replicas for an id of a later level")
	}
	for i := range 5000 {
		k := []byte(fmt.Sprintf("key-%d", i))
		for _, pair := range [][2]*Ring{{r, s1}, {s1, s2}} {
			before, after := pair[0].IDOf(k), pair[1].IDOf(k)
			if ch := partidChildren(pair[0], before); after != ch[0] && after != ch[1] {
				t.Fatalf("key %q: id %d after a split is not a child of %d (%v)", k, after, before, ch)
			}
		}
	}
}

// TestDecodeRefusesBadBase: a format-2 encoding whose base is not below P
// is refused.
func TestDecodeRefusesBadBase(t *testing.T) {
	r := grow(t, Config{Partitions: 16, ReplicationFactor: 3}, 3, noZone)[3]
	s, err := r.Split()
	if err != nil {
		t.Fatal(err)
	}
	enc, _ := s.MarshalBinary()
	enc[4] = enc[3] // log2(P0) = log2(P)
	enc = append(enc[:len(enc)-4], 0, 0, 0, 0)
	binary.LittleEndian.PutUint32(enc[len(enc)-4:], crc.Sum(enc[:len(enc)-4]))
	if _, err := Decode(enc); !errors.Is(err, ErrInvalid) {
		t.Fatalf("base not below P: %v, want ErrInvalid", err)
	}
}

// TestIDsOfMember: IDsOf and IDOfHash agree with PartitionsOf and
// PartitionOf through ID, before and after a split.
func TestIDsOfMember(t *testing.T) {
	r := grow(t, Config{Partitions: 16, ReplicationFactor: 2}, 4, noZone)[4]
	s, err := r.Split()
	if err != nil {
		t.Fatal(err)
	}
	for _, ring := range []*Ring{r, s} {
		for _, m := range ring.Active() {
			ids := ring.IDsOf(m.ID)
			ps := ring.PartitionsOf(m.ID)
			if len(ids) != len(ps) || len(ids) == 0 {
				t.Fatalf("P=%d %s: ids %v, partitions %v", ring.Partitions(), m.ID, ids, ps)
			}
			for k := range ids {
				if ids[k] != ring.ID(ps[k]) || !slices.Contains(ring.ReplicasOf(ids[k]), m.ID) {
					t.Fatalf("P=%d %s: id %d for partition %d", ring.Partitions(), m.ID, ids[k], ps[k])
				}
			}
		}
		for i := range 1000 {
			k := []byte(fmt.Sprint(i))
			if ring.IDOfHash(xxhash.Sum64(k)) != ring.IDOf(k) {
				t.Fatalf("P=%d key %q: IDOfHash %d, IDOf %d", ring.Partitions(), k, ring.IDOfHash(xxhash.Sum64(k)), ring.IDOf(k))
			}
		}
	}
}

// TestHoldsAcrossLevels: a member holds an id of any level exactly when
// it replicates one of that id's keys in the ring, and KeyIn places a key
// in its partition's ancestors and descendants alone.
func TestHoldsAcrossLevels(t *testing.T) {
	r := grow(t, Config{Partitions: 8, ReplicationFactor: 2}, 5, noZone)[5]
	s, err := r.Split()
	if err != nil {
		t.Fatal(err)
	}
	// Let the claim move children apart: a join after the split.
	if s, err = s.Join(Member{ID: "late"}); err != nil {
		t.Fatal(err)
	}
	s2, err := s.Split()
	if err != nil {
		t.Fatal(err)
	}
	var keys [][]byte
	for i := range 4000 {
		keys = append(keys, []byte(fmt.Sprint("k", i)))
	}
	for _, other := range []*Ring{r, s, s2} {
		for _, id := range other.IDs() {
			for _, m := range s.Members() {
				want := false
				for _, k := range keys {
					if other.IDOf(k) == id && slices.Contains(s.Replicas(s.PartitionOf(k)), m.ID) {
						want = true
						break
					}
				}
				if got := s.Holds(m.ID, id); got != want {
					t.Fatalf("ring P=%d: Holds(%s, id %d of P=%d) = %v, want %v", s.Partitions(), m.ID, id, other.Partitions(), got, want)
				}
			}
		}
	}
	for _, k := range keys[:500] {
		for _, other := range []*Ring{r, s, s2} {
			if !s.KeyIn(other.IDOf(k), k) {
				t.Fatalf("key %q not in its own id %d of P=%d", k, other.IDOf(k), other.Partitions())
			}
			if other.Partitions() > 1 && s.KeyIn(other.IDOf(k)^1, k) {
				t.Fatalf("key %q in its sibling id %d", k, other.IDOf(k)^1)
			}
		}
	}
	if s.Holds("n1", 9) || s.KeyIn(9, keys[0]) { // between levels 8 and 16
		t.Fatal("an id that names no partition is held")
	}
}

// TestFamilyIDs: ChildIDs, ParentID and LevelOf through the ring agree
// with the ids of two consecutive split rings.
func TestFamilyIDs(t *testing.T) {
	r := grow(t, Config{Partitions: 4, ReplicationFactor: 1}, 1, noZone)[1]
	s, err := r.Split()
	if err != nil {
		t.Fatal(err)
	}
	for p := range uint32(4) {
		id := r.ID(p)
		c := s.ChildIDs(id)
		if c != [2]uint32{s.ID(2 * p), s.ID(2*p + 1)} || s.LevelOf(id) != 4 || s.LevelOf(c[0]) != 8 {
			t.Fatalf("id %d: children %v, levels %d %d", id, c, s.LevelOf(id), s.LevelOf(c[0]))
		}
		for _, ch := range c {
			if par, ok := s.ParentID(ch); !ok || par != id {
				t.Fatalf("parent of %d: %d %v, want %d", ch, par, ok, id)
			}
		}
		if _, ok := s.ParentID(id); ok {
			t.Fatalf("first-level id %d has a parent", id)
		}
	}
	if s.LevelOf(5) != 0 {
		t.Fatal("an id between levels has a level")
	}
}

// TestDigestIDOf: a key stored in its own storage partition is digested
// in its partition; one stored elsewhere, in the first partition of that
// storage partition at the ring's P.
func TestDigestIDOf(t *testing.T) {
	r := grow(t, Config{Partitions: 4, ReplicationFactor: 1}, 1, noZone)[1]
	s, err := r.Split()
	if err != nil {
		t.Fatal(err)
	}
	for i := range 200 {
		h := xxhash.Sum64([]byte(fmt.Sprint(i)))
		own := uint32(h >> 62)
		if got := s.DigestIDOf(own, h); got != s.IDOfHash(h) {
			t.Fatalf("hash %x in its own storage %d: %d, want %d", h, own, got, s.IDOfHash(h))
		}
		other := (own + 1) % 4
		if got := s.DigestIDOf(other, h); got != s.ID(2*other) {
			t.Fatalf("hash %x stored in %d: %d, want %d", h, other, got, s.ID(2*other))
		}
		if got := r.DigestIDOf(other, h); got != other {
			t.Fatalf("before the split, hash %x stored in %d: %d", h, other, got)
		}
	}
}

// TestRecordOwner: before a split a record's owner is the partition that
// stored it; after, the child of its hash when that hash is in the
// storage partition, else the storage partition's first child; a ring
// behind a child's level judges at the child's level.
func TestRecordOwner(t *testing.T) {
	r := grow(t, Config{Partitions: 4, ReplicationFactor: 1}, 1, noZone)[1]
	s, err := r.Split()
	if err != nil {
		t.Fatal(err)
	}
	for i := range 300 {
		key := []byte(fmt.Sprint("\x00ringkv/txn/", i))
		h := xxhash.Sum64(key)
		own := uint32(h >> 62)
		for holder := range uint32(4) {
			if got := r.RecordOwner(holder, key); got != holder {
				t.Fatalf("before a split: owner %d of a record of %d", got, holder)
			}
			want := s.ID(2 * holder)
			if holder == own {
				want = s.IDOfHash(h)
			}
			if got := s.RecordOwner(holder, key); got != want {
				t.Fatalf("after a split: owner %d of %d's record (hash of %d), want %d", got, holder, own, want)
			}
			for _, c := range s.ChildIDs(holder) {
				if got := r.RecordOwner(c, key); got != s.RecordOwner(c, key) {
					t.Fatalf("a ring behind judges child %d's record %d, the split ring %d", c, got, s.RecordOwner(c, key))
				}
			}
		}
	}
}
