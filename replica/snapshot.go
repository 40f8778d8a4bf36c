package replica

import (
	"context"
	"fmt"
	"sync"

	"github.com/dgraph-io/badger/v4"
)

// Snapshot is a pinned, consistent read view of the whole store: every
// transaction committed before it was taken, and none committed after.
// Backups read through it while writes go on. It holds a Badger read
// transaction, so the versions it sees are kept from compaction until it
// is closed: close it promptly. It is safe for concurrent use; scans of
// one snapshot may run at the same time.
type Snapshot struct {
	s *Store
	// mu guards txn: scans hold it shared, Close exclusively.
	mu struct {
		sync.RWMutex
		txn *badger.Txn // nil once closed
	}
}

// snapshots tracks the open snapshots of a Store, so Close can release
// them.
type snapshots struct {
	mu   sync.Mutex
	open map[*Snapshot]struct{}
}

// Snapshot pins a consistent read view of the store, taken on the
// committer between commits: every Merge that returned before Snapshot was
// called is in it. The caller must Close it; Store.Close closes the
// snapshots still open.
//
// Errors: ErrClosed after Close; ctx.Err() if ctx has ended when it is
// called. Safe for concurrent use.
func (s *Store) Snapshot(ctx context.Context) (*Snapshot, error) {
	if !s.acquire() {
		return nil, ErrClosed
	}
	defer s.release()
	if err := ctx.Err(); err != nil {
		return nil, err //nolint:wrapcheck // documented: ctx.Err() itself
	}
	// Not cancellable once handed over (as ScanSnapshot): the committer
	// answers at once and its transaction must come back here.
	op := &snapshotOp{}
	if err := s.submit(context.WithoutCancel(ctx), op); err != nil {
		return nil, err
	}
	sn := &Snapshot{s: s}
	sn.mu.txn = op.txn
	s.snaps.mu.Lock()
	if s.snaps.open == nil {
		s.snaps.open = make(map[*Snapshot]struct{})
	}
	s.snaps.open[sn] = struct{}{}
	s.snaps.mu.Unlock()
	return sn, nil
}

// closeSnapshots releases every open snapshot; Close calls it once no
// reader is left.
func (s *Store) closeSnapshots() {
	s.snaps.mu.Lock()
	open := s.snaps.open
	s.snaps.open = nil
	s.snaps.mu.Unlock()
	for sn := range open {
		sn.discard()
	}
}

// OpenSnapshots returns how many snapshots are open.
func (s *Store) OpenSnapshots() int {
	s.snaps.mu.Lock()
	defer s.snaps.mu.Unlock()
	return len(s.snaps.open)
}

// Version returns the snapshot's commit version: every record committed
// after the snapshot was taken has a greater version (Scan passes each
// record's). Versions grow for the life of the store's directory.
func (sn *Snapshot) Version() uint64 {
	sn.mu.RLock()
	defer sn.mu.RUnlock()
	if sn.mu.txn == nil {
		return 0
	}
	return sn.mu.txn.ReadTs()
}

// Scan calls fn, in key order, with every record of partition in the
// snapshot whose key is >= start (nil: from the first), and the version
// it was committed at, until fn returns false. Tombstones and expired records are included; records failing
// their checksum are skipped and counted, as by Store.Scan. fn owns the
// key and record it is given and must not call Close.
//
// Errors: ErrClosed once the snapshot or the store is closed; otherwise a
// Badger error.
func (sn *Snapshot) Scan(partition uint32, start []byte, fn func(key []byte, rec Record, version uint64) bool) error {
	s := sn.s
	if !s.acquire() {
		return ErrClosed
	}
	defer s.release()
	sn.mu.RLock()
	defer sn.mu.RUnlock()
	if sn.mu.txn == nil {
		return ErrClosed
	}
	span, err := s.locate(partition)
	if err != nil {
		return err
	}
	prefix := recordKey(nil, span.Storage, nil)
	if err := s.scanRecords(sn.mu.txn, "backup", partition, span, prefix, recordKey(nil, span.Storage, start), fn); err != nil {
		return fmt.Errorf("snapshot scan partition %d: %w", partition, err)
	}
	return nil
}

// Close releases the snapshot. Scans running on it finish first; later
// ones return ErrClosed. Close is idempotent.
func (sn *Snapshot) Close() {
	s := sn.s
	s.snaps.mu.Lock()
	delete(s.snaps.open, sn)
	s.snaps.mu.Unlock()
	sn.discard()
}

func (sn *Snapshot) discard() {
	sn.mu.Lock()
	defer sn.mu.Unlock()
	if sn.mu.txn != nil {
		sn.mu.txn.Discard()
		sn.mu.txn = nil
	}
}
