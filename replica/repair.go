package replica

import (
	"bytes"
	"context"
	"errors"
	"fmt"

	"github.com/cespare/xxhash/v2"
	"github.com/dgraph-io/badger/v4"
)

// This file holds what anti-entropy needs from the store beyond Merge and
// Scan: a scan ordered against the observer's change stream (to rebuild a
// digest while writes go on), verification of stored checksums (the
// scrubber), quarantine of a corrupt record, and conditional deletion (the
// collection of tombstones).

// ScanSnapshot calls fn with the key hash and RecordHash of every record of
// partition in one consistent snapshot, until fn returns false. Records
// failing their checksum are skipped (and counted, as by Scan).
//
// The snapshot is taken on the committer, between commits, and begin is
// called there at that moment: the changes of every transaction committed
// before begin are in the snapshot, and those of every later one reach the
// Observer after begin returns. An observer that starts recording changes
// in begin and adds them to the scan's digest therefore ends with the exact
// digest of the partition. begin runs on the committer: it must be quick
// and must not call the Store.
//
// Errors: ErrClosed after Close; ctx.Err() if ctx has ended when it is
// called; otherwise a Badger error. Safe for concurrent use; fn must not
// call Close.
func (s *Store) ScanSnapshot(ctx context.Context, partition uint32, begin func(), fn func(keyHash, recHash uint64) bool) error {
	if !s.acquire() {
		return ErrClosed
	}
	defer s.release()
	if err := ctx.Err(); err != nil {
		return err //nolint:wrapcheck // documented: ctx.Err() itself
	}
	span, err := s.locate(partition)
	if err != nil {
		return err
	}
	// Not cancellable once handed over: the committer answers at once (it
	// only opens a read transaction), and the transaction it opened must
	// come back here to be discarded.
	op := &snapshotOp{begin: begin}
	if err := s.submit(context.WithoutCancel(ctx), op); err != nil {
		return err
	}
	txn := op.txn
	defer txn.Discard()
	prefix := recordKey(nil, span.Storage, nil)
	opts := badger.DefaultIteratorOptions
	opts.Prefix = prefix
	opts.PrefetchValues = false
	it := txn.NewIterator(opts)
	defer it.Close()
	for it.Seek(prefix); it.ValidForPrefix(prefix); it.Next() {
		item := it.Item()
		userKey := item.Key()[recordKeyPrefixLen:]
		keyHash := xxhash.Sum64(userKey)
		if !span.Digests(keyHash, int(s.base.Load())) {
			continue
		}
		var recHash uint64
		err := item.Value(func(v []byte) error {
			if _, derr := decodeRecord(v, false); derr != nil {
				return derr
			}
			recHash = recordHash(userKey, v)
			return nil
		})
		if errors.Is(err, ErrCorrupt) {
			s.corruptFound("snapshot", partition, userKey, err)
			continue
		}
		if err != nil {
			return fmt.Errorf("snapshot scan partition %d: read value: %w", partition, err)
		}
		if !fn(keyHash, recHash) {
			return nil
		}
	}
	return nil
}

// snapshotOp opens a read transaction on the committer, between commits.
type snapshotOp struct {
	begin func()
	txn   *badger.Txn // set by apply; the caller discards it
}

func (o *snapshotOp) writes() int { return 0 }

func (o *snapshotOp) apply(w *batchWriter) error {
	// Changes staged earlier in this batch are not committed yet: they are
	// not in the snapshot and reach the observer after begin.
	o.txn = w.s.db.NewTransaction(false)
	if o.begin != nil {
		o.begin()
	}
	return nil
}

