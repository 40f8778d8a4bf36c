package node

import (
	"github.com/ringkv/ringkv/consensus"
	"github.com/ringkv/ringkv/coordinator"
	"github.com/ringkv/ringkv/replica"
)

// Memory budget: one number that sizes every memory consumer of a node
// that is configured, as a fixed fraction each (docs/OPERATIONS.md,
// "Memory"). The defaults are the sizes of a DefaultMemoryBudgetBytes
// budget, so a node with no budget is sized as one of 1 GiB.
const (
	// DefaultMemoryBudgetBytes is the budget the components' defaults
	// amount to.
	DefaultMemoryBudgetBytes = 1 << 30
	// MinMemoryBudgetBytes is the smallest budget: Badger's smallest
	// memtable (1 MiB) at its fraction.
	MinMemoryBudgetBytes = 64 << 20

	// The fractions, as divisors of the budget.
	memTableDivisor        = 64   // each of the two memtables: 2/64 together
	blockCacheDivisor      = 64   // Badger's block cache
	indexCacheDivisor      = 128  // Badger's index and bloom filter cache
	versionEntryDivisor    = 8192 // version cache entries, about 350 B each: ~4%
	logCacheDivisor        = 16 << 20
	inflightBytesDivisor   = 16 // clients' requests in flight
	peerInflightBytesDiv   = 8  // other coordinators' calls in flight
	minLogCacheEntries     = 8
	maxLogCacheEntries     = consensus.DefaultLogCacheEntries
	minVersionCacheEntries = 1024
)

// MemorySizes is what a memory budget gives each sized consumer.
type MemorySizes struct {
	// BlockCacheBytes, IndexCacheBytes, MemTableBytes and
	// VersionCacheEntries size the replica store (replica.Config).
	BlockCacheBytes     int64
	IndexCacheBytes     int64
	MemTableBytes       int64
	VersionCacheEntries int
	// LogCacheEntries is each Raft group's in-memory log cache
	// (consensus.Config).
	LogCacheEntries int
	// MaxInflightBytes and MaxPeerInflightBytes are the admission byte
	// budgets (coordinator.Config).
	MaxInflightBytes     int64
	MaxPeerInflightBytes int64
}

// SizeForMemory returns the sizes a budget of budget bytes gives:
//
//	Badger memtables     2 x budget/64   (3.1%)
//	Badger block cache   budget/64       (1.6%)
//	Badger index cache   budget/128      (0.8%)
//	version cache        budget/8192 entries of ~350 B (~4%)
//	Raft log cache       budget/16 MiB entries per group, within [8, 64]
//	client bytes in flight   budget/16   (6.3%)
//	peer bytes in flight     budget/8    (12.5%)
//
// Under a third of the budget; the rest is left to what no setting
// bounds directly: the Go runtime's garbage (GOGC), goroutine stacks,
// connection buffers, Badger's compactions and the Raft groups' own
// state. SizeForMemory(DefaultMemoryBudgetBytes) returns the defaults.
// budget must be at least MinMemoryBudgetBytes (Config.Validate checks).
func SizeForMemory(budget int64) MemorySizes {
	return MemorySizes{
		BlockCacheBytes:      budget / blockCacheDivisor,
		IndexCacheBytes:      budget / indexCacheDivisor,
		MemTableBytes:        budget / memTableDivisor,
		VersionCacheEntries:  int(max(budget/versionEntryDivisor, minVersionCacheEntries)),
		LogCacheEntries:      int(min(max(budget/logCacheDivisor, minLogCacheEntries), maxLogCacheEntries)),
		MaxInflightBytes:     budget / inflightBytesDivisor,
		MaxPeerInflightBytes: budget / peerInflightBytesDiv,
	}
}

// withMemoryBudget returns c with every sized field that is zero or
// holds its default set from MemoryBudgetBytes (if positive); a field set
// to anything else keeps its value. Open calls it before Validate.
func (c Config) withMemoryBudget() Config {
	if c.MemoryBudgetBytes < MinMemoryBudgetBytes {
		return c // none, or too small: Validate says so
	}
	sz := SizeForMemory(c.MemoryBudgetBytes)
	rd, cd, kd := replica.DefaultConfig(), coordinator.DefaultConfig(), consensus.DefaultConfig()
	fill64 := func(f *int64, def, v int64) {
		if *f == 0 || *f == def {
			*f = v
		}
	}
	fill := func(f *int, def, v int) {
		if *f == 0 || *f == def {
			*f = v
		}
	}
	fill64(&c.Replica.BlockCacheBytes, rd.BlockCacheBytes, sz.BlockCacheBytes)
	fill64(&c.Replica.IndexCacheBytes, rd.IndexCacheBytes, sz.IndexCacheBytes)
	fill64(&c.Replica.MemTableBytes, rd.MemTableBytes, sz.MemTableBytes)
	fill(&c.Replica.VersionCacheEntries, rd.VersionCacheEntries, sz.VersionCacheEntries)
	fill(&c.Consensus.LogCacheEntries, kd.LogCacheEntries, sz.LogCacheEntries)
	fill64(&c.Coordinator.MaxInflightBytes, cd.MaxInflightBytes, sz.MaxInflightBytes)
	fill64(&c.Coordinator.MaxPeerInflightBytes, cd.MaxPeerInflightBytes, sz.MaxPeerInflightBytes)
	return c
}
