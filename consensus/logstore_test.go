package consensus

import (
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"math"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/ringkv/ringkv/internal/crc"
	"github.com/ringkv/ringkv/internal/raftwal"

	"github.com/hashicorp/go-hclog"
	"github.com/hashicorp/raft"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/ringkv/ringkv/replica"
)

// lsOpenStore opens a replica store (in memory unless dir is set),
// closed by t.Cleanup unless the test closes it first.
func lsOpenStore(t testing.TB, dir string, deps replica.Deps) *replica.Store {
	t.Helper()
	cfg := replica.DefaultConfig()
	if dir == "" {
		cfg.InMemory = true
	} else {
		cfg.Dir = dir
	}
	s, err := replica.Open(cfg, deps)
	if err != nil {
		t.Fatalf("replica.Open: got %v, want nil", err)
	}
	t.Cleanup(func() {
		if err := s.Close(); err != nil {
			t.Errorf("Close: got %v, want nil", err)
		}
	})
	return s
}

func lsNew(t testing.TB, store RawStore, group uint32) *LogStore {
	t.Helper()
	ls, err := NewLogStore(store, group)
	if err != nil {
		t.Fatalf("NewLogStore(group %d): got %v, want nil", group, err)
	}
	return ls
}

// lsKinds are the two places a LogStore keeps its entries: the store
// itself, or a raftwal.WAL beside it (what a node uses).
var lsKinds = []string{"badger", "wal"}

// lsOpenWAL opens a WAL in dir, closed when the test ends.
func lsOpenWAL(t testing.TB, dir string) *raftwal.WAL {
	t.Helper()
	w, err := raftwal.Open(dir, raftwal.Options{})
	if err != nil {
		t.Fatalf("raftwal.Open: got %v, want nil", err)
	}
	t.Cleanup(func() { _ = w.Close() })
	return w
}

// lsNewOn returns group's LogStore of kind: on store alone, or with its
// entries in wal.
func lsNewOn(t testing.TB, kind string, store RawStore, wal *raftwal.WAL, group uint32) *LogStore {
	t.Helper()
	if kind == "badger" {
		return lsNew(t, store, group)
	}
	ls, err := NewWALLogStore(store, wal, group)
	if err != nil {
		t.Fatalf("NewWALLogStore(group %d): got %v, want nil", group, err)
	}
	return ls
}

var lsAppendedAt = time.Unix(1_700_000_000, 123456789)

// lsLog is the entry a test stores at index in term; data names both.
func lsLog(index, term uint64) *raft.Log {
	return &raft.Log{
		Index:      index,
		Term:       term,
		Type:       raft.LogCommand,
		Data:       fmt.Appendf(nil, "cmd %d/%d", index, term),
		Extensions: []byte{byte(index)},
		AppendedAt: lsAppendedAt.Add(time.Duration(index)),
	}
}

func lsLogs(lo, hi, term uint64) []*raft.Log {
	var logs []*raft.Log
	for i := lo; i <= hi; i++ {
		logs = append(logs, lsLog(i, term))
	}
	return logs
}

func lsEqual(a, b *raft.Log) bool {
	return a.Index == b.Index && a.Term == b.Term && a.Type == b.Type && bytes.Equal(a.Data, b.Data) &&
		bytes.Equal(a.Extensions, b.Extensions) && a.AppendedAt.Equal(b.AppendedAt)
}

// lsIndexes returns the stored indexes in [lo, hi], checking each entry's
// contents against want (by index).
func lsIndexes(t *testing.T, ls *LogStore, lo, hi uint64, want map[uint64]*raft.Log) []uint64 {
	t.Helper()
	var got []uint64
	for i := lo; i <= hi; i++ {
		var l raft.Log
		err := ls.GetLog(i, &l)
		if errors.Is(err, raft.ErrLogNotFound) {
			if err != raft.ErrLogNotFound { //nolint:errorlint // raft compares with ==
				t.Errorf("GetLog(%d): got %v, want raft.ErrLogNotFound itself", i, err)
			}
			continue
		}
		if err != nil {
			t.Fatalf("GetLog(%d): got %v, want nil", i, err)
		}
		if w := want[i]; w != nil && !lsEqual(&l, w) {
			t.Errorf("GetLog(%d): got %+v, want %+v", i, l, *w)
		}
		got = append(got, i)
	}
	return got
}

func lsCheckBounds(t *testing.T, ls *LogStore, first, last uint64) {
	t.Helper()
	if got, err := ls.FirstIndex(); got != first || err != nil {
		t.Errorf("FirstIndex: got %d, %v; want %d, nil", got, err, first)
	}
	if got, err := ls.LastIndex(); got != last || err != nil {
		t.Errorf("LastIndex: got %d, %v; want %d, nil", got, err, last)
	}
}

func lsSeq(lo, hi uint64) []uint64 {
	var s []uint64
	for i := lo; i <= hi; i++ {
		s = append(s, i)
	}
	return s
}

