package replica

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/dgraph-io/badger/v4"
	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"
)

// openTest opens an on-disk store in t.TempDir, closed by t.Cleanup.
func openTest(t testing.TB, mod func(*Config)) *Store {
	t.Helper()
	cfg := DefaultConfig()
	cfg.Dir = t.TempDir()
	cfg.Logger = testLogger(t)
	if mod != nil {
		mod(&cfg)
	}
	s, err := Open(cfg, Deps{})
	if err != nil {
		t.Fatalf("Open: got %v, want nil", err)
	}
	t.Cleanup(func() {
		if err := s.Close(); err != nil {
			t.Errorf("Close: got %v, want nil", err)
		}
	})
	return s
}

func mustMerge(t testing.TB, s *Store, entries ...Entry) {
	t.Helper()
	if err := s.Merge(context.Background(), entries); err != nil {
		t.Fatalf("Merge: got %v, want nil", err)
	}
}

func mustGet(t testing.TB, s *Store, p uint32, key string) Record {
	t.Helper()
	r, err := s.Get(p, []byte(key))
	if err != nil {
		t.Fatalf("Get(%d, %q): got %v, want nil", p, key, err)
	}
	return r
}

func counterValue(c prometheus.Counter) float64 {
	var m dto.Metric
	_ = c.Write(&m)
	return m.GetCounter().GetValue()
}

func histogramCountSum(h prometheus.Histogram) (uint64, float64) {
	var m dto.Metric
	_ = h.Write(&m)
	return m.GetHistogram().GetSampleCount(), m.GetHistogram().GetSampleSum()
}

func rec(ts Timestamp, node, value string) Record {
	return Record{Timestamp: ts, NodeID: node, Value: []byte(value)}
}

func TestMergeOutcomes(t *testing.T) {
	stored := rec(10, "n2", "stored")
	tests := []struct {
		name        string
		in          Record
		want        Record
		wantApplied float64
	}{
		{"newer timestamp", rec(11, "n1", "in"), rec(11, "n1", "in"), 1},
		{"older timestamp", rec(9, "n9", "in"), stored, 0},
		{"equal", stored, stored, 0},
		{"tie broken by node id, greater", rec(10, "n3", "in"), rec(10, "n3", "in"), 1},
		{"tie broken by node id, smaller", rec(10, "n1", "in"), stored, 0},
		{"tombstone at the same stamp", Record{Timestamp: 10, NodeID: "n2", Tombstone: true}, Record{Timestamp: 10, NodeID: "n2", Tombstone: true}, 1},
		{"newer tombstone", Record{Timestamp: 12, NodeID: "n1", Tombstone: true}, Record{Timestamp: 12, NodeID: "n1", Tombstone: true}, 1},
		{"older tombstone", Record{Timestamp: 9, NodeID: "n1", Tombstone: true}, stored, 0},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			s := openTest(t, func(c *Config) { c.Dir = ""; c.InMemory = true })
			mustMerge(t, s, Entry{Partition: 3, Key: []byte("k"), Record: stored})
			mustMerge(t, s, Entry{Partition: 3, Key: []byte("k"), Record: tc.in})
			if got := mustGet(t, s, 3, "k"); !equalRecord(got, tc.want) {
				t.Errorf("Get: got %+v, want %+v", got, tc.want)
			}
			if got, want := counterValue(s.metrics.mergesApplied), 1+tc.wantApplied; got != want {
				t.Errorf("merges applied: got %v, want %v", got, want)
			}
			if got, want := counterValue(s.metrics.mergesStale), 1-tc.wantApplied; got != want {
				t.Errorf("merges stale: got %v, want %v", got, want)
			}
		})
	}
}

func TestGetNotFound(t *testing.T) {
	s := openTest(t, nil)
	mustMerge(t, s, Entry{Partition: 1, Key: []byte("k"), Record: rec(1, "n", "v")})
	for _, tc := range []struct {
		name string
		p    uint32
		key  string
	}{
		{"other key", 1, "j"},
		{"other partition", 2, "k"},
		{"empty key", 1, ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if _, err := s.Get(tc.p, []byte(tc.key)); !errors.Is(err, ErrNotFound) {
				t.Errorf("Get: got %v, want ErrNotFound", err)
			}
		})
	}
}

