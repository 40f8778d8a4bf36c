package raftwal

import (
	"bytes"
	"errors"
	"fmt"
	"math/rand/v2"
	"os"
	"path/filepath"
	"runtime"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
)

func entry(group uint32, index uint64, gen int) Entry {
	return Entry{Index: index, Data: fmt.Appendf(nil, "g%d-i%d-gen%d", group, index, gen)}
}

func mustAppend(t *testing.T, w *WAL, group uint32, entries ...Entry) {
	t.Helper()
	done := make(chan error, 1)
	if err := w.Append(group, entries, func(err error) { done <- err }); err != nil {
		t.Fatalf("append group %d: %v", group, err)
	}
	if err := <-done; err != nil {
		t.Fatalf("append group %d not durable: %v", group, err)
	}
}

func open(t *testing.T, dir string, opts Options) *WAL {
	t.Helper()
	w, err := Open(dir, opts)
	if err != nil {
		t.Fatalf("open: %v", err)
	}
	return w
}

func wantEntry(t *testing.T, w *WAL, group uint32, index uint64, want []byte) {
	t.Helper()
	got, err := w.Get(group, index)
	if err != nil || !bytes.Equal(got, want) {
		t.Fatalf("group %d index %d: got %q, %v; want %q", group, index, got, err, want)
	}
}

func wantBounds(t *testing.T, w *WAL, group uint32, first, last uint64) {
	t.Helper()
	if f, l := w.Bounds(group); f != first || l != last {
		t.Fatalf("group %d bounds %d..%d, want %d..%d", group, f, l, first, last)
	}
}

// TestAppendGetReopen: entries of several groups read back, before and
// after a reopen; an entry at an index already held replaces it and
// leaves the others; an entry beyond the log leaves a hole.
func TestAppendGetReopen(t *testing.T) {
	dir := t.TempDir()
	w := open(t, dir, Options{})
	for g := uint32(1); g <= 3; g++ {
		mustAppend(t, w, g, entry(g, 1, 0), entry(g, 2, 0), entry(g, 3, 0))
	}
	mustAppend(t, w, 2, entry(2, 2, 1)) // 2 replaced
	mustAppend(t, w, 3, entry(3, 5, 0)) // a hole at 4
	check := func(w *WAL) {
		t.Helper()
		wantBounds(t, w, 1, 1, 3)
		wantBounds(t, w, 2, 1, 3)
		wantEntry(t, w, 2, 2, entry(2, 2, 1).Data)
		wantEntry(t, w, 2, 3, entry(2, 3, 0).Data)
		wantEntry(t, w, 3, 3, entry(3, 3, 0).Data)
		wantBounds(t, w, 3, 1, 5)
		if _, err := w.Get(3, 4); !errors.Is(err, ErrNotFound) {
			t.Fatalf("hole: %v, want ErrNotFound", err)
		}
		if _, err := w.Get(9, 1); !errors.Is(err, ErrNotFound) {
			t.Fatalf("unknown group: %v, want ErrNotFound", err)
		}
		wantBounds(t, w, 9, 0, 0)
		if got := w.Groups(); len(got) != 3 {
			t.Fatalf("groups %v", got)
		}
	}
	check(w)
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
	if err := w.Append(1, []Entry{entry(1, 4, 0)}, nil); !errors.Is(err, ErrClosed) {
		t.Fatalf("append after close: %v", err)
	}
	if _, err := w.Get(1, 1); !errors.Is(err, ErrClosed) {
		t.Fatalf("get after close: %v", err)
	}
	if err := w.Close(); !errors.Is(err, ErrClosed) {
		t.Fatalf("second close: %v", err)
	}
	w = open(t, dir, Options{})
	defer func() { _ = w.Close() }()
	check(w)
}

