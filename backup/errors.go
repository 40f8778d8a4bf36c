package backup

import (
	"errors"
	"fmt"
)

var (
	// ErrCorrupt marks a backup file or manifest that fails a check: a
	// frame checksum, a record encoding, a record count, a size or a
	// SHA-256 that differs from the manifest's. The concrete error is
	// usually a *FileError naming the file.
	ErrCorrupt = errors.New("backup: corrupt")
	// ErrNoManifest is returned when a backup directory has no
	// manifest.json: it is not a backup, or the backup did not finish.
	ErrNoManifest = errors.New("backup: no manifest (not a backup directory, or the backup did not finish)")
	// ErrExists is returned by Run when the target directory already holds
	// a backup.
	ErrExists = errors.New("backup: directory already holds a backup")
	// ErrTooFewReplicas is returned by Run when fewer than a majority of a
	// partition's replicas could be read.
	ErrTooFewReplicas = errors.New("backup: too few replicas of a partition could be read")
)

// FileError reports a problem with one file of a backup. It unwraps to
// the cause (often ErrCorrupt).
type FileError struct {
	// Path is the file's path.
	Path string
	Err  error
}

func (e *FileError) Error() string { return fmt.Sprintf("%s: %v", e.Path, e.Err) }

// Unwrap returns the cause.
func (e *FileError) Unwrap() error { return e.Err }
