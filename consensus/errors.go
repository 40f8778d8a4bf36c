package consensus

import (
	"errors"
	"fmt"
)

var (
	// ErrAmbiguous is returned when a write was handed to Raft but its
	// outcome is unknown: the deadline passed or leadership was lost while
	// it was being committed. It may still commit. Never retry it blindly.
	ErrAmbiguous = errors.New("consensus: outcome unknown, the write may still commit")
	// ErrOverloaded is returned by writes refused at once because their
	// group already has Config.MaxPendingProposals proposals queued:
	// nothing was appended; retry after a backoff.
	ErrOverloaded = errors.New("consensus: too many proposals queued in the group")
	// ErrNoGroup is returned for a partition this node hosts no group for.
	ErrNoGroup = errors.New("consensus: no raft group for partition on this node")
	// ErrClosed is returned after Close.
	ErrClosed = errors.New("consensus: closed")
	// ErrNotLeader marks requests made to a replica that does not lead the
	// group; the concrete error is a *NotLeaderError naming the leader.
	ErrNotLeader = errors.New("consensus: not the leader")
	// ErrNoVoter is returned by HandOff when a group this node leads has
	// no other voter that answers: its leadership cannot be handed over.
	ErrNoVoter = errors.New("consensus: no other live voter to hand leadership to")
	// ErrCorruptCommand is returned when a log entry cannot be decoded.
	ErrCorruptCommand = errors.New("consensus: corrupt command")
	// ErrInvalidTxn is returned by ValidateTxn and Group.Txn for a
	// malformed transaction or one over the limits; nothing was done.
	ErrInvalidTxn = errors.New("consensus: invalid transaction")
	// ErrTxnTooLarge is returned by Group.Txn when the gets of the branch
	// that would run answer more than MaxTxnBytes; nothing was applied.
	ErrTxnTooLarge = errors.New("consensus: transaction answer too large")
	// ErrNotUpgraded is returned by Group.Txn when a transaction would
	// write while some member does not speak TxnWireVersion (a rolling
	// upgrade is under way); nothing was applied.
	ErrNotUpgraded = errors.New("consensus: transactions need every member at wire version 2")
)

// NotLeaderError says which node leads the group, if this node knows.
type NotLeaderError struct {
	Group  uint32
	Leader string // "" when unknown (an election is under way)
}

func (e *NotLeaderError) Error() string {
	if e.Leader == "" {
		return fmt.Sprintf("consensus: not the leader of group %d; leader unknown", e.Group)
	}
	return fmt.Sprintf("consensus: not the leader of group %d; leader is %s", e.Group, e.Leader)
}

// Is reports whether target is ErrNotLeader.
func (e *NotLeaderError) Is(target error) bool { return target == ErrNotLeader }
