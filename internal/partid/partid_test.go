package partid

import (
	"errors"
	"fmt"
	"math/bits"
	"testing"

	"github.com/cespare/xxhash/v2"
)

// TestLocateEveryLevel: for keys at every level up to three splits, the id
// of the key's partition locates back to that partition, its storage
// partition is the key's base partition, and its children and parent are
// the ids of the key's partition one level down and up.
func TestLocateEveryLevel(t *testing.T) {
	for _, base := range []int{1, 2, 64, 1024} {
		logBase := bits.TrailingZeros(uint(base))
		for k := range 2000 {
			key := fmt.Appendf(nil, "key-%d", k)
			h := xxhash.Sum64(key)
			storage := uint32(h >> (64 - logBase))
			var prev uint32
			for split := 0; split <= 3 && base<<split <= MaxPartitions; split++ {
				p := base << split
				index := uint32(h >> (64 - logBase - split))
				id := ID(base, p, index)
				s, err := Locate(base, id)
				if err != nil {
					t.Fatalf("base %d P %d index %d id %d: %v", base, p, index, id, err)
				}
				want := Span{Level: p, Index: index, Storage: storage, Whole: split == 0}
				if s != want {
					t.Fatalf("base %d id %d: %+v, want %+v", base, id, s, want)
				}
				if !s.Contains(h) {
					t.Fatalf("base %d id %d does not contain its own key", base, id)
				}
				if split == 0 && id != index {
					t.Fatalf("base %d: base-level id %d is not its index %d", base, id, index)
				}
				if split > 0 {
					if c := Children(base, prev); c[0] != id && c[1] != id {
						t.Fatalf("base %d: children of %d are %v, want one of them %d", base, prev, c, id)
					}
					if par, ok := Parent(base, id); !ok || par != prev {
						t.Fatalf("base %d: parent of %d is %d %v, want %d", base, id, par, ok, prev)
					}
				} else if _, ok := Parent(base, id); ok {
					t.Fatalf("base %d: base-level id %d has a parent", base, id)
				}
				prev = id
			}
		}
	}
}

// TestIDsDistinct: the ids of every partition of the base level and three
// split levels are all distinct, and every one locates.
func TestIDsDistinct(t *testing.T) {
	const base = 8
	seen := map[uint32]string{}
	for p := base; p <= 8*base; p *= 2 {
		for i := range uint32(p) {
			id := ID(base, p, i)
			if where, dup := seen[id]; dup {
				t.Fatalf("id %d of P=%d index %d also names %s", id, p, i, where)
			}
			seen[id] = fmt.Sprintf("P=%d index %d", p, i)
			if _, err := Locate(base, id); err != nil {
				t.Fatalf("id %d: %v", id, err)
			}
		}
	}
}

// TestSpanContainsOnlyItsKeys: a split partition's span holds the keys of
// its own hash range and none of its sibling's.
func TestSpanContainsOnlyItsKeys(t *testing.T) {
	const base = 4
	c := Children(base, 1) // ids 10 and 11 under P=8, indexes 2 and 3
	s0, err0 := Locate(base, c[0])
	s1, err1 := Locate(base, c[1])
	if err0 != nil || err1 != nil {
		t.Fatalf("locate children %v: %v %v", c, err0, err1)
	}
	if s0.Storage != 1 || s1.Storage != 1 || s0.Index != 2 || s1.Index != 3 || s0.Whole || s1.Whole {
		t.Fatalf("children of 1: %+v %+v", s0, s1)
	}
	in := 0
	for k := range 4000 {
		h := xxhash.Sum64(fmt.Appendf(nil, "k%d", k))
		if h>>62 != 1 {
			if s0.Contains(h) || s1.Contains(h) {
				t.Fatalf("hash %x of another storage partition contained", h)
			}
			continue
		}
		in++
		if s0.Contains(h) == s1.Contains(h) {
			t.Fatalf("hash %x in both or neither child", h)
		}
	}
	if in == 0 {
		t.Fatal("no key fell in storage partition 1")
	}
}

// TestLocateInvalid: bad bases and ids that name no partition are
// refused with ErrInvalid.
func TestLocateInvalid(t *testing.T) {
	for _, tc := range []struct {
		base int
		id   uint32
	}{
		{0, 0}, {3, 0}, {2 * MaxPartitions, 0}, // bad base
		{64, 64}, {64, 127}, // between the base level and the first split level
		{1, 1},
		{64, 2 * MaxPartitions}, // past the largest P
		{64, 1 << 31},
	} {
		if _, err := Locate(tc.base, tc.id); !errors.Is(err, ErrInvalid) {
			t.Errorf("Locate(%d, %d): %v, want ErrInvalid", tc.base, tc.id, err)
		}
	}
}

// TestDigests: every record stored in a storage partition counts in
// exactly one partition's digest at each level, the one DigestID names,
// whether its key's hash is of that storage partition or not.
func TestDigests(t *testing.T) {
	const base = 4
	for P := base; P <= 4*base; P *= 2 {
		for storage := range uint32(base) {
			for k := range 500 {
				h := xxhash.Sum64(fmt.Appendf(nil, "k%d", k)) // of any storage partition
				want := DigestID(base, P, storage, h)
				n := 0
				for i := range uint32(P) {
					id := ID(base, P, i)
					s, err := Locate(base, id)
					if err != nil {
						t.Fatal(err)
					}
					if s.Storage != storage {
						continue
					}
					if s.Digests(h, base) {
						n++
						if id != want {
							t.Fatalf("P=%d storage %d hash %x: digested by %d, DigestID says %d", P, storage, h, id, want)
						}
					}
				}
				if n != 1 {
					t.Fatalf("P=%d storage %d hash %x: digested by %d partitions", P, storage, h, n)
				}
			}
		}
	}
}
