package replica

import (
	"bytes"
	"context"
	"errors"
	"fmt"

	"github.com/dgraph-io/badger/v4"
)

// KV is a raw key/value in a namespace other than records. Key is the whole
// Badger key, namespace byte first (see the key layout in the package
// documentation).
type KV struct{ Key, Value []byte }

// KeyRange is the half-open key range [Start, End) of whole Badger keys.
type KeyRange struct{ Start, End []byte }

// badgerPrefix starts Badger's internal keys; raw keys may not use it.
var badgerPrefix = []byte("!badger!")

// WriteRaw durably applies sets in order, then deletes every stored key in
// each of deleteRanges, in one committer round: the writes share the group
// commit (and its fsync) with concurrent Merge and WriteRaw calls. It returns
// nil only once everything is committed and fsynced.
//
// The call is atomic only if it fits in the Badger transaction in hand: like
// Merge, a call too large for one transaction spans several, so after an
// error a prefix of the writes (sets first, then deletes in key order) may be
// applied. A range delete sees the sets of the same call.
//
// Errors: ErrInvalidEntry (wrapped; nothing is applied) if a key is empty,
// is in the record namespace (first byte 'r') or Badger's internal one, or is
// longer than MaxKeyBytes; if a value is longer than MaxRecordBytes (the value
// threshold for an InMemory store); or if a range is empty, inverted, or
// overlaps the record namespace. ErrClosed if the store is closed before the
// committer took the call; ctx.Err() if ctx is done first (if it ends after
// the hand-off the writes may still be applied); otherwise a Badger error.
//
// WriteRaw copies what it needs: it does not retain sets, deleteRanges or
// their slices after it returns. Safe for concurrent use.
func (s *Store) WriteRaw(ctx context.Context, sets []KV, deleteRanges []KeyRange) error {
	return s.writeRaw(ctx, sets, deleteRanges, nil)
}

// WriteRawAsync writes like WriteRaw but returns once the writes are
// committed, visible to reads, before they are fsynced; durable is then
// called with nil once they are, or with the error that kept them from
// being (ErrSyncFailed joined with the cause). durable runs on the store's
// syncer goroutine, in commit order, and must not block; it is not called
// if WriteRawAsync returns an error. An InMemory store calls it before
// returning. This lets a caller go on while the fsync runs and learn when
// it ended: the Raft log store answers raft at once and holds back what
// must wait for durability (see consensus.LogStore).
//
// Errors as for WriteRaw.
func (s *Store) WriteRawAsync(ctx context.Context, sets []KV, deleteRanges []KeyRange, durable func(error)) error {
	return s.writeRaw(ctx, sets, deleteRanges, durable)
}

// writeRaw is WriteRaw (durable nil: answered after the fsync) and
// WriteRawAsync (answered at commit, durable called after the fsync).
func (s *Store) writeRaw(ctx context.Context, sets []KV, deleteRanges []KeyRange, durable func(error)) error {
	if err := ctx.Err(); err != nil {
		return err //nolint:wrapcheck // documented: WriteRaw returns ctx.Err() itself
	}
	select {
	case <-s.closing:
		return ErrClosed
	default:
	}
	if len(sets) == 0 && len(deleteRanges) == 0 {
		if durable != nil {
			durable(nil)
		}
		return nil
	}
	op, err := s.newRawOp(sets, deleteRanges)
	if err != nil {
		return err
	}
	return s.submitRequest(ctx, &request{op: op, onDurable: durable, done: make(chan error, 1)})
}

// GetRaw returns a copy of the value stored under the raw key (non-nil, even
// when empty).
//
// Errors: ErrNotFound if there is none; ErrInvalidEntry (wrapped) if key is
// empty or in the record namespace; ErrClosed after Close; otherwise a Badger
// error. Safe for concurrent use.
func (s *Store) GetRaw(key []byte) ([]byte, error) {
	if err := checkRawPrefix("key", key); err != nil {
		return nil, err
	}
	if !s.acquire() {
		return nil, ErrClosed
	}
	defer s.release()
	var val []byte
	err := s.db.View(func(txn *badger.Txn) error {
		item, err := txn.Get(key)
		if err != nil {
			return err //nolint:wrapcheck // wrapped below
		}
		return item.Value(func(v []byte) error {
			val = append(make([]byte, 0, len(v)), v...)
			return nil
		})
	})
	switch {
	case err == nil:
		return val, nil
	case errors.Is(err, badger.ErrKeyNotFound):
		return nil, ErrNotFound
	default:
		return nil, fmt.Errorf("get raw: %w", err)
	}
}

