// Package antientropy repairs divergence between the replicas of a
// partition in the background: Merkle trees over key-hash buckets, their
// exchange between replicas, a scrubber that finds corrupt records, and the
// collection of tombstones every replica holds.
//
// It imports only ring and proto/kvpb: it reads and repairs the local
// replica through its own small interfaces (Store, Scrubbable, Collector),
// which the node implements over replica.Store, and sees records only in
// their wire form.
//
// # Trees
//
// Each partition has a Tree of Depth levels below the root with Fanout
// children per node: Leaves = 4096 leaf buckets, chosen by the low bits of
// the key's xxhash64 (the top bits choose the partition). A node's value
// is the sum mod 2^64 of the record hashes below it (replica.RecordHash:
// xxhash64 of key and stored encoding, never 0). The sum is
// order-independent, so:
//
//   - the replica store's committer reports every committed change (old
//     hash, new hash) and Trees.Apply updates the tree in O(Depth), without
//     reading the store;
//   - a rebuild takes a snapshot ordered with that change stream
//     (replica.Store.ScanSnapshot calls begin between commits), sums the
//     snapshot, and adds the changes recorded since begin: the result is
//     exactly the tree of the current state, with writes going on.
//
// Trees are kept per partition id (ring.Ring.ID: the index until the
// cluster's first split, P+index after), for the ids of the ring the node
// holds; the node's observer names each change by the id of its key's
// partition in that ring. When the ring's P doubles (a split), the trees
// of the parents' ids are dropped (they stop receiving changes) and the
// children's built from disk; a change of an id whose build has not taken
// its snapshot yet is read by that build from disk, one after it is
// recorded in the build's delta. An exchange compares the trees of one id
// on both sides: a peer asked for an id its ring does not have answers
// ErrNotReady, and one asked for an id it holds no keys of in its ring
// (ring.Ring.Holds, which judges ids of a level before or after a split)
// refuses with ErrNotReplica.
//
// Trees are built from disk at start, and rebuilt when a change reports
// OldUnknown (a corrupt record was replaced or quarantined: its hash was
// never known). Until built a tree answers ErrNotReady and is not
// exchanged. Corrupt records are skipped by the build, so they count as
// missing and the next exchange brings a healthy copy.
//
// # Exchange
//
// Every Interval, each node exchanges every partition it replicates with
// each other live replica, one exchange at a time. Every replica initiates
// with every other (not only the lower id of a pair): a pair is compared
// twice per interval, which costs one root RPC when nothing differs, and
// no pair goes unrepaired because one side is slow or restarting.
//
// An exchange compares the roots; where they differ it asks the peer for
// the children of the differing nodes, level by level, down to the leaf
// buckets (Repair.Tree). It then pages through the peer's records of the
// differing buckets (Repair.Fetch, with their hashes), merges the ones that
// differ from ours here, and pushes ours that the peer lacks or holds older
// (Replica.Merge). Merge is last-writer-wins and idempotent, so both
// directions are safe whatever the timing. Records move under two token
// buckets (golang.org/x/time/rate) shared by all exchanges of the node:
// KeysPerSec and BytesPerSec. Repair runs the same exchanges on demand
// (ringkv cluster repair).
//
// # Scrubber
//
// The scrubber walks every partition's stored records at ScrubPerSec
// records (and ScrubBytesPerSec bytes) per second and verifies each
// record's checksum (replica.Store.Verify). A record that fails is
// quarantined (deleted, so it reads as missing; counted once in
// ringkv_antientropy_scrub_corrupt_total), then repaired by merging what
// the other live replicas hold for the key. Reads never return it: the
// replica reports corruption and the coordinator reads another replica.
//
// # Tombstones
//
// A tombstone older than TombstoneGrace is collected by a replica once
// every other replica of its partition, asked now (Replica.Read), holds it,
// a newer record, or nothing for the key: then no replica holds an older
// value that could bring the key back. A partition with a replica that is
// down keeps its tombstones. Exchanges never send such an expired tombstone
// to a replica that holds no record of the key, so one replica's
// collection is not undone by another that has not collected yet.
//
// A value whose expiry (Record.expires_at_unix_nanos) and write are both
// older than TombstoneGrace is collected the same way: an expired value is
// a tombstone that keeps its value (it is newer than every value before
// it, and reads find it absent), so it must stay until every replica has
// it, for the same reason.
//
// # Goroutines
//
// Service.Start starts, each owned by the Service and stopped by Close
// (which cancels the lifetime context and waits):
//
//   - the builder: builds every tree once the node has a ring, then
//     rebuilds those marked stale (fed by Trees.rebuild, and a 1 s poll);
//   - the exchanger (Interval > 0): one cycle per Interval;
//   - the scrubber (Deps.Scrub set, ScrubPerSec > 0): continuous passes;
//   - the collector (Deps.Collect set, TombstoneGrace > 0): one pass per
//     GCInterval.
//
// Repair runs in the caller's goroutine. The drpc handlers (Tree, Fetch)
// run on the server's goroutines and only read. Trees.Apply runs on the
// replica store's committer and never blocks.
package antientropy