func TestLogStoreLogs(t *testing.T) {
	type step struct {
		store      []*raft.Log
		del        [2]uint64 // DeleteRange(del[0], del[1]) if del != [0 0]
		deleteNone bool      // call DeleteRange(del...) even if zero
	}
	tests := []struct {
		name        string
		steps       []step
		first, last uint64
		present     []uint64 // stored indexes in [0, 30]
	}{
		{"empty", nil, 0, 0, nil},
		{"one entry", []step{{store: lsLogs(1, 1, 1)}}, 1, 1, []uint64{1}},
		{"a batch", []step{{store: lsLogs(1, 10, 1)}}, 1, 10, lsSeq(1, 10)},
		{"appends", []step{{store: lsLogs(1, 3, 1)}, {store: lsLogs(4, 6, 2)}}, 1, 6, lsSeq(1, 6)},
		{"starting above 1", []step{{store: lsLogs(5, 7, 1)}}, 5, 7, lsSeq(5, 7)},
		{"overwrite", []step{{store: lsLogs(1, 5, 1)}, {store: lsLogs(3, 4, 2)}}, 1, 5, lsSeq(1, 5)},
		{"gap", []step{{store: lsLogs(1, 3, 1)}, {store: lsLogs(10, 12, 2)}}, 1, 12, append(lsSeq(1, 3), lsSeq(10, 12)...)},
		{"store below first", []step{{store: lsLogs(10, 12, 1)}, {store: lsLogs(2, 3, 1)}}, 2, 12, append(lsSeq(2, 3), lsSeq(10, 12)...)},
		{"delete a prefix", []step{{store: lsLogs(1, 10, 1)}, {del: [2]uint64{1, 3}}}, 4, 10, lsSeq(4, 10)},
		{"delete a prefix from below", []step{{store: lsLogs(5, 10, 1)}, {del: [2]uint64{0, 6}, deleteNone: true}}, 7, 10, lsSeq(7, 10)},
		{"delete a suffix", []step{{store: lsLogs(1, 10, 1)}, {del: [2]uint64{8, 10}}}, 1, 7, lsSeq(1, 7)},
		{"delete the middle", []step{{store: lsLogs(1, 10, 1)}, {del: [2]uint64{4, 6}}}, 1, 10, append(lsSeq(1, 3), lsSeq(7, 10)...)},
		{"delete one", []step{{store: lsLogs(1, 3, 1)}, {del: [2]uint64{2, 2}}}, 1, 3, []uint64{1, 3}},
		{"delete everything", []step{{store: lsLogs(1, 10, 1)}, {del: [2]uint64{1, 10}}}, 0, 0, nil},
		{"delete everything and more", []step{{store: lsLogs(3, 10, 1)}, {del: [2]uint64{0, math.MaxUint64}, deleteNone: true}}, 0, 0, nil},
		{"delete across a gap", []step{{store: lsLogs(1, 3, 1)}, {store: lsLogs(10, 12, 1)}, {del: [2]uint64{1, 7}}}, 10, 12, lsSeq(10, 12)},
		{"delete up to a gap", []step{{store: lsLogs(1, 3, 1)}, {store: lsLogs(10, 12, 1)}, {del: [2]uint64{11, 12}}}, 1, 10, []uint64{1, 2, 3, 10}},
		{"delete nothing stored", []step{{store: lsLogs(1, 3, 1)}, {del: [2]uint64{20, 30}}}, 1, 3, lsSeq(1, 3)},
		{"delete an inverted range", []step{{store: lsLogs(1, 3, 1)}, {del: [2]uint64{3, 1}}}, 1, 3, lsSeq(1, 3)},
		{"delete then append", []step{{store: lsLogs(1, 10, 1)}, {del: [2]uint64{6, 10}}, {store: lsLogs(6, 8, 2)}}, 1, 8, lsSeq(1, 8)},
		{"empty batch", []step{{store: []*raft.Log{}}}, 0, 0, nil},
	}
	for _, kind := range lsKinds {
		for _, tc := range tests {
			t.Run(kind+"/"+tc.name, func(t *testing.T) {
				wal := lsOpenWAL(t, t.TempDir())
				ls := lsNewOn(t, kind, lsOpenStore(t, "", replica.Deps{}), wal, 7)
				want := map[uint64]*raft.Log{}
				for _, st := range tc.steps {
					if len(st.store) == 1 {
						if err := ls.StoreLog(st.store[0]); err != nil {
							t.Fatalf("StoreLog: got %v, want nil", err)
						}
					} else if err := ls.StoreLogs(st.store); err != nil {
						t.Fatalf("StoreLogs: got %v, want nil", err)
					}
					for _, l := range st.store {
						want[l.Index] = l
					}
					if st.del != [2]uint64{} || st.deleteNone {
						if err := ls.DeleteRange(st.del[0], st.del[1]); err != nil {
							t.Fatalf("DeleteRange(%d, %d): got %v, want nil", st.del[0], st.del[1], err)
						}
					}
				}
				lsCheckBounds(t, ls, tc.first, tc.last)
				if got := lsIndexes(t, ls, 0, 30, want); !slices.Equal(got, tc.present) {
					t.Errorf("stored indexes: got %v, want %v", got, tc.present)
				}
				// A fresh LogStore on the same store agrees.
				lsCheckBounds(t, lsNewOn(t, kind, ls.store, wal, 7), tc.first, tc.last)
			})
		}
	}
}

func TestLogStoreExtremeIndexes(t *testing.T) {
	ls := lsNew(t, lsOpenStore(t, "", replica.Deps{}), math.MaxUint32)
	logs := []*raft.Log{lsLog(0, 1), lsLog(1<<40, 1), lsLog(math.MaxUint64, math.MaxUint64)}
	if err := ls.StoreLogs(logs); err != nil {
		t.Fatalf("StoreLogs: got %v, want nil", err)
	}
	lsCheckBounds(t, ls, 0, math.MaxUint64) // index 0 is stored, but FirstIndex 0 reads as empty to raft
	for _, l := range logs {
		var got raft.Log
		if err := ls.GetLog(l.Index, &got); err != nil || !lsEqual(&got, l) {
			t.Errorf("GetLog(%d): got %+v, %v; want %+v", l.Index, got, err, *l)
		}
	}
	if err := ls.DeleteRange(1<<40, math.MaxUint64); err != nil {
		t.Fatalf("DeleteRange: got %v, want nil", err)
	}
	lsCheckBounds(t, ls, 0, 0)
}

