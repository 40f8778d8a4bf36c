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
//	'r' | partition uint32 BE | user key   -> encoded Record   (this package, today)
//	'l' | ...                                 Raft log           (later)
//	's' | ...                                 Raft stable store  (later)
//	'h' | ...                                 hints              (later)
//
// Keys of one partition are contiguous and sorted by user key, which is what
// Scan and per-partition anti-entropy iterate. The record encoding is
// documented beside AppendBinary in record.go.
//
// # Goroutines
//
// The store runs one goroutine of its own, the committer
// (Store.runCommitter), besides Badger's internal ones.
//
//   - Fed by Merge through the unbuffered channel Store.reqs: each Merge
//     call builds its keys and encodings on its own goroutine, then hands
//     one request over.
//   - It takes every request waiting at that moment (up to
//     Config.MaxBatchEntries writes), and for each entry reads the stored
//     record and stages the new one if it is newer, all in one Badger
//     transaction (committing and starting another if Badger says it is
//     full), commits, and answers each request on its buffered done channel.
//   - Because it is the only goroutine that writes, read-compare-write needs
//     no locks and Badger conflict detection is off.
//   - Stopped by Close, which closes Store.closing: the committer finishes
//     the batch in hand and exits; Merge calls not yet handed over return
//     ErrClosed. Close waits for it (and for in-flight Get and Scan calls)
//     before closing Badger.
//
// Every write to Badger goes through the committer as an op (commit.go), so
// the Raft log and stable store can later share its fsyncs by adding an op
// type for raw key/value writes.
//
// # Durability discipline
//
// Badger is opened with SyncWrites=true, so a transaction's Commit returns
// only after its write-ahead log (and value log, for large values) is
// fsynced; Merge acknowledges after that Commit. Group commit is what makes
// this affordable: one fsync per batch, not per caller. The store never runs
// with SyncWrites=false and db.Sync() as the durability point, because
// db.Sync() does not sync the WAL of a memtable that was just rotated out.
// Config.InMemory is for tests and gives no durability.
package replica