func TestTombstoneIsStoredAndReturned(t *testing.T) {
	s := openTest(t, nil)
	mustMerge(t, s, Entry{Partition: 1, Key: []byte("k"), Record: rec(1, "n", "v")})
	mustMerge(t, s, Entry{Partition: 1, Key: []byte("k"), Record: Record{Timestamp: 2, NodeID: "n", Tombstone: true}})
	got := mustGet(t, s, 1, "k")
	if !got.Tombstone || got.Live(time.Now()) {
		t.Errorf("Get after delete: got %+v, want a tombstone that is not live", got)
	}
	// A late write older than the delete does not resurrect the key.
	mustMerge(t, s, Entry{Partition: 1, Key: []byte("k"), Record: rec(1, "m", "late")})
	if got := mustGet(t, s, 1, "k"); !got.Tombstone {
		t.Errorf("Get after an older write: got %+v, want the tombstone", got)
	}
}

func TestMergeDuplicatesInOneCall(t *testing.T) {
	rng := newRand(t)
	s := openTest(t, nil)
	var entries []Entry
	var recs []Record
	for range 50 {
		r := randRecord(rng)
		recs = append(recs, r)
		entries = append(entries, Entry{Partition: 7, Key: []byte("dup"), Record: r})
	}
	mustMerge(t, s, entries...)
	if got, want := mustGet(t, s, 7, "dup"), oracleMax(recs); !equalRecord(got, want) {
		t.Errorf("Get: got %+v, want %+v", got, want)
	}
}

func TestMergeDoesNotRetainCallerSlices(t *testing.T) {
	s := openTest(t, nil)
	key, val := []byte("k"), []byte("value")
	mustMerge(t, s, Entry{Partition: 1, Key: key, Record: Record{Timestamp: 1, Value: val}})
	key[0], val[0] = 'x', 'X'
	if got := mustGet(t, s, 1, "k"); string(got.Value) != "value" {
		t.Errorf("Get: got value %q, want %q", got.Value, "value")
	}
}

// corrupt overwrites the stored bytes of (p, key) directly in Badger.
func corrupt(t *testing.T, s *Store, p uint32, key string, val []byte) {
	t.Helper()
	err := s.db.Update(func(txn *badger.Txn) error {
		return txn.Set(recordKey(nil, p, []byte(key)), val)
	})
	if err != nil {
		t.Fatalf("corrupting: %v", err)
	}
}

func TestCorruptRecord(t *testing.T) {
	s := openTest(t, nil)
	for _, k := range []string{"a", "b", "c"} {
		mustMerge(t, s, Entry{Partition: 1, Key: []byte(k), Record: rec(5, "n", "v-"+k)})
	}
	bad := rec(5, "n", "v-b").AppendBinary(nil)
	bad[len(bad)-6] ^= 0x10 // flip a bit in the value
	corrupt(t, s, 1, "b", bad)

	_, err := s.Get(1, []byte("b"))
	var ce *CorruptError
	if !errors.As(err, &ce) {
		t.Fatalf("Get: got %v, want a *CorruptError", err)
	}
	if !errors.Is(err, ErrCorrupt) {
		t.Errorf("Get: got %v, want errors.Is ErrCorrupt", err)
	}
	if ce.Partition != 1 || string(ce.Key) != "b" {
		t.Errorf("CorruptError: got partition %d key %q, want 1 %q", ce.Partition, ce.Key, "b")
	}

	var keys []string
	if err := s.Scan(1, nil, nil, func(k []byte, _ Record) bool { keys = append(keys, string(k)); return true }); err != nil {
		t.Fatalf("Scan: got %v, want nil", err)
	}
	if want := []string{"a", "c"}; !slices.Equal(keys, want) {
		t.Errorf("Scan: got %q, want %q", keys, want)
	}
	if got, want := counterValue(s.metrics.corrupt), 2.0; got != want {
		t.Errorf("corrupt records counted: got %v, want %v", got, want)
	}

	// Any record repairs it, even one older than what was stored.
	mustMerge(t, s, Entry{Partition: 1, Key: []byte("b"), Record: rec(4, "n", "repaired")})
	if got := mustGet(t, s, 1, "b"); string(got.Value) != "repaired" {
		t.Errorf("Get after repair: got %q, want %q", got.Value, "repaired")
	}
	if got, want := counterValue(s.metrics.corrupt), 3.0; got != want {
		t.Errorf("corrupt records counted: got %v, want %v", got, want)
	}
}