func TestLogStoreStable(t *testing.T) {
	ls := lsNew(t, lsOpenStore(t, "", replica.Deps{}), 3)
	// What raft reads on first boot: a missing key is "not found", exactly.
	if _, err := ls.Get([]byte("LastVoteCand")); err == nil || err.Error() != "not found" {
		t.Errorf("Get of a missing key: got %v, want an error reading \"not found\"", err)
	}
	if v, err := ls.GetUint64([]byte("CurrentTerm")); v != 0 || err == nil || err.Error() != "not found" {
		t.Errorf("GetUint64 of a missing key: got %d, %v; want 0 and an error reading \"not found\"", v, err)
	}
	if has, err := raft.HasExistingState(ls, ls, raft.NewInmemSnapshotStore()); has || err != nil {
		t.Errorf("HasExistingState on an empty store: got %t, %v; want false, nil", has, err)
	}

	tests := []struct {
		name string
		key  string
		val  []byte
	}{
		{"vote candidate", "LastVoteCand", []byte("node-2")},
		{"empty value", "Empty", []byte{}},
		{"nil value", "Nil", nil},
		{"empty key", "", []byte("v")},
		{"binary key", "\x00\xff", []byte{0, 1, 2}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			if err := ls.Set([]byte(tc.key), tc.val); err != nil {
				t.Fatalf("Set: got %v, want nil", err)
			}
			got, err := ls.Get([]byte(tc.key))
			if err != nil || !bytes.Equal(got, tc.val) || got == nil {
				t.Errorf("Get: got %q (nil: %t), %v; want %q, non-nil", got, got == nil, err, tc.val)
			}
		})
	}
	for _, v := range []uint64{0, 1, 42, math.MaxUint64} {
		if err := ls.SetUint64([]byte("CurrentTerm"), v); err != nil {
			t.Fatalf("SetUint64(%d): got %v, want nil", v, err)
		}
		if got, err := ls.GetUint64([]byte("CurrentTerm")); got != v || err != nil {
			t.Errorf("GetUint64: got %d, %v; want %d, nil", got, err, v)
		}
	}
	if has, err := raft.HasExistingState(ls, ls, raft.NewInmemSnapshotStore()); !has || err != nil {
		t.Errorf("HasExistingState with a term: got %t, %v; want true, nil", has, err)
	}
	if _, err := ls.GetUint64([]byte("LastVoteCand")); !errors.Is(err, ErrCorruptLog) {
		t.Errorf("GetUint64 of a 6-byte value: got %v, want ErrCorruptLog", err)
	}
	if err := ls.Set(make([]byte, replica.MaxKeyBytes), nil); !errors.Is(err, replica.ErrInvalidEntry) {
		t.Errorf("Set of an oversized key: got %v, want replica.ErrInvalidEntry", err)
	}
}

func TestLogStoreSurvivesReopen(t *testing.T) {
	for _, kind := range lsKinds {
		t.Run(kind, func(t *testing.T) { lsSurvivesReopen(t, kind) })
	}
}

func lsSurvivesReopen(t *testing.T, kind string) {
	dir := t.TempDir()
	logs := lsLogs(1, 100, 3)
	for round := range 2 {
		cfg := replica.DefaultConfig()
		cfg.Dir = dir
		store, err := replica.Open(cfg, replica.Deps{})
		if err != nil {
			t.Fatalf("Open %d: got %v, want nil", round, err)
		}
		wal, err := raftwal.Open(filepath.Join(dir, "wal"), raftwal.Options{})
		if err != nil {
			t.Fatalf("raftwal.Open %d: got %v, want nil", round, err)
		}
		ls := lsNewOn(t, kind, store, wal, 9)
		if round == 0 {
			if err := ls.StoreLogs(logs); err != nil {
				t.Fatalf("StoreLogs: got %v, want nil", err)
			}
			if err := ls.DeleteRange(1, 10); err != nil {
				t.Fatalf("DeleteRange: got %v, want nil", err)
			}
			if err := ls.SetUint64([]byte("CurrentTerm"), 3); err != nil {
				t.Fatalf("SetUint64: got %v, want nil", err)
			}
			if err := ls.Set([]byte("LastVoteCand"), []byte("n2")); err != nil {
				t.Fatalf("Set: got %v, want nil", err)
			}
		}
		lsCheckBounds(t, ls, 11, 100)
		want := map[uint64]*raft.Log{}
		for _, l := range logs {
			want[l.Index] = l
		}
		if got := lsIndexes(t, ls, 0, 101, want); !slices.Equal(got, lsSeq(11, 100)) {
			t.Errorf("round %d: stored indexes: got %v, want 11..100", round, got)
		}
		if v, err := ls.GetUint64([]byte("CurrentTerm")); v != 3 || err != nil {
			t.Errorf("round %d: GetUint64: got %d, %v; want 3, nil", round, v, err)
		}
		if v, err := ls.Get([]byte("LastVoteCand")); string(v) != "n2" || err != nil {
			t.Errorf("round %d: Get: got %q, %v; want \"n2\", nil", round, v, err)
		}
		if err := store.Close(); err != nil {
			t.Fatalf("Close %d: got %v, want nil", round, err)
		}
		if err := wal.Close(); err != nil {
			t.Fatalf("WAL Close %d: got %v, want nil", round, err)
		}
	}
}

