package antientropy

import (
	"sync"
)

// Change is one committed record change, as the replica store's observer
// reports it (the node converts replica.Change into it).
type Change struct {
	Partition uint32
	KeyHash   uint64
	// Old and New are record hashes; 0 means none.
	Old, New uint64
	// OldUnknown: the replaced record was corrupt and its hash is unknown;
	// the partition's tree must be rebuilt.
	OldUnknown bool
}

// Trees holds this node's Merkle tree of every partition. It is fed with
// Apply by the replica store's committer and rebuilt from disk by the
// Service. Safe for concurrent use.
type Trees struct {
	// rebuild receives a partition that needs rebuilding; buffered so that
	// Apply never blocks (a full buffer leaves the request in stale, which
	// the Service's rebuild loop also scans).
	rebuild chan uint32

	mu struct {
		sync.RWMutex
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

func (t *Trees) part(p uint32) *partTree {
	t.mu.RLock()
	pt := t.mu.parts[p]
	t.mu.RUnlock()
	if pt != nil {
		return pt
	}
	t.mu.Lock()
	defer t.mu.Unlock()
	if pt = t.mu.parts[p]; pt == nil {
		pt = &partTree{}
		t.mu.parts[p] = pt
	}
	return pt
}

// Apply updates the trees with committed changes. It never blocks: it is
// called on the replica store's committer.
func (t *Trees) Apply(changes []Change) {
	for _, c := range changes {
		pt := t.part(c.Partition)
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

// beginRebuild starts recording changes of p into a fresh delta; called on
// the committer at the snapshot's moment.
func (t *Trees) beginRebuild(p uint32) {
	pt := t.part(p)
	pt.mu.Lock()
	pt.mu.delta = NewTree()
	pt.mu.stale = false
	pt.mu.Unlock()
}

// finishRebuild installs fresh (the snapshot's tree) plus the changes
// recorded since the snapshot.
func (t *Trees) finishRebuild(p uint32, fresh *Tree) {
	pt := t.part(p)
	pt.mu.Lock()
	defer pt.mu.Unlock()
	if pt.mu.delta != nil {
		fresh.AddTree(pt.mu.delta)
	}
	pt.mu.tree = fresh
	pt.mu.delta = nil
}

// abortRebuild stops recording after a failed rebuild and marks p stale.
func (t *Trees) abortRebuild(p uint32) {
	pt := t.part(p)
	pt.mu.Lock()
	pt.mu.delta = nil
	pt.mu.stale = true
	pt.mu.Unlock()
}

// needsBuild reports whether p has no tree yet or a stale one.
func (t *Trees) needsBuild(p uint32) bool {
	pt := t.part(p)
	pt.mu.Lock()
	defer pt.mu.Unlock()
	return pt.mu.tree == nil || pt.mu.stale
}

// Nodes returns nodes of level of p's tree (see Tree.Nodes). Errors:
// ErrNotReady while the tree is not built or stale; ErrBadRequest.
func (t *Trees) Nodes(p uint32, level int, idx []uint32) ([]uint64, error) {
	pt := t.part(p)
	pt.mu.Lock()
	defer pt.mu.Unlock()
	if pt.mu.tree == nil || pt.mu.stale {
		return nil, ErrNotReady
	}
	return pt.mu.tree.Nodes(level, idx)
}

// Root returns p's root hash and whether the tree is ready.
func (t *Trees) Root(p uint32) (uint64, bool) {
	pt := t.part(p)
	pt.mu.Lock()
	defer pt.mu.Unlock()
	if pt.mu.tree == nil || pt.mu.stale {
		return 0, false
	}
	return pt.mu.tree.Root(), true
}