func TestCorruptErrorWithoutCause(t *testing.T) {
	err := error(&CorruptError{Partition: 4, Key: []byte("secret")})
	if !errors.Is(err, ErrCorrupt) {
		t.Errorf("errors.Is(ErrCorrupt): got false, want true")
	}
	if got, want := err.Error(), "replica: corrupt record in partition 4 (key of 6 bytes)"; got != want {
		t.Errorf("Error: got %q, want %q", got, want)
	}
}

func TestScan(t *testing.T) {
	s := openTest(t, nil)
	var entries []Entry
	for _, p := range []uint32{1, 2, 0x100} {
		for _, k := range []string{"", "a", "ab", "abc", "b", "ba", "c"} {
			entries = append(entries, Entry{Partition: p, Key: []byte(k), Record: rec(1, "n", fmt.Sprint(p, "/", k))})
		}
	}
	mustMerge(t, s, entries...)
	tests := []struct {
		name          string
		p             uint32
		prefix, start string
		limit         int // 0 = no limit
		want          []string
	}{
		{"whole partition", 1, "", "", 0, []string{"", "a", "ab", "abc", "b", "ba", "c"}},
		{"prefix", 1, "a", "", 0, []string{"a", "ab", "abc"}},
		{"prefix and start", 1, "a", "ab", 0, []string{"ab", "abc"}},
		{"start between keys", 1, "", "aa", 0, []string{"ab", "abc", "b", "ba", "c"}},
		{"start before prefix", 1, "b", "a", 0, []string{"b", "ba"}},
		{"start after prefix", 1, "a", "b", 0, nil},
		{"no match", 1, "z", "", 0, nil},
		{"stop early", 1, "", "", 2, []string{"", "a"}},
		{"other partition", 2, "b", "", 0, []string{"b", "ba"}},
		{"empty partition", 3, "", "", 0, nil},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			var got []string
			var start []byte
			if tc.start != "" {
				start = []byte(tc.start)
			}
			err := s.Scan(tc.p, []byte(tc.prefix), start, func(k []byte, r Record) bool {
				if want := fmt.Sprint(tc.p, "/", string(k)); string(r.Value) != want {
					t.Errorf("record for %q: got value %q, want %q", k, r.Value, want)
				}
				got = append(got, string(k))
				return tc.limit == 0 || len(got) < tc.limit
			})
			if err != nil {
				t.Fatalf("Scan: got %v, want nil", err)
			}
			if !slices.Equal(got, tc.want) {
				t.Errorf("keys: got %q, want %q", got, tc.want)
			}
		})
	}
}

func TestConcurrentMergesToOneKey(t *testing.T) {
	rng := newRand(t)
	s := openTest(t, nil)
	const goroutines, perG = 64, 20
	recs := make([][]Record, goroutines)
	var all []Record
	for g := range recs {
		for range perG {
			r := Record{
				Timestamp: Timestamp(rng.IntN(50)),
				NodeID:    fmt.Sprint("n", rng.IntN(4)),
				Tombstone: rng.IntN(4) == 0,
				Value:     []byte(fmt.Sprint(rng.IntN(1000))),
			}
			recs[g] = append(recs[g], r)
			all = append(all, r)
		}
	}
	var wg sync.WaitGroup
	for g := range goroutines {
		wg.Go(func() {
			for _, r := range recs[g] {
				if err := s.Merge(t.Context(), []Entry{{Partition: 9, Key: []byte("hot"), Record: r}}); err != nil {
					t.Errorf("Merge: got %v, want nil", err)
				}
			}
		})
	}
	wg.Wait()
	if got, want := mustGet(t, s, 9, "hot"), oracleMax(all); !equalRecord(got, want) {
		t.Errorf("Get: got %+v, want %+v", got, want)
	}
	total := counterValue(s.metrics.mergesApplied) + counterValue(s.metrics.mergesStale)
	if got, want := total, float64(goroutines*perG); got != want {
		t.Errorf("merges counted: got %v, want %v", got, want)
	}
}

