package replica

import (
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/ringkv/ringkv/internal/linger"
)

// ErrSyncFailed is returned (joined with the cause) for every durable write
// after an fsync of the store's files failed. After a failed fsync the
// kernel may have dropped the dirty pages it could not write, so a later
// fsync that succeeds proves nothing: the store stops acknowledging
// durable writes until it is reopened (Badger then replays what reached
// the disk).
var ErrSyncFailed = errors.New("replica: fsync failed; the store no longer acknowledges durable writes")

// syncer makes committed writes durable, off the committer's path.
//
// Badger is opened with SyncWrites=false: a committed transaction is in the
// memtable (visible to reads) and in the memtable's write-ahead log file
// (an mmap), not yet on disk. The committer hands the requests that need
// durability to the syncer and goes on with the next batch; the syncer
// fsyncs the files those transactions went to and then answers them. Every
// request waiting when a sync starts is answered by that sync, so one
// fsync covers every batch committed while the previous one ran (group
// commit across batches). Under load the syncer also lingers before an
// fsync (Config.SyncLinger), so that it covers more: the writes wait, but
// they are already committed and visible.
//
// Which files: Badger writes a transaction to the write-ahead log of the
// memtable in use (NNNNN.mem) and, for values at or above its value
// threshold, to the newest value log (NNNNNN.vlog); a memtable is rotated
// only when a write begins, and a full value log file after a write ends,
// and neither is synced by Badger when rotated with SyncWrites=false
// (db.Sync covers only the newest of each). So a sync lists the directory
// and fsyncs the newest .mem file, the newest .vlog file if a value went to
// the value log since the last sync, and every older .mem or .vlog file once
// (older files are never written again: Badger writes only the newest of
// each kind). A file first seen also gets the directory fsynced, so that
// its entry survives a crash. A .mem file that disappeared was flushed to
// an SST table, which Badger syncs before deleting it.
//
// Listing the directory on every sync would cost a few system calls each
// time for a listing that rarely changes (a memtable rotates every
// MemTableBytes). A sync lists it again only when the directory's
// modification time moved since the last listing (every create and delete
// moves it), when that time was too close to the listing to tell a later
// change by (file systems stamp it from a coarse clock), when the file
// Badger would create after the newest .mem or .vlog exists (a rotation,
// even where a file system keeps no directory time), and at least once a
// second (so that handles of deleted files get closed).
type syncer struct {
	dir string
	log *slog.Logger
	m   *metrics

	mu struct {
		sync.Mutex
		pending   []*request // committed, waiting for the next sync
		vlogDirty bool       // a committed value went to the value log since the last sync
		stop      bool       // Close: finish pending and exit
	}
	wake chan struct{} // buffered(1): pending was added to, or stop set
	done sync.WaitGroup

	// Owned by the syncer goroutine.
	files  map[string]*os.File // open files by name, for fsync
	sealed map[string]bool     // older files synced after their last write
	failed error               // the first fsync failure; sticky
	// failedShared is failed for other goroutines (DiskState).
	failedShared atomic.Pointer[error]
	// syncStart is when the fsync in progress began (unix nanoseconds);
	// 0 when none runs. Read by DiskState.
	syncStart atomic.Int64
	// fault is Deps.SyncFault; nil in production.
	fault func() error
	// The last listing of dir: the .mem and .vlog files in it, the newest
	// of each kind, and when it was listed. listedMtime is dir's
	// modification time seen just before, zero when it cannot be trusted
	// to show a later change.
	present     map[string]bool
	newest      map[string]string // by suffix
	listedAt    time.Time
	listedMtime time.Time
	listTTL     time.Duration // dirListTTL; tests lengthen it

	// linger is the pause before an fsync under load (Config.SyncLinger,
	// Config.LingerBelow in writes).
	linger linger.Policy

	// hooks are test seams, set before the first write; nil in production.
	hooks struct {
		// beforeSync runs before each sync; an error fails it as an fsync
		// failure would.
		beforeSync func() error
		// synced is told the names of the files each sync fsynced.
		synced func(names []string)
		// batched is told how many requests each sync answers.
		batched func(requests int)
		// listed is called after each listing of the directory.
		listed func()
	}
}

// newSyncer starts the syncer of the Badger files in dir after one sync of
// every file there: what Badger recovered at open (written by a process
// that crashed before its fsync) is durable before anything is served.
// lingerMax and lingerBelow are Config.SyncLinger and Config.LingerBelow.
func newSyncer(dir string, log *slog.Logger, m *metrics, lingerMax time.Duration, lingerBelow int, fault func() error) (*syncer, error) {
	y := &syncer{dir: dir, log: log, m: m, wake: make(chan struct{}, 1), fault: fault,
		files: make(map[string]*os.File), sealed: make(map[string]bool),
		linger: linger.Policy{Max: lingerMax, Below: lingerBelow}, listTTL: dirListTTL}
	if err := y.sync(true); err != nil {
		y.closeFiles()
		return nil, err
	}
	y.done.Add(1)
	go y.run()
	return y, nil
}

