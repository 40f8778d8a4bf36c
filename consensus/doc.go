// Package consensus runs one Raft group (hashicorp/raft) per partition on
// each of the partition's replicas, giving linearizable Get, Put, Delete and
// compare-and-set on top of the replica store.
//
// # How a linearizable write works
//
// The group's leader takes the key's latch, makes sure it has applied every
// entry of earlier terms (a Barrier once per term), evaluates the condition (CAS, put-if-absent) against the stored record,
// stamps the new record with an HLC timestamp above the stored one, and
// proposes it as a plain merge. Every replica applies the same merge in log
// order (fsm, a raft.BatchingFSM: one store MergeUnsynced per batch,
// without an fsync of its own: the Raft log, durable on a majority before
// an entry is applied, is the durable copy, replayed after a restart).
// The latch is released after the entry is applied on the leader, so the
// next update of the key sees it. Writes skip the leadership confirmation
// that reads need: a deposed leader's proposal cannot commit, so a decision
// taken on its stale state is never applied.
//
// # The log
//
// LogStore is each group's raft.LogStore and raft.StableStore. On a node
// its entries are in the write-ahead log every group shares
// (internal/raftwal, NewWALLogStore: one fdatasync for all groups'
// appends, no entry through Badger), its term and vote in the replica
// store; NewLogStore keeps the entries in the replica store too, as data
// format 1 did (MigrateLogs moves them). StoreLogs answers once the
// entries are visible and reports their durability later: the transport
// and the FSM hold back what must wait for it (logstore.go).
//
// # Reads
//
// Linearizable reads use read-index: no log entry. A read captures the
// commit index, then confirms leadership in a round begun after that: the
// node's own round (confirm.go), at most one in flight per node, every
// read of any group arriving meanwhile joining the next, in which each
// peer answers one Confirm for every group the two share; a group it
// leaves unconfirmed asks raft's VerifyLeader (rounds shared per group the
// same way, readBatcher). A new leader first commits and applies a Barrier
// so entries from earlier terms are visible.
//
// # Errors
//
// *NotLeaderError (ErrNotLeader) names the leader when known; nothing was
// applied. ErrAmbiguous: the entry was handed to Raft but the deadline
// passed or leadership was lost; it may still commit.
//
// # Snapshots
//
// A snapshot is a stream of the partition's records read from the store.
// Restore merges them (never replaces), so a follower keeps newer eventual
// writes it holds. Replaying log entries after a restart is harmless for
// the same reason.
//
// # Membership
//
// Manager creates a group for every partition the ring assigns this node.
// The node that created the cluster's ring (Config.Founder) bootstraps
// every group with itself alone; afterwards each group's leader
// moves the configuration toward the ring's preference list one change at
// a time: add a missing replica as non-voter, promote it once its applied
// index is within CatchUpEntries of the commit index (asked via Progress),
// remove servers the ring no longer lists (transferring leadership first
// when that is the leader itself). Once the configuration matches, the
// leader hands leadership to the partition's primary (the first of its
// preference list) when that replica has caught up, so leaders spread over
// the members as evenly as the ring spreads primaries.
//
// # Leadership transfers and draining
//
// Every transfer (to a primary, before leaving a group, while draining)
// goes through Group.transferLeadership: new proposals are refused as
// not-the-leader (safe to retry), a barrier commits the earlier ones, and
// only then does raft transfer, so no proposal is left in flight to fail
// with "leadership lost". A Manager that drains (SetDraining, HandOff;
// drain.go) hands every group it leads to its best other voter and keeps
// doing so each reconcile tick instead of reconfiguring; leaders never
// hand leadership to a member Deps.Drains reports.
//
// # Stuck leaders
//
// hashicorp/raft v1.8.0 can strand a leadership transfer (hashicorp/raft#696,
// unfixed upstream): the raft instance then refuses every Apply, Barrier
// and configuration change with ErrLeadershipTransferInProgress whenever it
// leads, for as long as it runs, while its heartbeats keep the group from
// electing anyone else. The Manager's watchdog (watchdog.go) restarts such
// a group on this node: raft calls that may be refused report their
// outcome to the group's refusal streak (Group.raftOutcome); each tick the
// Manager probes a group it leads whose streak is open with a Barrier,
// and once the streak is older than Config.StuckLeaderTimeout (10s; a
// legitimate transfer refuses for at most about 7s) with at least three
// refusals, it shuts the instance down and starts a new one over the same
// log, stable and snapshot stores (a follower; nothing committed is lost),
// logs a warning, counts ringkv_consensus_group_restarts_total{reason},
// and backs off (1 min, doubling to 32 min) before restarting that group
// again.
//
// # Groups that start empty
//
// A group instance that starts with no state and does not bootstrap (a
// member being added, or a node that lost its disk and rejoined under its
// id) withholds its votes and pre-votes, in its transport, until its log
// reaches the first commit index a leader's append names (guards.go):
// an empty voter would otherwise grant any candidate its vote, and a
// write it had acknowledged before the loss could be lost.
//
// # Partition splits
//
// When the ring doubles P, the leader of each parent group proposes one
// opSplit entry naming its voters (split.go). At that index every
// replica stops applying the parent (later commands, reads and proposals
// answer ErrSplit, nothing applied), and each of those voters starts the
// two child groups from a snapshot at index 1 of what its store holds of
// each child's keys, with those voters as configuration; a replica that
// starts a child empty is sent that snapshot first. A replica behind the
// parent's compaction learns the split from a trailer of the parent's
// snapshot. Groups judge intents by the key they guard and transaction
// records by ring.Ring.RecordOwner, since a split partition's scans show
// the cluster's own records of both children of its storage partition.
//
// # Snapshots a follower already has
//
// The transport judges a snapshot before raft sees it (guards.go): one
// whose last entry the group's log holds is answered with success and not
// installed, one at or below what the group applied is refused, any other
// goes to raft. hashicorp/raft would install either, empty the (monotonic)
// log while keeping its last index, and panic at the next commit
// (hashicorp/raft#697), or roll the state machine back.
//
// # A previous entry in the follower's snapshot
//
// An append whose previous entry is the last entry of one of the group's
// snapshots, same term, applied, with the log beginning right after it,
// reaches raft without a previous entry and with its commit index cut to
// what it covers (guards.go): hashicorp/raft checks a previous entry
// against the snapshot only when the log ends there, and refused such
// appends for ever on a split child's follower that had entries of its
// own after the child's first snapshot.
//
// # Idle groups
//
// An idle group costs almost nothing on the network (liveness.go): every
// 200 ms each node sends each peer one liveness message naming the groups
// it leads and those in which it follows that peer, with their terms. It
// stands for raft's periodic heartbeats and its idle CommitTimeout
// appends: a leader's transport answers them itself while the follower's
// node is live (a message younger than 600 ms) and follows it at that
// term; a follower's node hands each of its groups that follows the
// sender at the named term the heartbeat the leader's raft would have
// sent. Raft's election timer, lease and terms are untouched: when a node
// dies or is cut off its messages stop and everything times out as it
// would without heartbeats. Heartbeats of a leadership confirmation
// (reads) always travel. A leader's message also names the groups whose
// commit index changed in the last three rounds, with that index and the
// term of its entry there; the follower's node hands each such group
// that follows it, holds an entry at that index and has not committed
// that far the empty append raft's idle tick would have carried (through
// raft's main loop, where raft checks the entry's term as for any
// append), so followers learn a write's commit within a round and
// CommitTimeout can be 2 s. A group
// this node leads runs with
// Config.QuietHeartbeatTimeout (3s) instead of HeartbeatTimeout, so raft
// wakes its heartbeat goroutines a third as often; its followers keep
// the normal timeouts, and the Manager's tick gives a group it no longer
// leads its normal timeouts back.
//
// # Logging
//
// Raft's own messages go through raftLogger (logging.go) at the level
// raftRules gives: elections, a follower catching up, calls to a peer
// that is stopping or has not created the group yet and raft's per-group
// Info are Debug; a failing log or snapshot store is Error; the rest Warn.
// The Manager logs per round of reconcile one "raft groups reconfigured"
// summary (each change at Debug), "raft groups ready" once every group the
// ring assigns the node has a leader, and warns when groups stay without a
// leader for leaderlessElections election timeouts (leaderWatch).
//
// # Goroutines
//
//   - Manager: one reconcile loop (ReconcileInterval), stopped by Close;
//     it also runs the watchdog's probes and restarts.
//   - Group: raft's own goroutines (about 25 per group); a verify goroutine
//     while raft read-index rounds are pending and a barrier goroutine
//     after each election won, both ending when their raft call returns.
//     The Transport runs the node-level confirmation rounds on one
//     goroutine while any are pending (confirm.go).
//   - Per linearizable write, one goroutine waits on raft's future so the
//     caller can leave on its context (the future still completes).
package consensus