// blockCommitter makes the committer stop before applying its first batch
// until release is called. entered is closed once it has stopped.
func blockCommitter(s *Store) (entered <-chan struct{}, release func()) {
	in, out := make(chan struct{}), make(chan struct{})
	var once sync.Once
	s.hooks.beforeBatch = func(int) {
		once.Do(func() {
			close(in)
			<-out
		})
	}
	var ronce sync.Once
	return in, func() { ronce.Do(func() { close(out) }) }
}

// waitFor polls cond until it holds or the deadline passes.
func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	tick := time.NewTicker(time.Millisecond)
	defer tick.Stop()
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		<-tick.C
	}
}

func TestGroupCommitBatchesWaitingCallers(t *testing.T) {
	s := openTest(t, nil)
	entered, release := blockCommitter(s)
	defer release()
	var sizes []int
	hook := s.hooks.beforeBatch
	s.hooks.beforeBatch = func(n int) { sizes = append(sizes, n); hook(n) }

	const callers = 64
	errs := make(chan error, callers)
	go func() {
		errs <- s.Merge(t.Context(), []Entry{{Partition: 1, Key: []byte("first"), Record: rec(1, "n", "v")}})
	}()
	<-entered
	for i := range callers - 1 {
		go func() {
			errs <- s.Merge(t.Context(), []Entry{{Partition: 1, Key: fmt.Append(nil, "k", i), Record: rec(1, "n", "v")}})
		}()
	}
	waitFor(t, "callers to queue", func() bool { return s.queued.Load() == callers-1 })
	release()
	for range callers {
		if err := <-errs; err != nil {
			t.Errorf("Merge: got %v, want nil", err)
		}
	}
	if want := []int{1, callers - 1}; !slices.Equal(sizes, want) {
		t.Errorf("batch sizes (requests): got %v, want %v", sizes, want)
	}
	if got, want := s.txnsCommitted.Load(), int64(2); got != want {
		t.Errorf("transactions committed: got %d, want %d", got, want)
	}
	if n, sum := histogramCountSum(s.metrics.batchEntries); n != 2 || sum != callers {
		t.Errorf("commit_batch_entries: got count %d sum %v, want count 2 sum %d", n, sum, callers)
	}
	if n, _ := histogramCountSum(s.metrics.commitDuration); n != 2 {
		t.Errorf("commit_duration_seconds: got count %d, want 2", n)
	}
}

func TestGroupCommitRespectsMaxBatchEntries(t *testing.T) {
	s := openTest(t, func(c *Config) { c.MaxBatchEntries = 10 })
	entered, release := blockCommitter(s)
	defer release()
	var sizes []int
	hook := s.hooks.beforeBatch
	s.hooks.beforeBatch = func(n int) { sizes = append(sizes, n); hook(n) }

	errs := make(chan error, 31)
	go func() {
		errs <- s.Merge(t.Context(), []Entry{{Partition: 1, Key: []byte("first"), Record: rec(1, "n", "v")}})
	}()
	<-entered
	for i := range 30 {
		go func() {
			errs <- s.Merge(t.Context(), []Entry{{Partition: 1, Key: fmt.Append(nil, "k", i), Record: rec(1, "n", "v")}})
		}()
	}
	waitFor(t, "callers to queue", func() bool { return s.queued.Load() == 30 })
	release()
	for range 31 {
		if err := <-errs; err != nil {
			t.Errorf("Merge: got %v, want nil", err)
		}
	}
	if want := []int{1, 10, 10, 10}; !slices.Equal(sizes, want) {
		t.Errorf("batch sizes (requests): got %v, want %v", sizes, want)
	}
}