func TestLogStoreGroupsAreIsolated(t *testing.T) {
	store := lsOpenStore(t, "", replica.Deps{})
	groups := []uint32{0, 1, 2, 0x100, math.MaxUint32}
	stores := map[uint32]*LogStore{}
	for i, g := range groups {
		ls := lsNew(t, store, g)
		stores[g] = ls
		lo, hi := uint64(i*10+1), uint64(i*10+5)
		if err := ls.StoreLogs(lsLogs(lo, hi, uint64(g)+1)); err != nil {
			t.Fatalf("StoreLogs(group %d): got %v, want nil", g, err)
		}
		if err := ls.SetUint64([]byte("CurrentTerm"), uint64(g)); err != nil {
			t.Fatalf("SetUint64(group %d): got %v, want nil", g, err)
		}
	}
	// A delete of everything in one group leaves the others alone.
	if err := stores[1].DeleteRange(0, math.MaxUint64); err != nil {
		t.Fatalf("DeleteRange: got %v, want nil", err)
	}
	for i, g := range groups {
		t.Run(fmt.Sprint("group ", g), func(t *testing.T) {
			ls := lsNew(t, store, g) // reloads the bounds from the store
			lo, hi := uint64(i*10+1), uint64(i*10+5)
			if g == 1 {
				lo, hi = 0, 0
			}
			lsCheckBounds(t, ls, lo, hi)
			for _, l := range lsLogs(1, 60, uint64(g)+1) {
				var got raft.Log
				err := ls.GetLog(l.Index, &got)
				if inRange := l.Index >= lo && l.Index <= hi && hi > 0; inRange != (err == nil) {
					t.Errorf("GetLog(%d): got %v, want found=%t", l.Index, err, inRange)
				} else if err == nil && !lsEqual(&got, l) {
					t.Errorf("GetLog(%d): got %+v, want %+v", l.Index, got, *l)
				}
			}
			if v, err := ls.GetUint64([]byte("CurrentTerm")); v != uint64(g) || err != nil {
				t.Errorf("GetUint64: got %d, %v; want %d, nil", v, err, g)
			}
		})
	}
}

func TestLogStoreCorruption(t *testing.T) {
	store := lsOpenStore(t, "", replica.Deps{})
	ls := lsNew(t, store, 5)
	if err := ls.StoreLogs(lsLogs(1, 3, 1)); err != nil {
		t.Fatalf("StoreLogs: got %v, want nil", err)
	}
	good := appendLog(nil, lsLog(2, 1))
	flipped := bytes.Clone(good)
	flipped[len(flipped)-6] ^= 1
	for _, tc := range []struct {
		name string
		val  []byte
	}{
		{"bit flip", flipped},
		{"entry of another index", good},
		{"truncated", good[:5]},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if err := store.WriteRaw(t.Context(), []replica.KV{{Key: ls.logKey(1), Value: tc.val}}, nil); err != nil {
				t.Fatalf("WriteRaw: got %v, want nil", err)
			}
			var l raft.Log
			if err := ls.GetLog(1, &l); !errors.Is(err, ErrCorruptLog) {
				t.Errorf("GetLog: got %v, want ErrCorruptLog", err)
			}
		})
	}
	// A key of the wrong length in the log namespace.
	bad := append(ls.logKey(9), 'x')
	if err := store.WriteRaw(t.Context(), []replica.KV{{Key: bad, Value: good}}, nil); err != nil {
		t.Fatalf("WriteRaw: got %v, want nil", err)
	}
	if _, err := NewLogStore(store, 5); !errors.Is(err, ErrCorruptLog) {
		t.Errorf("NewLogStore: got %v, want ErrCorruptLog", err)
	}
	if err := store.WriteRaw(t.Context(), []replica.KV{{Key: ls.logKey(0)[:6], Value: good}}, nil); err != nil {
		t.Fatalf("WriteRaw: got %v, want nil", err)
	}
	if _, err := NewLogStore(store, 5); !errors.Is(err, ErrCorruptLog) {
		t.Errorf("NewLogStore with a short first key: got %v, want ErrCorruptLog", err)
	}
}

// lsFaultyStore fails WriteRaw with err while err is set, after applying the
// first applied sets (a partial write).
type lsFaultyStore struct {
	*replica.Store
	err      error
	applied  int
	failRead error
}

func (f *lsFaultyStore) WriteRaw(ctx context.Context, sets []replica.KV, ranges []replica.KeyRange) error {
	if f.err == nil {
		return f.Store.WriteRaw(ctx, sets, ranges)
	}
	if err := f.Store.WriteRaw(ctx, sets[:min(f.applied, len(sets))], nil); err != nil {
		return err
	}
	return f.err
}

func (f *lsFaultyStore) WriteRawAsync(ctx context.Context, sets []replica.KV, ranges []replica.KeyRange, durable func(error)) error {
	if f.err == nil {
		return f.Store.WriteRawAsync(ctx, sets, ranges, durable)
	}
	return f.WriteRaw(ctx, sets, ranges)
}

func (f *lsFaultyStore) LastRaw(prefix []byte) ([]byte, []byte, error) {
	if f.failRead != nil {
		return nil, nil, f.failRead
	}
	return f.Store.LastRaw(prefix)
}

