package node

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/ringkv/ringkv/consensus"
	"github.com/ringkv/ringkv/internal/raftwal"
)

// The data directory's on-disk format (the replica store's key layout,
// raft logs and snapshots, ring.state, hints) is versioned as a whole by
// one integer kept in DataDir/FORMAT. A directory without the file was
// written by a release older than it, all of which wrote format 1. Open
// refuses a directory whose format this build does not read, before it
// touches anything else, and writes the file when it is missing. A
// release that changes the format raises DiskFormat, keeps reading the
// formats it can convert (DiskFormatsRead) and rewrites FORMAT only once
// it has converted the directory, so that a rollback binary refuses a
// directory it cannot read instead of misreading it (docs/OPERATIONS.md,
// "Upgrades").
//
// Format 2 keeps the Raft logs in the write-ahead log DataDir/raftwal
// (internal/raftwal) instead of the replica store's 'l' keys; a format-1
// directory is converted on open (openWAL) by moving them there.
const (
	// DiskFormat is the format this build writes.
	DiskFormat = 2
	// formatFile is the file in the data directory that holds it.
	formatFile = "FORMAT"
)

// DiskFormatsRead returns the formats this build opens, oldest first.
func DiskFormatsRead() []int { return []int{1, 2} }

// ErrDiskFormat marks a data directory whose format this build cannot
// read; the concrete error is a *FormatError.
var ErrDiskFormat = errors.New("node: unsupported data directory format")

// FormatError says which format a data directory has and which this build
// reads.
type FormatError struct {
	Dir   string
	Found string // as written in FORMAT
	Reads []int
}

func (e *FormatError) Error() string {
	reads := make([]string, len(e.Reads))
	for i, v := range e.Reads {
		reads[i] = strconv.Itoa(v)
	}
	return fmt.Sprintf("%v: data directory %s has on-disk format %s, this binary reads format %s: run a ringkv release that reads it (see 'ringkv version' and docs/OPERATIONS.md, Upgrades)",
		ErrDiskFormat, e.Dir, e.Found, strings.Join(reads, ", "))
}

// Is reports whether target is ErrDiskFormat.
func (e *FormatError) Is(target error) bool { return target == ErrDiskFormat }

// checkDiskFormat reads dir's FORMAT file and returns its format, or a
// *FormatError when this build does not read that format; when the file
// is missing it writes format 1 (what every older release wrote; a new
// directory is then converted like any format-1 one, which finds nothing
// to move) durably.
func checkDiskFormat(dir string) (int, error) {
	path := filepath.Join(dir, formatFile)
	b, err := os.ReadFile(path)
	switch {
	case errors.Is(err, os.ErrNotExist):
		return 1, writeDiskFormat(dir, 1)
	case err != nil:
		return 0, fmt.Errorf("node: read data format: %w", err)
	}
	found := strings.TrimSpace(string(b))
	v, err := strconv.Atoi(found)
	if err != nil || !slices.Contains(DiskFormatsRead(), v) {
		return 0, &FormatError{Dir: dir, Found: strconv.Quote(found), Reads: DiskFormatsRead()}
	}
	return v, nil
}

// walOptions are the Raft WAL's: the store's fsync linger (one setting
// for both syncers), and the chaos fsync fault (disk.go) where the store
// has it too.
func (n *Node) walOptions(reg prometheus.Registerer) raftwal.Options {
	o := raftwal.Options{Registerer: reg, SyncLinger: n.cfg.Replica.SyncLinger}
	if n.cfg.ChaosHooks {
		o.SyncFault = n.syncFault
	}
	return o
}

// openWAL opens the Raft logs' write-ahead log and, in a directory of
// format 1, moves the logs kept in the store into it, then writes format
// 2. A crash before FORMAT says 2 converts again at the next open
// (consensus.MigrateLogs may run twice).
func (n *Node) openWAL(format int, reg prometheus.Registerer) error {
	var err error
	if n.wal, err = raftwal.Open(filepath.Join(n.cfg.DataDir, "raftwal"), n.walOptions(reg)); err != nil {
		return fmt.Errorf("node: open raft WAL: %w", err)
	}
	if format >= 2 {
		return nil
	}
	groups, entries, err := consensus.MigrateLogs(n.store, n.wal)
	if err != nil {
		return fmt.Errorf("node: convert data format 1 to 2: %w", err)
	}
	if entries > 0 {
		n.log.Info("data format 1 converted to 2: raft logs moved into the WAL", "groups", groups, "entries", entries)
	}
	return writeDiskFormat(n.cfg.DataDir, 2)
}

// writeDiskFormat writes FORMAT through a temporary file, fsyncing the
// file and the directory.
func writeDiskFormat(dir string, v int) error {
	tmp := filepath.Join(dir, formatFile+".tmp")
	f, err := os.Create(tmp) //nolint:gosec // the operator's data directory
	if err != nil {
		return fmt.Errorf("node: write data format: %w", err)
	}
	_, err = fmt.Fprintf(f, "%d\n", v)
	if err == nil {
		err = f.Sync()
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err == nil {
		err = os.Rename(tmp, filepath.Join(dir, formatFile))
	}
	if err == nil {
		err = syncDir(dir)
	}
	if err != nil {
		return fmt.Errorf("node: write data format: %w", err)
	}
	return nil
}

func syncDir(dir string) error {
	d, err := os.Open(dir) //nolint:gosec // the operator's data directory
	if err != nil {
		return fmt.Errorf("open dir: %w", err)
	}
	err = d.Sync()
	if cerr := d.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return fmt.Errorf("sync dir: %w", err)
	}
	return nil
}
