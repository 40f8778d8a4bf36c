package antientropy

import (
	"slices"
	"sync"
)

// Change is one committed record change, as the replica store's observer
// reports it (the node converts replica.Change into it).
type Change struct {
	// Partition is the id, in the ring the node holds, of the partition
	// whose tree the change updates (ring.Ring.DigestIDOf: the key's
	// partition, but for the cluster's own records stored away from
	// their hash's partition).
	Partition uint32
	KeyHash   uint64
	// Old and New are record hashes; 0 means none.
	Old, New uint64
	// OldUnknown: the replaced record was corrupt and its hash is unknown;
	// the partition's tree must be rebuilt.
	OldUnknown bool
}

// Trees holds this node's Merkle tree of every partition, by partition id
// (ring.Ring.ID). It is fed with Apply by the replica store's committer
// and built from disk by the Service, for the ids of the ring the node
// holds: once the ring's P doubles (a split), the Service drops the trees
// of the ids it no longer has and builds those of the new ones. Safe for
// concurrent use.
type Trees struct {
	// rebuild receives a partition that needs rebuilding; buffered so that
	// Apply never blocks (a full buffer leaves the request in stale, which
	// the Service's rebuild loop also scans).
	rebuild chan uint32

	mu struct {
		sync.RWMutex
		// parts holds an entry for each id whose tree is built or being
		// built; only the Service adds (beginRebuild) and removes (retain)
		// entries.
		parts map[uint32]*partTree
	}
}

// partTree is one partition's tree and its rebuild state.
type partTree struct {
	mu struct {
		sync.Mutex
		tree  *Tree // nil until built
		delta *Tree // non-nil while a rebuild is recording changes
		stale bool  // needs a rebuild
	}
}

// NewTrees returns an empty set of trees; partitions are built by the
// Service.
func NewTrees() *Trees {
	t := &Trees{rebuild: make(chan uint32, 1024)}
	t.mu.parts = make(map[uint32]*partTree)
	return t
}

// lookup returns p's entry, nil if p has no tree built or being built.
func (t *Trees) lookup(p uint32) *partTree {
	t.mu.RLock()
	defer t.mu.RUnlock()
	return t.mu.parts[p]
}

// part returns p's entry, adding an empty one if it has none.
func (t *Trees) part(p uint32) *partTree {
	if pt := t.lookup(p); pt != nil {
		return pt
	}
	t.mu.Lock()
	defer t.mu.Unlock()
	pt := t.mu.parts[p]
	if pt == nil {
		pt = &partTree{}
		t.mu.parts[p] = pt
	}
	return pt
}

// Apply updates the trees with committed changes. It never blocks: it is
// called on the replica store's committer. A change of an id with no
// entry is dropped: no build of it has taken its snapshot yet, so the
// build that comes will read the change from disk (beginRebuild adds the
// entry at the snapshot's moment, and every change after it is recorded
// in the entry's delta).
func (t *Trees) Apply(changes []Change) {
	for _, c := range changes {
		pt := t.lookup(c.Partition)
		if pt == nil {
			continue
		}
		pt.mu.Lock()
		if pt.mu.tree != nil {
			pt.mu.tree.Update(c.KeyHash, c.Old, c.New)
		}
		if pt.mu.delta != nil {
			pt.mu.delta.Update(c.KeyHash, c.Old, c.New)
		}
		wasStale := pt.mu.stale
		if c.OldUnknown {
			pt.mu.stale = true
		}
		pt.mu.Unlock()
		if c.OldUnknown && !wasStale {
			select {
			case t.rebuild <- c.Partition:
			default: // the rebuild loop also finds stale trees by polling
			}
		}
	}
}

// beginRebuild starts recording changes of p into a fresh delta, adding
// p's entry if it has none; called on the committer at the snapshot's
// moment. It returns the entry, which the build finishes or aborts.
func (t *Trees) beginRebuild(p uint32) *partTree {
	pt := t.part(p)
	pt.mu.Lock()
	pt.mu.delta = NewTree()
	pt.mu.stale = false
	pt.mu.Unlock()
	return pt
}

// finishRebuild installs fresh (the snapshot's tree) plus the changes
// recorded since the snapshot into pt (beginRebuild's entry; if retain
// dropped it meanwhile, the tree goes with it).
func (pt *partTree) finishRebuild(fresh *Tree) {
	pt.mu.Lock()
	defer pt.mu.Unlock()
	if pt.mu.delta != nil {
		fresh.AddTree(pt.mu.delta)
	}
	pt.mu.tree = fresh
	pt.mu.delta = nil
}

// abortRebuild stops recording after a failed rebuild and marks pt stale.
func (pt *partTree) abortRebuild() {
	pt.mu.Lock()
	pt.mu.delta = nil
	pt.mu.stale = true
	pt.mu.Unlock()
}

// needsBuild reports whether p has no tree yet or a stale one.
func (t *Trees) needsBuild(p uint32) bool {
	pt := t.lookup(p)
	if pt == nil {
		return true
	}
	pt.mu.Lock()
	defer pt.mu.Unlock()
	return pt.mu.tree == nil || pt.mu.stale
}

// retain drops the tree of every id not in keep (sorted ascending: the
// ids of the ring the Service builds trees for) and returns the ids it
// dropped.
func (t *Trees) retain(keep []uint32) []uint32 {
	t.mu.Lock()
	defer t.mu.Unlock()
	var dropped []uint32
	for p := range t.mu.parts {
		if _, ok := slices.BinarySearch(keep, p); !ok {
			delete(t.mu.parts, p)
			dropped = append(dropped, p)
		}
	}
	return dropped
}

// Nodes returns nodes of level of p's tree (see Tree.Nodes). Errors:
// ErrNotReady while the tree is not built or stale (or p has none);
// ErrBadRequest.
func (t *Trees) Nodes(p uint32, level int, idx []uint32) ([]uint64, error) {
	pt := t.lookup(p)
	if pt == nil {
		return nil, ErrNotReady
	}
	pt.mu.Lock()
	defer pt.mu.Unlock()
	if pt.mu.tree == nil || pt.mu.stale {
		return nil, ErrNotReady
	}
	return pt.mu.tree.Nodes(level, idx)
}

// Root returns p's root hash and whether the tree is ready.
func (t *Trees) Root(p uint32) (uint64, bool) {
	pt := t.lookup(p)
	if pt == nil {
		return 0, false
	}
	pt.mu.Lock()
	defer pt.mu.Unlock()
	if pt.mu.tree == nil || pt.mu.stale {
		return 0, false
	}
	return pt.mu.tree.Root(), true
}
