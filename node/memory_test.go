package node

import (
	"reflect"
	"strings"
	"testing"

	"github.com/ringkv/ringkv/consensus"
	"github.com/ringkv/ringkv/coordinator"
	"github.com/ringkv/ringkv/replica"
)

func TestSizeForMemory(t *testing.T) {
	rd, cd := replica.DefaultConfig(), coordinator.DefaultConfig()
	tests := []struct {
		name   string
		budget int64
		want   MemorySizes
	}{
		{"the default budget gives the defaults", DefaultMemoryBudgetBytes, MemorySizes{
			BlockCacheBytes: rd.BlockCacheBytes, IndexCacheBytes: rd.IndexCacheBytes, MemTableBytes: rd.MemTableBytes,
			VersionCacheEntries: rd.VersionCacheEntries, LogCacheEntries: consensus.DefaultLogCacheEntries,
			MaxInflightBytes: cd.MaxInflightBytes, MaxPeerInflightBytes: cd.MaxPeerInflightBytes,
		}},
		{"256 MiB", 256 << 20, MemorySizes{
			BlockCacheBytes: 4 << 20, IndexCacheBytes: 2 << 20, MemTableBytes: 4 << 20,
			VersionCacheEntries: 32768, LogCacheEntries: 16,
			MaxInflightBytes: 16 << 20, MaxPeerInflightBytes: 32 << 20,
		}},
		{"the minimum", MinMemoryBudgetBytes, MemorySizes{
			BlockCacheBytes: 1 << 20, IndexCacheBytes: 512 << 10, MemTableBytes: 1 << 20,
			VersionCacheEntries: 8192, LogCacheEntries: 8,
			MaxInflightBytes: 4 << 20, MaxPeerInflightBytes: 8 << 20,
		}},
		{"8 GiB: the log cache stays at 64", 8 << 30, MemorySizes{
			BlockCacheBytes: 128 << 20, IndexCacheBytes: 64 << 20, MemTableBytes: 128 << 20,
			VersionCacheEntries: 1 << 20, LogCacheEntries: 64,
			MaxInflightBytes: 512 << 20, MaxPeerInflightBytes: 1 << 30,
		}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			if got := SizeForMemory(tc.budget); got != tc.want {
				t.Errorf("SizeForMemory(%d): got %+v, want %+v", tc.budget, got, tc.want)
			}
		})
	}
}

func TestMemoryBudgetFillsDefaultsAndKeepsWhatWasSet(t *testing.T) {
	cfg := DefaultConfig()
	if got := cfg.withMemoryBudget(); !reflect.DeepEqual(got, cfg) {
		t.Errorf("no budget: got a changed config, want it unchanged")
	}

	cfg.MemoryBudgetBytes = 256 << 20
	cfg.Replica.IndexCacheBytes = 0          // zero: filled
	cfg.Replica.MemTableBytes = 8 << 20      // set: kept
	cfg.Coordinator.MaxPeerInflightBytes = 1 // set: kept
	cfg.Consensus.LogCacheEntries = 0        // zero: filled
	got := cfg.withMemoryBudget()
	want := SizeForMemory(256 << 20)
	for _, c := range []struct {
		name      string
		got, want int64
	}{
		{"BlockCacheBytes", got.Replica.BlockCacheBytes, want.BlockCacheBytes},
		{"IndexCacheBytes", got.Replica.IndexCacheBytes, want.IndexCacheBytes},
		{"MemTableBytes (set)", got.Replica.MemTableBytes, 8 << 20},
		{"VersionCacheEntries", int64(got.Replica.VersionCacheEntries), int64(want.VersionCacheEntries)},
		{"LogCacheEntries", int64(got.Consensus.LogCacheEntries), int64(want.LogCacheEntries)},
		{"MaxInflightBytes", got.Coordinator.MaxInflightBytes, want.MaxInflightBytes},
		{"MaxPeerInflightBytes (set)", got.Coordinator.MaxPeerInflightBytes, 1},
	} {
		if c.got != c.want {
			t.Errorf("%s: got %d, want %d", c.name, c.got, c.want)
		}
	}
}

func TestMemoryBudgetValidate(t *testing.T) {
	for _, tc := range []struct {
		name   string
		budget int64
		ok     bool
	}{
		{"none", 0, true},
		{"the minimum", MinMemoryBudgetBytes, true},
		{"below the minimum", MinMemoryBudgetBytes - 1, false},
		{"negative", -1, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			cfg := DefaultConfig()
			cfg.ID, cfg.DataDir = "n1", t.TempDir()
			cfg.HTTPAddr, cfg.RPCAddr, cfg.GossipAddr = "127.0.0.1:0", "127.0.0.1:0", "127.0.0.1:0"
			cfg.MemoryBudgetBytes = tc.budget
			err := cfg.withMemoryBudget().Validate()
			if tc.ok != (err == nil) {
				t.Fatalf("Validate with a budget of %d: got %v, want ok=%v", tc.budget, err, tc.ok)
			}
			if !tc.ok && !strings.Contains(err.Error(), "MemoryBudgetBytes") {
				t.Errorf("Validate: got %q, want it to name MemoryBudgetBytes", err)
			}
			if !tc.ok {
				if _, err := Open(cfg, Deps{}); err == nil {
					t.Errorf("Open with a budget of %d: got nil, want an error", tc.budget)
				}
			}
		})
	}
}

// TestSmallBudgetConfiguresBadger opens a node with a 128 MiB budget and
// reads back from Badger what its store runs with.
func TestSmallBudgetConfiguresBadger(t *testing.T) {
	const budget = 128 << 20
	nodes := startClusterWith(t, 1, func(c *Config) { c.MemoryBudgetBytes = budget })
	n := nodes[0]
	want := SizeForMemory(budget)
	got := n.store.Memory()
	if got.BlockCacheBytes != want.BlockCacheBytes || got.IndexCacheBytes != want.IndexCacheBytes ||
		got.MemTableBytes != want.MemTableBytes || got.VersionCacheEntries != want.VersionCacheEntries {
		t.Errorf("store: got %+v, want the sizes of %+v", got, want)
	}
	if got.BlockCacheBytes >= replica.DefaultBlockCacheBytes || got.MemTableBytes >= replica.DefaultMemTableBytes {
		t.Errorf("store: got %+v, want below the defaults", got)
	}
	if n.cfg.Consensus.LogCacheEntries != want.LogCacheEntries || n.cfg.Coordinator.MaxInflightBytes != want.MaxInflightBytes ||
		n.cfg.Coordinator.MaxPeerInflightBytes != want.MaxPeerInflightBytes {
		t.Errorf("node config: log cache %d, inflight bytes %d, peer %d; want %+v", n.cfg.Consensus.LogCacheEntries,
			n.cfg.Coordinator.MaxInflightBytes, n.cfg.Coordinator.MaxPeerInflightBytes, want)
	}
	if err := n.coord.Set(t.Context(), []byte("k"), []byte("v"), coordinator.Quorum); err != nil {
		t.Fatalf("a write on the budgeted node: got %v, want nil", err)
	}
}