// Verify re-reads up to limit records of partition in key order, starting
// at start (nil: the first), and checks each one's checksum. It calls
// corrupt with the key of each record that fails (the key is the caller's)
// and returns the key to resume from (nil once the partition is done), how
// many records it checked and how many bytes of keys and values it read.
// Corrupt records are also counted in ringkv_replica_corrupt_records_total.
//
// Errors: ErrClosed after Close; otherwise a Badger error. Safe for
// concurrent use.
func (s *Store) Verify(partition uint32, start []byte, limit int, corrupt func(key []byte)) (next []byte, checked int, readBytes int64, err error) {
	if !s.acquire() {
		return nil, 0, 0, ErrClosed
	}
	defer s.release()
	span, err := s.locate(partition)
	if err != nil {
		return nil, 0, 0, err
	}
	prefix := recordKey(nil, span.Storage, nil)
	seek := recordKey(nil, span.Storage, start)
	err = s.db.View(func(txn *badger.Txn) error {
		opts := badger.DefaultIteratorOptions
		opts.Prefix = prefix
		opts.PrefetchValues = false
		it := txn.NewIterator(opts)
		defer it.Close()
		for it.Seek(seek); it.ValidForPrefix(prefix); it.Next() {
			item := it.Item()
			if !holds(span, item.Key()[recordKeyPrefixLen:]) {
				continue
			}
			if checked == limit {
				next = bytes.Clone(item.Key()[recordKeyPrefixLen:])
				return nil
			}
			checked++
			userKey := item.Key()[recordKeyPrefixLen:]
			verr := item.Value(func(v []byte) error {
				readBytes += int64(len(userKey) + len(v))
				_, derr := decodeRecord(v, false)
				return derr
			})
			switch {
			case errors.Is(verr, ErrCorrupt):
				s.corruptFound("verify", partition, userKey, verr)
				corrupt(bytes.Clone(userKey))
			case verr != nil:
				return fmt.Errorf("read value: %w", verr)
			}
		}
		return nil
	})
	if err != nil {
		return nil, checked, readBytes, fmt.Errorf("verify partition %d: %w", partition, err)
	}
	return next, checked, readBytes, nil
}

// Quarantine removes the record of key in partition if it still fails its
// checksum, so that the key reads as missing until a healthy replica's
// record is merged. It reports whether it removed one; each removal is
// counted once in ringkv_replica_corrupt_records_removed_total, and the
// Observer gets a Change with OldUnknown set.
//
// Errors: ErrClosed, ctx.Err() or a Badger error, as for Merge. Safe for
// concurrent use.
func (s *Store) Quarantine(ctx context.Context, partition uint32, key []byte) (bool, error) {
	span, err := s.locate(partition)
	if err != nil {
		return false, err
	}
	op := &condDeleteOp{partition: span.Storage, key: recordKey(nil, span.Storage, key), quarantine: true}
	if err := s.submit(ctx, op); err != nil {
		return false, err
	}
	return op.deleted, nil
}

// DeleteIfEqual removes the record of key in partition if the stored record
// is exactly rec (Compare == 0), and reports whether it did. Anti-entropy
// uses it to collect a tombstone without racing a newer write.
//
// Errors: ErrClosed, ctx.Err() or a Badger error, as for Merge. Safe for
// concurrent use.
func (s *Store) DeleteIfEqual(ctx context.Context, partition uint32, key []byte, rec Record) (bool, error) {
	span, err := s.locate(partition)
	if err != nil {
		return false, err
	}
	op := &condDeleteOp{partition: span.Storage, key: recordKey(nil, span.Storage, key), want: &rec}
	if err := s.submit(ctx, op); err != nil {
		return false, err
	}
	return op.deleted, nil
}

// condDeleteOp deletes one record if it is corrupt (quarantine) or equal to
// want.
type condDeleteOp struct {
	partition  uint32
	key        []byte // the Badger key
	quarantine bool
	want       *Record

	deleted bool // the answer, set by apply
}

func (o *condDeleteOp) writes() int { return 1 }

func (o *condDeleteOp) apply(w *batchWriter) error {
	userKey := o.key[recordKeyPrefixLen:]
	var oldHash uint64
	match := false
	_, err := w.get(o.key, func(val []byte) error {
		old, derr := decodeRecord(val, false)
		switch {
		case o.quarantine:
			match = derr != nil
		case derr == nil:
			match = Compare(old, *o.want) == 0
			oldHash = recordHash(userKey, val)
		}
		return nil
	})
	if err != nil || !match {
		return err
	}
	if err := w.delete(o.key); err != nil {
		return err
	}
	w.s.versions.drop(o.key)
	o.deleted = true
	if o.quarantine {
		w.s.metrics.corruptRemoved.WithLabelValues("quarantined").Inc()
		w.s.log.Warn("corrupt record quarantined", "partition", o.partition, "key_hash", xxhash.Sum64(userKey))
	}
	w.changed(Change{Partition: o.partition, KeyHash: xxhash.Sum64(userKey), Old: oldHash, OldUnknown: o.quarantine})
	return nil
}