// ScanRaw calls fn, in key order, with every raw key/value whose key has
// prefix and is >= start (a start below prefix, or nil, means from the
// beginning of prefix), until fn returns false. Keys are whole Badger keys.
// fn owns the copies it is given. fn may call the Store's other methods but
// not Close.
//
// Errors: ErrInvalidEntry (wrapped) if prefix is empty or in the record
// namespace; ErrClosed after Close; otherwise a Badger error. Safe for
// concurrent use.
func (s *Store) ScanRaw(prefix, start []byte, fn func(key, value []byte) bool) error {
	if err := checkRawPrefix("prefix", prefix); err != nil {
		return err
	}
	if !s.acquire() {
		return ErrClosed
	}
	defer s.release()
	seek := prefix
	if bytes.Compare(start, prefix) > 0 {
		seek = start
	}
	err := s.db.View(func(txn *badger.Txn) error {
		opts := badger.DefaultIteratorOptions
		opts.Prefix = prefix
		opts.PrefetchValues = false // values are mostly inline in the LSM tree
		it := txn.NewIterator(opts)
		defer it.Close()
		for it.Seek(seek); it.ValidForPrefix(prefix); it.Next() {
			item := it.Item()
			val, err := item.ValueCopy(nil)
			if err != nil {
				return fmt.Errorf("read value: %w", err)
			}
			if !fn(item.KeyCopy(nil), val) {
				return nil
			}
		}
		return nil
	})
	if err != nil {
		return fmt.Errorf("scan raw: %w", err)
	}
	return nil
}

// LastRaw returns copies of the largest raw key with prefix and its value.
//
// Errors: ErrNotFound if no key has prefix; ErrInvalidEntry (wrapped) if
// prefix is empty or in the record namespace; ErrClosed after Close;
// otherwise a Badger error. Safe for concurrent use.
func (s *Store) LastRaw(prefix []byte) (key, value []byte, err error) {
	if err := checkRawPrefix("prefix", prefix); err != nil {
		return nil, nil, err
	}
	if !s.acquire() {
		return nil, nil, ErrClosed
	}
	defer s.release()
	end := prefixEnd(prefix)
	err = s.db.View(func(txn *badger.Txn) error {
		// No opts.Prefix: Badger's Valid then rejects every key outside it,
		// including the end key a reverse Seek may land on first.
		opts := badger.DefaultIteratorOptions
		opts.PrefetchValues = false
		opts.Reverse = true
		it := txn.NewIterator(opts)
		defer it.Close()
		// A reverse Seek lands on the largest key <= its argument.
		if end == nil {
			it.Rewind()
		} else {
			it.Seek(end)
			if it.Valid() && bytes.Equal(it.Item().Key(), end) {
				it.Next()
			}
		}
		if !it.ValidForPrefix(prefix) {
			return ErrNotFound
		}
		item := it.Item()
		v, verr := item.ValueCopy(nil)
		if verr != nil {
			return fmt.Errorf("read value: %w", verr)
		}
		key, value = item.KeyCopy(nil), v
		return nil
	})
	switch {
	case err == nil:
		return key, value, nil
	case errors.Is(err, ErrNotFound):
		return nil, nil, ErrNotFound
	default:
		return nil, nil, fmt.Errorf("last raw: %w", err)
	}
}

// prefixEnd returns the smallest key above every key with prefix, or nil if
// there is none (prefix is all 0xff).
func prefixEnd(prefix []byte) []byte {
	end := bytes.Clone(prefix)
	for i := len(end) - 1; i >= 0; i-- {
		if end[i] != 0xff {
			end[i]++
			return end[:i+1]
		}
	}
	return nil
}

// checkRawPrefix reports (wrapping ErrInvalidEntry) a raw key or prefix that
// is empty or reaches into the record namespace or Badger's own.
func checkRawPrefix(what string, p []byte) error {
	switch {
	case len(p) == 0:
		return fmt.Errorf("%w: empty raw %s", ErrInvalidEntry, what)
	case p[0] == nsRecord:
		return fmt.Errorf("%w: raw %s in the record namespace", ErrInvalidEntry, what)
	case bytes.HasPrefix(p, badgerPrefix):
		return fmt.Errorf("%w: raw %s in Badger's internal namespace", ErrInvalidEntry, what)
	}
	return nil
}

