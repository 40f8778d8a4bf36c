package antientropy

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"slices"
	"sync"
	"sync/atomic"
	"testing"

	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/ringkv/ringkv/proto/kvpb"
	"github.com/ringkv/ringkv/replica"
	"github.com/ringkv/ringkv/ring"
)

// recordingPeers is localPeers that records the partition ids an exchange
// descended into (tree requests below the root) and fetched records of.
type recordingPeers struct {
	localPeers
	mu                 sync.Mutex
	descended, fetched map[uint32]bool
}

func newRecordingPeers(nodes map[string]*testNode) *recordingPeers {
	return &recordingPeers{localPeers: localPeers{nodes}, descended: map[uint32]bool{}, fetched: map[uint32]bool{}}
}

func (p *recordingPeers) Tree(ctx context.Context, node string, req *kvpb.TreeRequest) ([]uint64, error) {
	if req.GetLevel() > 0 {
		p.mu.Lock()
		p.descended[req.GetPartition()] = true
		p.mu.Unlock()
	}
	return p.localPeers.Tree(ctx, node, req)
}

func (p *recordingPeers) Fetch(ctx context.Context, node string, req *kvpb.FetchRequest) (*kvpb.FetchResponse, error) {
	p.mu.Lock()
	p.fetched[req.GetPartition()] = true
	p.mu.Unlock()
	return p.localPeers.Fetch(ctx, node, req)
}

// recorded returns the ids descended into and fetched, ascending.
func (p *recordingPeers) recorded() (descended, fetched []uint32) {
	p.mu.Lock()
	defer p.mu.Unlock()
	return slices.Sorted(maps.Keys(p.descended)), slices.Sorted(maps.Keys(p.fetched))
}

// keysOf returns n keys, named prefix and a number, of the partition with
// id in r.
func keysOf(r *ring.Ring, id uint32, prefix string, n int) []string {
	var keys []string
	for i := 0; len(keys) < n; i++ {
		if k := fmt.Sprintf("%s%d", prefix, i); r.IDOf([]byte(k)) == id {
			keys = append(keys, k)
		}
	}
	return keys
}

// TestSplitRingRepairsOnlyTheDifferingChild: on a split ring every node
// keeps one tree per child id (none per parent or storage partition), and
// replicas that differ in one child's keys find and repair that child
// only, though its sibling shares its storage partition.
func TestSplitRingRepairsOnlyTheDifferingChild(t *testing.T) {
	members := []string{"n1", "n2", "n3"}
	split, err := testRing(t, members...).Split()
	if err != nil {
		t.Fatal(err)
	}
	ids := split.IDs()
	if len(ids) != 2*testPartitions || ids[0] != 2*testPartitions {
		t.Fatalf("split ring ids %v, want %d ids from %d", ids, 2*testPartitions, 2*testPartitions)
	}
	nodes := newClusterOn(t, manual(), split, members...) // waits for a tree of each id, and of no other
	n1 := nodes["n1"]
	for i := range 200 {
		for _, n := range nodes {
			put(t, n, fmt.Sprintf("k%d", i), replica.Record{Value: []byte("v"), Timestamp: 10, NodeID: "n1"})
		}
	}
	target, sibling := ids[5], ids[4] // children of storage partition 2
	only := keysOf(split, target, "only-", 20)
	for _, k := range only {
		put(t, n1, k, replica.Record{Value: []byte("n1"), Timestamp: 20, NodeID: "n1"})
	}
	for _, p := range ids {
		a, _ := n1.trees.Root(p)
		b, _ := nodes["n2"].trees.Root(p)
		if differ := a != b; differ != (p == target) {
			t.Fatalf("partition id %d: n1 and n2 differ %v, want %v (only %d, not its sibling %d, differs)", p, differ, p == target, target, sibling)
		}
	}

	peers := newRecordingPeers(nodes)
	n1.svc.deps.Peers = peers
	rep, err := n1.svc.Repair(t.Context(), nil)
	if err != nil {
		t.Fatal(err)
	}
	if rep.Partitions != len(ids) || rep.Exchanges != 2*len(ids) || rep.Pushed != 2*len(only) || rep.Pulled != 0 || len(rep.Failed) > 0 {
		t.Fatalf("repair: %+v, want %d partitions, %d exchanges, %d pushed", rep, len(ids), 2*len(ids), 2*len(only))
	}
	descended, fetched := peers.recorded()
	if !slices.Equal(descended, []uint32{target}) || !slices.Equal(fetched, []uint32{target}) {
		t.Fatalf("exchanges descended into %v and fetched %v, want only %d", descended, fetched, target)
	}
	if err := rootsEqual(nodes); err != nil {
		t.Fatalf("after repair: %v", err)
	}
	for _, k := range only {
		if _, err := nodes["n3"].store.Get(target, []byte(k)); err != nil {
			t.Fatalf("n3 %s: %v", k, err)
		}
	}
}

