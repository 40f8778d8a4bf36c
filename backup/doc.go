// Package backup takes consistent backups of a ringkv cluster and restores
// them into any running cluster. It is the library behind `ringkv backup`,
// `ringkv backup verify` and `ringkv restore`, and speaks to the nodes'
// Backup drpc service (coordinator.BackupServer) through the client
// library (Cluster: *client.Client).
//
// # Backup (Run)
//
//  1. Begin on every live member: the node pins a replica.Snapshot (a
//     Badger read transaction taken between commits) and answers with its
//     HLC read after the pin, above every timestamp in that snapshot. A
//     session has an idle lease; Run renews it every Lease/4 and ends it
//     at the end (a crashed client's sessions expire).
//  2. T is the greatest clock the members answered. Every record in every
//     snapshot has a timestamp below its node's answer, so at most T.
//  3. Each partition is read from every replica that was pinned (at least
//     a majority of its preference list, or ErrTooFewReplicas), page by
//     page, filtered on the node to timestamps in (Since, T], and merged
//     in key order (mergeReplicas: a k-way merge that keeps each key's
//     greatest record by replica.Compare, the cluster's own LWW order).
//     Memory is bounded by Parallelism * replicas * one page.
//  4. One file per source partition (format.go), then the manifest
//     (manifest.go), written last and atomically.
//
// Guarantee: a write acknowledged before Run started (at any level: a
// ONE write is on the replica that acknowledged it, a linearizable one on
// the partition's leader, a QUORUM one on a majority, and every live
// replica is read) is in the backup with its value as of the pins, even if
// it is overwritten later; no record with a timestamp above T is. A
// write concurrent with the pins may or may not be in it. Reserved keys
// (first byte 0x00: the ring, users and roles) are never backed up.
//
// # Restore
//
// Restore streams each file's records, checking every frame, in batches
// to the nodes' Restore call (round robin): the node places each key with
// its own ring and merges the record, with its original timestamp, into a
// quorum of its replicas. LWW makes a restore idempotent and safe under
// live writes (a newer write wins), and lets a full backup and its
// incrementals be restored in any order.
//
// # Goroutines
//
//   - Run: Parallelism partition workers fed by Run, one Begin per member
//     (all done before the partitions start), and the keep-alive loop
//     (renews the sessions until Run's context is cancelled at its end).
//   - Restore: Parallelism file workers fed by Restore.
//
// Every goroutine is done before Run or Restore returns.
package backup
