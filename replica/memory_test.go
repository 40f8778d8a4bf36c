package replica

import "testing"

func TestMemoryReportsWhatBadgerRunsWith(t *testing.T) {
	tests := []struct {
		name string
		mod  func(*Config)
		want Memory
	}{
		{"defaults", nil, Memory{
			BlockCacheBytes: DefaultBlockCacheBytes, IndexCacheBytes: DefaultIndexCacheBytes,
			MemTableBytes: DefaultMemTableBytes, NumMemtables: 2, VersionCacheEntries: DefaultVersionCacheEntries,
		}},
		{"small", func(c *Config) {
			c.BlockCacheBytes, c.IndexCacheBytes, c.MemTableBytes, c.VersionCacheEntries = 3<<20, 1<<20, 2<<20, 1000
			c.MinFreeBytes = 0 // derived from the memtable
		}, Memory{BlockCacheBytes: 3 << 20, IndexCacheBytes: 1 << 20, MemTableBytes: 2 << 20, NumMemtables: 2, VersionCacheEntries: 1000}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			s := openTest(t, tc.mod)
			if got := s.Memory(); got != tc.want {
				t.Errorf("Memory: got %+v, want %+v", got, tc.want)
			}
		})
	}
}
