package replica

import (
	"errors"
	"sync"
	"testing"

	"github.com/cespare/xxhash/v2"
)

// observed collects what the observer reports.
type observed struct {
	mu      sync.Mutex
	changes []Change
}

func (o *observed) observe(cs []Change) {
	o.mu.Lock()
	defer o.mu.Unlock()
	o.changes = append(o.changes, cs...)
}

func (o *observed) take() []Change {
	o.mu.Lock()
	defer o.mu.Unlock()
	out := o.changes
	o.changes = nil
	return out
}

func openObserved(t *testing.T) (*Store, *observed) {
	t.Helper()
	obs := &observed{}
	cfg := DefaultConfig()
	cfg.Dir = t.TempDir()
	cfg.Logger = testLogger(t)
	s, err := Open(cfg, Deps{Observer: obs.observe})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = s.Close() })
	return s, obs
}

func TestObserverSeesCommittedChanges(t *testing.T) {
	s, obs := openObserved(t)
	a1, a2 := rec(10, "n1", "a"), rec(20, "n1", "b")
	mustMerge(t, s, Entry{Partition: 1, Key: []byte("k"), Record: a1})
	mustMerge(t, s, Entry{Partition: 1, Key: []byte("k"), Record: a1}) // stale: no change
	mustMerge(t, s, Entry{Partition: 1, Key: []byte("k"), Record: a2})
	kh := xxhash.Sum64String("k")
	want := []Change{
		{Partition: 1, KeyHash: kh, Old: 0, New: RecordHash([]byte("k"), a1)},
		{Partition: 1, KeyHash: kh, Old: RecordHash([]byte("k"), a1), New: RecordHash([]byte("k"), a2)},
	}
	got := obs.take()
	if len(got) != len(want) || got[0] != want[0] || got[1] != want[1] {
		t.Fatalf("changes: got %+v, want %+v", got, want)
	}
	// Collection: only the exact record.
	if ok, err := s.DeleteIfEqual(t.Context(), 1, []byte("k"), a1); err != nil || ok {
		t.Fatalf("DeleteIfEqual of an older record: %v %v", ok, err)
	}
	if ok, err := s.DeleteIfEqual(t.Context(), 1, []byte("k"), a2); err != nil || !ok {
		t.Fatalf("DeleteIfEqual: %v %v", ok, err)
	}
	if got := obs.take(); len(got) != 1 || got[0].Old != want[1].New || got[0].New != 0 {
		t.Fatalf("delete change: %+v", got)
	}
}

func TestScanSnapshotVerifyQuarantine(t *testing.T) {
	s, obs := openObserved(t)
	for _, k := range []string{"a", "b", "c", "d"} {
		mustMerge(t, s, Entry{Partition: 2, Key: []byte(k), Record: rec(5, "n1", k)})
	}
	corrupt(t, s, 2, "c", []byte("garbage that fails its checksum"))
	obs.take()
	var sum uint64
	n := 0
	began := false
	err := s.ScanSnapshot(t.Context(), 2, func() { began = true }, func(kh, rh uint64) bool {
		sum += rh
		n++
		return true
	})
	if err != nil || !began || n != 3 {
		t.Fatalf("ScanSnapshot: %v began=%v records=%d, want 3 (the corrupt one skipped)", err, began, n)
	}
	var bad []string
	next, checked, _, err := s.Verify(2, nil, 2, func(k []byte) { bad = append(bad, string(k)) })
	if err != nil || checked != 2 || string(next) != "c" || len(bad) != 0 {
		t.Fatalf("Verify page 1: next %q checked %d bad %v err %v", next, checked, bad, err)
	}
	next, checked, _, err = s.Verify(2, next, 10, func(k []byte) { bad = append(bad, string(k)) })
	if err != nil || checked != 2 || next != nil || len(bad) != 1 || bad[0] != "c" {
		t.Fatalf("Verify page 2: next %q checked %d bad %v err %v", next, checked, bad, err)
	}
	if ok, err := s.Quarantine(t.Context(), 2, []byte("a")); err != nil || ok {
		t.Fatalf("Quarantine of a healthy record: %v %v", ok, err)
	}
	if ok, err := s.Quarantine(t.Context(), 2, []byte("c")); err != nil || !ok {
		t.Fatalf("Quarantine: %v %v", ok, err)
	}
	if _, err := s.Get(2, []byte("c")); !errors.Is(err, ErrNotFound) {
		t.Fatalf("get quarantined: %v, want ErrNotFound", err)
	}
	if got := obs.take(); len(got) != 1 || !got[0].OldUnknown {
		t.Fatalf("quarantine change: %+v", got)
	}
	if got := counterValue(s.metrics.corruptRemoved.WithLabelValues("quarantined")); got != 1 {
		t.Fatalf("quarantined counter %v, want 1", got)
	}
	// A merge over a corrupt record reports OldUnknown too.
	corrupt(t, s, 2, "d", []byte("more garbage that fails its checksum"))
	mustMerge(t, s, Entry{Partition: 2, Key: []byte("d"), Record: rec(1, "n1", "d")})
	if got := obs.take(); len(got) != 1 || !got[0].OldUnknown {
		t.Fatalf("overwrite change: %+v", got)
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	if err := s.ScanSnapshot(t.Context(), 2, nil, func(uint64, uint64) bool { return true }); !errors.Is(err, ErrClosed) {
		t.Fatalf("ScanSnapshot after Close: %v", err)
	}
	if _, _, _, err := s.Verify(2, nil, 1, func([]byte) {}); !errors.Is(err, ErrClosed) {
		t.Fatalf("Verify after Close: %v", err)
	}
}
