package consensus

import (
	"maps"
	"slices"
	"testing"

	"github.com/hashicorp/raft"

	"github.com/ringkv/ringkv/replica"
)

// TestMigrateLogs: logs kept in the store move into the WAL whole (the
// same entries, bounds and gaps per group), leave the store, and a
// second run finds nothing to move.
func TestMigrateLogs(t *testing.T) {
	store := lsOpenStore(t, "", replica.Deps{})
	want := map[uint32]map[uint64]*raft.Log{}
	stored := func(g uint32, logs []*raft.Log) {
		ls := lsNew(t, store, g)
		if err := ls.StoreLogs(logs); err != nil {
			t.Fatal(err)
		}
		if want[g] == nil {
			want[g] = map[uint64]*raft.Log{}
		}
		for _, l := range logs {
			want[g][l.Index] = l
		}
	}
	stored(1, lsLogs(1, 3000, 2)) // more than one batch
	stored(2, lsLogs(5, 9, 1))
	stored(2, lsLogs(20, 21, 3)) // a gap
	stored(70000, lsLogs(1, 1, 1))
	if err := lsNew(t, store, 3).SetUint64([]byte("CurrentTerm"), 4); err != nil {
		t.Fatal(err)
	}

	wal := lsOpenWAL(t, t.TempDir())
	groups, entries, err := MigrateLogs(store, wal)
	if err != nil || groups != 3 || entries != 3008 {
		t.Fatalf("MigrateLogs: %d groups, %d entries, %v; want 3, 3008, nil", groups, entries, err)
	}
	for g, logs := range want {
		idx := slices.Sorted(maps.Keys(logs))
		ls := lsNewOn(t, "wal", store, wal, g)
		lsCheckBounds(t, ls, idx[0], idx[len(idx)-1])
		if got := lsIndexes(t, ls, idx[0], idx[len(idx)-1], logs); !slices.Equal(got, idx) {
			t.Errorf("group %d: indexes %v, want %v", g, got, idx)
		}
		lsCheckBounds(t, lsNew(t, store, g), 0, 0) // gone from the store
	}
	if v, err := lsNew(t, store, 3).GetUint64([]byte("CurrentTerm")); v != 4 || err != nil {
		t.Errorf("stable store after the move: %d %v, want 4", v, err)
	}
	if groups, entries, err := MigrateLogs(store, wal); groups != 0 || entries != 0 || err != nil {
		t.Fatalf("second MigrateLogs: %d %d %v, want nothing", groups, entries, err)
	}
}