func TestLogStoreBrokenByFailedWrite(t *testing.T) {
	errDisk := errors.New("disk on fire")
	t.Run("partial StoreLogs", func(t *testing.T) {
		fs := &lsFaultyStore{Store: lsOpenStore(t, "", replica.Deps{})}
		ls := lsNew(t, fs, 1)
		if err := ls.StoreLogs(lsLogs(1, 3, 1)); err != nil {
			t.Fatalf("StoreLogs: got %v, want nil", err)
		}
		fs.err, fs.applied = errDisk, 2
		if err := ls.StoreLogs(lsLogs(4, 8, 1)); !errors.Is(err, errDisk) {
			t.Fatalf("StoreLogs: got %v, want the injected error", err)
		}
		fs.err = nil
		for name, call := range map[string]func() error{
			"StoreLogs":   func() error { return ls.StoreLogs(lsLogs(9, 9, 1)) },
			"DeleteRange": func() error { return ls.DeleteRange(1, 1) },
			"FirstIndex":  func() error { _, err := ls.FirstIndex(); return err },
			"LastIndex":   func() error { _, err := ls.LastIndex(); return err },
		} {
			if err := call(); !errors.Is(err, ErrLogStoreBroken) || !errors.Is(err, errDisk) {
				t.Errorf("%s after the failure: got %v, want ErrLogStoreBroken and the cause", name, err)
			}
		}
		// Reads still work, and a new LogStore sees what was applied.
		var l raft.Log
		if err := ls.GetLog(5, &l); err != nil {
			t.Errorf("GetLog(5): got %v, want nil", err)
		}
		lsCheckBounds(t, lsNew(t, fs, 1), 1, 5)
	})
	t.Run("failed reload after DeleteRange", func(t *testing.T) {
		fs := &lsFaultyStore{Store: lsOpenStore(t, "", replica.Deps{})}
		ls := lsNew(t, fs, 1)
		if err := ls.StoreLogs(lsLogs(1, 3, 1)); err != nil {
			t.Fatalf("StoreLogs: got %v, want nil", err)
		}
		fs.failRead = errDisk
		if err := ls.DeleteRange(1, 1); !errors.Is(err, errDisk) {
			t.Fatalf("DeleteRange: got %v, want the injected error", err)
		}
		if _, err := ls.LastIndex(); !errors.Is(err, ErrLogStoreBroken) {
			t.Errorf("LastIndex: got %v, want ErrLogStoreBroken", err)
		}
		if _, err := NewLogStore(fs, 1); !errors.Is(err, errDisk) {
			t.Errorf("NewLogStore: got %v, want the injected error", err)
		}
	})
	t.Run("an oversized entry breaks nothing", func(t *testing.T) {
		ls := lsNew(t, lsOpenStore(t, "", replica.Deps{}), 1)
		big := &raft.Log{Index: 1, Term: 1, Data: make([]byte, 2<<20)} // above the in-memory value limit
		if err := ls.StoreLogs([]*raft.Log{big}); !errors.Is(err, replica.ErrInvalidEntry) {
			t.Fatalf("StoreLogs: got %v, want replica.ErrInvalidEntry", err)
		}
		if err := ls.StoreLogs(lsLogs(1, 2, 1)); err != nil {
			t.Errorf("StoreLogs after: got %v, want nil", err)
		}
		lsCheckBounds(t, ls, 1, 2)
	})
	t.Run("closed store", func(t *testing.T) {
		store := lsOpenStore(t, "", replica.Deps{})
		ls := lsNew(t, store, 1)
		if err := store.Close(); err != nil {
			t.Fatalf("Close: got %v, want nil", err)
		}
		if err := ls.StoreLogs(lsLogs(1, 2, 1)); !errors.Is(err, replica.ErrClosed) {
			t.Errorf("StoreLogs: got %v, want replica.ErrClosed", err)
		}
		if err := ls.DeleteRange(1, 2); !errors.Is(err, replica.ErrClosed) {
			t.Errorf("DeleteRange: got %v, want replica.ErrClosed", err)
		}
		if err := ls.Set([]byte("k"), nil); !errors.Is(err, replica.ErrClosed) {
			t.Errorf("Set: got %v, want replica.ErrClosed", err)
		}
		var l raft.Log
		if err := ls.GetLog(1, &l); !errors.Is(err, replica.ErrClosed) {
			t.Errorf("GetLog: got %v, want replica.ErrClosed", err)
		}
		if _, err := ls.Get([]byte("k")); !errors.Is(err, replica.ErrClosed) {
			t.Errorf("Get: got %v, want replica.ErrClosed", err)
		}
		if _, err := NewLogStore(store, 1); !errors.Is(err, replica.ErrClosed) {
			t.Errorf("NewLogStore: got %v, want replica.ErrClosed", err)
		}
	})
}

// TestLogStoreConcurrent appends to many groups at once, and within one
// group truncates the front (as raft's snapshot goroutine does) while the
// log grows and readers read it.
func TestLogStoreConcurrent(t *testing.T) {
	store := lsOpenStore(t, t.TempDir(), replica.Deps{})
	const groups, perGroup = 8, 200
	var wg sync.WaitGroup
	for g := range uint32(groups) {
		ls := lsNew(t, store, g)
		var appended atomic.Uint64
		wg.Go(func() {
			for i := uint64(1); i <= perGroup; i += 4 {
				if err := ls.StoreLogs(lsLogs(i, i+3, 1)); err != nil {
					t.Errorf("StoreLogs: got %v, want nil", err)
					return
				}
				appended.Store(i + 3)
			}
		})
		wg.Go(func() { // compaction: keep the last 20 entries
			for appended.Load() < perGroup {
				if a := appended.Load(); a > 20 {
					if err := ls.DeleteRange(0, a-20); err != nil {
						t.Errorf("DeleteRange: got %v, want nil", err)
						return
					}
				}
			}
		})
		wg.Go(func() {
			for appended.Load() < perGroup {
				last, err := ls.LastIndex()
				if err != nil {
					t.Errorf("LastIndex: got %v, want nil", err)
					return
				}
				var l raft.Log
				if err := ls.GetLog(last, &l); last > 0 && err != nil {
					t.Errorf("GetLog(LastIndex %d): got %v, want nil", last, err)
					return
				}
			}
		})
	}
	wg.Wait()
	for g := range uint32(groups) {
		ls := lsNew(t, store, g)
		if last, err := ls.LastIndex(); last != perGroup || err != nil {
			t.Errorf("group %d: LastIndex: got %d, %v; want %d, nil", g, last, err, perGroup)
		}
	}
}

