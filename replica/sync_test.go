package replica

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// blockSyncs makes every sync of s wait until the returned release is
// called (release is idempotent and also runs at cleanup); entered
// receives once per sync that began.
func blockSyncs(t *testing.T, s *Store) (entered <-chan struct{}, release func()) {
	t.Helper()
	gate := make(chan struct{})
	began := make(chan struct{}, 16)
	var once sync.Once
	release = func() { once.Do(func() { close(gate) }) }
	s.syncer.hooks.beforeSync = func() error {
		select {
		case began <- struct{}{}:
		default:
		}
		<-gate
		return nil
	}
	t.Cleanup(release)
	return began, release
}

// TestDurableMergeWaitsForSync: Merge returns only after a sync that began
// after its commit, while MergeUnsynced returns at commit, visible, with
// the sync still held.
func TestDurableMergeWaitsForSync(t *testing.T) {
	s := openTest(t, nil)
	_, release := blockSyncs(t, s)

	durable := make(chan error, 1)
	go func() {
		durable <- s.Merge(context.Background(), []Entry{{Key: []byte("d"), Record: rec(1, "n", "durable")}})
	}()
	// The durable write becomes visible (committed) while its sync is held.
	deadline := time.Now().Add(10 * time.Second)
	for {
		if _, err := s.Get(0, []byte("d")); err == nil {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("the durable write never became visible")
		}
		runtimeYield()
	}
	select {
	case err := <-durable:
		t.Fatalf("Merge returned (%v) before its sync", err)
	default:
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := s.MergeUnsynced(ctx, []Entry{{Key: []byte("u"), Record: rec(1, "n", "unsynced")}}); err != nil {
		t.Fatalf("MergeUnsynced with the sync held: got %v, want nil", err)
	}
	if got := mustGet(t, s, 0, "u"); string(got.Value) != "unsynced" {
		t.Fatalf("unsynced write: got %q", got.Value)
	}
	release()
	if err := <-durable; err != nil {
		t.Fatalf("Merge after the sync: got %v, want nil", err)
	}
	if n, _ := histogramCountSum(s.metrics.syncDuration); n == 0 {
		t.Error("no sync recorded")
	}
}

// runtimeYield gives other goroutines a turn in a polling loop.
func runtimeYield() {
	timer := time.NewTimer(time.Millisecond)
	<-timer.C
}

// TestSyncFailureIsSticky: after one failed fsync every durable write
// fails with ErrSyncFailed, even when later syncs would succeed; writes
// that do not wait for a sync still apply.
func TestSyncFailureIsSticky(t *testing.T) {
	s := openTest(t, nil)
	boom := errors.New("injected EIO")
	var fail sync.Once
	s.syncer.hooks.beforeSync = func() error {
		var err error
		fail.Do(func() { err = boom })
		return err
	}
	ctx := context.Background()
	for i := range 3 {
		err := s.Merge(ctx, []Entry{{Key: fmt.Appendf(nil, "k%d", i), Record: rec(1, "n", "v")}})
		if !errors.Is(err, ErrSyncFailed) {
			t.Fatalf("Merge %d: got %v, want ErrSyncFailed", i, err)
		}
		if i == 0 && !errors.Is(err, boom) {
			t.Errorf("first failure %v does not carry the cause", err)
		}
	}
	if err := s.WriteRaw(ctx, []KV{{Key: []byte("l1"), Value: []byte("x")}}, nil); !errors.Is(err, ErrSyncFailed) {
		t.Errorf("WriteRaw after the failure: got %v, want ErrSyncFailed", err)
	}
	if err := s.MergeUnsynced(ctx, []Entry{{Key: []byte("u"), Record: rec(1, "n", "v")}}); err != nil {
		t.Errorf("MergeUnsynced after the failure: got %v, want nil", err)
	}
}

// TestCloseSyncsPending: a durable write whose sync is pending when Close
// begins is synced and answered nil, and survives a reopen.
func TestCloseSyncsPending(t *testing.T) {
	dir := t.TempDir()
	cfg := DefaultConfig()
	cfg.Dir, cfg.Logger = dir, testLogger(t)
	s, err := Open(cfg, Deps{})
	if err != nil {
		t.Fatalf("Open: %v", err)
	}
	entered, release := blockSyncs(t, s)
	durable := make(chan error, 1)
	go func() {
		durable <- s.Merge(context.Background(), []Entry{{Key: []byte("k"), Record: rec(1, "n", "v")}})
	}()
	select {
	case <-entered: // the write's sync has begun and is held
	case <-time.After(10 * time.Second):
		t.Fatal("the write never reached the syncer")
	}
	closed := make(chan error, 1)
	go func() { closed <- s.Close() }()
	release()
	if err := <-durable; err != nil {
		t.Fatalf("Merge pending at Close: got %v, want nil", err)
	}
	if err := <-closed; err != nil {
		t.Fatalf("Close: %v", err)
	}
	s2, err := Open(cfg, Deps{})
	if err != nil {
		t.Fatalf("reopen: %v", err)
	}
	defer func() { _ = s2.Close() }()
	if got := mustGet(t, s2, 0, "k"); string(got.Value) != "v" {
		t.Fatalf("after reopen: %q", got.Value)
	}
}

// TestSyncerSyncsRotatedFiles writes through several memtable rotations
// and a value-log value: every .mem file that held a durable write is
// fsynced after its last write, older ones once, and the value log only
// when a value went to it.
func TestSyncerSyncsRotatedFiles(t *testing.T) {
	s := openTest(t, func(c *Config) { c.MemTableBytes = minMemTableBytes })
	var mu sync.Mutex
	count := map[string]int{}
	var last []string
	s.syncer.hooks.synced = func(names []string) {
		mu.Lock()
		defer mu.Unlock()
		last = slices.Clone(names)
		for _, n := range names {
			count[n]++
		}
	}
	ctx := context.Background()
	value := strings.Repeat("x", 4<<10)
	for i := range 1200 { // ~5 MB: several 1 MB memtables
		if err := s.Merge(ctx, []Entry{{Key: fmt.Appendf(nil, "k%05d", i), Record: rec(1, "n", value)}}); err != nil {
			t.Fatalf("Merge %d: %v", i, err)
		}
	}
	mu.Lock()
	mems := 0
	for name, n := range count {
		if strings.HasSuffix(name, ".mem") {
			mems++
		}
		if strings.HasSuffix(name, ".vlog") && n > 1 {
			t.Errorf("%s synced %d times with no value in it", name, n)
		}
	}
	mu.Unlock()
	if mems < 3 {
		t.Fatalf("synced %d .mem files over ~5 MB of 1 MB memtables: %v", mems, count)
	}
	// A value at the threshold goes to the value log, which the next sync covers.
	big := strings.Repeat("v", int(s.valueThreshold))
	if err := s.Merge(ctx, []Entry{{Key: []byte("big"), Record: rec(1, "n", big)}}); err != nil {
		t.Fatalf("Merge of a value-log value: %v", err)
	}
	mu.Lock()
	vlogs := slices.DeleteFunc(slices.Clone(last), func(n string) bool { return !strings.HasSuffix(n, ".vlog") })
	mu.Unlock()
	if len(vlogs) == 0 {
		t.Errorf("the sync after a value-log write fsynced %v: no value log", last)
	}
	// Every .mem file still on disk was synced after its last write: older
	// ones are sealed, the newest was in the last sync.
	entries, err := os.ReadDir(s.cfg.Dir)
	if err != nil {
		t.Fatal(err)
	}
	var memFiles []string
	for _, e := range entries {
		if filepath.Ext(e.Name()) == ".mem" {
			memFiles = append(memFiles, e.Name())
		}
	}
	slices.Sort(memFiles)
	mu.Lock()
	defer mu.Unlock()
	for i, name := range memFiles {
		newest := i == len(memFiles)-1
		if newest && !slices.Contains(last, name) {
			t.Errorf("newest memtable log %s not in the last sync %v", name, last)
		}
		if !newest && count[name] == 0 {
			t.Errorf("older memtable log %s never synced", name)
		}
	}
}

// TestSyncLinger: under load (the previous sync answered several requests)
// a write committed while the syncer lingers over a small batch joins its
// fsync; on an idle store, or with the linger off, each write is synced on
// its own at once. Either way a write is visible before it is synced.
func TestSyncLinger(t *testing.T) {
	for _, tc := range []struct {
		name   string
		linger time.Duration
		loaded bool
		want   []int
	}{
		{"lingering", time.Second, true, []int{2}}, // ends when the second arrives
		{"idle", time.Second, false, []int{1, 1}},
		{"off", -1, true, []int{1, 1}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			s := openTest(t, func(c *Config) { c.SyncLinger, c.LingerBelow = tc.linger, 2 })
			// The second write may be slow to come on a loaded machine.
			s.syncer.linger.Gap = tc.linger
			if tc.loaded {
				// The syncer is idle, waiting for a wake-up that the first
				// write's hand-off orders after this write.
				s.syncer.linger.Batched(2)
			}
			var mu sync.Mutex
			var sizes []int
			s.syncer.hooks.batched = func(n int) {
				mu.Lock()
				sizes = append(sizes, n)
				mu.Unlock()
			}
			merge := func(key string) chan error {
				errc := make(chan error, 1)
				go func() {
					errc <- s.Merge(t.Context(), []Entry{{Partition: 1, Key: []byte(key), Record: rec(1, "n", "v")}})
				}()
				return errc
			}
			first := merge("a")
			// Committed and taken by the syncer: it lingers now, or has
			// synced it.
			waitFor(t, "the syncer to take the first merge", func() bool {
				if _, err := s.Get(1, []byte("a")); err != nil {
					return false
				}
				s.syncer.mu.Lock()
				defer s.syncer.mu.Unlock()
				return len(s.syncer.mu.pending) == 0
			})
			atOnce := tc.linger < 0 || !tc.loaded
			if atOnce {
				if err := <-first; err != nil {
					t.Fatal(err)
				}
			} else {
				select {
				case err := <-first:
					t.Fatalf("the first merge returned (%v) while the syncer lingered", err)
				default:
				}
			}
			second := merge("b")
			for _, errc := range []chan error{first, second} {
				if atOnce && errc == first {
					continue
				}
				if err := <-errc; err != nil {
					t.Fatal(err)
				}
			}
			mu.Lock()
			defer mu.Unlock()
			if !slices.Equal(sizes, tc.want) {
				t.Errorf("sync batch sizes %v, want %v", sizes, tc.want)
			}
		})
	}
}

