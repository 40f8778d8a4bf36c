// Package crc is the one checksum of ringkv's encodings: CRC-32C
// (Castagnoli), which every stored or sent format (records, raft log
// entries, hints, ring and gossip state, backup frames) appends to what
// it protects. One table, built once, for all of them.
package crc

import "hash/crc32"

var castagnoli = crc32.MakeTable(crc32.Castagnoli)

// Sum returns the CRC-32C of b.
func Sum(b []byte) uint32 { return crc32.Checksum(b, castagnoli) }
