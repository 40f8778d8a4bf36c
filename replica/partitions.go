package replica

import (
	"fmt"

	"github.com/cespare/xxhash/v2"

	"github.com/ringkv/ringkv/internal/partid"
)

// Partitions are named by id (internal/partid): the index under the
// cluster's first P (its base) before any split, P+index after. Every
// record is stored under its key's storage partition, the key's partition
// under the base, whatever the id it is addressed by, so a split moves
// nothing on disk: a partition of a later level is a hash sub-range of
// its storage partition, and a scan of it reads the storage partition and
// keeps the keys in that range (docs/ARCHITECTURE.md, "Partition split").

// SetBasePartitions tells the store the cluster's first P (ring.Ring.Base),
// which maps ids of split partitions to where their records are. Until it
// is called every id is taken as a base-level index, which is what every
// id is in a cluster that never split. The base never changes once set:
// a different one is refused with an error wrapping ErrInvalidEntry.
func (s *Store) SetBasePartitions(n int) error {
	if _, err := partid.Locate(n, 0); err != nil {
		return fmt.Errorf("%w: %w", ErrInvalidEntry, err)
	}
	if s.base.CompareAndSwap(0, int64(n)) || s.base.Load() == int64(n) {
		return nil
	}
	return fmt.Errorf("%w: base partitions %d, already %d", ErrInvalidEntry, n, s.base.Load())
}

// locate returns where partition id's records are. Errors wrap
// ErrUnknownPartition.
func (s *Store) locate(id uint32) (partid.Span, error) {
	base := s.base.Load()
	if base == 0 && s.baseFn != nil {
		if n := s.baseFn(); n > 0 {
			if err := s.SetBasePartitions(n); err != nil {
				return partid.Span{}, fmt.Errorf("%w: %w", ErrUnknownPartition, err)
			}
			base = s.base.Load()
		}
	}
	if base == 0 || int64(id) < base {
		return partid.Span{Level: int(base), Index: id, Storage: id, Whole: true}, nil
	}
	span, err := partid.Locate(int(base), id)
	if err != nil {
		return partid.Span{}, fmt.Errorf("%w: %w", ErrUnknownPartition, err)
	}
	return span, nil
}

// holds reports whether a record stored under span's storage partition
// with user key key belongs to span's partition, for Scan and Verify.
// Reserved keys (first byte 0x00: the cluster's own records) belong to
// every partition of their storage partition: some of them live in a
// partition by another key's hash (a transaction's intents by the key
// they guard, its record by its anchor, logged batches by their first
// key), so no hash range may hide one from a child of the partition they
// were written in. ScanSnapshot, whose digests must match what the
// Observer's changes place (partid.DigestID), keeps partid.Span.Digests.
func holds(span partid.Span, key []byte) bool {
	return span.Whole || (len(key) > 0 && key[0] == 0) || span.Contains(xxhash.Sum64(key))
}
