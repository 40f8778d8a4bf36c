// Package coordinator owns the client-facing request path of a ringkv node:
// any node coordinates any request. It places the key with the ring, fans
// the request out to the key's replicas and answers once the request's
// consistency level is met.
//
// # Guarantees
//
//   - Writes (Set, Delete) are stamped once, by the coordinator, with a fresh
//     HLC timestamp and its node id, then merged into all N replicas of the
//     key's partition (replica.Store.Merge: newest record wins). The client
//     is answered after W acknowledgements, each of which means the record is
//     fsynced on that replica: W = 1 (One), floor(N/2)+1 (Quorum), N (All).
//     Replicas beyond W keep receiving the write in the background.
//   - Reads (Get) ask R replicas, preferring this node (no network hop), then
//     live members; a replica that fails or stays silent for
//     SpeculativeDelay makes the coordinator ask the next one. The newest
//     record among the answers wins. Read repair: answering replicas that
//     held an older record (or none) are merged the newest one before Get
//     returns, so a read at R followed by a read at R never goes backwards.
//   - Hinted handoff (hints.go): a replica whose merge failed or timed out
//     gets a durable hint on the coordinator, replayed (rate-limited, in
//     order, deleted once acknowledged) when gossip sees the replica alive;
//     hints older than HintWindow, or for a removed member, are dropped and
//     left to anti-entropy. Hints never count toward W.
//   - R + W > N at Quorum, so a Quorum read sees every Quorum write that
//     completed before it started.
//   - A record that fails its checksum on a replica counts as that replica
//     failing: the read falls back to another replica. If every replica that
//     answered was corrupt, Get returns ErrCorrupt, never the bad bytes.
//   - List scans every partition at the requested level, merging the
//     replicas' answers per key, in pages of ListPageSize per partition: a
//     page is trusted only up to the smallest last key of any truncated
//     partition answer (the cutoff), and the next page starts after it.
//   - Expiry (ttl.go): a write with WithTTL stores the absolute expiry
//     HLC wall time + TTL in its record. Every read judges expiry by this
//     node's physical clock (Deps.Clock.Physical) when it answers, except
//     at Linearizable, where the partition's leader judges (Group.Now), so
//     a compare-and-set on an expired key finds it absent. Expire and
//     Persist are read-modify-writes: through compare-and-set at
//     Linearizable, a read then a write at the other levels.
//   - Too few replicas within the deadline: *UnavailableError saying how
//     many answered. No request waits past its deadline (RequestTimeout when
//     the caller's context has none).
//
// # Transactions
//
// Txn over one partition is one command on its leader (txn.go); over
// several it is the protocol of docs/ARCHITECTURE.md "Transactions across
// partitions" (xtxn.go): prepares in parallel on every participant's
// leader, wound-wait on the intents they meet (consensus.OnConflict), the
// anchor's decision as the commit point (its entry also resolves the
// anchor), then resolve and forget in the background. A read-only one
// is a double read (xtxn_read.go), the first pass from this node's own
// replicas. Linearizable gets, sets, compare-and-sets and
// single-partition transactions read or write through intents on the
// leader they reach (xtxn_intents.go: getOn, writeThrough), here or, for
// operations forwarded by peers, in LinearizableServer through its
// resolver. Steps of the protocol and its RPCs are in xtxnrpc.go.
//
// # Replica RPCs
//
// ReplicaServer serves the node's store to peers (kvpb.DRPCReplicaServer).
// RPCTransport is the client side: a bounded pool of drpc connections per
// peer, each with one sender goroutine that coalesces every operation
// waiting for that peer into one Merge and one Read RPC. The mapping between
// errors and drpc codes is the one table in wire.go.
//
// # Client RPCs
//
// ClientServer serves the Client drpc service (proto/ringkv/v1/client.proto) that the
// Go client library speaks: Topology, Do/Batch/List running through the
// Coordinator at the requested level, Txn, and Pipe, a stream on which
// operations run as they arrive and are answered as they finish (pipe.go). Data calls report errors in-band as
// a kvpb.ErrorCode (clientCode is the table), so that every answer carries
// the node's ring version and the key's partition leader.
//
// # Backup RPCs
//
// BackupServer serves the Backup drpc service (proto/ringkv/v1/backup.proto)
// to operator clients (package backup), admin only: sessions over pinned
// replica.Snapshots with an idle lease, paged scans of them filtered by
// timestamp or commit version, and Restore, which merges records with
// their own timestamps into a quorum of the replicas this node's ring
// places them on. See docs/ARCHITECTURE.md "Backup and restore".
//
// # Draining
//
// StartDrain closes the gate of the client entry points (Client service
// Do, Batch, Pipe operations and List; the HTTP data API): new requests
// are refused with ErrDraining (CLOSED, 503) before anything is done, and
// WaitIdle waits for those in flight (drain.go). Peer services are not
// gated. FlushHints replays the hints for live members at once.
//
// # Goroutines
//
//   - Reads: one per asked replica, started as the speculation needs them
//     (at most N); writes: none of their own, each replica's merge answers
//     through a callback on the store's committer or syncer or on the RPC
//     transport's senders (a transport without MergeAsync, in tests, takes
//     a goroutine per replica). Either way the work is counted in
//     the Coordinator's workgroup.Group (bg) and outlives the request until
//     every replica answered or ReplicaWriteTimeout. Close cancels it,
//     refuses new work (a request past its closed check gets ErrClosed
//     rather than starting any), and waits.
//   - ClientServer.Batch: one per operation of the batch, at most
//     batchParallelism at a time (one that finds the client bound full
//     while others of its batch run waits for one of them to end:
//     batchSlots), all done before Batch returns.
//   - ClientServer.Pipe: per stream, a reader (the handler), one writer
//     and up to maxPipeInflight workers: one is started when an admitted operation
//     arrives and no worker is waiting for one, and kept until the stream
//     ends; all stop with the stream.
//   - The hint loop (handoff.run), when HintedHandoff is on: started by
//     New under bg, ticks every HintReplayInterval and starts at
//     most one session per hint target, which it waits for; stopped by
//     Close. A write whose merge on a replica failed stores that replica's
//     hint on a goroutine of its own, under bg.
//   - BackupServer: a session's lease is a time.AfterFunc (the runtime's
//     goroutine, stopped by End and Close); Restore runs one merge per
//     replica node of its batch at once and waits for all before it
//     answers.
//   - Transactions across partitions: one goroutine per participant for
//     the prepares (all done before the attempt goes on) and for resolves;
//     after a decision, finishing (resolve every participant, forget) runs
//     under bg on a context of its own, bounded by the attempt's deadline
//     plus xtxnFinishGrace; a reader that meets a decided transaction's
//     intent resolves the partition under bg too.
//   - The sweep (Coordinator.sweep), when Deps.Groups is set: started by New
//     under bg, every second settles the expired intents and records of
//     the partitions this node leads; stopped by Close.
//   - The batch replayer (Coordinator.replayBatches, batchlog.go): started
//     by New under bg, every BatchReplayInterval replays the old logged
//     batches of the partitions this node is primary for; stopped by
//     Close. MGet and MSet read and write up to 16 keys at once, each
//     under bg, all done before they answer.
//   - RPCTransport: ConnsPerPeer + InvokeConnsPerPeer senders per peer, fed
//     by the peer's two queues, stopped by RPCTransport.Close.
//
// # Departures
//
// No sloppy quorum: as in Cassandra, W counts only the partition's own
// replicas, and a hint is not an ack.
package coordinator