// TestSplitDropsParentTreesAndBuildsChildren: when a node's ring doubles
// its P, the trees of the parents' ids are dropped and the children's
// built, with writes going on during the builds (none is lost: each
// child's tree equals one rebuilt from disk afterwards); the children's
// trees hold exactly their parent's records; a parent's id is no longer
// compared; exchanges run on the children.
func TestSplitDropsParentTreesAndBuildsChildren(t *testing.T) {
	members := []string{"n1", "n2", "n3"}
	r := testRing(t, members...)
	nodes := newClusterOn(t, manual(), r, members...)
	n1, n2 := nodes["n1"], nodes["n2"]
	ctx := t.Context()
	for i := range 300 {
		for _, n := range nodes {
			put(t, n, fmt.Sprintf("k%d", i), replica.Record{Value: []byte("v"), Timestamp: 10, NodeID: "n1"})
		}
	}
	if _, err := n1.svc.Repair(ctx, nil); err != nil { // a last-full gauge per parent
		t.Fatal(err)
	}
	parents := make([]uint64, testPartitions)
	for p := range uint32(testPartitions) {
		parents[p], _ = n2.trees.Root(p)
	}
	split, err := r.Split()
	if err != nil {
		t.Fatal(err)
	}

	// Writes go on while the nodes adopt the split ring and build the
	// children's trees.
	stop := make(chan struct{})
	var writer sync.WaitGroup
	var wrote atomic.Int64
	writer.Go(func() {
		for i := 0; ; i++ {
			select {
			case <-stop:
				return
			default:
			}
			rec := replica.Record{Value: []byte("w"), Timestamp: replica.Timestamp(100 + i), NodeID: "n1"}
			k := fmt.Appendf(nil, "w%d", i%500)
			if err := n1.store.Merge(ctx, []replica.Entry{{Partition: partitionOf(k), Key: k, Record: rec}}); err != nil {
				t.Error(err)
				return
			}
			wrote.Add(1)
		}
	})
	stopWriting := sync.OnceFunc(func() { close(stop); writer.Wait() })
	defer stopWriting()
	for _, n := range nodes {
		n.ring.p.Store(split)
	}
	for _, n := range nodes {
		n.waitReady(t) // the children's trees built, the parents' dropped
	}
	stopWriting()
	if wrote.Load() == 0 {
		t.Fatal("no write during the split")
	}

	for p := range uint32(testPartitions) {
		c := split.ID(2 * p)
		a, _ := n2.trees.Root(c)
		b, _ := n2.trees.Root(c + 1)
		if a+b != parents[p] {
			t.Fatalf("n2: children %d and %d of partition %d sum to %x, the parent's tree was %x", c, c+1, p, a+b, parents[p])
		}
	}
	for _, p := range split.IDs() {
		live, _ := n1.trees.Root(p)
		n1.svc.rebuild(ctx, p)
		oracle, _ := n1.trees.Root(p)
		if live != oracle {
			t.Fatalf("n1 partition id %d: incremental root %x, rebuilt %x", p, live, oracle)
		}
	}
	_, err = n2.svc.Tree(ctx, &kvpb.TreeRequest{Partition: 1, Fanout: Fanout, Depth: Depth})
	if !errors.Is(errorFor(err), ErrNotReady) {
		t.Fatalf("tree of parent id 1 after the split: %v, want ErrNotReady", err)
	}

	rep, err := n1.svc.Repair(ctx, nil)
	if err != nil || rep.Partitions != len(split.IDs()) || rep.Pushed == 0 || len(rep.Failed) > 0 {
		t.Fatalf("repair after the split: %+v %v", rep, err)
	}
	if err := rootsEqual(nodes); err != nil {
		t.Fatalf("after repair: %v", err)
	}
	if got := testutil.CollectAndCount(n1.svc.metrics.lastFull); got != len(split.IDs()) {
		t.Fatalf("%d last-full gauges, want one per child id (%d)", got, len(split.IDs()))
	}
}