// TestDeleteRange: a prefix (compaction) and a suffix removed, holes at
// either end trimmed, and the same after a reopen.
func TestDeleteRange(t *testing.T) {
	dir := t.TempDir()
	w := open(t, dir, Options{})
	for i := uint64(1); i <= 10; i++ {
		mustAppend(t, w, 7, entry(7, i, 0))
	}
	for _, r := range [][2]uint64{{0, 3}, {9, 20}, {5, 5}} {
		if err := w.DeleteRange(7, r[0], r[1]); err != nil {
			t.Fatal(err)
		}
	}
	if err := w.DeleteRange(7, 6, 2); err != nil { // empty range
		t.Fatal(err)
	}
	check := func(w *WAL) {
		t.Helper()
		wantBounds(t, w, 7, 4, 8)
		if _, err := w.Get(7, 5); !errors.Is(err, ErrNotFound) {
			t.Fatalf("hole: %v", err)
		}
		wantEntry(t, w, 7, 6, entry(7, 6, 0).Data)
	}
	check(w)
	if err := w.DeleteRange(7, 4, 4); err != nil {
		t.Fatal(err)
	}
	wantBounds(t, w, 7, 6, 8) // the hole at 5 trimmed with 4
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
	w = open(t, dir, Options{})
	wantBounds(t, w, 7, 6, 8)
	if err := w.DeleteRange(7, 1, 100); err != nil {
		t.Fatal(err)
	}
	wantBounds(t, w, 7, 0, 0)
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
	w = open(t, dir, Options{})
	defer func() { _ = w.Close() }()
	wantBounds(t, w, 7, 0, 0)
}

func lastSegment(t *testing.T, dir string) string {
	t.Helper()
	seqs, err := listSegments(dir)
	if err != nil || len(seqs) == 0 {
		t.Fatalf("segments: %v %v", seqs, err)
	}
	return filepath.Join(dir, segName(seqs[len(seqs)-1]))
}

// TestTornTail: a record cut short or with a bad checksum at the end of
// the newest segment (a crash in the middle of a write) is cut; what
// was before it stays, and appends go on after it.
func TestTornTail(t *testing.T) {
	for name, tail := range map[string]func(rec []byte) []byte{
		"cut short":    func(rec []byte) []byte { return rec[:len(rec)-3] },
		"bad checksum": func(rec []byte) []byte { rec[len(rec)-1] ^= 0xff; return rec },
		"header only":  func(rec []byte) []byte { return rec[:5] },
	} {
		t.Run(name, func(t *testing.T) {
			dir := t.TempDir()
			w := open(t, dir, Options{})
			mustAppend(t, w, 1, entry(1, 1, 0), entry(1, 2, 0))
			if err := w.Close(); err != nil {
				t.Fatal(err)
			}
			rec := appendHeader(nil, kindEntry, 1, 3, 5)
			rec = append(rec, "hello"...)
			seal(rec, 0)
			f, err := os.OpenFile(lastSegment(t, dir), os.O_APPEND|os.O_WRONLY, 0)
			if err != nil {
				t.Fatal(err)
			}
			if _, err := f.Write(tail(rec)); err != nil {
				t.Fatal(err)
			}
			_ = f.Close()
			w = open(t, dir, Options{})
			wantBounds(t, w, 1, 1, 2)
			mustAppend(t, w, 1, entry(1, 3, 1))
			if err := w.Close(); err != nil {
				t.Fatal(err)
			}
			w = open(t, dir, Options{})
			defer func() { _ = w.Close() }()
			wantBounds(t, w, 1, 1, 3)
			wantEntry(t, w, 1, 3, entry(1, 3, 1).Data)
		})
	}
}

// TestCorruptSegment: a bad record in a segment that is not the newest is
// corruption, not a torn tail; so is a missing segment.
func TestCorruptSegment(t *testing.T) {
	dir := t.TempDir()
	w := open(t, dir, Options{SegmentBytes: 256})
	for i := uint64(1); i <= 40; i++ {
		mustAppend(t, w, 1, entry(1, i, 0))
	}
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
	seqs, err := listSegments(dir)
	if err != nil || len(seqs) < 3 {
		t.Fatalf("segments %v %v", seqs, err)
	}
	path := filepath.Join(dir, segName(seqs[1]))
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	data[len(data)/2] ^= 0x55
	if err := os.WriteFile(path, data, 0o600); err != nil {
		t.Fatal(err)
	}
	if _, err := Open(dir, Options{SegmentBytes: 256}); !errors.Is(err, ErrCorrupt) {
		t.Fatalf("open over a corrupt segment: %v, want ErrCorrupt", err)
	}
	if err := os.Remove(path); err != nil {
		t.Fatal(err)
	}
	if _, err := Open(dir, Options{SegmentBytes: 256}); !errors.Is(err, ErrCorrupt) {
		t.Fatalf("open with a segment missing: %v, want ErrCorrupt", err)
	}
}

