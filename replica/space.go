package replica

import (
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"golang.org/x/sys/unix"
)

// Free space and write errors
//
// Badger writes its memtable write-ahead logs (.mem), value logs (.vlog)
// and tables (.sst) through mmaps of files created at their full size but
// sparse: a page is allocated when it is first written. On a full file
// system that first write is a SIGBUS in one of Badger's goroutines, which
// kills the process, not an error return. So the store never lets the file
// system get that full: the committer, the only writer, refuses a batch of
// admitted writes (see guarded) with ErrDiskFull when the free space of
// the data directory (statfs, blocks available to unprivileged users)
// minus the batch's bytes would fall below the reserve. The reserve is
// what Badger may still write after the store stops admitting: the rest
// of the memtable log in use (the writes let through while full), a flush
// of both memtables to tables, and compactions, which write their new tables
// before deleting the old and may together rewrite every table (measured:
// with a fixed 16 MiB reserve, a node holding 41 MB on a 64 MB tmpfs died
// of a SIGBUS in a compaction after it had stopped admitting). So the
// reserve is the larger of Config.MinFreeBytes and the tables' size plus
// three memtables, recomputed at every check. The committer does not
// statfs for every batch: for up to estimateReuse after a statfs, and
// while its estimate (that free space minus what it admitted since) stays
// above twice the reserve, it admits on the estimate.
//
// While full the store refuses only admitted writes: durable merges
// (Merge, MergeAsync: client and repair writes) and raw writes to the Raft
// log ('l') and to hints ('h'). It lets through what must not fail and is
// small or bounded: the Raft state machine's applies (MergeUnsynced: only
// entries already in the local log, which takes no new ones), Raft's
// stable store (term and vote: hashicorp/raft panics if it cannot save its
// term), ring metadata and every delete.
//
// A commit that fails (ENOSPC from a file Badger could not create, or any
// other write error) also puts the store in the full state, whatever the
// free space says. The guard's goroutine (run) checks the free space every
// Config.DiskCheckInterval, entering the full state below the reserve even
// while no write comes (so the node tells the cluster early); the store
// leaves the full state once the free
// space is back above MinFreeBytes plus an eighth (so that it does not flap)
// and, after a write error, a probe write (create, write, fsync, remove a
// file in the directory) succeeds. Nothing committed is lost either way:
// a refused write was never staged, and a failed commit was never
// acknowledged.
//
// A failed fsync is different (ErrSyncFailed, sync.go): the kernel may have
// dropped the pages it could not write, so the store refuses durable
// writes until it is reopened; DiskState reports it.

// DiskState is what the store knows of its disk, for readiness and
// metrics. The zero value is a healthy disk.
type DiskState struct {
	// Full: admitted writes are refused with ErrDiskFull (free space below
	// the reserve, or a write failed and no probe succeeded since).
	Full bool
	// FreeBytes is the free space of the data directory at the last check;
	// -1 if unknown (InMemory, or statfs failed).
	FreeBytes int64
	// SyncFailed: an fsync failed; durable writes are refused until the
	// store is reopened.
	SyncFailed bool
	// SyncStall is how long the fsync in progress has been running; 0 when
	// none runs.
	SyncStall time.Duration
	// Reason says why the store refuses writes; empty when it does not.
	Reason string
}

// DiskState reports the state of the store's disk now. Safe for concurrent use.
func (s *Store) DiskState() DiskState {
	st := DiskState{FreeBytes: -1}
	if s.space != nil {
		st.Full = s.space.full.Load()
		st.FreeBytes = s.space.free.Load()
		if st.Full {
			st.Reason = s.space.reason()
		}
	}
	if s.syncer != nil {
		if err := s.syncer.failure(); err != nil {
			st.SyncFailed = true
			st.Reason = err.Error()
		}
		st.SyncStall = s.syncer.stall()
	}
	return st
}

// SyncStall returns how long the fsync in progress has been running; 0
// when none runs (or the store is InMemory). Safe for concurrent use.
func (s *Store) SyncStall() time.Duration {
	if s.syncer == nil {
		return 0
	}
	return s.syncer.stall()
}

// spaceGuard keeps the data directory's free space above the reserve. The
// committer calls admit; run (its own goroutine) refreshes the state and
// recovers from it.
type spaceGuard struct {
	dir     string
	minFree int64 // Config.MinFreeBytes: the reserve's floor
	flushes int64 // three memtables: the rest of the memtable log in use, and flushing both memtables
	// lsmBytes returns the on-disk size of Badger's tables (db.Tables).
	lsmBytes func() int64
	// reserve is the free space the store keeps (reserveNow), refreshed by
	// every check.
	reserve atomic.Int64
	log     *slog.Logger
	m       *metrics

	full atomic.Bool
	free atomic.Int64

	mu struct {
		sync.Mutex
		// statfs returns the free bytes of dir; probe writes a file
		// there. Seams for tests; statFree and probeWrite in production.
		statfs   func(dir string) (int64, error)
		probe    func(dir string) error
		why      string // why the store is full
		writeErr error  // a failed commit; cleared by a probe that succeeds
	}

	// est is the committer's own estimate of the free space, so that admit
	// need not statfs for every batch: the free space at its last statfs
	// (at) minus the bytes it admitted since. Used only by admit, on the
	// committer.
	est struct {
		at   time.Time
		free int64
	}
	// reuse is how long an estimate is trusted, in nanoseconds
	// (estimateReuse; 0 once a test swaps statfs).
	reuse atomic.Int64

	stop chan struct{} // closed by close
	done sync.WaitGroup
}

