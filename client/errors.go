package client

import (
	"context"
	"errors"
	"fmt"
)

var (
	// ErrNotFound is returned by Get when the key does not exist.
	ErrNotFound = errors.New("client: not found")
	// ErrCASMismatch is returned by CompareAndSet and PutIfAbsent when the
	// key's current value did not match; the concrete error is a
	// *MismatchError.
	ErrCASMismatch = errors.New("client: compare-and-set mismatch")
	// ErrUnavailable is returned when too few replicas, or no partition
	// leader, could be reached in time, or no node could be reached at all.
	ErrUnavailable = errors.New("client: unavailable")
	// ErrTimeout is returned when the call's deadline passed. Errors
	// matching it also match context.DeadlineExceeded.
	ErrTimeout = errors.New("client: timeout")
	// ErrOutcomeUnknown is returned when a write may or may not have been
	// applied: it was sent and then its connection failed, its deadline
	// passed, or the node could not tell. It is never retried.
	ErrOutcomeUnknown = errors.New("client: outcome unknown")
	// ErrInvalidArgument is returned for a malformed request: an empty or
	// oversized key, an oversized value, an unknown consistency level.
	ErrInvalidArgument = errors.New("client: invalid argument")
	// ErrCorrupt is returned when every replica that answered a read held a
	// record that failed its checksum.
	ErrCorrupt = errors.New("client: data corrupt on every answering replica")
	// ErrUnauthenticated is returned when the cluster does not know the
	// caller: no credentials while its authentication is enabled, a client
	// certificate of an unknown user, a wrong user or password
	// (WithCredentials), or a token refused again right after it was
	// renewed. Nothing was applied. It is not retried.
	ErrUnauthenticated = errors.New("client: unauthenticated")
	// ErrPermissionDenied is returned when the caller lacks the permission
	// the call needs (the message names it). Nothing was applied. It is
	// never retried.
	ErrPermissionDenied = errors.New("client: permission denied")
	// ErrNotImplemented is returned for a request the cluster does not run
	// yet: a transaction over keys of several partitions, or one sent to a
	// node of a release without transactions. Nothing was applied.
	ErrNotImplemented = errors.New("client: not implemented")
	// ErrConflict is returned when a transaction across partitions kept
	// losing to conflicting transactions until the node's retries ran out.
	// Nothing was applied: the caller may retry it (it is not retried by
	// the client itself).
	ErrConflict = errors.New("client: conflict with other transactions")
	// ErrInsufficientStorage is returned for a write refused because the
	// disk of the node that had to store it is full (or failed a write):
	// nothing was applied. The node serves reads meanwhile and takes
	// writes again by itself once space is freed. It is not retried.
	ErrInsufficientStorage = errors.New("client: insufficient storage")
	// ErrOverloaded is returned when the node refused the call at once
	// because it was at one of its admission bounds (requests or bytes in
	// flight, a Raft group's queued proposals): nothing was applied. The
	// client retries such calls, reads and writes, after its backoff
	// (BackoffBase doubling up to BackoffMax), trying the other nodes
	// first; the error is returned, wrapped in ErrUnavailable, only when
	// MaxAttempts or the deadline run out.
	ErrOverloaded = errors.New("client: node overloaded")
	// ErrClosed is returned by calls made after Close, or cut short by it.
	ErrClosed = errors.New("client: closed")
	// errInternal marks an unexpected error reported by a node.
	errInternal = errors.New("client: node error")
)

// MismatchError is the error of a compare-and-set that did not swap. It
// matches ErrCASMismatch.
type MismatchError struct {
	// Found is false when the key is absent.
	Found bool
	// Current is the key's value when Found.
	Current []byte
}

func (e *MismatchError) Error() string {
	if !e.Found {
		return "client: compare-and-set mismatch: key is absent"
	}
	return fmt.Sprintf("client: compare-and-set mismatch: current value is %d bytes", len(e.Current))
}

// Is reports whether target is ErrCASMismatch.
func (e *MismatchError) Is(target error) bool { return target == ErrCASMismatch }

// timeoutError wraps the context's error as ErrTimeout (deadline) or
// ErrClosed/Canceled, adding last, the previous attempt's error, if any.
func timeoutError(ctx context.Context, closed bool, last error) error {
	var err error
	switch {
	case closed:
		err = ErrClosed
	case errors.Is(ctx.Err(), context.DeadlineExceeded):
		err = fmt.Errorf("%w: %w", ErrTimeout, context.DeadlineExceeded)
	default:
		err = fmt.Errorf("client: %w", ctx.Err())
	}
	if last != nil {
		return fmt.Errorf("%w (last attempt: %w)", err, last)
	}
	return err
}
