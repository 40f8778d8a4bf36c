package consensus

// Guards a follower's transport applies for its group, answering for raft
// where hashicorp/raft would vote or install unsafely.

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

// localHeader is the header of an answer the transport gives for the
// group itself: a withheld vote (not granted, at the candidate's term: a
// higher one would make the candidate step down) or a redundant snapshot.
func (g *groupTransport) localHeader() raft.RPCHeader {
	id := []byte(g.t.cfg.NodeID)
	return raft.RPCHeader{ProtocolVersion: raft.ProtocolVersionMax, ID: id, Addr: id}
}

// Snapshots a follower already has
//
// hashicorp/raft v1.8.0 installs every snapshot a leader sends. Two kinds
// crash or corrupt a follower with a LogStore that declares itself
// monotonic, as ours does: raft deletes the whole log after the install
// but keeps its own idea of the last index, so when that index was beyond
// the snapshot the next commit index an append brings panics the process
// reading an entry that is gone ("log not found", hashicorp/raft#697,
// open); and a snapshot older than what the follower has applied rolls
// its state machine back. A leader sends such a snapshot when its view of
// the follower lags the follower, as when the follower caught up from an
// earlier snapshot and the log after it while this one was chosen or
// streamed (scripts/rebuild.sh, refilling a wiped node with snapshots
// every 64 entries, crashed it so, 2026-12-06). So the transport judges a
// snapshot before raft sees it (judgeSnapshot, set by the Manager):
//   - snapshotHeld: the group's log holds its last entry, index and term:
//     answered with success and not installed (the Raft paper's
//     InstallSnapshot rule 6: keep the log); the leader appends from that
//     entry, which the follower holds;
//   - snapshotStale: its last entry is at or below what the group has
//     applied and the log does not hold it (it lies in the follower's own
//     snapshot): refused, not installed; the leader retries later, with a
//     newer snapshot once it has taken one;
//   - snapshotInstall: anything else goes to raft as before.

// snapshotVerdict is what the transport does with an incoming snapshot.
type snapshotVerdict int

func (v snapshotVerdict) String() string {
	switch v {
	case snapshotHeld:
		return "held"
	case snapshotStale:
		return "stale"
	default:
		return "install"
	}
}

const (
	snapshotInstall snapshotVerdict = iota
	snapshotHeld
	snapshotStale
)

// SetSnapshotCheck gives the transport check, which judges a snapshot
// ending at index with term against the group's log and applied index.
// The Manager sets it after raft starts.
func (g *groupTransport) SetSnapshotCheck(check func(index, term uint64) snapshotVerdict) {
	g.snapCheck.Store(&check)
}

// snapshotVerdict judges a snapshot ending at index with term.
func (g *groupTransport) snapshotVerdict(index, term uint64) snapshotVerdict {
	c := g.snapCheck.Load()
	if c == nil || index == 0 {
		return snapshotInstall
	}
	return (*c)(index, term)
}

// judgeSnapshot is the Manager's snapshot check over a group's raft and
// log: see "Snapshots a follower already has".
func judgeSnapshot(r *raft.Raft, logs raft.LogStore, index, term uint64) snapshotVerdict {
	if r.LastIndex() >= index {
		var l raft.Log
		if logs.GetLog(index, &l) == nil && l.Term == term {
			return snapshotHeld
		}
	}
	if index <= r.AppliedIndex() {
		return snapshotStale
	}
	return snapshotInstall
}

// A previous entry in the follower's snapshot
//
// hashicorp/raft v1.8.0 checks an append's previous entry against the
// follower's log, and against its snapshot only when the log ends at the
// snapshot's last entry. A follower whose log holds entries after its
// snapshot but not the snapshot's last entry refuses an append whose
// previous entry is that entry, though it matches: the leader backs up
// past it, finds no such entry in its own log either, sends its snapshot,
// which the follower refuses as stale (it has applied that index: see
// "Snapshots a follower already has"), and so on for ever. A split
// child's group is that case: it starts on every voter from a snapshot at
// index 1, term 1, and no log holds entry 1, so a follower that took a
// leader's entries at index 2 and up (a leader cut off before they
// committed) never caught up with the next leader: TestChaosTxnSplit left
// such children leaderless on that node for minutes (2026-12-06). A log
// compacted to just after a snapshot is the same case.
//
// So the transport matches such an append's previous entry against the
// snapshot itself (matchPrevInSnapshot): when the previous entry is the
// last entry of one of the follower's snapshots, with the same term, the
// group has applied it, and its log begins right after it, raft gets the
// append without a previous entry. That is the Raft paper's consistency
// check, a snapshot's last entry being committed (the same index and term
// name the same entry), and raft then truncates the follower's entries
// that conflict with the append's as usual. The append's leader commit
// index is cut to its last entry (to the previous entry for an append
// without entries): raft commits up to the leader's commit index or its
// own last index, and the follower's entries after the append's are not
// covered by the check. The append without entries is the common one: a
// new leader's replication starts before its first entry, with an append
// whose previous entry is its last, the snapshot's.

// SetPrevCheck gives the transport check, which tells whether the entry
// at index with term is the last entry of one of the group's snapshots,
// applied, with the log starting right after it. The Manager sets it
// after raft starts.
func (g *groupTransport) SetPrevCheck(check func(index, term uint64) bool) {
	g.prevCheck.Store(&check)
}

// matchPrevInSnapshot is matchPrev with the group's check.
func (g *groupTransport) matchPrevInSnapshot(req *raft.AppendEntriesRequest) bool {
	c := g.prevCheck.Load()
	return c != nil && matchPrev(*c, req)
}

// matchPrev drops req's previous entry when check says it is the last
// entry of the group's snapshot and the log does not hold it (above),
// cutting the leader commit index to req's last entry. It reports whether
// it did.
func matchPrev(check func(index, term uint64) bool, req *raft.AppendEntriesRequest) bool {
	prev, n := req.PrevLogEntry, len(req.Entries)
	if prev == 0 || n > 0 && req.Entries[0].Index != prev+1 {
		return false
	}
	if !check(prev, req.PrevLogTerm) {
		return false
	}
	covered := prev // the last entry the check covers
	if n > 0 {
		covered = req.Entries[n-1].Index
	}
	req.PrevLogEntry, req.PrevLogTerm = 0, 0
	req.LeaderCommitIndex = min(req.LeaderCommitIndex, covered)
	return true
}

// prevInSnapshot is the Manager's check for matchPrevInSnapshot over a
// group's raft, log and snapshots. Only its first test runs on every
// append: the log's first index is cached.
func prevInSnapshot(r *raft.Raft, logs raft.LogStore, snaps raft.SnapshotStore, index, term uint64) bool {
	if first, err := logs.FirstIndex(); err != nil || first != index+1 {
		return false
	}
	if r.AppliedIndex() < index {
		return false
	}
	metas, err := snaps.List()
	if err != nil {
		return false
	}
	for _, m := range metas {
		if m.Index == index && m.Term == term {
			return true
		}
	}
	return false
}