func TestLogCodec(t *testing.T) {
	tests := []struct {
		name string
		l    raft.Log
	}{
		{"zero", raft.Log{}},
		{"command", *lsLog(12, 3)},
		{"configuration without time", raft.Log{Index: 1, Term: 1, Type: raft.LogConfiguration, Data: []byte("cfg")}},
		{"extensions only", raft.Log{Index: 2, Term: 1, Type: raft.LogNoop, Extensions: []byte{1, 2}}},
		{"maximal numbers", raft.Log{Index: math.MaxUint64, Term: math.MaxUint64, Type: 255, AppendedAt: time.Unix(0, math.MaxInt64)}},
		{"before 1970", raft.Log{Index: 1, AppendedAt: time.Unix(-5, 7)}},
		{"at the epoch", raft.Log{Index: 1, AppendedAt: time.Unix(0, 0)}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			enc := appendLog([]byte("prefix"), &tc.l)[len("prefix"):]
			if n := encodedLogLen(&tc.l); len(enc) > n {
				t.Errorf("encoding of %d bytes exceeds encodedLogLen %d", len(enc), n)
			}
			var got raft.Log
			if err := decodeLog(enc, &got); err != nil {
				t.Fatalf("decodeLog: got %v, want nil", err)
			}
			if !lsEqual(&got, &tc.l) || got.AppendedAt.IsZero() != tc.l.AppendedAt.IsZero() {
				t.Errorf("round trip: got %+v, want %+v", got, tc.l)
			}
			// Every truncation and every single-bit flip is rejected.
			for n := range enc {
				if err := decodeLog(enc[:n], &got); !errors.Is(err, ErrCorruptLog) {
					t.Fatalf("decodeLog of %d of %d bytes: got %v, want ErrCorruptLog", n, len(enc), err)
				}
			}
			for bit := range 8 * len(enc) {
				b := bytes.Clone(enc)
				b[bit/8] ^= 1 << (bit % 8)
				if err := decodeLog(b, &got); !errors.Is(err, ErrCorruptLog) {
					t.Fatalf("decodeLog with bit %d flipped: got %v, want ErrCorruptLog", bit, err)
				}
			}
		})
	}
}

// lsSeal appends a valid checksum to body, so that tests and the fuzzer
// reach the field checks behind it.
func lsSeal(body []byte) []byte {
	return binary.BigEndian.AppendUint32(bytes.Clone(body), crc.Sum(body))
}

func TestDecodeLogRejects(t *testing.T) {
	tests := []struct {
		name string
		body []byte // sealed with a valid checksum
	}{
		{"version 2", []byte{2, 0, 0, 1, 1, 0, 0}},
		{"unknown flag", []byte{1, 0, 2, 1, 1, 0, 0}},
		{"bad uvarint", []byte{1, 0, 0, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff}},
		{"missing term", []byte{1, 0, 0, 1}},
		{"missing time", []byte{1, 0, 1, 1, 1}},
		{"data longer than the entry", []byte{1, 0, 0, 1, 1, 5, 'a', 0}},
		{"missing extensions", []byte{1, 0, 0, 1, 1, 1, 'a'}},
		{"trailing bytes", []byte{1, 0, 0, 1, 1, 0, 0, 9}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			var l raft.Log
			if err := decodeLog(lsSeal(tc.body), &l); !errors.Is(err, ErrCorruptLog) {
				t.Errorf("decodeLog: got %v (%+v), want ErrCorruptLog", err, l)
			}
		})
	}
	var l raft.Log
	if err := decodeLog(lsSeal([]byte{1, 0, 0, 1, 1, 0, 0}), &l); err != nil {
		t.Errorf("decodeLog of the smallest valid body: got %v, want nil", err)
	}
}

func FuzzDecodeLog(f *testing.F) {
	f.Add(appendLog(nil, lsLog(1, 1)))
	f.Add(appendLog(nil, &raft.Log{}))
	f.Add(appendLog(nil, &raft.Log{Index: math.MaxUint64, Type: raft.LogConfiguration, Data: bytes.Repeat([]byte("x"), 300)}))
	f.Add([]byte{1, 0, 0, 1, 1, 0, 0})
	f.Fuzz(func(t *testing.T, b []byte) {
		for _, in := range [][]byte{b, lsSeal(b)} { // sealed: past the checksum
			var l raft.Log
			if err := decodeLog(in, &l); err != nil {
				if !errors.Is(err, ErrCorruptLog) {
					t.Fatalf("decodeLog: got %v, want nil or ErrCorruptLog", err)
				}
				continue
			}
			// What decodes re-encodes to something that decodes the same.
			var again raft.Log
			if err := decodeLog(appendLog(nil, &l), &again); err != nil || !lsEqual(&again, &l) {
				t.Fatalf("re-decode: got %+v, %v; want %+v", again, err, l)
			}
		}
	})
}

