package consensus

import (
	"errors"
	"fmt"
	"sync/atomic"
	"testing"
	"time"

	"github.com/ringkv/ringkv/replica"
)

// A write the store refuses because its disk is full applied nothing: the
// LogStore stays usable, and raft's retry succeeds once there is room.
func TestLogStoreDiskFullBreaksNothing(t *testing.T) {
	fs := &lsFaultyStore{Store: lsOpenStore(t, "", replica.Deps{})}
	ls := lsNew(t, fs, 1)
	if err := ls.StoreLogs(lsLogs(1, 3, 1)); err != nil {
		t.Fatalf("StoreLogs: got %v, want nil", err)
	}
	fs.err = fmt.Errorf("%w: free space below the reserve", replica.ErrDiskFull)
	if err := ls.StoreLogs(lsLogs(4, 6, 1)); !errors.Is(err, replica.ErrDiskFull) || errors.Is(err, ErrLogStoreBroken) {
		t.Fatalf("StoreLogs on a full disk: got %v, want replica.ErrDiskFull, not broken", err)
	}
	lsCheckBounds(t, ls, 1, 3)
	fs.err = nil
	if err := ls.StoreLogs(lsLogs(4, 6, 1)); err != nil {
		t.Fatalf("StoreLogs once there is room: got %v, want nil", err)
	}
	lsCheckBounds(t, ls, 1, 6)
}

// stallingStore reports a fsync stall of its choosing.
type stallingStore struct {
	*replica.Store
	stall atomic.Int64
}

func (s *stallingStore) SyncStall() time.Duration { return time.Duration(s.stall.Load()) }

// While the store's fsync stalls past the limit, StoreLogs refuses appends
// (a leader steps down on it), storing nothing and breaking nothing.
func TestLogStoreRefusesAppendsWhileSyncStalls(t *testing.T) {
	st := &stallingStore{Store: lsOpenStore(t, "", replica.Deps{})}
	ls := lsNew(t, st, 1)
	if err := ls.StoreLogs(lsLogs(1, 2, 1)); err != nil {
		t.Fatalf("StoreLogs: got %v, want nil", err)
	}
	st.stall.Store(int64(3 * time.Second))
	if err := ls.StoreLogs(lsLogs(3, 3, 1)); err != nil {
		t.Fatalf("StoreLogs with no limit set: got %v, want nil", err)
	}
	ls.SetSyncStallLimit(time.Second)
	if err := ls.StoreLogs(lsLogs(4, 4, 1)); !errors.Is(err, ErrSyncStalled) {
		t.Fatalf("StoreLogs while the fsync stalls: got %v, want ErrSyncStalled", err)
	}
	lsCheckBounds(t, ls, 1, 3)
	if err := ls.Set([]byte("term"), []byte("7")); err != nil {
		t.Fatalf("Set while the fsync stalls: got %v, want nil (raft must save its term)", err)
	}
	st.stall.Store(int64(500 * time.Millisecond))
	if err := ls.StoreLogs(lsLogs(4, 4, 1)); err != nil {
		t.Fatalf("StoreLogs once the stall is under the limit: got %v, want nil", err)
	}
	lsCheckBounds(t, ls, 1, 4)
}

// fullStore reports a full disk at will.
type fullStore struct {
	*replica.Store
	full atomic.Bool
}

func (s *fullStore) DiskState() replica.DiskState {
	if s.full.Load() {
		return replica.DiskState{Full: true, Reason: "free space below the reserve"}
	}
	return s.Store.DiskState()
}

// A LogStore on a WAL refuses appends while the store's disk is full, as
// the store refuses its own log writes: nothing stored, nothing broken.
func TestWALLogStoreDiskFull(t *testing.T) {
	fs := &fullStore{Store: lsOpenStore(t, "", replica.Deps{})}
	ls := lsNewOn(t, "wal", fs, lsOpenWAL(t, t.TempDir()), 1)
	if err := ls.StoreLogs(lsLogs(1, 3, 1)); err != nil {
		t.Fatalf("StoreLogs: got %v, want nil", err)
	}
	fs.full.Store(true)
	if err := ls.StoreLogs(lsLogs(4, 6, 1)); !errors.Is(err, replica.ErrDiskFull) || errors.Is(err, ErrLogStoreBroken) {
		t.Fatalf("StoreLogs on a full disk: got %v, want replica.ErrDiskFull, not broken", err)
	}
	lsCheckBounds(t, ls, 1, 3)
	fs.full.Store(false)
	if err := ls.StoreLogs(lsLogs(4, 6, 1)); err != nil {
		t.Fatalf("StoreLogs once there is room: got %v, want nil", err)
	}
	lsCheckBounds(t, ls, 1, 6)
	if err := ls.WaitDurable(t.Context(), 6); err != nil {
		t.Fatalf("WaitDurable: got %v, want nil", err)
	}
}