func TestMergeSpanningTransactions(t *testing.T) {
	// A 1 MiB memtable lets one Badger transaction hold ~150 KiB, so this
	// Merge needs several transactions.
	s := openTest(t, func(c *Config) { c.MemTableBytes = 1 << 20; c.MaxBatchEntries = 1 << 20 })
	const n = 3000
	entries := make([]Entry, n)
	for i := range entries {
		entries[i] = Entry{Partition: 2, Key: fmt.Appendf(nil, "key-%05d", i), Record: rec(1, "n", string(bytes.Repeat([]byte{'v'}, 200)))}
	}
	mustMerge(t, s, entries...)
	if got := s.txnsCommitted.Load(); got < 2 {
		t.Errorf("transactions committed: got %d, want at least 2", got)
	}
	count := 0
	if err := s.Scan(2, nil, nil, func([]byte, Record) bool { count++; return true }); err != nil {
		t.Fatalf("Scan: got %v, want nil", err)
	}
	if count != n {
		t.Errorf("records: got %d, want %d", count, n)
	}
}

// failCommits makes the commits numbered in fail (1-based) return errInjected.
func failCommits(s *Store, fail ...int) {
	n := 0
	s.hooks.commitErr = func() error {
		n++
		if slices.Contains(fail, n) {
			return errInjected
		}
		return nil
	}
}

var errInjected = errors.New("injected commit failure")

func TestCommitFailure(t *testing.T) {
	t.Run("the whole batch fails", func(t *testing.T) {
		s := openTest(t, nil)
		failCommits(s, 1)
		entered, release := blockCommitter(s)
		defer release()
		errs := make(chan error, 3)
		go func() { errs <- s.Merge(t.Context(), []Entry{{Key: []byte("a"), Record: rec(1, "n", "v")}}) }()
		<-entered
		for _, k := range []string{"b", "c"} {
			go func() { errs <- s.Merge(t.Context(), []Entry{{Key: []byte(k), Record: rec(1, "n", "v")}}) }()
		}
		waitFor(t, "callers to queue", func() bool { return s.queued.Load() == 2 })
		release()
		// The first batch (a) fails alone; b and c share the second, which succeeds.
		var failed int
		for range 3 {
			if err := <-errs; errors.Is(err, errInjected) {
				failed++
			} else if err != nil {
				t.Errorf("Merge: got %v, want nil or the injected error", err)
			}
		}
		if failed != 1 {
			t.Errorf("failed Merges: got %d, want 1", failed)
		}
		if _, err := s.Get(0, []byte("a")); !errors.Is(err, ErrNotFound) {
			t.Errorf("Get(a): got %v, want ErrNotFound", err)
		}
		mustGet(t, s, 0, "b")
		if got, want := counterValue(s.metrics.mergesApplied), 2.0; got != want {
			t.Errorf("merges applied: got %v, want %v", got, want)
		}
	})
	t.Run("a later transaction of a spanning merge fails", func(t *testing.T) {
		s := openTest(t, func(c *Config) { c.MemTableBytes = 1 << 20; c.MaxBatchEntries = 1 << 20 })
		failCommits(s, 2)
		entries := make([]Entry, 3000)
		for i := range entries {
			entries[i] = Entry{Key: fmt.Appendf(nil, "key-%05d", i), Record: rec(1, "n", string(bytes.Repeat([]byte{'v'}, 200)))}
		}
		if err := s.Merge(t.Context(), entries); !errors.Is(err, errInjected) {
			t.Fatalf("Merge: got %v, want the injected error", err)
		}
		// The first transaction is durable; merging again completes the rest.
		mustGet(t, s, 0, "key-00000")
		mustMerge(t, s, entries...)
		mustGet(t, s, 0, "key-02999")
	})
}

