package consensus

import (
	"errors"
	"fmt"
	"testing"

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
