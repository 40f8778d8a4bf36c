package replica

import (
	"errors"
	"fmt"
)

var (
	// ErrNotFound is returned by Store.Get when the key has no record, by
	// Store.GetRaw when the raw key is absent and by Store.LastRaw when no
	// raw key has the prefix.
	ErrNotFound = errors.New("replica: not found")
	// ErrCorrupt marks every kind of corruption: returned (wrapped) by
	// DecodeRecord for a malformed encoding and by Store.Get, as a
	// *CorruptError, when a stored record fails its checksum.
	ErrCorrupt = errors.New("replica: corrupt record")
	// ErrClosed is returned by Store methods called after (or racing with) Close.
	ErrClosed = errors.New("replica: store closed")
	// ErrClockOffset is returned (wrapped) by Clock.Update when the remote
	// timestamp is further ahead of the local wall clock than the allowed offset.
	ErrClockOffset = errors.New("replica: remote clock too far ahead")
	// ErrInvalidEntry is returned (wrapped) by Store.Merge for an entry the
	// store cannot hold, such as a key longer than MaxKeyBytes, and by
	// Store.WriteRaw for such a raw write or for a raw key or range in the
	// record namespace; nothing of that call is applied. GetRaw, ScanRaw and
	// LastRaw return it for a key or prefix in the record namespace.
	ErrInvalidEntry = errors.New("replica: invalid entry")
	// ErrDiskFull is returned (wrapped, with the reason) by Merge,
	// MergeAsync and raw writes to the Raft log or hints while the data
	// directory's free space is below Config.MinFreeBytes, or after a
	// write to it failed until a probe write succeeds (space.go); nothing
	// of that call was applied. Also joined to a commit error caused by a
	// full file system (ENOSPC).
	ErrDiskFull = errors.New("replica: insufficient storage")
	// ErrUnknownPartition is returned (wrapped) by reads and scans of a
	// partition id that names no partition of the cluster's base
	// (SetBasePartitions); merges refuse such an entry with
	// ErrInvalidEntry.
	ErrUnknownPartition = errors.New("replica: unknown partition")
)

// CorruptError reports a stored record that failed verification. It matches
// ErrCorrupt with errors.Is. Key is the user key (without the on-disk
// prefix); the error owns it.
type CorruptError struct {
	Partition uint32
	Key       []byte

	cause error // the decode error (wraps ErrCorrupt); nil = unspecified
}

// Error implements error. It never prints the key itself, only its length.
func (e *CorruptError) Error() string {
	if e.cause == nil {
		return fmt.Sprintf("replica: corrupt record in partition %d (key of %d bytes)", e.Partition, len(e.Key))
	}
	return fmt.Sprintf("replica: corrupt record in partition %d (key of %d bytes): %v", e.Partition, len(e.Key), e.cause)
}

// Unwrap returns the underlying decode error, or ErrCorrupt if there is none,
// so that errors.Is(err, ErrCorrupt) holds either way.
func (e *CorruptError) Unwrap() error {
	if e.cause == nil {
		return ErrCorrupt
	}
	return e.cause
}

// Is reports whether target is ErrCorrupt.
func (e *CorruptError) Is(target error) bool { return target == ErrCorrupt }