// TestCheckOursAcrossSplit: a node serves tree and fetch requests for an
// id of the ring one split ahead of or behind its own when it holds that
// id's keys, and refuses one it does not hold; an id of another level
// than its ring's has no tree to compare (ErrNotReady).
func TestCheckOursAcrossSplit(t *testing.T) {
	members := []string{"n1", "n2", "n3", "n4"}
	r := testRing(t, members...)
	split, err := r.Split()
	if err != nil {
		t.Fatal(err)
	}
	nodes := newClusterOn(t, manual(), r, members...)
	n1 := nodes["n1"]
	mine, other := mineAndOther(t, r, "n1")
	children := func(p uint32) []uint32 { return []uint32{split.ID(2 * p), split.ID(2*p + 1)} }
	refused := 0
	check := func(id uint32, want bool) {
		t.Helper()
		err := n1.svc.checkOurs("tree", id)
		switch {
		case want && err != nil:
			t.Errorf("ring version %d: id %d refused: %v", n1.ring.Ring().Version(), id, err)
		case !want && !errors.Is(errorFor(err), ErrNotReplica):
			t.Errorf("ring version %d: id %d: %v, want ErrNotReplica", n1.ring.Ring().Version(), id, err)
		case !want:
			refused++
		}
	}

	// n1 is behind: a peer asks for children.
	for _, c := range children(mine) {
		check(c, true)
	}
	for _, c := range children(other) {
		check(c, false)
	}
	_, err = n1.svc.Tree(t.Context(), &kvpb.TreeRequest{Partition: children(mine)[0], Fanout: Fanout, Depth: Depth})
	if !errors.Is(errorFor(err), ErrNotReady) {
		t.Errorf("tree of a child id on the parents' ring: %v, want ErrNotReady", err)
	}

	// n1 is ahead: a peer asks for parents; its own children as before.
	n1.ring.p.Store(split)
	check(mine, true)
	check(other, false)
	for _, c := range children(mine) {
		check(c, true)
	}
	for _, c := range children(other) {
		check(c, false)
	}
	if got := testutil.ToFloat64(n1.svc.metrics.refused); got != float64(refused) || refused != 5 {
		t.Errorf("requests_refused_total = %v, refusals %d, want 5", got, refused)
	}
}

// duringScan is a Store whose ScanSnapshot calls during once, from the
// scan, after the snapshot began: a write the build's snapshot misses.
type duringScan struct {
	testStore
	during func()
}

func (d duringScan) ScanSnapshot(ctx context.Context, p uint32, begin func(), fn func(uint64, uint64) bool) error {
	once := sync.OnceFunc(d.during)
	return d.testStore.ScanSnapshot(ctx, p, begin, func(kh, rh uint64) bool {
		once()
		return fn(kh, rh)
	})
}

// TestFirstBuildKeepsChangesOfItsID: a change of an id that has no tree
// yet is recorded by the first build of that id once its snapshot began
// (the tree of a new id after a split), and read from disk before.
func TestFirstBuildKeepsChangesOfItsID(t *testing.T) {
	split, err := testRing(t, "n1").Split()
	if err != nil {
		t.Fatal(err)
	}
	n := &testNode{id: "n1", dir: t.TempDir(), ring: holding(split), trees: NewTrees()}
	n.open(t)
	t.Cleanup(func() { _ = n.store.Close() })
	id := split.IDs()[3]
	keys := keysOf(split, id, "k", 21)
	rec := func(ts int) replica.Record {
		return replica.Record{Value: []byte("v"), Timestamp: replica.Timestamp(ts), NodeID: "n1"}
	}
	for _, k := range keys[:20] { // before the build: no tree, read from disk
		put(t, n, k, rec(10))
	}
	store := duringScan{testStore: testStore{n.store}, during: func() {
		put(t, n, keys[0], rec(20)) // replaces a record the snapshot holds
		put(t, n, keys[20], rec(20))
	}}
	cfg := manual()
	cfg.NodeID = "n1"
	svc, err := New(cfg, Deps{Trees: n.trees, Store: store, Peers: localPeers{}, Ring: n.ring}) // not started: no builder
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = svc.Close() })
	svc.rebuild(t.Context(), id)
	live, ok := n.trees.Root(id)
	if !ok {
		t.Fatalf("partition id %d not built", id)
	}
	svc.deps.Store = testStore{n.store}
	svc.rebuild(t.Context(), id) // quiescent: the oracle
	if oracle, _ := n.trees.Root(id); live != oracle {
		t.Fatalf("partition id %d: first build %x, rebuilt %x", id, live, oracle)
	}
	if got := treeIDs(n.trees); !slices.Equal(got, []uint32{id}) {
		t.Fatalf("trees of %v, want only %d", got, id)
	}
}