// enqueue hands committed requests to the syncer, which answers them after
// the next fsync. vlog says whether the batch wrote to the value log.
func (y *syncer) enqueue(reqs []*request, vlog bool) {
	y.mu.Lock()
	y.mu.pending = append(y.mu.pending, reqs...)
	y.mu.vlogDirty = y.mu.vlogDirty || vlog
	y.mu.Unlock()
	if len(reqs) > 0 {
		y.signal()
	}
}

func (y *syncer) signal() {
	select {
	case y.wake <- struct{}{}:
	default: // a wake-up is already pending
	}
}

// close answers what is pending (after a last sync) and stops the syncer.
// The committer must have stopped: nothing is enqueued after close.
func (y *syncer) close() {
	y.mu.Lock()
	y.mu.stop = true
	y.mu.Unlock()
	y.signal()
	y.done.Wait()
	y.closeFiles()
}

func (y *syncer) closeFiles() {
	for name, f := range y.files {
		_ = f.Close() // read-only handles used for fsync only
		delete(y.files, name)
	}
}

func (y *syncer) run() {
	defer y.done.Done()
	var batch []*request
	for range y.wake {
		var vlog, stop bool
		batch, vlog, stop = y.take(batch[:0])
		if len(batch) > 0 && !stop {
			batch, vlog, stop = y.lingerFor(batch, vlog)
		}
		if len(batch) > 0 {
			y.linger.Batched(len(batch))
			if y.hooks.batched != nil {
				y.hooks.batched(len(batch))
			}
			err := y.sync(vlog)
			for i, r := range batch {
				if r.onDurable != nil {
					r.onDurable(err) // answered at commit
				} else {
					r.reply(err)
				}
				batch[i] = nil
			}
		}
		if stop {
			return
		}
	}
}

// take appends the pending requests to batch. vlog reports whether one of
// them wrote to the value log, stop whether close was called.
func (y *syncer) take(batch []*request) (_ []*request, vlog, stop bool) {
	y.mu.Lock()
	defer y.mu.Unlock()
	batch = append(batch, y.mu.pending...)
	clear(y.mu.pending)
	y.mu.pending = y.mu.pending[:0]
	vlog, stop = y.mu.vlogDirty, y.mu.stop
	if len(batch) > 0 {
		y.mu.vlogDirty = false // the next sync covers it
	}
	return batch, vlog, stop
}

// lingerFor adds the requests committed within SyncLinger to batch,
// until it holds LingerBelow writes or none has come for a quarter of the
// linger (linger.Policy.Wait). Close cuts it short (stop): the batch is
// still synced.
func (y *syncer) lingerFor(batch []*request, vlog bool) (_ []*request, _, stop bool) {
	n := 0
	for _, r := range batch {
		n += r.op.writes()
	}
	stop = y.linger.Wait(n, len(batch), y.wake, func() (writes, requests int, stop bool) {
		had := len(batch)
		var more bool
		batch, more, stop = y.take(batch)
		vlog = vlog || more
		for _, r := range batch[had:] {
			writes += r.op.writes()
		}
		return writes, len(batch) - had, stop
	})
	return batch, vlog, stop
}

// sync fsyncs the files that may hold unsynced committed writes (see
// syncer). Any failure is sticky.
func (y *syncer) sync(vlog bool) error {
	if y.failed != nil {
		return y.failed
	}
	start := time.Now()
	y.syncStart.Store(start.UnixNano())
	defer y.syncStart.Store(0)
	var err error
	if y.hooks.beforeSync != nil {
		err = y.hooks.beforeSync()
	}
	if err == nil && y.fault != nil {
		err = y.fault()
	}
	if err == nil {
		err = y.syncFiles(vlog)
	}
	if err != nil {
		y.failed = errors.Join(ErrSyncFailed, err)
		y.failedShared.Store(&y.failed)
		y.log.Error("fsync failed; durable writes are refused until the store is reopened", "dir", y.dir, "err", err)
		return y.failed
	}
	took := time.Since(start)
	y.m.syncDuration.Observe(took.Seconds())
	y.linger.Synced(took)
	return nil
}

// failure returns the sticky fsync failure, or nil. Safe for concurrent use.
func (y *syncer) failure() error {
	if p := y.failedShared.Load(); p != nil {
		return *p
	}
	return nil
}

// stall returns how long the fsync in progress has run; 0 when none runs.
// Safe for concurrent use.
func (y *syncer) stall() time.Duration {
	start := y.syncStart.Load()
	if start == 0 {
		return 0
	}
	return time.Since(time.Unix(0, start))
}

// dirListTTL is the longest a listing of the directory is reused, and
// dirMtimeSlack how far before a listing the directory's modification time
// must lie for a later change to show as a different time.
const (
	dirListTTL    = time.Second
	dirMtimeSlack = 100 * time.Millisecond
)

