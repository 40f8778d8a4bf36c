package replica

import (
	"errors"
	"testing"
)

// TestSnapshotIsPinned: a snapshot keeps reading the records as they were
// when it was taken, while later merges change and add keys; it skips other
// partitions and resumes from a start key.
func TestSnapshotIsPinned(t *testing.T) {
	s := openTest(t, nil)
	mustMerge(t, s,
		Entry{Partition: 1, Key: []byte("a"), Record: rec(10, "n1", "a-old")},
		Entry{Partition: 1, Key: []byte("b"), Record: rec(11, "n1", "b-old")},
		Entry{Partition: 2, Key: []byte("c"), Record: rec(12, "n1", "c")},
	)
	sn, err := s.Snapshot(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	mustMerge(t, s,
		Entry{Partition: 1, Key: []byte("a"), Record: rec(20, "n1", "a-new")},
		Entry{Partition: 1, Key: []byte("aa"), Record: rec(21, "n1", "aa")},
	)
	scan := func(start string) map[string]string {
		got := map[string]string{}
		if err := sn.Scan(1, []byte(start), func(k []byte, r Record, _ uint64) bool {
			got[string(k)] = string(r.Value)
			return true
		}); err != nil {
			t.Fatal(err)
		}
		return got
	}
	if got := scan(""); len(got) != 2 || got["a"] != "a-old" || got["b"] != "b-old" {
		t.Fatalf("snapshot scan: got %v, want a=a-old b=b-old", got)
	}
	if got := scan("aa"); len(got) != 1 || got["b"] != "b-old" {
		t.Fatalf("scan from aa: got %v, want b=b-old", got)
	}
	if got := mustGet(t, s, 1, "a"); string(got.Value) != "a-new" {
		t.Fatalf("store after the snapshot: got %q, want a-new", got.Value)
	}
	n := 0
	if err := sn.Scan(1, nil, func([]byte, Record, uint64) bool { n++; return false }); err != nil || n != 1 {
		t.Fatalf("early stop: got %d records, %v; want 1, nil", n, err)
	}
	// Versions: the records of the snapshot are at or below its version,
	// a later one above.
	later, err := s.Snapshot(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	if err := later.Scan(1, nil, func(k []byte, _ Record, v uint64) bool {
		if old := string(k) == "b"; old != (v <= sn.Version()) {
			t.Errorf("key %q at version %d, first snapshot at %d", k, v, sn.Version())
		}
		return true
	}); err != nil {
		t.Fatal(err)
	}
	later.Close()
	if got := s.OpenSnapshots(); got != 1 {
		t.Fatalf("open snapshots: got %d, want 1", got)
	}
	sn.Close()
	sn.Close() // idempotent
	if got := s.OpenSnapshots(); got != 0 {
		t.Fatalf("open snapshots after Close: got %d, want 0", got)
	}
	if err := sn.Scan(1, nil, func([]byte, Record, uint64) bool { return true }); !errors.Is(err, ErrClosed) {
		t.Fatalf("scan after Close: got %v, want ErrClosed", err)
	}
}

// TestStoreCloseReleasesSnapshots: Close releases snapshots left open, and
// a closed store takes none.
func TestStoreCloseReleasesSnapshots(t *testing.T) {
	s := openTest(t, nil)
	sn, err := s.Snapshot(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	if err := sn.Scan(0, nil, func([]byte, Record, uint64) bool { return true }); !errors.Is(err, ErrClosed) {
		t.Fatalf("scan after store Close: got %v, want ErrClosed", err)
	}
	sn.Close()
	if _, err := s.Snapshot(t.Context()); !errors.Is(err, ErrClosed) {
		t.Fatalf("Snapshot after Close: got %v, want ErrClosed", err)
	}
}
