// Package fault holds typed fault seams for tests and the chaos harness.
// Nothing in production imports it.
//
// CorruptRecords is bit rot: it flips bytes of records stored by a stopped
// node's replica store, directly in its Badger database and without
// updating their checksums, so that the store must detect the damage
// itself. It knows the record namespace of the key layout documented in
// the replica package ('r' | partition uint32 BE | user key) and the record
// encoding's trailing 4-byte checksum, and nothing else.
package fault