// lsFSM records which command ids it applied; commands are idempotent so
// that a retried Apply is harmless.
type lsFSM struct {
	mu  sync.Mutex
	ids map[uint64]bool
}

func lsNewFSM() *lsFSM { return &lsFSM{ids: map[uint64]bool{}} }

func (f *lsFSM) Apply(l *raft.Log) any {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.ids[binary.BigEndian.Uint64(l.Data)] = true
	return nil
}

func (f *lsFSM) count() int {
	f.mu.Lock()
	defer f.mu.Unlock()
	return len(f.ids)
}

func (f *lsFSM) Snapshot() (raft.FSMSnapshot, error) {
	return nil, errors.New("lsFSM: snapshots are not used in this test")
}

func (f *lsFSM) Restore(rc io.ReadCloser) error {
	return errors.Join(errors.New("lsFSM: snapshots are not used in this test"), rc.Close())
}

// lsPoll polls cond every millisecond until it returns nil, failing the
// test with cond's last error after d.
func lsPoll(t *testing.T, d time.Duration, what string, cond func() error) {
	t.Helper()
	deadline := time.Now().Add(d)
	tick := time.NewTicker(time.Millisecond)
	defer tick.Stop()
	for {
		err := cond()
		if err == nil {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("timed out after %v waiting for %s: %v", d, what, err)
		}
		<-tick.C
	}
}

// lsLogWriter writes hclog lines to t.Log.
type lsLogWriter struct{ t testing.TB }

func (w lsLogWriter) Write(p []byte) (int, error) {
	w.t.Log(strings.TrimRight(string(p), "\n"))
	return len(p), nil
}

// lsRaftNode is one member of the test cluster: its own on-disk replica store
// holding the group's log.
type lsRaftNode struct {
	id    string
	dir   string
	wal   *raftwal.WAL
	store *replica.Store
	logs  *LogStore
	snaps *raft.InmemSnapshotStore
	fsm   *lsFSM
	trans *raft.InmemTransport
	raft  *raft.Raft
}

// TestLogStoreUnderRaft runs a real three-node hashicorp/raft group on
// LogStore: it elects a leader, applies 1000 commands on every member, and
// after every member restarts on its reopened store it recovers the same log
// and replays it.
func TestLogStoreUnderRaft(t *testing.T) {
	for _, kind := range lsKinds {
		t.Run(kind, func(t *testing.T) { lsUnderRaft(t, kind) })
	}
}