func TestDataSurvivesReopen(t *testing.T) {
	dir := t.TempDir()
	cfg := DefaultConfig()
	cfg.Dir = dir
	cfg.Logger = testLogger(t)
	want := Record{Value: []byte("durable"), Timestamp: MakeTimestamp(t0, 3), NodeID: "n1", ExpiresAt: t1}
	for i := range 2 {
		s, err := Open(cfg, Deps{})
		if err != nil {
			t.Fatalf("Open %d: got %v, want nil", i, err)
		}
		if i == 0 {
			mustMerge(t, s, Entry{Partition: 42, Key: []byte("k"), Record: want},
				Entry{Partition: 42, Key: []byte("gone"), Record: Record{Timestamp: 9, Tombstone: true}})
		}
		if got := mustGet(t, s, 42, "k"); !equalRecord(got, want) {
			t.Errorf("Get after open %d: got %+v, want %+v", i, got, want)
		}
		if got := mustGet(t, s, 42, "gone"); !got.Tombstone {
			t.Errorf("Get tombstone after open %d: got %+v, want a tombstone", i, got)
		}
		if err := s.Close(); err != nil {
			t.Fatalf("Close %d: got %v, want nil", i, err)
		}
	}
}

func TestClosed(t *testing.T) {
	s := openTest(t, nil)
	mustMerge(t, s, Entry{Partition: 1, Key: []byte("k"), Record: rec(1, "n", "v")})
	if err := s.Close(); err != nil {
		t.Fatalf("Close: got %v, want nil", err)
	}
	if err := s.Close(); err != nil {
		t.Errorf("second Close: got %v, want nil", err)
	}
	if err := s.Merge(t.Context(), []Entry{{Partition: 1, Key: []byte("k"), Record: rec(2, "n", "v")}}); !errors.Is(err, ErrClosed) {
		t.Errorf("Merge: got %v, want ErrClosed", err)
	}
	if err := s.Merge(t.Context(), nil); !errors.Is(err, ErrClosed) {
		t.Errorf("Merge of nothing: got %v, want ErrClosed", err)
	}
	if _, err := s.Get(1, []byte("k")); !errors.Is(err, ErrClosed) {
		t.Errorf("Get: got %v, want ErrClosed", err)
	}
	if err := s.Scan(1, nil, nil, func([]byte, Record) bool { return true }); !errors.Is(err, ErrClosed) {
		t.Errorf("Scan: got %v, want ErrClosed", err)
	}
}

func TestCloseTurnsAwayWaitingMerges(t *testing.T) {
	s := openTest(t, nil)
	entered, release := blockCommitter(s)
	defer release()
	first := make(chan error, 1)
	go func() {
		first <- s.Merge(t.Context(), []Entry{{Partition: 1, Key: []byte("a"), Record: rec(1, "n", "v")}})
	}()
	<-entered
	second := make(chan error, 1)
	go func() {
		second <- s.Merge(t.Context(), []Entry{{Partition: 1, Key: []byte("b"), Record: rec(1, "n", "v")}})
	}()
	waitFor(t, "second Merge to queue", func() bool { return s.queued.Load() == 1 })
	closed := make(chan error, 1)
	go func() { closed <- s.Close() }()
	if err := <-second; !errors.Is(err, ErrClosed) {
		t.Errorf("waiting Merge: got %v, want ErrClosed", err)
	}
	release()
	if err := <-first; err != nil {
		t.Errorf("Merge being committed: got %v, want nil", err)
	}
	if err := <-closed; err != nil {
		t.Errorf("Close: got %v, want nil", err)
	}
}

