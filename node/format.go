package node

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
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
const (
	// DiskFormat is the format this build writes.
	DiskFormat = 1
	// formatFile is the file in the data directory that holds it.
	formatFile = "FORMAT"
)

// DiskFormatsRead returns the formats this build opens, oldest first.
func DiskFormatsRead() []int { return []int{1} }

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

// checkDiskFormat reads dir's FORMAT file and returns a *FormatError when
// this build does not read that format; when the file is missing it
// writes format 1 (what every older release wrote, and what a new
// directory gets from this build) durably.
func checkDiskFormat(dir string) error {
	path := filepath.Join(dir, formatFile)
	b, err := os.ReadFile(path)
	switch {
	case errors.Is(err, os.ErrNotExist):
		return writeDiskFormat(dir, DiskFormat)
	case err != nil:
		return fmt.Errorf("node: read data format: %w", err)
	}
	found := strings.TrimSpace(string(b))
	v, err := strconv.Atoi(found)
	if err != nil || !slices.Contains(DiskFormatsRead(), v) {
		return &FormatError{Dir: dir, Found: strconv.Quote(found), Reads: DiskFormatsRead()}
	}
	return nil
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