// logFileKinds are the Badger files a sync may have to fsync: memtable
// write-ahead logs (NNNNN.mem) and value logs (NNNNNN.vlog), with the
// zero-padded width of their numbers.
var logFileKinds = [...]struct {
	suffix string
	width  int
}{{".mem", 5}, {".vlog", 6}}

// list refreshes the listing of the directory's .mem and .vlog files,
// unless the directory is known not to have changed since the last one.
func (y *syncer) list() error {
	st, err := os.Stat(y.dir)
	if err != nil {
		return fmt.Errorf("stat %s: %w", y.dir, err)
	}
	now := time.Now()
	mtime := st.ModTime()
	if y.present != nil && !y.listedMtime.IsZero() && mtime.Equal(y.listedMtime) &&
		now.Sub(y.listedAt) < y.listTTL && !y.successorExists() {
		return nil // nothing created or deleted since the last listing
	}
	entries, err := os.ReadDir(y.dir)
	if err != nil {
		return fmt.Errorf("list %s: %w", y.dir, err)
	}
	newest := map[string]string{}
	present := make(map[string]bool, len(entries))
	for _, e := range entries {
		name := e.Name()
		for _, k := range logFileKinds {
			if strings.HasSuffix(name, k.suffix) {
				present[name] = true
				if newerFile(name, newest[k.suffix]) {
					newest[k.suffix] = name
				}
			}
		}
	}
	if y.hooks.listed != nil {
		y.hooks.listed()
	}
	y.present, y.newest, y.listedAt = present, newest, now
	y.listedMtime = mtime
	if !mtime.Before(now.Add(-dirMtimeSlack)) {
		y.listedMtime = time.Time{} // a change now could keep this time: list next time too
	}
	for name, f := range y.files { // flushed or collected by Badger
		if !present[name] {
			_ = f.Close() // read-only handle
			delete(y.files, name)
			delete(y.sealed, name)
		}
	}
	return nil
}

// successorExists reports whether the file Badger would create next after
// the newest .mem or .vlog file of the last listing is there (or cannot be
// ruled out): a rotation, should the directory's time not show it (a file
// system that does not keep it).
func (y *syncer) successorExists() bool {
	for _, k := range logFileKinds {
		name := y.newest[k.suffix]
		if name == "" {
			continue
		}
		n, err := strconv.ParseUint(strings.TrimSuffix(name, k.suffix), 10, 32)
		if err != nil {
			return true
		}
		_, err = os.Lstat(filepath.Join(y.dir, fmt.Sprintf("%0*d%s", k.width, n+1, k.suffix)))
		if !errors.Is(err, fs.ErrNotExist) {
			return true
		}
	}
	return false
}

// newerFile reports whether Badger file name a (NNNNN.mem or NNNNNN.vlog)
// has a higher number than b ("" has none). The numbers are zero-padded to
// five or six digits but grow longer past them, so a longer name is newer.
func newerFile(a, b string) bool {
	if len(a) != len(b) {
		return len(a) > len(b)
	}
	return a > b
}

func (y *syncer) syncFiles(vlog bool) error {
	if err := y.list(); err != nil {
		return err
	}
	present, newest := y.present, y.newest
	newFile := false
	var synced []string
	for name := range present {
		isNewest := name == newest[".mem"] || name == newest[".vlog"]
		switch {
		case name == newest[".vlog"] && !vlog && y.files[name] != nil:
			continue // nothing went to the value log since its last sync
		case !isNewest && y.sealed[name]:
			continue
		}
		f := y.files[name]
		if f == nil {
			var err error
			f, err = os.Open(filepath.Join(y.dir, name))
			if errors.Is(err, fs.ErrNotExist) {
				continue // flushed to a table since the listing
			}
			if err != nil {
				return fmt.Errorf("open %s for fsync: %w", name, err)
			}
			y.files[name] = f
			newFile = true
		}
		if err := fdatasync(f); err != nil {
			return fmt.Errorf("fsync %s: %w", name, err)
		}
		if !isNewest {
			y.sealed[name] = true
		}
		if y.hooks.synced != nil {
			synced = append(synced, name)
		}
	}
	if newFile {
		if err := syncDir(y.dir); err != nil {
			return err
		}
	}
	if y.hooks.synced != nil {
		y.hooks.synced(synced)
	}
	return nil
}

// syncDir fsyncs a directory, making the entries of files created in it
// durable.
func syncDir(dir string) error {
	d, err := os.Open(dir)
	if err != nil {
		return fmt.Errorf("open dir %s: %w", dir, err)
	}
	serr := d.Sync()
	cerr := d.Close()
	if serr != nil {
		return fmt.Errorf("fsync dir %s: %w", dir, serr)
	}
	if cerr != nil {
		return fmt.Errorf("close dir %s: %w", dir, cerr)
	}
	return nil
}