// TestSegmentsReclaimed: a busy group that compacts and an idle group
// that never does share small segments; the idle group's entries are
// moved forward, so the number of segments stays bounded, and every
// live entry reads back before and after a reopen.
func TestSegmentsReclaimed(t *testing.T) {
	dir := t.TempDir()
	opts := Options{SegmentBytes: 1024, KeepSegments: 2}
	w := open(t, dir, opts)
	mustAppend(t, w, 9, entry(9, 1, 0), entry(9, 2, 0)) // idle from now on
	peak := 0
	for i := uint64(1); i <= 2000; i++ {
		mustAppend(t, w, 1, entry(1, i, 0))
		if i%50 == 0 {
			if err := w.DeleteRange(1, 1, i-10); err != nil {
				t.Fatal(err)
			}
		}
		peak = max(peak, w.Segments())
	}
	if peak > 8 {
		t.Fatalf("peak segments %d: space is not reclaimed", peak)
	}
	files, err := listSegments(dir)
	if err != nil || len(files) != w.Segments() {
		t.Fatalf("files %v, segments %d, %v", files, w.Segments(), err)
	}
	check := func(w *WAL) {
		t.Helper()
		wantEntry(t, w, 9, 1, entry(9, 1, 0).Data)
		wantEntry(t, w, 9, 2, entry(9, 2, 0).Data)
		wantBounds(t, w, 1, 1991, 2000)
		for i := uint64(1991); i <= 2000; i++ {
			wantEntry(t, w, 1, i, entry(1, i, 0).Data)
		}
	}
	check(w)
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
	w = open(t, dir, opts)
	defer func() { _ = w.Close() }()
	check(w)
}

// TestTooLarge: an entry over MaxEntryBytes is refused, nothing written.
func TestTooLarge(t *testing.T) {
	w := open(t, t.TempDir(), Options{MaxEntryBytes: 8})
	defer func() { _ = w.Close() }()
	if err := w.Append(1, []Entry{{Index: 1, Data: make([]byte, 9)}}, nil); !errors.Is(err, ErrTooLarge) {
		t.Fatalf("got %v, want ErrTooLarge", err)
	}
	if err := w.Append(1, []Entry{{Index: 0, Data: []byte("x")}}, nil); !errors.Is(err, ErrInvalidEntry) {
		t.Fatalf("index 0: %v, want ErrInvalidEntry", err)
	}
	wantBounds(t, w, 1, 0, 0)
}

// model is what the WAL must hold: per group, index -> data.
type model map[uint32]map[uint64][]byte

func (m model) bounds(g uint32) (uint64, uint64) {
	var lo, hi uint64
	for i := range m[g] {
		if lo == 0 || i < lo {
			lo = i
		}
		hi = max(hi, i)
	}
	return lo, hi
}

