package replica

import (
	"encoding/binary"

	"github.com/cespare/xxhash/v2"
)

// Change reports that the committer committed a new record for one key, or
// removed one. Observers (anti-entropy's Merkle trees) keep order-independent
// digests up to date from it without reading the store.
type Change struct {
	// Partition is the storage partition: the key's partition under the
	// cluster's first P (partitions.go), whatever id the write addressed;
	// KeyHash places the key in a partition of any later P.
	Partition uint32
	// KeyHash is xxhash64 of the user key (the same hash the ring places
	// keys with).
	KeyHash uint64
	// Old and New are RecordHash of the record before and after; 0 means
	// there was (or is) none.
	Old, New uint64
	// OldUnknown is set when the record replaced or removed failed its
	// checksum: its hash is unknown (Old is 0), so an observer that had
	// counted it must rebuild its digest of the partition.
	OldUnknown bool
}

// Observer receives the changes of every committed Badger transaction, in
// commit order, on the committer goroutine. It must be fast and must not
// block or call back into the Store's write methods (Merge, WriteRaw,
// Quarantine, ScanSnapshot): it delays every write on the node. It does not
// own the slice after it returns.
type Observer func(changes []Change)

// RecordHash returns the hash anti-entropy compares for the record stored
// under key: xxhash64 of the key's length, the key and the record's
// encoding. Replicas holding the same record for a key compute the same
// hash; it is never 0 (0 means "no record").
func RecordHash(key []byte, rec Record) uint64 {
	return recordHash(key, rec.AppendBinary(nil))
}

// recordHash is RecordHash of an encoded record.
func recordHash(key, enc []byte) uint64 {
	var d xxhash.Digest
	d.Reset()
	var n [binary.MaxVarintLen64]byte
	_, _ = d.Write(n[:binary.PutUvarint(n[:], uint64(len(key)))]) // Digest.Write never fails
	_, _ = d.Write(key)
	_, _ = d.Write(enc)
	if h := d.Sum64(); h != 0 {
		return h
	}
	return 1
}

// changed records a change staged in the transaction in hand; it is passed
// to the observer once that transaction commits, and dropped if it does not.
func (w *batchWriter) changed(c Change) {
	if w.s.observer != nil {
		w.changes = append(w.changes, c)
	}
}

// flushChanges hands the changes of the transaction just committed to the
// observer.
func (w *batchWriter) flushChanges() {
	if len(w.changes) > 0 {
		w.s.observer(w.changes)
		w.changes = w.changes[:0]
	}
}