func lsUnderRaft(t *testing.T, kind string) {
	const group, commands = 11, 1000
	nodes := make([]*lsRaftNode, 3)
	var servers []raft.Server
	for i := range nodes {
		id := fmt.Sprint("node-", i)
		nodes[i] = &lsRaftNode{id: id, dir: t.TempDir(), snaps: raft.NewInmemSnapshotStore()}
		servers = append(servers, raft.Server{ID: raft.ServerID(id), Address: raft.ServerAddress(id)})
	}
	open := func() {
		t.Helper()
		for _, n := range nodes {
			cfg := replica.DefaultConfig()
			cfg.Dir = n.dir
			store, err := replica.Open(cfg, replica.Deps{})
			if err != nil {
				t.Fatalf("replica.Open: got %v, want nil", err)
			}
			if n.wal, err = raftwal.Open(filepath.Join(n.dir, "wal"), raftwal.Options{}); err != nil {
				t.Fatalf("raftwal.Open: got %v, want nil", err)
			}
			n.store, n.logs, n.fsm = store, lsNewOn(t, kind, store, n.wal, group), lsNewFSM()
			_, n.trans = raft.NewInmemTransport(raft.ServerAddress(n.id))
		}
	}
	start := func(bootstrap bool) {
		t.Helper()
		for _, a := range nodes {
			for _, b := range nodes {
				if a != b {
					a.trans.Connect(raft.ServerAddress(b.id), b.trans)
				}
			}
		}
		for _, n := range nodes {
			conf := raft.DefaultConfig()
			conf.LocalID = raft.ServerID(n.id)
			conf.HeartbeatTimeout = 100 * time.Millisecond
			conf.ElectionTimeout = 100 * time.Millisecond
			conf.LeaderLeaseTimeout = 100 * time.Millisecond
			conf.CommitTimeout = 5 * time.Millisecond
			conf.SnapshotThreshold = 1 << 30
			conf.Logger = hclog.New(&hclog.LoggerOptions{Name: n.id, Level: hclog.Warn, Output: lsLogWriter{t}})
			if bootstrap {
				err := raft.BootstrapCluster(conf, n.logs, n.logs, n.snaps, n.trans, raft.Configuration{Servers: servers})
				if err != nil {
					t.Fatalf("BootstrapCluster: got %v, want nil", err)
				}
			}
			r, err := raft.NewRaft(conf, n.fsm, n.logs, n.logs, n.snaps, n.trans)
			if err != nil {
				t.Fatalf("NewRaft: got %v, want nil", err)
			}
			n.raft = r
		}
	}
	stop := func() {
		t.Helper()
		for _, n := range nodes {
			if n.raft != nil {
				if err := n.raft.Shutdown().Error(); err != nil {
					t.Errorf("Shutdown: got %v, want nil", err)
				}
				n.raft = nil
			}
			if n.store != nil {
				if err := n.store.Close(); err != nil {
					t.Errorf("Close: got %v, want nil", err)
				}
				n.store = nil
			}
			if n.wal != nil {
				if err := n.wal.Close(); err != nil {
					t.Errorf("WAL Close: got %v, want nil", err)
				}
				n.wal = nil
			}
		}
	}
	defer stop() // raft must be silent (its logger writes to t.Log) before the test returns
	leader := func() *raft.Raft {
		t.Helper()
		var l *raft.Raft
		lsPoll(t, 10*time.Second, "a leader", func() error {
			for _, n := range nodes {
				if n.raft.State() == raft.Leader {
					l = n.raft
					return nil
				}
			}
			return errors.New("no leader")
		})
		return l
	}
	apply := func(id uint64) {
		t.Helper()
		cmd := binary.BigEndian.AppendUint64(nil, id)
		lsPoll(t, 10*time.Second, fmt.Sprint("command ", id, " to commit"), func() error {
			return leader().Apply(cmd, 5*time.Second).Error()
		})
	}
	allApplied := func(want int) {
		t.Helper()
		for _, n := range nodes {
			lsPoll(t, 20*time.Second, n.id+" to apply every command", func() error {
				if got := n.fsm.count(); got != want {
					return fmt.Errorf("applied %d, want %d", got, want)
				}
				return nil
			})
		}
	}

	open()
	start(true)
	// Pipeline the commands: raft batches them into shared StoreLogs calls.
	l := leader()
	futures := make([]raft.ApplyFuture, commands)
	for i := range futures {
		futures[i] = l.Apply(binary.BigEndian.AppendUint64(nil, uint64(i)), 10*time.Second)
	}
	for i, f := range futures {
		if err := f.Error(); err != nil {
			apply(uint64(i)) // leadership changed: retry (commands are idempotent)
		}
	}
	allApplied(commands)

	// Every member stored the whole log in its LogStore.
	lastIndexes := map[string]uint64{}
	terms := map[string][]uint64{}
	for _, n := range nodes {
		lsPoll(t, 10*time.Second, n.id+" to store the log", func() error {
			last, err := n.logs.LastIndex()
			if err != nil || last < commands {
				return fmt.Errorf("LastIndex %d: %w", last, err)
			}
			return nil
		})
	}
	stop()
	for _, n := range nodes {
		last, _ := n.logs.LastIndex() // the store is closed; the cached bound is what raft saw
		lastIndexes[n.id] = last
	}

	// Reopen every member's store: the log is recovered. Then restart raft
	// on it: it replays the log into a fresh FSM once a leader commits in
	// its term.
	open()
	for _, n := range nodes {
		lsCheckBounds(t, n.logs, 1, lastIndexes[n.id])
		for i := uint64(1); i <= lastIndexes[n.id]; i++ {
			var l raft.Log
			if err := n.logs.GetLog(i, &l); err != nil {
				t.Fatalf("%s: GetLog(%d) after restart: got %v, want nil", n.id, i, err)
			}
			terms[n.id] = append(terms[n.id], l.Term)
		}
	}
	// Some two members hold the same log (any two: an election just
	// before the stop may have left the old leader alone without the new
	// term's first entry, as once in CI).
	if !slices.Equal(terms[nodes[0].id], terms[nodes[1].id]) && !slices.Equal(terms[nodes[0].id], terms[nodes[2].id]) &&
		!slices.Equal(terms[nodes[1].id], terms[nodes[2].id]) {
		t.Errorf("no two members hold the same log after restart: terms %v", terms)
	}
	if term, err := nodes[0].logs.GetUint64([]byte("CurrentTerm")); term == 0 || err != nil {
		t.Errorf("CurrentTerm after restart: got %d, %v; want > 0, nil", term, err)
	}
	start(false)
	allApplied(commands)
	apply(commands)
	allApplied(commands + 1)
}

func BenchmarkStoreLogs(b *testing.B) {
	for _, batch := range []int{1, 16} {
		b.Run(fmt.Sprint("entries=", batch), func(b *testing.B) {
			reg := prometheus.NewRegistry()
			store := lsOpenStore(b, b.TempDir(), replica.Deps{Registerer: reg})
			var groups atomic.Uint32
			data := bytes.Repeat([]byte("d"), 128)
			b.ReportAllocs()
			b.SetParallelism(16) // 16 x GOMAXPROCS groups appending at once
			b.RunParallel(func(pb *testing.PB) {
				ls, err := NewLogStore(store, groups.Add(1))
				if err != nil {
					b.Error(err)
					return
				}
				logs := make([]*raft.Log, batch)
				next := uint64(1)
				for pb.Next() {
					for i := range logs {
						logs[i] = &raft.Log{Index: next, Term: 1, Type: raft.LogCommand, Data: data, AppendedAt: lsAppendedAt}
						next++
					}
					if err := ls.StoreLogs(logs); err != nil {
						b.Error(err)
						return
					}
				}
			})
			b.StopTimer()
			b.ReportMetric(float64(b.N*batch)/b.Elapsed().Seconds(), "entries/s")
			if txns := lsCommitCount(b, reg); txns > 0 {
				b.ReportMetric(float64(b.N*batch)/float64(txns), "entries/txn")
			}
		})
	}
}

// lsCommitCount returns how many Badger transactions the store committed,
// from its commit_batch_entries histogram.
func lsCommitCount(b *testing.B, reg *prometheus.Registry) uint64 {
	mfs, err := reg.Gather()
	if err != nil {
		b.Fatal(err)
	}
	for _, mf := range mfs {
		if mf.GetName() == "ringkv_replica_commit_batch_entries" {
			return mf.GetMetric()[0].GetHistogram().GetSampleCount()
		}
	}
	return 0
}