// TestSyncerListsOnlyOnChange: a sync lists the directory again only when
// its modification time moved since the last listing, or was too recent
// then to show a later change.
func TestSyncerListsOnlyOnChange(t *testing.T) {
	s := openTest(t, nil)
	var listings atomic.Int32
	s.syncer.hooks.listed = func() { listings.Add(1) }
	s.syncer.listTTL = time.Hour // a slow run must not list for its age
	merge := func(key string) {
		t.Helper()
		if err := s.Merge(t.Context(), []Entry{{Key: []byte(key), Record: rec(1, "n", "v")}}); err != nil {
			t.Fatalf("Merge %s: %v", key, err)
		}
	}
	dir := s.cfg.Dir
	past := time.Now().Add(-time.Hour)
	if err := os.Chtimes(dir, past, past); err != nil {
		t.Fatal(err)
	}
	merge("a")
	if n := listings.Load(); n != 1 {
		t.Fatalf("after the directory's time moved: %d listings, want 1", n)
	}
	merge("b")
	merge("c")
	if n := listings.Load(); n != 1 {
		t.Fatalf("with the directory unchanged: %d listings, want still 1", n)
	}
	// The next memtable log appearing is seen even where the directory's
	// time stays put (set back here, as a file system without it would).
	newest := s.syncer.newest[".mem"]
	n, err := strconv.Atoi(strings.TrimSuffix(newest, ".mem"))
	if err != nil {
		t.Fatalf("newest memtable log %q: %v", newest, err)
	}
	next := filepath.Join(dir, fmt.Sprintf("%05d.mem", n+1))
	if err := os.WriteFile(next, nil, 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.Chtimes(dir, past, past); err != nil {
		t.Fatal(err)
	}
	merge("c2")
	if n := listings.Load(); n != 2 {
		t.Fatalf("with the next memtable log there: %d listings, want 2", n)
	}
	if err := os.Remove(next); err != nil { // before Badger rotates into it
		t.Fatal(err)
	}
	// A file created (or deleted) moves the time; so does this Chtimes to
	// now, which is also too recent to tell the next change by.
	if err := os.WriteFile(filepath.Join(dir, "other"), nil, 0o600); err != nil {
		t.Fatal(err)
	}
	now := time.Now()
	if err := os.Chtimes(dir, now, now); err != nil {
		t.Fatal(err)
	}
	merge("d")
	merge("e")
	if n := listings.Load(); n != 4 {
		t.Fatalf("with a recent change: %d listings, want 4 (one per sync)", n)
	}
}

// TestNewerFile: Badger's file numbers outgrow their zero padding.
func TestNewerFile(t *testing.T) {
	for _, tc := range []struct {
		a, b string
		want bool
	}{
		{"00002.mem", "00001.mem", true},
		{"00001.mem", "00002.mem", false},
		{"00001.mem", "", true},
		{"100000.mem", "99999.mem", true},
		{"99999.mem", "100000.mem", false},
		{"000010.vlog", "000009.vlog", true},
	} {
		if got := newerFile(tc.a, tc.b); got != tc.want {
			t.Errorf("newerFile(%q, %q) = %v, want %v", tc.a, tc.b, got, tc.want)
		}
	}
}

// TestMergeAsync: done is called once, after the sync that follows the
// commit (nil), or with the sticky sync failure; a merge that is never
// handed over (closed store, invalid entry, ended context) returns its
// error and never calls done; no entries answer nil at once.
func TestMergeAsync(t *testing.T) {
	s := openTest(t, nil)
	_, release := blockSyncs(t, s)
	ctx := context.Background()

	var calls atomic.Int32
	answered := make(chan error, 2)
	done := func(err error) {
		calls.Add(1)
		answered <- err
	}
	if err := s.MergeAsync(ctx, []Entry{{Key: []byte("a"), Record: rec(1, "n", "async")}}, done); err != nil {
		t.Fatalf("MergeAsync: %v", err)
	}
	deadline := time.Now().Add(10 * time.Second)
	for {
		if _, err := s.Get(0, []byte("a")); err == nil {
			break // committed and visible, its sync held
		}
		if time.Now().After(deadline) {
			t.Fatal("the async write never became visible")
		}
		runtimeYield()
	}
	select {
	case err := <-answered:
		t.Fatalf("done called (%v) before the sync", err)
	default:
	}
	release()
	if err := <-answered; err != nil {
		t.Fatalf("done after the sync: got %v, want nil", err)
	}

	if err := s.MergeAsync(ctx, nil, done); err != nil {
		t.Fatalf("MergeAsync of nothing: %v", err)
	}
	if err := <-answered; err != nil {
		t.Fatalf("done for nothing: got %v", err)
	}

	huge := []Entry{{Key: make([]byte, MaxKeyBytes+1), Record: rec(1, "n", "v")}}
	if err := s.MergeAsync(ctx, huge, done); !errors.Is(err, ErrInvalidEntry) {
		t.Fatalf("MergeAsync of an oversized key: got %v, want ErrInvalidEntry", err)
	}
	cancelled, cancel := context.WithCancel(ctx)
	cancel()
	if err := s.MergeAsync(cancelled, []Entry{{Key: []byte("c"), Record: rec(1, "n", "v")}}, done); !errors.Is(err, context.Canceled) {
		t.Fatalf("MergeAsync with an ended context: got %v, want context.Canceled", err)
	}
	if n := calls.Load(); n != 2 {
		t.Fatalf("done called %d times, want 2 (refused merges must not call it)", n)
	}

	boom := errors.New("injected EIO")
	s.syncer.hooks.beforeSync = func() error { return boom }
	if err := s.MergeAsync(ctx, []Entry{{Key: []byte("f"), Record: rec(1, "n", "v")}}, done); err != nil {
		t.Fatalf("MergeAsync before a failing sync: %v", err)
	}
	if err := <-answered; !errors.Is(err, ErrSyncFailed) || !errors.Is(err, boom) {
		t.Fatalf("done after a failed sync: got %v, want ErrSyncFailed with the cause", err)
	}

	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	if err := s.MergeAsync(ctx, []Entry{{Key: []byte("z"), Record: rec(1, "n", "v")}}, done); !errors.Is(err, ErrClosed) {
		t.Fatalf("MergeAsync after Close: got %v, want ErrClosed", err)
	}
	if n := calls.Load(); n != 3 {
		t.Fatalf("done called %d times, want 3", n)
	}
}
