package replica

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"sync/atomic"
	"testing"

	"github.com/cespare/xxhash/v2"

	"github.com/ringkv/ringkv/internal/partid"
)

// splitKeys returns n keys with their ids under the base P, 2P and 4P.
func splitKeys(base, n int) (keys [][]byte, ids [][3]uint32) {
	logBase := 0
	for 1<<logBase < base {
		logBase++
	}
	for i := range n {
		k := fmt.Appendf(nil, "key-%04d", i)
		h := xxhash.Sum64(k)
		var id [3]uint32
		for split := range 3 {
			id[split] = partid.ID(base, base<<split, uint32(h>>(64-logBase-split)))
		}
		keys, ids = append(keys, k), append(ids, id)
	}
	return keys, ids
}

// TestSplitAddressing: records written under the id of any level are read
// under the id of any other, because all live under the key's storage
// partition; a scan (Scan, ScanSnapshot, Verify) of a split id yields
// exactly its own keys, a scan of a base id every key of the storage
// partition; conditional deletes find a record by a split id; the
// observer is told the storage partition.
func TestSplitAddressing(t *testing.T) {
	const base = 4
	s, obs := openObserved(t)
	if err := s.SetBasePartitions(base); err != nil {
		t.Fatal(err)
	}
	keys, ids := splitKeys(base, 400)
	var entries []Entry
	for i, k := range keys {
		entries = append(entries, Entry{Partition: ids[i][i%3], Key: k, Record: rec(10, "n1", string(k))})
	}
	mustMerge(t, s, entries...)
	for _, c := range obs.take() {
		if c.Partition >= base {
			t.Fatalf("observer told partition %d, not a storage partition", c.Partition)
		}
	}
	byID := map[uint32][]string{}
	for i, k := range keys {
		for split := range 3 {
			r, err := s.Get(ids[i][split], k)
			if err != nil || string(r.Value) != string(k) {
				t.Fatalf("Get(%d, %q) (written under %d): %v %q", ids[i][split], k, ids[i][i%3], err, r.Value)
			}
			byID[ids[i][split]] = append(byID[ids[i][split]], string(k))
		}
	}
	for id, want := range byID {
		var got []string
		if err := s.Scan(id, nil, nil, func(k []byte, _ Record) bool { got = append(got, string(k)); return true }); err != nil {
			t.Fatal(err)
		}
		slices.Sort(want)
		if !slices.Equal(got, want) {
			t.Fatalf("Scan(%d): %d keys, want %d", id, len(got), len(want))
		}
		n := 0
		if err := s.ScanSnapshot(context.Background(), id, nil, func(kh, _ uint64) bool { n++; return true }); err != nil || n != len(want) {
			t.Fatalf("ScanSnapshot(%d): %d keys, %v; want %d", id, n, err, len(want))
		}
		if _, checked, _, err := s.Verify(id, nil, 1<<20, func([]byte) {}); err != nil || checked != len(want) {
			t.Fatalf("Verify(%d): %d checked, %v; want %d", id, checked, err, len(want))
		}
	}
	// A reserved key is in every child's scan, and in one child's
	// ScanSnapshot only (partid.DigestID's).
	reserved := []byte("\x00ringkv/intent/" + string(keys[2]))
	mustMerge(t, s, Entry{Partition: ids[2][1], Key: reserved, Record: rec(10, "n1", "i")})
	c := partid.Children(base, ids[2][0])
	inSnap := 0
	for _, id := range c {
		found := false
		if err := s.Scan(id, reserved, nil, func(k []byte, _ Record) bool { found = true; return false }); err != nil || !found {
			t.Fatalf("Scan(%d) of a reserved key: found %v, %v", id, found, err)
		}
		if err := s.ScanSnapshot(context.Background(), id, nil, func(kh, _ uint64) bool {
			if kh == xxhash.Sum64(reserved) {
				inSnap++
				if want := partid.DigestID(base, 2*base, ids[2][0], kh); id != want {
					t.Fatalf("reserved key digested by %d, DigestID says %d", id, want)
				}
			}
			return true
		}); err != nil {
			t.Fatal(err)
		}
	}
	if inSnap != 1 {
		t.Fatalf("the reserved key is in %d children's ScanSnapshot, want 1", inSnap)
	}
	if err := s.Merge(context.Background(), []Entry{{Partition: ids[2][1], Key: reserved, Record: Record{Timestamp: 11, NodeID: "n1", Tombstone: true}}}); err != nil {
		t.Fatal(err)
	}
	if ok, err := s.DeleteIfEqual(context.Background(), ids[2][1], reserved, Record{Timestamp: 11, NodeID: "n1", Tombstone: true}); err != nil || !ok {
		t.Fatalf("collect the reserved tombstone: %v %v", ok, err)
	}

	// A tombstone collected by a split id.
	tomb := Record{Timestamp: 20, NodeID: "n1", Tombstone: true}
	mustMerge(t, s, Entry{Partition: ids[0][2], Key: keys[0], Record: tomb})
	if ok, err := s.DeleteIfEqual(context.Background(), ids[0][1], keys[0], tomb); err != nil || !ok {
		t.Fatalf("DeleteIfEqual by a split id: %v %v", ok, err)
	}
	if _, err := s.Get(ids[0][0], keys[0]); !errors.Is(err, ErrNotFound) {
		t.Fatalf("after the delete: %v, want ErrNotFound", err)
	}
	if ok, err := s.Quarantine(context.Background(), ids[1][2], keys[1]); err != nil || ok {
		t.Fatalf("Quarantine of a healthy record: %v %v", ok, err)
	}
}

