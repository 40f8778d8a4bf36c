package replica

// versionCache remembers, for the records the committer wrote recently,
// what a merge needs of the stored record: its timestamp and node id (to
// order an incoming record against it) and its hash (the anti-entropy
// tree's old value). A merge that finds its key here skips the Badger
// read. That read is not cheap: Badger's Get consults every memtable and
// every level of the LSM tree even when the memtable holds the key (it
// stops only at an exact version), and once a workload has rewritten its
// keys for a while each level holds an old version of each, so every
// level's bloom filter says yes and each costs a block seek. On the
// bench's local cluster, after the workloads before it, that read was 15%
// of the CPU samples of QUORUM writes (docs/bench/HISTORY.md).
//
// It is owned by the committer goroutine, the only writer of records, so
// it needs no lock. It stays true to Badger because every write of a
// record goes through the committer: a merge that stages a record puts
// it, a repair that deletes one drops it, and a failed commit (staged
// writes lost) resets it. Raw writes cannot touch the record namespace.
// Bits that rot on disk under a cached record are not seen by a merge
// until something reads the record (a Get, a scan, the scrubber) and finds
// it corrupt: that resets the cache.
// An incoming record with the cached timestamp and node id (the same
// write delivered again) is ordered by reading Badger as before: the two
// may differ in value, tombstone or expiry only.
//
// Size: at most Config.VersionCacheEntries keys; when full, an eighth of them (as
// Go's map iteration picks them) is evicted.
type versionCache struct {
	m   map[string]cachedVersion
	max int
	// corruptSeen is Store.corruptSeen when the cache was last reset for
	// it: a record found corrupt (by a read, the scrubber or a merge)
	// resets the cache, so that the next merge of its key reads it and
	// repairs it, as without the cache.
	corruptSeen uint64
}

type cachedVersion struct {
	timestamp Timestamp
	nodeID    string
	hash      uint64 // recordHash of the stored key and encoding
}

func newVersionCache(maxEntries int) *versionCache {
	return &versionCache{m: make(map[string]cachedVersion), max: maxEntries}
}

// get returns the cached version of the record stored under key (the
// Badger key).
func (c *versionCache) get(key []byte) (cachedVersion, bool) {
	v, ok := c.m[string(key)]
	return v, ok
}

// put records that rec, hashing to hash, is now stored under key.
func (c *versionCache) put(key []byte, rec Record, hash uint64) {
	if _, ok := c.m[string(key)]; !ok && len(c.m) >= c.max {
		evict := max(c.max/8, 1)
		for k := range c.m {
			delete(c.m, k)
			evict--
			if evict == 0 {
				break
			}
		}
	}
	c.m[string(key)] = cachedVersion{timestamp: rec.Timestamp, nodeID: rec.NodeID, hash: hash}
}

// drop forgets key: its record was deleted.
func (c *versionCache) drop(key []byte) { delete(c.m, string(key)) }

// reset forgets everything: a commit failed, and what was staged is lost.
func (c *versionCache) reset() { clear(c.m) }

// order compares an incoming record with the cached one by timestamp and
// node id: >0 newer, <0 older. ok is false when they tie there, and only
// the stored record can order them.
func (v cachedVersion) order(rec Record) (cmp int, ok bool) {
	switch {
	case rec.Timestamp > v.timestamp:
		return 1, true
	case rec.Timestamp < v.timestamp:
		return -1, true
	case rec.NodeID > v.nodeID:
		return 1, true
	case rec.NodeID < v.nodeID:
		return -1, true
	}
	return 0, false
}
