package consensus

import (
	"sync"

	"github.com/hashicorp/raft"
)

// Votes of a group that started empty
//
// Raft's safety assumes that a server's log and vote survive it. A node
// whose disk was lost and that rejoins under its id (OPERATIONS, "A node
// lost its disk") is still a voter of its groups, with an empty log: it
// would grant its vote to any candidate, and an entry committed by it and
// one other member before the loss could be lost with that member (the
// third, which lacked the entry, wins the empty node's vote and leads
// without it).
//
// So a group instance that starts with no state at all (no log, no
// snapshot, no stored term) and does not bootstrap withholds its vote and
// pre-vote until its log reaches the first commit index a leader's append
// names to it: the leader's commit covers every entry this node may have
// acknowledged before it lost its disk (a leader lacking one could not
// have been elected without this node's vote). Once its log has reached
// that index the gate opens for the instance's lifetime, so a node that
// later lags behind votes as raft would. A member added to a group also
// starts empty, but as a non-voter, catching up before its promotion: the
// gate is open before anyone asks for its vote. A group instance that
// starts with state (a restart with its disk) is never gated.
//
// What it leaves: the first append may come from a deposed leader whose
// commit index is older (the empty node accepts any term); and a group
// whose other members cannot elect one of themselves without the empty
// node's vote stays leaderless until a leader's append reaches it, which
// is the safe outcome (raft cannot tell which of them holds every
// committed entry).

// voteGate withholds a group's votes until its log reaches target. Safe
// for concurrent use.
type voteGate struct {
	mu struct {
		sync.Mutex
		// closed: votes are withheld. Set by close, cleared once for good.
		closed bool
		// target is the first non-zero commit index an append named; 0:
		// none yet.
		target uint64
		// lastIndex reads the group's last log index (raft's LastIndex,
		// snapshot included); nil until set.
		lastIndex func() uint64
	}
}

// close makes the gate withhold votes until the log reaches the first
// commit index an append names. lastIndex reads the group's last log
// index; it may return 0 until raft has started.
func (v *voteGate) close(lastIndex func() uint64) {
	v.mu.Lock()
	defer v.mu.Unlock()
	v.mu.closed, v.mu.target, v.mu.lastIndex = true, 0, lastIndex
}

// noteAppend records the commit index an incoming append named.
func (v *voteGate) noteAppend(req *raft.AppendEntriesRequest) {
	v.mu.Lock()
	defer v.mu.Unlock()
	if v.mu.closed && v.mu.target == 0 {
		v.mu.target = req.LeaderCommitIndex
	}
}

// withhold reports whether a vote request must be refused now; once the
// log has reached the target it opens the gate for good.
func (v *voteGate) withhold() bool {
	v.mu.Lock()
	defer v.mu.Unlock()
	if !v.mu.closed {
		return false
	}
	if v.mu.target == 0 || v.mu.lastIndex == nil || v.mu.lastIndex() < v.mu.target {
		return true
	}
	v.mu.closed = false
	return false
}

// GateVotes makes the group withhold its votes and pre-votes until its
// log, as lastIndex reads it, reaches the first commit index a leader's
// append names (see "Votes of a group that started empty"). The Manager
// calls it, before raft starts, for a group instance that starts with no
// state and does not bootstrap.
func (g *groupTransport) GateVotes(lastIndex func() uint64) { g.gate.close(lastIndex) }

// withheldHeader is the header of the answer of a group whose gate
// withholds its vote; the answer is not granted, at the candidate's term
// (a higher one would make the candidate step down).
func (g *groupTransport) withheldHeader() raft.RPCHeader {
	id := []byte(g.t.cfg.NodeID)
	return raft.RPCHeader{ProtocolVersion: raft.ProtocolVersionMax, ID: id, Addr: id}
}