// estimateReuse is how long admit trusts its estimate of the free space
// instead of calling statfs, and only while the estimate stays above twice
// the reserve: another process would have to fill more than the reserve
// (at least four memtables) within it to get past the guard, and the
// guard's goroutine and the write error path still catch that. A statfs per
// committed batch was 2.6% of a serve process's CPU under linearizable
// writes.
const estimateReuse = 10 * time.Millisecond

func newSpaceGuard(dir string, minFree, memTableBytes int64, lsmBytes func() int64, interval time.Duration, log *slog.Logger, m *metrics) *spaceGuard {
	g := &spaceGuard{dir: dir, minFree: minFree, flushes: 3 * memTableBytes, lsmBytes: lsmBytes, log: log, m: m,
		stop: make(chan struct{})}
	g.mu.statfs, g.mu.probe = statFree, probeWrite
	g.reuse.Store(int64(estimateReuse))
	g.free.Store(-1)
	g.check()
	g.done.Add(1)
	go g.run(interval)
	return g
}

// run is the guard's goroutine: it checks the free space every interval
// until close.
func (g *spaceGuard) run(interval time.Duration) {
	defer g.done.Done()
	t := time.NewTicker(interval)
	defer t.Stop()
	for {
		select {
		case <-g.stop:
			return
		case <-t.C:
			g.check()
		}
	}
}

func (g *spaceGuard) close() {
	close(g.stop)
	g.done.Wait()
}

// check refreshes the free space: it enters the full state below the
// reserve (so the node tells the cluster before a write is refused), and
// leaves it when there is enough again (and, after a write error, a probe
// write succeeds).
func (g *spaceGuard) check() {
	reserve := g.reserveNow()
	free, ok := g.refresh()
	if !ok {
		return
	}
	if !g.full.Load() {
		if free < reserve {
			g.setFull(true, g.lowReason(free, reserve))
		}
		return
	}
	if free < reserve+reserve/8 { // hysteresis: do not flap at the edge
		return
	}
	g.mu.Lock()
	werr, probe := g.mu.writeErr, g.mu.probe
	g.mu.Unlock()
	if werr != nil {
		if err := probe(g.dir); err != nil {
			g.log.Debug("disk probe failed", "dir", g.dir, "err", err)
			return
		}
		g.mu.Lock()
		g.mu.writeErr = nil
		g.mu.Unlock()
	}
	g.setFull(false, "")
}

// admit reports whether a batch of admitted writes of need bytes may be
// committed, entering the full state when the free space would fall below
// the reserve. It runs on the committer.
func (g *spaceGuard) admit(need int64) bool {
	if g.full.Load() {
		g.check() // space may have been freed since the last tick
		if g.full.Load() {
			return false
		}
	}
	reserve := g.reserve.Load()
	now := time.Now()
	if g.est.free-need >= 2*reserve && now.Sub(g.est.at) < time.Duration(g.reuse.Load()) {
		g.est.free -= need
		return true
	}
	free, ok := g.refresh()
	if ok {
		g.est.at, g.est.free = now, free-need
	} else {
		g.est.at = time.Time{}
	}
	if ok && free-need < reserve {
		g.setFull(true, g.lowReason(free-need, reserve))
		return false
	}
	return true
}

func (g *spaceGuard) lowReason(free, reserve int64) string {
	return fmt.Sprintf("free space %d bytes in %s is below the reserve of %d bytes (the larger of --min-free-bytes and the tables plus three memtables)", free, g.dir, reserve)
}

// reserveNow computes and stores the reserve: the larger of MinFreeBytes
// and what Badger may write with no new write admitted: the rest of the
// memtable log in use and a flush of both memtables (three memtables),
// plus compactions rewriting every table (a compaction writes
// its new tables before it deletes the old, and never writes more than it
// read).
func (g *spaceGuard) reserveNow() int64 {
	r := max(g.minFree, g.lsmBytes()+g.flushes)
	g.reserve.Store(r)
	g.m.diskReserve.Set(float64(r))
	return r
}

// refresh reads the free space; ok is false when statfs failed (the state
// is then left as it is).
func (g *spaceGuard) refresh() (free int64, ok bool) {
	g.mu.Lock()
	statfs := g.mu.statfs
	g.mu.Unlock()
	free, err := statfs(g.dir)
	if err != nil {
		g.log.Warn("statfs of the data directory failed", "dir", g.dir, "err", err)
		return 0, false
	}
	g.free.Store(free)
	return free, true
}