// TestAgainstModel: random appends (in order, conflicts, gaps),
// truncations and reopens over tiny segments, checked against a map
// after every step.
func TestAgainstModel(t *testing.T) {
	for seed := range uint64(8) {
		t.Run(fmt.Sprint(seed), func(t *testing.T) {
			rng := rand.New(rand.NewPCG(seed, 1))
			dir := t.TempDir()
			opts := Options{SegmentBytes: 512, KeepSegments: 1 + int(seed%3), NoSync: true} // logic only: the fsyncs are other tests
			w := open(t, dir, opts)
			defer func() { _ = w.Close() }()
			m := model{}
			gen := 0
			for step := range 1500 {
				g := uint32(rng.IntN(4))
				if m[g] == nil {
					m[g] = map[uint64][]byte{}
				}
				lo, hi := m.bounds(g)
				switch op := rng.IntN(20); {
				case op < 14: // append a run
					start := hi + 1
					switch {
					case hi == 0:
						start = uint64(1 + rng.IntN(5))
					case rng.IntN(6) == 0: // replacing entries
						start = lo + uint64(rng.IntN(int(hi-lo+1)))
					case rng.IntN(15) == 0: // a gap
						start = hi + 2 + uint64(rng.IntN(3))
					case rng.IntN(15) == 0 && lo > 3: // below the log
						start = lo - 3
					}
					gen++
					var es []Entry
					for i := range uint64(1 + rng.IntN(4)) {
						es = append(es, entry(g, start+i, gen))
					}
					mustAppend(t, w, g, es...)
					for _, e := range es {
						m[g][e.Index] = e.Data
					}
				case op < 17 && hi > 0: // compact a prefix
					upTo := lo + uint64(rng.IntN(int(hi-lo+1)))
					if err := w.DeleteRange(g, lo, upTo); err != nil {
						t.Fatal(err)
					}
					for i := range m[g] {
						if i <= upTo {
							delete(m[g], i)
						}
					}
				case op < 19 && hi > 0: // remove a suffix
					from := lo + uint64(rng.IntN(int(hi-lo+1)))
					if err := w.DeleteRange(g, from, hi); err != nil {
						t.Fatal(err)
					}
					for i := range m[g] {
						if i >= from {
							delete(m[g], i)
						}
					}
				default:
					if err := w.Close(); err != nil {
						t.Fatal(err)
					}
					w = open(t, dir, opts)
				}
				for g, ents := range m {
					lo, hi := m.bounds(g)
					if f, l := w.Bounds(g); f != lo || l != hi {
						t.Fatalf("step %d: group %d bounds %d..%d, want %d..%d", step, g, f, l, lo, hi)
					}
					if step%10 != 0 {
						continue // every entry read back every tenth step
					}
					for i := lo; i <= hi && hi > 0; i++ {
						got, err := w.Get(g, i)
						want, ok := ents[i]
						if ok && (err != nil || !bytes.Equal(got, want)) || !ok && !errors.Is(err, ErrNotFound) {
							t.Fatalf("step %d: group %d index %d: %q %v, want %q (present %v)", step, g, i, got, err, want, ok)
						}
					}
				}
			}
			if n := w.Segments(); n > 4+opts.KeepSegments {
				t.Fatalf("%d segments left", n)
			}
		})
	}
}

// TestConcurrentGroups: groups appending and reading at once, each
// waiting for its own durability, under the race detector.
func TestConcurrentGroups(t *testing.T) {
	w := open(t, t.TempDir(), Options{SegmentBytes: 4096})
	defer func() { _ = w.Close() }()
	var wg sync.WaitGroup
	errs := make(chan error, 8)
	for g := range uint32(8) {
		wg.Go(func() {
			for i := uint64(1); i <= 300; i++ {
				done := make(chan error, 1)
				e := entry(g, i, 0)
				if err := w.Append(g, []Entry{e}, func(err error) { done <- err }); err != nil {
					errs <- err
					return
				}
				if err := <-done; err != nil {
					errs <- err
					return
				}
				if got, err := w.Get(g, i); err != nil || !bytes.Equal(got, e.Data) {
					errs <- fmt.Errorf("group %d index %d: %q %w", g, i, got, err)
					return
				}
				if i%40 == 0 {
					if err := w.DeleteRange(g, 1, i-20); err != nil {
						errs <- err
						return
					}
				}
			}
		})
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatal(err)
	}
	for g := range uint32(8) {
		wantBounds(t, w, g, 261, 300) // the last compaction, at 280, removed up to 260
	}
}

