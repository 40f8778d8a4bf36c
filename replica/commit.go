package replica

import (
	"errors"
	"fmt"
	"time"

	"github.com/cespare/xxhash/v2"
	"github.com/dgraph-io/badger/v4"
)

// op is one caller's unit of work for the committer. Every write to Badger
// goes through an op, so the committer is the only writer and may
// read-compare-write without races. There are three: mergeOp (records),
// rawOp (raw.go: the Raft log and stable store) and rawDeleteOp
// (rawdelete.go: hints), and one batch may mix them.
type op interface {
	// writes is the number of writes the op contributes to a group commit,
	// counted against Config.MaxBatchEntries.
	writes() int
	// apply stages the op's writes through w. It runs on the committer
	// goroutine only. An error fails this op alone (writes already staged
	// still commit); a commit failure reported by w fails the whole batch.
	apply(w *batchWriter) error
}

// request carries an op to the committer and its answer back.
type request struct {
	op op
	// unsynced: answer once committed (visible), without waiting for the
	// fsync that makes it durable (MergeUnsynced).
	unsynced bool
	// onDurable, if set, makes the request answered once committed, and
	// onDurable called by the syncer once durable (WriteRawAsync).
	onDurable func(error)
	// done receives exactly one answer from the committer (or the syncer).
	// Buffered (1) so they never block on a caller that left on ctx.Done.
	// Nil when answer is set.
	done chan error
	// answer, if set, replaces done: it is called exactly once with the
	// answer, on the committer's or the syncer's goroutine, and must not
	// block (MergeAsync).
	answer func(error)
}

// reply gives r its answer.
func (r *request) reply(err error) {
	if r.answer != nil {
		r.answer(err)
		return
	}
	r.done <- err
}

// runCommitter is the committer goroutine: the only writer to Badger. It
// takes every request waiting at that moment (up to MaxBatchEntries writes;
// a single larger request is taken whole), commits them in as few Badger
// transactions as fit, and answers each request. It exits when closing is
// closed, after finishing the batch in hand.
func (s *Store) runCommitter() {
	defer s.committer.Done()
	var batch, durable []*request
	var errs []error
	for {
		var first *request
		select {
		case <-s.closing:
			return
		case first = <-s.reqs:
		}
		batch = append(batch[:0], first)
		n := first.op.writes()
	gather:
		for n < s.cfg.MaxBatchEntries {
			select {
			case r := <-s.reqs:
				batch = append(batch, r)
				n += r.op.writes()
			default:
				break gather
			}
		}
		if s.space != nil {
			if batch = s.admit(batch); len(batch) == 0 {
				continue
			}
		}
		if s.hooks.beforeBatch != nil {
			s.hooks.beforeBatch(len(batch))
		}
		var vlog bool
		errs, vlog = s.commitBatch(batch, errs[:0])
		durable = durable[:0]
		for i, r := range batch {
			switch {
			case errs[i] != nil || r.unsynced:
				r.reply(errs[i])
			case s.syncer == nil: // InMemory: nothing to sync
				if r.onDurable != nil {
					r.onDurable(nil)
				}
				r.reply(nil)
			case r.onDurable != nil:
				r.reply(nil) // the syncer calls onDurable
				durable = append(durable, r)
			default:
				durable = append(durable, r) // answered by the syncer
			}
			batch[i] = nil // let the request be collected
		}
		if s.syncer != nil {
			s.syncer.enqueue(durable, vlog)
		}
		clear(durable)
	}
}

