package replica

// Memory is what a Store's memory consumers were sized to, as read back
// from Badger's options and the version cache rather than from Config:
// what the store actually runs with.
type Memory struct {
	// BlockCacheBytes, IndexCacheBytes and MemTableBytes are Badger's
	// block cache, index cache and memtable size; NumMemtables how many
	// memtables Badger holds at most (the one being written and those
	// waiting to be flushed).
	BlockCacheBytes int64
	IndexCacheBytes int64
	MemTableBytes   int64
	NumMemtables    int
	// VersionCacheEntries is the version cache's bound (versions.go).
	VersionCacheEntries int
}

// Memory returns the sizes s runs with. Safe for concurrent use.
func (s *Store) Memory() Memory {
	o := s.db.Opts()
	return Memory{
		BlockCacheBytes:     o.BlockCacheSize,
		IndexCacheBytes:     o.IndexCacheSize,
		MemTableBytes:       o.MemTableSize,
		NumMemtables:        o.NumMemtables,
		VersionCacheEntries: s.versions.max,
	}
}