// TestMetrics: syncs, bytes and segments are counted, and a WAL reopened
// on the same registry registers again.
func TestMetrics(t *testing.T) {
	reg := prometheus.NewRegistry()
	dir := t.TempDir()
	for round := range 2 {
		w := open(t, dir, Options{Registerer: reg, SegmentBytes: 256, KeepSegments: 1})
		mustAppend(t, w, 1, entry(1, uint64(round+1), 0))
		mustAppend(t, w, 2, entry(2, 1, round))
		for i := uint64(1); i <= 20; i++ {
			mustAppend(t, w, 3, entry(3, i, round)) // group 1 and 2's entries get moved
		}
		if got := testutil.ToFloat64(w.m.written); got == 0 {
			t.Errorf("round %d: written_bytes_total 0", round)
		}
		if got := testutil.ToFloat64(w.m.segments); got != float64(w.Segments()) {
			t.Errorf("round %d: segments gauge %v, want %d", round, got, w.Segments())
		}
		if got := testutil.ToFloat64(w.m.moved); got == 0 {
			t.Errorf("round %d: moved_entries_total 0", round)
		}
		if n := testutil.CollectAndCount(reg, "ringkv_raftwal_sync_duration_seconds"); n != 1 {
			t.Errorf("round %d: sync_duration_seconds collected %d series", round, n)
		}
		if err := w.Close(); err != nil {
			t.Fatal(err)
		}
	}
}

// lingerWAL opens a WAL whose syncer lingers (under load) until it holds
// below appends, however long, and counts its fdatasyncs. loaded makes
// it take the previous batch for a loaded one.
func lingerWAL(t *testing.T, below int, loaded bool) (*WAL, *atomic.Int64) {
	t.Helper()
	var syncs atomic.Int64
	w := open(t, t.TempDir(), Options{SyncLinger: time.Hour, LingerBelow: below,
		SyncFault: func() error { syncs.Add(1); return nil }})
	// Before the first append: its kick orders these before the
	// syncer's reads.
	w.linger.Gap = time.Hour
	if loaded {
		w.linger.Batched(2)
	}
	return w, &syncs
}

// appendAsync appends one entry of group and returns where its
// durability is answered.
func appendAsync(t *testing.T, w *WAL, group uint32) <-chan error {
	t.Helper()
	done := make(chan error, 1)
	if err := w.Append(group, []Entry{entry(group, 1, 0)}, func(err error) { done <- err }); err != nil {
		t.Fatalf("append group %d: %v", group, err)
	}
	return done
}

func waitDurable(t *testing.T, done <-chan error) {
	t.Helper()
	select {
	case err := <-done:
		if err != nil {
			t.Fatalf("not durable: %v", err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("append not answered within 10 s")
	}
}

// TestSyncLinger: under load the syncer waits for more appends before an
// fdatasync, and one fdatasync answers them all; on an idle WAL a lone
// append is synced at once; Close during a linger syncs what it holds.
func TestSyncLinger(t *testing.T) {
	t.Run("loaded", func(t *testing.T) {
		w, syncs := lingerWAL(t, 3, true)
		defer func() { _ = w.Close() }()
		dones := []<-chan error{appendAsync(t, w, 1)}
		// Once the syncer took the first append and has not synced it,
		// it lingers: without the linger it would sync it alone.
		for deadline := time.Now().Add(10 * time.Second); ; runtime.Gosched() {
			w.smu.Lock()
			taken := len(w.pending) == 0
			w.smu.Unlock()
			if taken {
				break
			}
			if time.Now().After(deadline) {
				t.Fatal("the syncer did not take the first append within 10 s")
			}
		}
		for g := range uint32(2) {
			dones = append(dones, appendAsync(t, w, g+2))
		}
		for _, d := range dones {
			waitDurable(t, d)
		}
		if n := syncs.Load(); n != 1 {
			t.Errorf("%d fdatasyncs for three appends, want 1", n)
		}
	})
	t.Run("idle", func(t *testing.T) {
		w, syncs := lingerWAL(t, 3, false)
		defer func() { _ = w.Close() }()
		waitDurable(t, appendAsync(t, w, 1))
		if n := syncs.Load(); n != 1 {
			t.Errorf("%d fdatasyncs, want 1", n)
		}
	})
	t.Run("close", func(t *testing.T) {
		// Close's own sync request is the second of the two the linger
		// waits for.
		w, _ := lingerWAL(t, 2, true)
		done := appendAsync(t, w, 1)
		if err := w.Close(); err != nil {
			t.Fatal(err)
		}
		waitDurable(t, done)
	})
}