// rawOp writes raw keys, then deletes raw key ranges. Everything is copied
// by the caller's goroutine into one private buffer.
type rawOp struct {
	sets   []KV
	ranges []KeyRange
}

func (s *Store) newRawOp(sets []KV, ranges []KeyRange) (*rawOp, error) {
	size := 0
	for i, kv := range sets {
		if err := checkRawPrefix("key", kv.Key); err != nil {
			return nil, fmt.Errorf("set %d: %w", i, err)
		}
		if len(kv.Key) > MaxKeyBytes {
			return nil, fmt.Errorf("%w: set %d: key of %d bytes exceeds %d", ErrInvalidEntry, i, len(kv.Key), MaxKeyBytes)
		}
		if len(kv.Value) > s.maxRecordBytes {
			return nil, fmt.Errorf("%w: set %d: value of %d bytes exceeds %d", ErrInvalidEntry, i, len(kv.Value), s.maxRecordBytes)
		}
		size += len(kv.Key) + len(kv.Value)
	}
	recordsStart, recordsEnd := []byte{nsRecord}, []byte{nsRecord + 1}
	for i, r := range ranges {
		if bytes.Compare(r.Start, r.End) >= 0 {
			return nil, fmt.Errorf("%w: delete range %d is empty or inverted", ErrInvalidEntry, i)
		}
		if bytes.Compare(r.Start, recordsEnd) < 0 && bytes.Compare(r.End, recordsStart) > 0 {
			return nil, fmt.Errorf("%w: delete range %d overlaps the record namespace", ErrInvalidEntry, i)
		}
		size += len(r.Start) + len(r.End)
	}
	buf := make([]byte, 0, size)
	clip := func(b []byte) []byte {
		start := len(buf)
		buf = append(buf, b...)
		return buf[start:len(buf):len(buf)]
	}
	op := &rawOp{sets: make([]KV, len(sets)), ranges: make([]KeyRange, len(ranges))}
	for i, kv := range sets {
		op.sets[i] = KV{Key: clip(kv.Key), Value: clip(kv.Value)}
	}
	for i, r := range ranges {
		op.ranges[i] = KeyRange{Start: clip(r.Start), End: clip(r.End)}
	}
	return op, nil
}

func (o *rawOp) writes() int { return len(o.sets) + len(o.ranges) }

func (o *rawOp) apply(w *batchWriter) error {
	for _, kv := range o.sets {
		if err := w.set(kv.Key, kv.Value); err != nil {
			return err
		}
	}
	for _, r := range o.ranges {
		if err := w.deleteRange(r.Start, r.End); err != nil {
			return err
		}
	}
	return nil
}

// deleteRangeChunk is how many keys deleteRange collects per iterator pass.
// Iterators must be closed before the transaction commits, so deleting
// proceeds in passes: collect a chunk, close the iterator, delete it
// (committing and beginning a transaction if the one in hand is full).
const deleteRangeChunk = 256

// deleteRange stages the deletion of every key in [start, end), including
// keys staged earlier in this batch.
func (w *batchWriter) deleteRange(start, end []byte) error {
	opts := badger.DefaultIteratorOptions
	opts.PrefetchValues = false
	opts.Prefix = commonPrefix(start, end) // every key in the range has it; lets Badger skip tables
	keys := make([][]byte, 0, deleteRangeChunk)
	for {
		keys = keys[:0]
		it := w.txn.NewIterator(opts)
		for it.Seek(start); it.ValidForPrefix(opts.Prefix) && len(keys) < deleteRangeChunk; it.Next() {
			k := it.Item().KeyCopy(nil) // kept until commit by txn.Delete
			if bytes.Compare(k, end) >= 0 {
				break
			}
			keys = append(keys, k)
		}
		it.Close()
		for _, k := range keys {
			if err := w.delete(k); err != nil {
				return err
			}
		}
		if len(keys) < deleteRangeChunk {
			return nil
		}
		last := keys[len(keys)-1]
		start = append(last[:len(last):len(last)], 0) // the next key after last
	}
}

// commonPrefix returns the longest common prefix of a and b (aliasing a).
func commonPrefix(a, b []byte) []byte {
	n := min(len(a), len(b))
	for i := range n {
		if a[i] != b[i] {
			return a[:i]
		}
	}
	return a[:n]
}
