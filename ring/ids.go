package ring

import (
	"math/bits"
	"slices"

	"github.com/cespare/xxhash/v2"

	"github.com/ringkv/ringkv/internal/partid"
)

// ID returns the id of partition p, an index under this ring's P: p
// itself until the cluster's first split, then P+p (internal/partid). Ids
// name partitions wherever they are stored or sent, so that a partition
// keeps its name while its parent or children exist beside it.
func (r *Ring) ID(p uint32) uint32 { return partid.ID(r.cfg.base, r.cfg.Partitions, p) }

// IDOf returns the id of key's partition: ID(PartitionOf(key)).
func (r *Ring) IDOf(key []byte) uint32 { return r.ID(r.PartitionOf(key)) }

// Index returns the index under this ring's P of partition id, and false
// if id names no partition of this ring's P (one of a level before or
// after a split).
func (r *Ring) Index(id uint32) (uint32, bool) {
	s, err := partid.Locate(r.cfg.base, id)
	if err != nil || s.Level != r.cfg.Partitions {
		return 0, false
	}
	return s.Index, true
}

// IDs returns the id of every partition in index order. The slice is a
// fresh copy owned by the caller.
func (r *Ring) IDs() []uint32 {
	ids := make([]uint32, r.cfg.Partitions)
	for p := range ids {
		ids[p] = r.ID(uint32(p))
	}
	return ids
}

// ReplicasOf returns the preference list of the partition with id, as
// Replicas does for an index; nil if id names no partition of this ring's
// P.
func (r *Ring) ReplicasOf(id uint32) []string {
	p, ok := r.Index(id)
	if !ok {
		return nil
	}
	return r.Replicas(p)
}

// IDOfHash returns the id of the partition of a key whose xxhash64 is h:
// IDOf for a caller that has the hash (the replica store's observer).
func (r *Ring) IDOfHash(h uint64) uint32 { return r.ID(uint32(h >> r.shift)) }

// IDsOf returns, in ascending order, the ids of the partitions whose
// preference list contains member: PartitionsOf as ids. The slice is a
// fresh copy owned by the caller.
func (r *Ring) IDsOf(member string) []uint32 {
	ps := r.PartitionsOf(member)
	for k, p := range ps {
		ps[k] = r.ID(p)
	}
	return ps
}

// KeyIn reports whether key belongs to the partition with id, of this
// ring's P or of any other level of the cluster (an ancestor or a
// descendant of key's partition here): false for an id that names no
// partition of the cluster.
func (r *Ring) KeyIn(id uint32, key []byte) bool {
	s, err := partid.Locate(r.cfg.base, id)
	return err == nil && s.Contains(xxhash.Sum64(key))
}

// Holds reports whether member replicates, in this ring, any of the keys
// of the partition with id, which may be of another level than this
// ring's P: for an id of a later level (this ring is behind), its
// ancestor's replicas; for one of an earlier level (the asker is behind),
// any of its descendants'.
func (r *Ring) Holds(member string, id uint32) bool {
	s, err := partid.Locate(r.cfg.base, id)
	if err != nil {
		return false
	}
	P := r.cfg.Partitions
	switch {
	case s.Level == P:
		return slices.Contains(r.Replicas(s.Index), member)
	case s.Level > P:
		return slices.Contains(r.Replicas(s.Index>>(bits.TrailingZeros(uint(s.Level))-bits.TrailingZeros(uint(P)))), member)
	default:
		d := bits.TrailingZeros(uint(P)) - bits.TrailingZeros(uint(s.Level))
		for p := s.Index << d; p < (s.Index+1)<<d; p++ {
			if slices.Contains(r.Replicas(p), member) {
				return true
			}
		}
		return false
	}
}

// ChildIDs returns the ids of the two partitions that the partition with
// id splits into. id must name a partition of the cluster (LevelOf > 0).
func (r *Ring) ChildIDs(id uint32) [2]uint32 { return partid.Children(r.cfg.base, id) }

// ParentID returns the id of the partition that id was split from, and
// false for a partition of the cluster's first P. id must name a
// partition of the cluster (LevelOf > 0).
func (r *Ring) ParentID(id uint32) (uint32, bool) { return partid.Parent(r.cfg.base, id) }

// LevelOf returns the P under which id names a partition (Base for the
// first P, then 2·Base, ...), or 0 if it names none.
func (r *Ring) LevelOf(id uint32) int {
	s, err := partid.Locate(r.cfg.base, id)
	if err != nil {
		return 0
	}
	return s.Level
}

// DigestIDOf returns the id of the partition whose anti-entropy digest
// counts a record that a replica stores in storage partition storage (the
// Partition of a replica.Change) with key hash hash: the key's partition,
// or for one of the cluster's own records stored away from its hash's
// partition, the first partition of its storage partition
// (partid.DigestID, replica.Store.ScanSnapshot).
func (r *Ring) DigestIDOf(storage uint32, hash uint64) uint32 {
	return partid.DigestID(r.cfg.base, r.cfg.Partitions, storage, hash)
}

// RecordOwner returns the id of the partition whose Raft group owns a
// record of the cluster's own (a transaction's record) that partition
// holder stored under key, at this ring's level or holder's, whichever is
// deeper (a group may run before its node holds the ring that split its
// parent): the partition of key's hash if that falls in holder's storage
// partition, else that storage partition's first partition (DigestIDOf).
// Before a split it is the storage partition itself.
func (r *Ring) RecordOwner(holder uint32, key []byte) uint32 {
	s, err := partid.Locate(r.cfg.base, holder)
	if err != nil {
		return holder
	}
	return partid.DigestID(r.cfg.base, max(r.cfg.Partitions, s.Level), s.Storage, xxhash.Sum64(key))
}
