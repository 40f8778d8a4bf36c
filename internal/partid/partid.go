// Package partid names partitions across splits.
//
// A key's partition under P partitions is the top log2(P) bits of
// xxhash64(key). A cluster starts with P0 partitions (the base) and may
// double P online (docs/ARCHITECTURE.md, "Partition split"). Partitions of
// different P must never share a name, because a node holds split and
// unsplit parents side by side while each parent splits at its own Raft
// index. So a partition's id is its index p while P is the base, and P+p
// under any larger P (heap numbering): ids of one level lie in [P, 2P),
// ids of the base level in [0, P0), and the children of id x >= 2·P0 are 2x
// and 2x+1, those of a base id p are 2(P0+p) and 2(P0+p)+1. Until the
// first split an id and an index are the same number.
//
// A replica keeps every record under its key's storage partition, the
// key's base-level index, whatever id it is addressed by: a partition of
// a later level is the hash sub-range of its storage partition that Span
// describes.
//
// It imports nothing of ringkv, so that ring and replica can share it.
package partid

import (
	"errors"
	"fmt"
	"math/bits"
)

// MaxPartitions is the largest P a ring allows (ring.MaxPartitions).
const MaxPartitions = 1 << 16

// ErrInvalid is wrapped by every error of this package: a base that is
// not a power of two in [1, MaxPartitions], or an id that names no
// partition of a ring with that base.
var ErrInvalid = errors.New("partid: invalid")

// Span is where one partition lives.
type Span struct {
	// Level is the P the partition belongs to.
	Level int
	// Index is the partition's index under Level: its keys are those whose
	// hash's top log2(Level) bits equal it.
	Index uint32
	// Storage is the base-level index whose records include the
	// partition's: its ancestor among the first P0 partitions.
	Storage uint32
	// Whole is true when the partition is its storage partition (it is of
	// the base level): every record stored there is the partition's.
	Whole bool
}

// Contains reports whether a key with xxhash64 hash belongs to the span's
// partition.
func (s Span) Contains(hash uint64) bool {
	return hash>>(64-bits.TrailingZeros(uint(s.Level))) == uint64(s.Index)
}

// Digests reports whether a record stored in the span's storage partition
// whose key hashes to hash counts in the span's partition for anti-entropy
// digests: by its hash when the hash falls in the storage partition; a
// record stored away from its hash's partition (the cluster's own records:
// an intent lives by the key it guards) counts in the first partition of
// its storage partition at the span's level. DigestID places a record the
// same way.
func (s Span) Digests(hash uint64, base int) bool {
	if s.Whole {
		return true
	}
	if hash>>(64-bits.TrailingZeros(uint(base))) != uint64(s.Storage) {
		return s.Index == s.Storage<<(bits.TrailingZeros(uint(s.Level))-bits.TrailingZeros(uint(base)))
	}
	return s.Contains(hash)
}

// DigestID returns the id of the partition, under P partitions, whose
// digest counts a record stored in storage partition storage with key hash
// hash (Span.Digests).
func DigestID(base, partitions int, storage uint32, hash uint64) uint32 {
	down := bits.TrailingZeros(uint(partitions)) - bits.TrailingZeros(uint(base))
	if hash>>(64-bits.TrailingZeros(uint(base))) != uint64(storage) {
		return ID(base, partitions, storage<<down)
	}
	return ID(base, partitions, uint32(hash>>(64-bits.TrailingZeros(uint(partitions)))))
}

// validBase reports whether base is a power of two in [1, MaxPartitions].
func validBase(base int) bool {
	return base >= 1 && base <= MaxPartitions && bits.OnesCount(uint(base)) == 1
}

// ID returns the id of partition index under P partitions, in a cluster
// whose base is base. P must be a power of two no smaller than base and
// index below P; ID does not check (the ring's values always are).
func ID(base, partitions int, index uint32) uint32 {
	if partitions == base {
		return index
	}
	return uint32(partitions) + index
}

// Locate returns where partition id lives in a cluster whose base is base.
func Locate(base int, id uint32) (Span, error) {
	if !validBase(base) {
		return Span{}, fmt.Errorf("%w: base %d is not a power of two in [1, %d]", ErrInvalid, base, MaxPartitions)
	}
	if id < uint32(base) {
		return Span{Level: base, Index: id, Storage: id, Whole: true}, nil
	}
	level := uint32(1) << (31 - bits.LeadingZeros32(id)) // the power of two at or below id
	if level < 2*uint32(base) || level > MaxPartitions {
		return Span{}, fmt.Errorf("%w: id %d names no partition of a cluster first of %d partitions", ErrInvalid, id, base)
	}
	index := id - level
	down := bits.TrailingZeros32(level) - bits.TrailingZeros(uint(base))
	return Span{Level: int(level), Index: index, Storage: index >> down}, nil
}

// Children returns the ids of the two partitions that id splits into in a
// cluster whose base is base. id must be valid (Locate).
func Children(base int, id uint32) [2]uint32 {
	x := id
	if id < uint32(base) {
		x = uint32(base) + id
	}
	return [2]uint32{2 * x, 2*x + 1}
}

// Parent returns the id of the partition that id was split from, and false
// for a base-level id, which has none. id must be valid (Locate).
func Parent(base int, id uint32) (uint32, bool) {
	if id < uint32(base) {
		return 0, false
	}
	x := id / 2
	if x < 2*uint32(base) {
		return x - uint32(base), true
	}
	return x, true
}
