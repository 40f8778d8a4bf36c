package gossip

import (
	"errors"
	"fmt"

	"github.com/ringkv/ringkv/ring"
)

var (
	// ErrClosed is returned by Change when the Gossip is
	// closed or closes before the change is applied.
	ErrClosed = errors.New("gossip: closed")

	// ErrInvalidConfig marks every problem reported by Config.Validate,
	// and a KeyringFile that Open or ReloadKeyring cannot read or parse.
	ErrInvalidConfig = errors.New("gossip: invalid config")

	// ErrNoKeyring is returned by ReloadKeyring when the Gossip was opened
	// without a KeyringFile: encryption cannot be turned on at run time.
	ErrNoKeyring = errors.New("gossip: no keyring file configured")

	// ErrCorrupt is returned by Open when the persisted ring state cannot be
	// read back (bad magic, checksum or encoding), or the cluster id file
	// holds no valid id. The operator must act:
	// restore the file or delete it and re-admit the node.
	ErrCorrupt = errors.New("gossip: corrupt ring state")

	// ErrConflict is returned by Change when the member's status in the
	// newest ring does not allow the change (a leave of a member that is
	// not Joined, a remove of one already Removed); the message says
	// what the status is and at which ring version.
	ErrConflict = errors.New("gossip: change conflicts with the ring")

	// ErrNotReady is returned by Change before SetStore, or while this
	// node holds no ring yet.
	ErrNotReady = errors.New("gossip: not ready for ring changes")

	// ErrOutcomeUnknown is returned by Change when it proposed a ring and
	// could not learn, before its context ended, whether the proposal was
	// made. Read the ring before retrying.
	ErrOutcomeUnknown = errors.New("gossip: outcome of the ring change unknown")

	// ErrNotAlive is returned by Change for an admit when the member is not alive in
	// memberlist with valid metadata, so it cannot be joined yet.
	ErrNotAlive = errors.New("gossip: member not alive")

	// ErrIncompatible marks a peer refused because its wire protocol
	// range does not overlap this node's; the concrete error is an
	// *IncompatibleError.
	ErrIncompatible = errors.New("gossip: incompatible wire protocol")

	// ErrForeignCluster marks a peer refused because it advertises
	// another cluster id than this node's; the concrete error is a
	// *ForeignClusterError.
	ErrForeignCluster = errors.New("gossip: peer of another cluster")
)

// ConflictError is the ErrConflict that Change returns when the member's
// status in the newest ring does not allow the change.
type ConflictError struct {
	Op Op
	ID string
	// Status is the member's status in the ring judged; 0 if it is not a
	// member of that ring.
	Status ring.Status
	// RingVersion is the version of the ring judged.
	RingVersion uint64
}

func (e *ConflictError) Error() string {
	status := "not a member of the ring"
	if e.Status != 0 {
		status = e.Status.String()
	}
	return fmt.Sprintf("%v: %s %s: it is %s (ring version %d)", ErrConflict, e.Op, e.ID, status, e.RingVersion)
}

// Is reports whether target is ErrConflict.
func (e *ConflictError) Is(target error) bool { return target == ErrConflict }