// TestUnknownPartition: an id that names no partition of the base is
// refused by every call, and the base cannot change once set.
func TestUnknownPartition(t *testing.T) {
	s := openTest(t, nil)
	// Before the base is known every id is a base-level index.
	mustMerge(t, s, Entry{Partition: 5, Key: []byte("k"), Record: rec(1, "n1", "v")})
	if err := s.SetBasePartitions(3); !errors.Is(err, ErrInvalidEntry) {
		t.Fatalf("base 3: %v, want ErrInvalidEntry", err)
	}
	if err := s.SetBasePartitions(4); err != nil {
		t.Fatal(err)
	}
	if err := s.SetBasePartitions(4); err != nil {
		t.Fatalf("the same base again: %v", err)
	}
	if err := s.SetBasePartitions(8); !errors.Is(err, ErrInvalidEntry) {
		t.Fatalf("another base: %v, want ErrInvalidEntry", err)
	}
	const bad = 5 // between the base level [0,4) and the first split level [8,16)
	if err := s.Merge(context.Background(), []Entry{{Partition: bad, Key: []byte("k"), Record: rec(2, "n1", "v")}}); !errors.Is(err, ErrInvalidEntry) || !errors.Is(err, ErrUnknownPartition) {
		t.Fatalf("Merge to %d: %v", bad, err)
	}
	if _, err := s.Get(bad, []byte("k")); !errors.Is(err, ErrUnknownPartition) {
		t.Fatalf("Get: %v", err)
	}
	if err := s.Scan(bad, nil, nil, func([]byte, Record) bool { return true }); !errors.Is(err, ErrUnknownPartition) {
		t.Fatalf("Scan: %v", err)
	}
	if err := s.ScanSnapshot(context.Background(), bad, nil, func(uint64, uint64) bool { return true }); !errors.Is(err, ErrUnknownPartition) {
		t.Fatalf("ScanSnapshot: %v", err)
	}
	if _, _, _, err := s.Verify(bad, nil, 1, func([]byte) {}); !errors.Is(err, ErrUnknownPartition) {
		t.Fatalf("Verify: %v", err)
	}
	if _, err := s.Quarantine(context.Background(), bad, []byte("k")); !errors.Is(err, ErrUnknownPartition) {
		t.Fatalf("Quarantine: %v", err)
	}
	if _, err := s.DeleteIfEqual(context.Background(), bad, []byte("k"), Record{}); !errors.Is(err, ErrUnknownPartition) {
		t.Fatalf("DeleteIfEqual: %v", err)
	}
	snap, err := s.Snapshot(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	defer snap.Close()
	if err := snap.Scan(bad, nil, func([]byte, Record, uint64) bool { return true }); !errors.Is(err, ErrUnknownPartition) {
		t.Fatalf("Snapshot.Scan: %v", err)
	}
}

// TestBaseFromDeps: the store asks Deps.BasePartitions until it knows the
// base, then keeps it: a split id reads its storage partition's record.
func TestBaseFromDeps(t *testing.T) {
	var known atomic.Int64
	cfg := DefaultConfig()
	cfg.Dir = t.TempDir()
	cfg.Logger = testLogger(t)
	s, err := Open(cfg, Deps{BasePartitions: func() int { return int(known.Load()) }})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = s.Close() })
	keys, ids := splitKeys(4, 1)
	mustMerge(t, s, Entry{Partition: ids[0][0], Key: keys[0], Record: rec(1, "n1", "v")})
	if _, err := s.Get(ids[0][1], keys[0]); !errors.Is(err, ErrNotFound) {
		t.Fatalf("a split id before the base is known: %v, want ErrNotFound (read as index %d)", err, ids[0][1])
	}
	known.Store(4)
	if r, err := s.Get(ids[0][1], keys[0]); err != nil || string(r.Value) != "v" {
		t.Fatalf("a split id once the base is known: %v %v", r, err)
	}
	known.Store(8) // never asked again
	if r, err := s.Get(ids[0][2], keys[0]); err != nil || string(r.Value) != "v" {
		t.Fatalf("after the base source changed: %v %v", r, err)
	}
}