// writeFailed puts the store in the full state after a failed commit.
func (g *spaceGuard) writeFailed(err error) {
	g.mu.Lock()
	g.mu.writeErr = err
	g.mu.Unlock()
	g.setFull(true, "a write to the data directory failed: "+err.Error())
}

func (g *spaceGuard) setFull(on bool, why string) {
	g.mu.Lock()
	if on {
		g.mu.why = why
	}
	g.mu.Unlock()
	if g.full.Swap(on) == on {
		return
	}
	if on {
		g.m.diskFull.Set(1)
		g.m.diskFullEvents.Inc()
		g.log.Error("data directory full: refusing writes until space is freed", "dir", g.dir, "reason", why,
			"free_bytes", g.free.Load(), "reserve_bytes", g.reserve.Load())
		return
	}
	g.m.diskFull.Set(0)
	g.log.Info("data directory has room again: accepting writes", "dir", g.dir, "free_bytes", g.free.Load())
}

func (g *spaceGuard) reason() string {
	g.mu.Lock()
	defer g.mu.Unlock()
	return g.mu.why
}

// statFree returns the bytes of dir's file system available to
// unprivileged users.
func statFree(dir string) (int64, error) {
	var st unix.Statfs_t
	if err := unix.Statfs(dir, &st); err != nil {
		return 0, fmt.Errorf("statfs %s: %w", dir, err)
	}
	return int64(st.Bavail) * st.Bsize, nil //nolint:gosec // block counts fit
}

// probeSize is what probeWrite writes: a few pages, enough to show that
// the file system allocates again.
const probeSize = 64 << 10

// probeWrite creates a file in dir, writes probeSize bytes, fsyncs and
// removes it.
func probeWrite(dir string) (err error) {
	name := filepath.Join(dir, "ringkv-disk-probe.tmp")
	f, err := os.OpenFile(name, os.O_CREATE|os.O_TRUNC|os.O_WRONLY, 0o600)
	if err != nil {
		return fmt.Errorf("create probe: %w", err)
	}
	defer func() {
		err = errors.Join(err, f.Close(), os.Remove(name))
	}()
	if _, err := f.Write(make([]byte, probeSize)); err != nil {
		return fmt.Errorf("write probe: %w", err)
	}
	if err := f.Sync(); err != nil {
		return fmt.Errorf("fsync probe: %w", err)
	}
	return nil
}

// guardedBytes returns the bytes r would write and whether it is an
// admitted write, refused while the disk is full: a durable merge, or a
// raw write to the Raft log or to hints (see the comment at the top).
func guardedBytes(r *request) (int64, bool) {
	switch o := r.op.(type) {
	case *mergeOp:
		if r.unsynced {
			return 0, false
		}
		var n int64
		for i := range o.items {
			n += int64(len(o.items[i].key) + len(o.items[i].enc))
		}
		return n, true
	case *rawOp:
		var n int64
		guarded := false
		for _, kv := range o.sets {
			n += int64(len(kv.Key) + len(kv.Value))
			if len(kv.Key) > 0 && (kv.Key[0] == nsRaftLogKey || kv.Key[0] == nsHintKey) {
				guarded = true
			}
		}
		return n, guarded
	default:
		return 0, false
	}
}

// Namespaces of raw keys that count as admitted writes (doc.go lists the layout).
const (
	nsRaftLogKey = 'l'
	nsHintKey    = 'h'
)

// admit answers the admitted writes of batch with ErrDiskFull when the
// disk has no room for them, and returns what is left to commit. It runs
// on the committer.
func (s *Store) admit(batch []*request) []*request {
	var need int64
	guarded := false
	for _, r := range batch {
		if n, ok := guardedBytes(r); ok {
			need += n
			guarded = true
		}
	}
	if !guarded || s.space.admit(need) {
		return batch
	}
	err := fmt.Errorf("%w: %s", ErrDiskFull, s.space.reason())
	kept := batch[:0]
	for _, r := range batch {
		if _, ok := guardedBytes(r); ok {
			s.metrics.diskFullRefused.Inc()
			r.reply(err)
			continue
		}
		kept = append(kept, r)
	}
	clear(batch[len(kept):])
	return kept
}

// setHooks replaces statfs and probe (tests).
func (g *spaceGuard) setHooks(statfs func(string) (int64, error), probe func(string) error) {
	g.mu.Lock()
	defer g.mu.Unlock()
	if statfs != nil {
		g.mu.statfs = statfs
		g.reuse.Store(0) // every admit sees the test's free space at once
	}
	if probe != nil {
		g.mu.probe = probe
	}
}

// isNoSpace reports whether err says the file system is full.
func isNoSpace(err error) bool {
	return errors.Is(err, syscall.ENOSPC) || errors.Is(err, syscall.EDQUOT)
}
