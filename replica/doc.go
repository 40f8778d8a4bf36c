// Package replica is one node's replica storage: the record, the hybrid
// logical clock that stamps it, and a Badger-backed Store whose only way to
// change state is Merge.
//
// # What it owns
//
//   - Record: the one stored unit per key (value or tombstone, HLC
//     timestamp, writer node id, optional expiry) and its checksummed,
//     versioned encoding (Record.AppendBinary, DecodeRecord).
//   - Clock: the hybrid logical clock (Timestamp = 48 bits of wall
//     milliseconds, 16 bits of logical counter).
//   - Store: the Badger database, its on-disk key layout, group commit, and
//     per-partition iteration.
//
// It imports nothing of ringkv and never sees wire types.
//
// # Guarantees
//
// Records are totally ordered by Compare: (Timestamp, NodeID), then a
// tombstone above a value, then the value's bytes, then the expiry. Merging
// keeps the greater record, so merge is idempotent, commutative and
// associative, and replicas that have merged the same set of records hold
// the same state whatever the order. Compare(a, b) == 0 only for records
// with identical encodings.
//
// Merge returns nil only after every entry is in a committed Badger
// transaction that has been fsynced. Get never returns a record that fails its
// checksum: it returns a *CorruptError (ErrCorrupt). Merge treats such a
// record as absent, so any incoming record repairs it; Scan skips it. Each is
// counted in ringkv_replica_corrupt_records_total.
//
// Merge is per entry, not atomic across the entries of one call.
//
// # Key layout
//
// One Badger instance per node holds every namespace; the first key byte
// names it:
//
//	'r' | partition uint32 BE | user key   -> encoded Record           (Merge, Get, Scan)
//	'l' | group uint32 BE | index uint64 BE -> encoded Raft log entry  (consensus.LogStore, via the raw API; data format 1 only: a node keeps its logs in internal/raftwal)
//	's' | group uint32 BE | name            -> Raft stable-store value (consensus.LogStore, via the raw API)
//	'h' | uint16 BE len(target) | target | seq uint64 BE -> hint     (coordinator hinted handoff, via the raw API)
//
// A record's partition is its storage partition: the key's partition under
// the cluster's first P, whatever partition id a call names, so that a
// partition split moves nothing (partitions.go). Keys of one storage
// partition are contiguous and sorted by user key, which is what Scan and
// per-partition anti-entropy iterate; a split partition's scan keeps the
// keys of its hash range. The record encoding is
// documented beside AppendBinary in record.go.
//
// The raw API (WriteRaw, DeleteRaw, GetRaw, ScanRaw, LastRaw) reads and writes whole
// keys of any namespace but records: this package checks only that a raw key
// or range stays out of 'r' (and Badger's "!badger!"); the layout of the
// other namespaces belongs to the packages that use them, and is listed here
// so that namespaces are allocated in one place. Raw writes share the
// committer, and so the group commit and its fsync, with merges.
//
// # Goroutines
//
// The store runs three goroutines of its own besides Badger's internal
// ones: the committer (Store.runCommitter), the only one that writes to
// Badger, the syncer (sync.go, syncer.run), which fsyncs what the
// committer committed and answers the durable requests, and the space
// guard (space.go, spaceGuard.run), which checks the data directory's free
// space every Config.DiskCheckInterval and is stopped by Close.
//
//   - Fed by Merge and WriteRaw through the unbuffered channel Store.reqs:
//     each call builds its keys and encodings (or copies) on its own
//     goroutine, then hands one request over.
//   - It takes every request waiting at that moment (up to
//     Config.MaxBatchEntries writes; a raw delete range counts as one), and
//     in one Badger transaction (committing and starting another if Badger
//     says it is full) stages each merge entry whose record is newer than the
//     stored one, each raw set, and a delete of every key in each raw delete
//     range; then it commits and answers each request on its buffered done
//     channel.
//   - Because it is the only goroutine that writes (the syncer only
//     fsyncs files), read-compare-write needs no locks and Badger conflict
//     detection is off.
//   - Stopped by Close, which closes Store.closing: the committer finishes
//     the batch in hand and exits; Merge and WriteRaw calls not yet handed
//     over return ErrClosed. Close waits for it (and for in-flight reads:
//     Get, Scan, GetRaw, ScanRaw, LastRaw) before closing Badger.
//
// Every write to Badger goes through the committer as an op (commit.go):
// mergeOp for Merge, rawOp for WriteRaw (the Raft log and stable store of
// every group), rawDeleteOp for DeleteRaw (hints), so they all share its
// fsyncs.
//
// # Durability discipline
//
// Badger is opened with SyncWrites=false: a transaction's Commit puts it in
// the memtable and its write-ahead log (an mmap) without fsync. The syncer
// (sync.go) makes committed writes durable off the committer's path: it
// fsyncs the newest memtable log, every rotated memtable log and value log
// once after its last write, and the newest value log when a value went to
// it, then answers every durable request committed before the fsync began.
// One fsync thus covers all the batches committed while the previous one
// ran. Merge, WriteRaw and DeleteRaw return nil only after that fsync.
// Writes are visible to reads once committed, before the fsync: a write
// whose fsync a machine crash prevents was never acknowledged, but a read
// may have seen it (as in Cassandra's batch commit log). Two calls return
// earlier by design: MergeUnsynced (the Raft state machine, whose log is
// the durable copy) returns at commit and is never waited for, and
// WriteRawAsync (the Raft log) returns at commit and reports durability
// through a callback. A failed fsync is sticky (ErrSyncFailed): the store
// acknowledges no durable write after it. Open fsyncs every file Badger
// recovered before the store is used.
//
// # Full disks
//
// Badger writes through mmaps of sparse files, so a full file system is a
// SIGBUS, not an error. The committer refuses admitted writes (durable
// merges, Raft log appends, hints) with ErrDiskFull before the free space
// falls below Config.MinFreeBytes, and after a failed commit until a probe
// write succeeds; it lets the Raft state machine's applies, the stable
// store and deletes through. The store admits again by itself once space
// is freed. DiskState reports it all (space.go).
//
// Config.InMemory is for tests and gives no durability.
package replica