func TestMergeContext(t *testing.T) {
	t.Run("already canceled", func(t *testing.T) {
		s := openTest(t, nil)
		ctx, cancel := context.WithCancel(t.Context())
		cancel()
		if err := s.Merge(ctx, []Entry{{Partition: 1, Key: []byte("k"), Record: rec(1, "n", "v")}}); !errors.Is(err, context.Canceled) {
			t.Errorf("Merge: got %v, want context.Canceled", err)
		}
		if _, err := s.Get(1, []byte("k")); !errors.Is(err, ErrNotFound) {
			t.Errorf("Get: got %v, want ErrNotFound (nothing applied)", err)
		}
	})
	t.Run("deadline while waiting for the committer", func(t *testing.T) {
		s := openTest(t, nil)
		entered, release := blockCommitter(s)
		defer release()
		go func() { _ = s.Merge(t.Context(), []Entry{{Partition: 1, Key: []byte("a"), Record: rec(1, "n", "v")}}) }()
		<-entered
		ctx, cancel := context.WithTimeout(t.Context(), 10*time.Millisecond)
		defer cancel()
		if err := s.Merge(ctx, []Entry{{Partition: 1, Key: []byte("b"), Record: rec(1, "n", "v")}}); !errors.Is(err, context.DeadlineExceeded) {
			t.Errorf("Merge: got %v, want context.DeadlineExceeded", err)
		}
		release()
	})
	t.Run("canceled after the hand-off is still applied", func(t *testing.T) {
		s := openTest(t, nil)
		entered, release := blockCommitter(s)
		defer release()
		ctx, cancel := context.WithCancel(t.Context())
		done := make(chan error, 1)
		go func() { done <- s.Merge(ctx, []Entry{{Partition: 1, Key: []byte("a"), Record: rec(1, "n", "v")}}) }()
		<-entered
		cancel()
		if err := <-done; !errors.Is(err, context.Canceled) {
			t.Errorf("Merge: got %v, want context.Canceled", err)
		}
		release()
		waitFor(t, "the entry to be applied", func() bool {
			_, err := s.Get(1, []byte("a"))
			return err == nil
		})
	})
}

func TestMergeInvalidEntry(t *testing.T) {
	tests := []struct {
		name     string
		inMemory bool
		e        Entry
	}{
		{"key too long", false, Entry{Key: make([]byte, MaxKeyBytes+1)}},
		{"value above the in-memory threshold", true, Entry{Key: []byte("k"), Record: Record{Value: make([]byte, 2<<20)}}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			s := openTest(t, func(c *Config) {
				if tc.inMemory {
					c.Dir, c.InMemory = "", true
				}
			})
			ok := Entry{Key: []byte("ok"), Record: rec(1, "n", "v")}
			if err := s.Merge(t.Context(), []Entry{ok, tc.e}); !errors.Is(err, ErrInvalidEntry) {
				t.Errorf("Merge: got %v, want ErrInvalidEntry", err)
			}
			if _, err := s.Get(0, []byte("ok")); !errors.Is(err, ErrNotFound) {
				t.Errorf("Get of the valid entry: got %v, want ErrNotFound (nothing applied)", err)
			}
		})
	}
	s := openTest(t, nil)
	if err := s.Merge(t.Context(), []Entry{{Key: make([]byte, MaxKeyBytes), Record: rec(1, "n", "v")}}); err != nil {
		t.Errorf("Merge of a MaxKeyBytes key: got %v, want nil", err)
	}
}

func TestValidate(t *testing.T) {
	tests := []struct {
		name     string
		cfg      Config
		wantErrs int
	}{
		{"on disk", Config{Dir: "/data"}, 0},
		{"in memory", Config{InMemory: true}, 0},
		{"defaults with dir", func() Config { c := DefaultConfig(); c.Dir = "d"; return c }(), 0},
		{"missing dir", Config{}, 1},
		{"dir with in memory", Config{Dir: "d", InMemory: true}, 1},
		{"negative block cache", Config{Dir: "d", BlockCacheBytes: -1}, 1},
		{"negative index cache", Config{Dir: "d", IndexCacheBytes: -1}, 1},
		{"memtable too small", Config{Dir: "d", MemTableBytes: 1000}, 1},
		{"negative batch", Config{Dir: "d", MaxBatchEntries: -1}, 1},
		{"negative version cache", Config{Dir: "d", VersionCacheEntries: -1}, 1},
		{"everything wrong", Config{BlockCacheBytes: -1, IndexCacheBytes: -1, MemTableBytes: -1, MaxBatchEntries: -1}, 5},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			err := tc.cfg.Validate()
			got := 0
			if joined, ok := err.(interface{ Unwrap() []error }); ok {
				got = len(joined.Unwrap())
			} else if err != nil {
				got = 1
			}
			if got != tc.wantErrs {
				t.Errorf("Validate: got %d problems (%v), want %d", got, err, tc.wantErrs)
			}
		})
	}
	if _, err := Open(Config{}, Deps{}); err == nil {
		t.Errorf("Open with an invalid config: got nil, want an error")
	}
}

