package coordinator

import (
	"errors"
	"fmt"
)

var (
	// ErrInvalidArgument is returned when a request is malformed: an empty or
	// oversized key, an oversized value, an unknown consistency level.
	ErrInvalidArgument = errors.New("coordinator: invalid argument")
	// ErrUnavailable marks requests that could not reach enough replicas
	// before their deadline. The concrete error is an *UnavailableError.
	ErrUnavailable = errors.New("coordinator: unavailable")
	// ErrCorrupt is returned when every replica that answered a read held a
	// record that failed its checksum: no value is returned rather than a
	// wrong one.
	ErrCorrupt = errors.New("coordinator: all answering replicas corrupt")
	// ErrClosed is returned by calls made after Close.
	ErrClosed = errors.New("coordinator: closed")
	// ErrDraining is returned to client requests (Client service, HTTP
	// data API) that arrive while the node drains (StartDrain): nothing
	// was done; send them to another node. The Client service reports it
	// as ERROR_CODE_CLOSED, HTTP as 503.
	ErrDraining = errors.New("coordinator: node draining, send the request to another node")
	// ErrNotImplemented is returned for requests of a kind not built yet;
	// nothing was done.
	ErrNotImplemented = errors.New("coordinator: not implemented")
	// ErrConflict is returned when a transaction across partitions lost to
	// conflicting transactions on every attempt (wound-wait kept aborting
	// it), or a write waited on another transaction's intent until its
	// deadline: nothing was applied; the caller may retry. HTTP 409, the
	// Client service's ERROR_CODE_CONFLICT.
	ErrConflict = errors.New("coordinator: conflict with other transactions")
	// ErrNotUpgraded is returned when a request needs a wire version some
	// member does not speak yet (a rolling upgrade is under way); nothing
	// was done. It wraps consensus.ErrNotUpgraded.
	ErrNotUpgraded = errors.New("coordinator: cluster not upgraded")
	// ErrNotReplica is returned by ReplicaServer.Merge for a record of a
	// partition this node does not replicate in the ring it holds.
	ErrNotReplica = errors.New("coordinator: not a replica of the partition")
	// ErrOverloaded is returned to requests refused at once because the
	// node is at an admission bound (admission.go): client or peer
	// requests or bytes in flight, or a Raft group's queued proposals
	// (it wraps consensus.ErrOverloaded then). Nothing was done; retry
	// after a backoff. HTTP 429 with Retry-After, the Client service's
	// ERROR_CODE_OVERLOADED, RESP -BUSY.
	ErrOverloaded = errors.New("coordinator: overloaded")
	// ErrNotDraining is returned by WaitIdle when StartDrain was not
	// called (or Undrain was since).
	ErrNotDraining = errors.New("coordinator: not draining")
)

// UnavailableError says how many replicas answered a request that needed
// more. It matches ErrUnavailable with errors.Is.
type UnavailableError struct {
	Op       string // "set", "get", "delete", "list"
	Level    Level
	Required int // replicas the level needs
	Answered int // replicas that answered successfully in time
	Replicas int // replicas of the partition (N, or fewer in a small ring)
	Cause    error
}

func (e *UnavailableError) Error() string {
	msg := fmt.Sprintf("%s: %d of %d required replicas answered at %s (%d replicas)",
		e.Op, e.Answered, e.Required, e.Level, e.Replicas)
	if e.Cause != nil {
		msg += ": " + e.Cause.Error()
	}
	return "coordinator: unavailable: " + msg
}

// Is reports whether target is ErrUnavailable.
func (e *UnavailableError) Is(target error) bool { return target == ErrUnavailable }

// Unwrap returns the last replica error seen, if any.
func (e *UnavailableError) Unwrap() error { return e.Cause }