// commitBatch applies and commits batch, appending one answer per request to
// errs. vlog reports whether a committed value went to Badger's value log.
// The answers say the batch is committed (visible); making it durable is
// the syncer's.
func (s *Store) commitBatch(batch []*request, errs []error) (_ []error, vlog bool) {
	if n := s.corruptSeen.Load(); n != s.versions.corruptSeen {
		s.versions.reset() // a cached version may stand for a record now found corrupt
		s.versions.corruptSeen = n
	}
	w := &batchWriter{s: s}
	w.begin()
	for _, r := range batch {
		err := w.failed
		if err == nil {
			err = r.op.apply(w)
		}
		errs = append(errs, err)
	}
	if w.failed == nil {
		w.commit()
	} else {
		w.txn.Discard()
	}
	if w.failed != nil {
		s.versions.reset() // what it learnt from this batch is lost with it
		s.log.Error("group commit failed", "requests", len(batch), "err", w.failed)
		if isNoSpace(w.failed) {
			w.failed = errors.Join(ErrDiskFull, w.failed)
		}
		if s.space != nil {
			s.space.writeFailed(w.failed)
		}
		for i := range errs {
			errs[i] = w.failed
		}
		return errs, w.vlog
	}
	s.metrics.mergesApplied.Add(float64(w.applied))
	s.metrics.mergesStale.Add(float64(w.stale))
	return errs, w.vlog
}

// batchWriter stages one group commit. When the Badger transaction is full it
// commits it and starts another, transparently to ops. Used only on the
// committer goroutine.
type batchWriter struct {
	s      *Store
	txn    *badger.Txn
	staged int   // writes staged in txn
	failed error // first commit failure; once set the batch is lost

	applied, stale int // merge outcomes, reported once the batch commits
	// vlog is set once a value at or above Badger's value threshold was
	// staged: it goes to the value log, which the syncer must then sync.
	vlog bool

	// changes are the record changes staged in txn, for the observer.
	changes []Change
}

func (w *batchWriter) begin() {
	w.txn = w.s.db.NewTransaction(true)
	w.staged = 0
	w.changes = w.changes[:0]
}

// commit commits the current transaction to Badger's memtable and
// write-ahead log (not fsynced: see syncer), recording a failure in
// w.failed.
func (w *batchWriter) commit() {
	if w.staged == 0 {
		w.txn.Discard()
		w.flushChanges() // none: nothing was staged
		return
	}
	if hook := w.s.hooks.commitErr; hook != nil {
		if err := hook(); err != nil {
			w.txn.Discard()
			w.failed = fmt.Errorf("commit: %w", err)
			return
		}
	}
	start := time.Now()
	if err := w.txn.Commit(); err != nil {
		w.failed = fmt.Errorf("commit: %w", err)
		return
	}
	w.flushChanges()
	w.s.metrics.commitDuration.Observe(time.Since(start).Seconds())
	w.s.metrics.batchEntries.Observe(float64(w.staged))
	w.s.txnsCommitted.Add(1)
}

// get calls fn with the value stored (or staged earlier in this batch) under
// key, valid only during fn. found is false if there is none.
func (w *batchWriter) get(key []byte, fn func(val []byte) error) (found bool, err error) {
	item, err := w.txn.Get(key)
	if errors.Is(err, badger.ErrKeyNotFound) {
		return false, nil
	}
	if err != nil {
		return false, fmt.Errorf("read: %w", err)
	}
	if err := item.Value(fn); err != nil {
		return true, fmt.Errorf("read value: %w", err)
	}
	return true, nil
}

// set stages key=val; both must stay unmodified until the batch commits. If
// the transaction is full it is committed first.
func (w *batchWriter) set(key, val []byte) error {
	if int64(len(val)) >= w.s.valueThreshold {
		w.vlog = true
	}
	return w.stage(func(txn *badger.Txn) error { return txn.Set(key, val) })
}

// delete stages the deletion of key, which must stay unmodified until the
// batch commits. If the transaction is full it is committed first.
func (w *batchWriter) delete(key []byte) error {
	return w.stage(func(txn *badger.Txn) error { return txn.Delete(key) })
}

// stage runs write on the transaction in hand; if Badger says the
// transaction is full, it commits it, begins another and runs write again.
func (w *batchWriter) stage(write func(*badger.Txn) error) error {
	err := write(w.txn)
	if errors.Is(err, badger.ErrTxnTooBig) && w.staged > 0 {
		w.commit()
		if w.failed != nil {
			return w.failed
		}
		w.begin()
		err = write(w.txn)
	}
	if err != nil {
		return fmt.Errorf("stage write: %w", err)
	}
	w.staged++
	return nil
}