func TestMetricsRegistration(t *testing.T) {
	reg := prometheus.NewRegistry()
	dir := t.TempDir()
	cfg := Config{Dir: dir, Logger: testLogger(t)}
	s, err := Open(cfg, Deps{Registerer: reg})
	if err != nil {
		t.Fatalf("Open: got %v, want nil", err)
	}
	mustMerge(t, s, Entry{Key: []byte("k"), Record: rec(1, "n", "v")})
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatalf("Gather: got %v, want nil", err)
	}
	var names []string
	for _, mf := range mfs {
		names = append(names, mf.GetName())
	}
	want := []string{
		"ringkv_replica_commit_batch_entries",
		"ringkv_replica_commit_duration_seconds",
		"ringkv_replica_corrupt_records_total",
		"ringkv_replica_disk_bytes",
		"ringkv_replica_disk_full",
		"ringkv_replica_disk_full_events_total",
		"ringkv_replica_disk_full_refused_total",
		"ringkv_replica_disk_reserve_bytes",
		"ringkv_replica_merges_total",
		"ringkv_replica_sync_duration_seconds",
	}
	if !slices.Equal(names, want) {
		t.Errorf("metrics: got %q, want %q", names, want)
	}
	// A second store on the same registerer is refused while the first is open...
	if _, err := Open(Config{Dir: t.TempDir(), Logger: testLogger(t)}, Deps{Registerer: reg}); err == nil {
		t.Errorf("second Open on the same registerer: got nil, want an error")
	}
	// ...and accepted once it is closed.
	if err := s.Close(); err != nil {
		t.Fatalf("Close: got %v, want nil", err)
	}
	s, err = Open(cfg, Deps{Registerer: reg})
	if err != nil {
		t.Fatalf("reopen on the same registerer: got %v, want nil", err)
	}
	if err := s.Close(); err != nil {
		t.Fatalf("Close: got %v, want nil", err)
	}
}

func TestBadgerLogger(t *testing.T) {
	var buf bytes.Buffer
	l := badgerLogger{slog.New(slog.NewTextHandler(&buf, &slog.HandlerOptions{Level: slog.LevelInfo}))}
	l.Debugf("hidden %d", 1)
	l.Infof("info %d\n", 2)
	l.Warningf("warn %d", 3)
	l.Errorf("error %d", 4)
	got := buf.String()
	for _, want := range []string{`level=INFO msg=badger detail="info 2"`, `level=WARN msg=badger detail="warn 3"`, `level=ERROR msg=badger detail="error 4"`} {
		if !bytes.Contains([]byte(got), []byte(want)) {
			t.Errorf("log: got %q, want it to contain %q", got, want)
		}
	}
	if bytes.Contains([]byte(got), []byte("hidden")) {
		t.Errorf("log: got %q, want no debug line", got)
	}
}

func BenchmarkMerge(b *testing.B) {
	s := openTest(b, func(c *Config) { c.Logger = nil })
	value := bytes.Repeat([]byte("v"), 100)
	var seq atomic.Int64
	b.ReportAllocs()
	b.SetParallelism(16)
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			i := seq.Add(1)
			e := Entry{Partition: uint32(i % 64), Key: fmt.Appendf(nil, "key-%d", i), Record: Record{Value: value, Timestamp: Timestamp(i), NodeID: "n1"}}
			if err := s.Merge(context.Background(), []Entry{e}); err != nil {
				b.Error(err)
				return
			}
		}
	})
	b.StopTimer()
	if txns := s.txnsCommitted.Load(); txns > 0 {
		b.ReportMetric(float64(b.N)/float64(txns), "entries/txn")
	}
}