// mergeOp merges records. Keys and encodings are built by the caller's
// goroutine into one private buffer, so the committer only reads, compares
// and writes, and nothing aliases the caller's slices.
type mergeOp struct {
	items []mergeItem
}

type mergeItem struct {
	partition uint32
	key       []byte // the Badger key
	enc       []byte // the encoded record
	rec       Record // decoded view of enc (Value aliases enc)
}

func (s *Store) newMergeOp(entries []Entry) (*mergeOp, error) {
	size := 0
	for i, e := range entries {
		if len(e.Key) > MaxKeyBytes {
			return nil, fmt.Errorf("%w: entry %d: key of %d bytes exceeds %d", ErrInvalidEntry, i, len(e.Key), MaxKeyBytes)
		}
		n := e.Record.encodedLen()
		if n > s.maxRecordBytes {
			return nil, fmt.Errorf("%w: entry %d: record of %d bytes exceeds %d", ErrInvalidEntry, i, n, s.maxRecordBytes)
		}
		if _, err := s.locate(e.Partition); err != nil {
			return nil, fmt.Errorf("%w: entry %d: %w", ErrInvalidEntry, i, err)
		}
		size += recordKeyPrefixLen + len(e.Key) + n
	}
	buf := make([]byte, 0, size)
	op := &mergeOp{items: make([]mergeItem, len(entries))}
	for i, e := range entries {
		span, _ := s.locate(e.Partition) // checked above; the base never changes
		start := len(buf)
		buf = recordKey(buf, span.Storage, e.Key)
		key := buf[start:len(buf):len(buf)]
		start = len(buf)
		buf = e.Record.AppendBinary(buf)
		enc := buf[start:len(buf):len(buf)]
		rec := e.Record
		rec.Value = nil
		if len(e.Record.Value) > 0 {
			end := len(enc) - recordCRCLen
			rec.Value = enc[end-len(e.Record.Value) : end : end]
		}
		op.items[i] = mergeItem{partition: span.Storage, key: key, enc: enc, rec: rec}
	}
	return op, nil
}

func (m *mergeOp) writes() int { return len(m.items) }

func (m *mergeOp) apply(w *batchWriter) error {
	for i := range m.items {
		it := &m.items[i]
		newer := true
		userKey := it.key[recordKeyPrefixLen:]
		var oldHash uint64
		oldCorrupt := false
		found := false
		if v, ok := w.s.versions.get(it.key); ok {
			if cmp, ok := v.order(it.rec); ok {
				found, newer, oldHash = true, cmp > 0, v.hash
			}
		}
		if !found {
			var err error
			found, err = w.get(it.key, func(val []byte) error {
				old, derr := decodeRecord(val, false)
				if derr != nil {
					// Treated as absent: the incoming record repairs it.
					w.s.corruptFound("merge", it.partition, userKey, derr)
					oldCorrupt = true
					return nil
				}
				newer = it.rec.Newer(old)
				if newer && w.s.observer != nil {
					oldHash = recordHash(userKey, val)
				}
				return nil
			})
			if err != nil {
				return err
			}
		}
		if found && !newer {
			w.stale++
			continue
		}
		if err := w.set(it.key, it.enc); err != nil {
			return err
		}
		newHash := recordHash(userKey, it.enc)
		w.s.versions.put(it.key, it.rec, newHash)
		if oldCorrupt {
			w.s.metrics.corruptRemoved.WithLabelValues("overwritten").Inc()
		}
		if w.s.observer != nil {
			w.changed(Change{Partition: it.partition, KeyHash: xxhash.Sum64(userKey), Old: oldHash,
				New: newHash, OldUnknown: oldCorrupt})
		}
		w.applied++
	}
	return nil
}
