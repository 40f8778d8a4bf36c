package antientropy

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"math/rand/v2"
	"net"
	"path/filepath"
	"slices"
	"sync/atomic"
	"testing"
	"time"

	"github.com/cespare/xxhash/v2"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
	"go.uber.org/goleak"
	"storj.io/drpc/drpcmux"
	"storj.io/drpc/drpcserver"

	"github.com/ringkv/ringkv/coordinator"
	"github.com/ringkv/ringkv/internal/fault"
	"github.com/ringkv/ringkv/internal/rpcconn"
	"github.com/ringkv/ringkv/proto/kvpb"
	"github.com/ringkv/ringkv/replica"
	"github.com/ringkv/ringkv/ring"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

// testStore adapts replica.Store the way node does.
type testStore struct{ s *replica.Store }

func (a testStore) ScanSnapshot(ctx context.Context, p uint32, begin func(), fn func(uint64, uint64) bool) error {
	return a.s.ScanSnapshot(ctx, p, begin, fn)
}

func (a testStore) Records(p uint32, start []byte, fn func([]byte, uint64, *kvpb.Record) bool) error {
	return a.s.Scan(p, nil, start, func(key []byte, rec replica.Record) bool {
		return fn(key, replica.RecordHash(key, rec), toWire(rec))
	})
}

func (a testStore) Merge(ctx context.Context, recs []*kvpb.KeyedRecord) error {
	es := make([]replica.Entry, len(recs))
	for i, kr := range recs {
		es[i] = replica.Entry{Partition: kr.GetPartition(), Key: kr.GetKey(), Record: fromWire(kr.GetRecord())}
	}
	return a.s.Merge(ctx, es)
}

func (a testStore) Verify(p uint32, start []byte, limit int, corrupt func([]byte)) ([]byte, int, int64, error) {
	return a.s.Verify(p, start, limit, corrupt)
}

func (a testStore) Quarantine(ctx context.Context, p uint32, key []byte) (bool, error) {
	return a.s.Quarantine(ctx, p, key)
}

func (a testStore) DeleteIfEqual(ctx context.Context, p uint32, key []byte, rec *kvpb.Record) (bool, error) {
	return a.s.DeleteIfEqual(ctx, p, key, fromWire(rec))
}

func toWire(r replica.Record) *kvpb.Record {
	w := &kvpb.Record{Value: r.Value, Timestamp: uint64(r.Timestamp), NodeId: r.NodeID, Tombstone: r.Tombstone}
	if !r.ExpiresAt.IsZero() {
		w.ExpiresAtUnixNanos = r.ExpiresAt.UnixNano()
	}
	return w
}

func fromWire(w *kvpb.Record) replica.Record {
	r := replica.Record{Value: w.GetValue(), Timestamp: replica.Timestamp(w.GetTimestamp()), NodeID: w.GetNodeId(), Tombstone: w.GetTombstone()}
	if ns := w.GetExpiresAtUnixNanos(); ns != 0 {
		r.ExpiresAt = time.Unix(0, ns).UTC()
	}
	return r
}

// ringHolder is a node's RingSource: a test changes its ring as gossip
// would.
type ringHolder struct{ p atomic.Pointer[ring.Ring] }

func holding(r *ring.Ring) *ringHolder {
	h := &ringHolder{}
	h.p.Store(r)
	return h
}

func (h *ringHolder) Ring() *ring.Ring { return h.p.Load() }

// localPeers calls the other test nodes' services and stores directly.
type localPeers struct{ nodes map[string]*testNode }

func (l localPeers) Tree(ctx context.Context, node string, req *kvpb.TreeRequest) ([]uint64, error) {
	resp, err := l.nodes[node].svc.Tree(ctx, req)
	if err != nil {
		return nil, err
	}
	return resp.GetHashes(), nil
}

func (l localPeers) Fetch(ctx context.Context, node string, req *kvpb.FetchRequest) (*kvpb.FetchResponse, error) {
	return l.nodes[node].svc.Fetch(ctx, req)
}

func (l localPeers) Merge(ctx context.Context, node string, recs []*kvpb.KeyedRecord) error {
	return testStore{l.nodes[node].store}.Merge(ctx, recs)
}

func (l localPeers) Read(_ context.Context, node string, keys []*kvpb.ReadKey) ([]*kvpb.ReadResult, error) {
	out := make([]*kvpb.ReadResult, len(keys))
	for i, k := range keys {
		rec, err := l.nodes[node].store.Get(k.GetPartition(), k.GetKey())
		switch {
		case err == nil:
			out[i] = &kvpb.ReadResult{Status: kvpb.ReadResult_STATUS_FOUND, Record: toWire(rec)}
		case errors.Is(err, replica.ErrNotFound):
			out[i] = &kvpb.ReadResult{Status: kvpb.ReadResult_STATUS_NOT_FOUND}
		default:
			out[i] = &kvpb.ReadResult{Status: kvpb.ReadResult_STATUS_CORRUPT}
		}
	}
	return out, nil
}

type testNode struct {
	id    string
	dir   string
	ring  *ringHolder
	store *replica.Store
	trees *Trees
	svc   *Service
	reg   *prometheus.Registry
}

const testPartitions = 4

func testRing(t testing.TB, ids ...string) *ring.Ring {
	t.Helper()
	r, err := ring.New(ring.Config{Partitions: testPartitions, ReplicationFactor: 3})
	if err != nil {
		t.Fatal(err)
	}
	for _, id := range ids {
		if r, err = r.Join(ring.Member{ID: id}); err != nil {
			t.Fatal(err)
		}
	}
	return r
}

// newCluster starts one Service per id over on-disk stores, connected in
// memory, on testRing(ids). cfg is applied to every node (NodeID filled
// in).
func newCluster(t testing.TB, cfg Config, ids ...string) map[string]*testNode {
	t.Helper()
	return newClusterOn(t, cfg, testRing(t, ids...), ids...)
}

// newClusterOn is newCluster on ring r, which each node holds in its own
// ringHolder.
func newClusterOn(t testing.TB, cfg Config, r *ring.Ring, ids ...string) map[string]*testNode {
	t.Helper()
	nodes := map[string]*testNode{}
	for _, id := range ids {
		n := &testNode{id: id, dir: filepath.Join(t.TempDir(), id), ring: holding(r), trees: NewTrees(), reg: prometheus.NewRegistry()}
		n.open(t)
		c := cfg
		c.NodeID = id
		svc, err := New(c, Deps{Trees: n.trees, Store: testStore{n.store}, Scrub: testStore{n.store}, Collect: testStore{n.store},
			Peers: localPeers{nodes}, Ring: n.ring, Registerer: n.reg})
		if err != nil {
			t.Fatal(err)
		}
		n.svc = svc
		nodes[id] = n
	}
	for _, n := range nodes {
		n.svc.Start()
	}
	t.Cleanup(func() {
		for _, n := range nodes {
			_ = n.svc.Close()
			_ = n.store.Close()
		}
	})
	for _, n := range nodes {
		n.waitReady(t)
	}
	return nodes
}

// open opens n's store, whose observer feeds n's trees as the node's
// does: each change under the id of its key's partition in n's ring.
func (n *testNode) open(t testing.TB) {
	t.Helper()
	observe := func(cs []replica.Change) {
		r := n.ring.Ring()
		out := make([]Change, len(cs))
		for i, c := range cs {
			out[i] = Change{Partition: r.IDOfHash(c.KeyHash), KeyHash: c.KeyHash, Old: c.Old, New: c.New, OldUnknown: c.OldUnknown}
		}
		n.trees.Apply(out)
	}
	s, err := replica.Open(replica.Config{Dir: n.dir, MemTableBytes: 1 << 20},
		replica.Deps{Observer: observe, BasePartitions: func() int { return testPartitions }})
	if err != nil {
		t.Fatal(err)
	}
	n.store = s
}

// waitReady waits until n holds a built tree for every id of its ring,
// and no other.
func (n *testNode) waitReady(t testing.TB) {
	t.Helper()
	poll(t, "trees of "+n.id+" built", func() error {
		ids := n.ring.Ring().IDs()
		for _, p := range ids {
			if _, ok := n.trees.Root(p); !ok {
				return fmt.Errorf("partition %d not ready", p)
			}
		}
		if held := treeIDs(n.trees); !slices.Equal(held, ids) {
			return fmt.Errorf("trees of %v, want %v", held, ids)
		}
		return nil
	})
}

// treeIDs returns, ascending, the ids trees holds an entry for.
func treeIDs(trees *Trees) []uint32 {
	trees.mu.RLock()
	defer trees.mu.RUnlock()
	return slices.Sorted(maps.Keys(trees.mu.parts))
}

func poll(t testing.TB, what string, cond func() error) {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for {
		err := cond()
		if err == nil {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("waiting for %s: %v", what, err)
		}
		tm := time.NewTimer(10 * time.Millisecond)
		<-tm.C
	}
}

func partitionOf(key []byte) uint32 { return uint32(xxhash.Sum64(key) >> 62) } // 4 partitions

func put(t *testing.T, n *testNode, key string, rec replica.Record) {
	t.Helper()
	k := []byte(key)
	if err := n.store.Merge(t.Context(), []replica.Entry{{Partition: partitionOf(k), Key: k, Record: rec}}); err != nil {
		t.Fatal(err)
	}
}

// rootsEqual compares the nodes' trees of every id of their ring (one
// they all hold).
func rootsEqual(nodes map[string]*testNode) error {
	var ids []uint32
	for _, n := range nodes {
		ids = n.ring.Ring().IDs()
		break
	}
	for _, p := range ids {
		var want uint64
		first := true
		for id, n := range nodes {
			r, ok := n.trees.Root(p)
			if !ok {
				return fmt.Errorf("%s partition %d not ready", id, p)
			}
			if first {
				want, first = r, false
			} else if r != want {
				return fmt.Errorf("partition %d differs on %s", p, id)
			}
		}
	}
	return nil
}

func manual() Config {
	c := DefaultConfig()
	c.Interval, c.ScrubPerSec, c.TombstoneGrace = -1, -1, -1
	c.PageRecords = 7 // many pages
	return c
}

func TestExchangeRepairsBothWays(t *testing.T) {
	nodes := newCluster(t, manual(), "n1", "n2", "n3")
	n1, n2, n3 := nodes["n1"], nodes["n2"], nodes["n3"]
	rng := rand.New(rand.NewPCG(1, 2))
	want := map[string]replica.Record{}
	for i := range 300 {
		key := fmt.Sprintf("k%03d", i)
		rec := replica.Record{Value: []byte(key), Timestamp: replica.Timestamp(100 + rng.IntN(50)), NodeID: "n1"}
		switch i % 3 {
		case 0:
			put(t, n1, key, rec)
		case 1:
			put(t, n2, key, rec)
		default: // both, n2 newer
			put(t, n1, key, rec)
			rec.Timestamp += 1000
			rec.Value = []byte("newer")
			put(t, n2, key, rec)
		}
		want[key] = rec
	}
	if rootsEqual(nodes) == nil {
		t.Fatal("roots equal before repair")
	}
	rep, err := n1.svc.Repair(t.Context(), nil)
	if err != nil {
		t.Fatal(err)
	}
	if rep.Partitions != testPartitions || rep.Exchanges != 2*testPartitions || rep.Differing == 0 || rep.Pulled == 0 || rep.Pushed == 0 || len(rep.Failed) > 0 {
		t.Fatalf("first repair: %+v", rep)
	}
	// One cycle of n1 leaves n1 with the union, but the replica it
	// exchanged with first may lack what the second one held: one more
	// cycle (of any node) finishes.
	if _, err := n1.svc.Repair(t.Context(), nil); err != nil {
		t.Fatal(err)
	}
	if err := rootsEqual(nodes); err != nil {
		t.Fatalf("after repair: %v", err)
	}
	for _, n := range []*testNode{n1, n2, n3} {
		for key, rec := range want {
			got, err := n.store.Get(partitionOf([]byte(key)), []byte(key))
			if err != nil || replica.Compare(got, rec) != 0 {
				t.Fatalf("%s %s: got %+v %v, want %+v", n.id, key, got, err, rec)
			}
		}
	}
	rep, err = n3.svc.Repair(t.Context(), []uint32{1})
	if err != nil || rep.Differing != 0 || rep.Exchanges != 2 || rep.Partitions != 1 {
		t.Fatalf("second repair: %+v %v", rep, err)
	}
	if got := testutil.ToFloat64(n1.svc.metrics.exchanges.WithLabelValues("repaired")); got == 0 {
		t.Error("no repaired exchange counted")
	}
}

func TestScheduledExchangeRepairs(t *testing.T) {
	cfg := manual()
	cfg.Interval = 20 * time.Millisecond
	nodes := newCluster(t, cfg, "n1", "n2", "n3")
	for i := range 50 {
		put(t, nodes["n2"], fmt.Sprintf("s%d", i), replica.Record{Value: []byte("v"), Timestamp: 5, NodeID: "n2"})
	}
	poll(t, "scheduled exchanges to converge", func() error { return rootsEqual(nodes) })
}

// TestTreeIncrementalMatchesRebuild checks the incrementally updated trees
// against trees rebuilt from disk (the oracle), with writes going on
// during the rebuild.
func TestTreeIncrementalMatchesRebuild(t *testing.T) {
	seed := time.Now().UnixNano()
	t.Logf("seed %d", seed)
	rng := rand.New(rand.NewPCG(uint64(seed), 7))
	nodes := newCluster(t, manual(), "n1")
	n := nodes["n1"]
	write := func(i int) {
		put(t, n, fmt.Sprintf("key-%d", rng.IntN(200)), replica.Record{Value: []byte(fmt.Sprint(i)), Timestamp: replica.Timestamp(i), NodeID: "n1", Tombstone: i%7 == 0})
	}
	for i := range 500 {
		write(i)
	}
	before := make([]uint64, testPartitions)
	for p := range uint32(testPartitions) {
		before[p], _ = n.trees.Root(p)
	}
	done := make(chan struct{})
	go func() {
		defer close(done)
		for p := range uint32(testPartitions) {
			n.svc.rebuild(t.Context(), p)
		}
	}()
	for i := 500; i < 700; i++ {
		write(i)
	}
	<-done
	live := make([]uint64, testPartitions)
	for p := range uint32(testPartitions) {
		live[p], _ = n.trees.Root(p)
		n.svc.rebuild(t.Context(), p) // quiescent: the oracle
		oracle, _ := n.trees.Root(p)
		if live[p] != oracle {
			t.Fatalf("partition %d: incremental root %x, rebuilt %x", p, live[p], oracle)
		}
	}
}

// TestDescentFindsExactlyTheDifferingBuckets compares the level-by-level
// descent with a brute-force comparison of every leaf.
func TestDescentFindsExactlyTheDifferingBuckets(t *testing.T) {
	rng := rand.New(rand.NewPCG(3, 4))
	a, b := NewTree(), NewTree()
	for range 2000 {
		kh, rh := rng.Uint64(), rng.Uint64()|1
		a.Update(kh, 0, rh)
		b.Update(kh, 0, rh)
	}
	want := map[uint32]bool{}
	for range 40 {
		kh := rng.Uint64()
		b.Update(kh, 0, rng.Uint64()|1)
		want[Bucket(kh)] = true
	}
	idx := []uint32{0}
	for level := 0; level <= Depth; level++ {
		if level > 0 {
			idx = Children(idx)
		}
		la, err := a.Nodes(level, idx)
		if err != nil {
			t.Fatal(err)
		}
		lb, _ := b.Nodes(level, idx)
		idx = Differing(idx, la, lb)
	}
	if len(idx) != len(want) {
		t.Fatalf("descent found %d buckets, want %d", len(idx), len(want))
	}
	for _, i := range idx {
		if !want[i] {
			t.Fatalf("bucket %d reported but not changed", i)
		}
	}
	if _, err := a.Nodes(Depth+1, nil); !errors.Is(err, ErrBadRequest) {
		t.Errorf("level out of range: got %v", err)
	}
	if _, err := a.Nodes(1, []uint32{Fanout}); !errors.Is(err, ErrBadRequest) {
		t.Errorf("node out of range: got %v", err)
	}
}

func TestScrubberQuarantinesAndRepairs(t *testing.T) {
	cfg := manual()
	cfg.ScrubPerSec = 10000
	nodes := newCluster(t, cfg, "n1", "n2", "n3")
	n2 := nodes["n2"]
	for i := range 100 {
		rec := replica.Record{Value: fmt.Appendf(nil, "v%d", i), Timestamp: 10, NodeID: "n1"}
		for _, n := range nodes {
			put(t, n, fmt.Sprintf("c%03d", i), rec)
		}
	}
	// Corrupt 10 records of n2 on disk while its store is closed.
	_ = n2.svc.Close()
	if err := n2.store.Close(); err != nil {
		t.Fatal(err)
	}
	bad, err := fault.CorruptRecords(n2.dir, func(i int, _ uint32, _ []byte) bool { return i%10 == 0 })
	if err != nil || len(bad) != 10 {
		t.Fatalf("corrupt: %d %v", len(bad), err)
	}
	n2.trees = NewTrees()
	n2.open(t)
	n2.reg = prometheus.NewRegistry()
	svc, err := New(func() Config { c := cfg; c.NodeID = "n2"; return c }(), Deps{Trees: n2.trees, Store: testStore{n2.store},
		Scrub: testStore{n2.store}, Peers: localPeers{nodes}, Ring: n2.ring, Registerer: n2.reg})
	if err != nil {
		t.Fatal(err)
	}
	n2.svc = svc
	svc.Start()
	poll(t, "the scrubber to repair", func() error {
		if got := testutil.ToFloat64(svc.metrics.scrubRepaired); got != 10 {
			return fmt.Errorf("%v repaired", got)
		}
		return nil
	})
	if got := testutil.ToFloat64(svc.metrics.scrubCorrupt); got != 10 {
		t.Fatalf("scrub_corrupt_total %v, want 10", got)
	}
	for _, c := range bad {
		if _, err := n2.store.Get(c.Partition, c.Key); err != nil {
			t.Fatalf("get repaired %s: %v", c.Key, err)
		}
	}
	poll(t, "trees rebuilt and equal", func() error { return rootsEqual(nodes) })
}

func TestCollectTombstones(t *testing.T) {
	now := time.Now()
	cfg := manual()
	cfg.TombstoneGrace = time.Hour
	cfg.GCInterval = time.Hour
	cfg.Now = func() time.Time { return now }
	nodes := newCluster(t, cfg, "n1", "n2", "n3")
	old := replica.MakeTimestamp(now.Add(-2*time.Hour), 0)
	young := replica.MakeTimestamp(now.Add(-time.Minute), 0)
	tomb := func(ts replica.Timestamp) replica.Record {
		return replica.Record{Tombstone: true, Timestamp: ts, NodeID: "n1"}
	}
	for _, n := range nodes {
		put(t, n, "everywhere", tomb(old))
		put(t, n, "young", tomb(young))
	}
	put(t, nodes["n1"], "n3-has-old-value", tomb(old))
	put(t, nodes["n2"], "n3-has-old-value", tomb(old))
	put(t, nodes["n3"], "n3-has-old-value", replica.Record{Value: []byte("old"), Timestamp: old - 1, NodeID: "n1"})
	put(t, nodes["n1"], "n1-only", tomb(old))

	if got := nodes["n1"].svc.CollectTombstones(t.Context()); got != 2 {
		t.Fatalf("n1 collected %d, want 2 (everywhere, n1-only)", got)
	}
	get := func(n, key string) error {
		_, err := nodes[n].store.Get(partitionOf([]byte(key)), []byte(key))
		return err
	}
	if !errors.Is(get("n1", "everywhere"), replica.ErrNotFound) || get("n1", "young") != nil || get("n1", "n3-has-old-value") != nil {
		t.Fatal("n1 collected the wrong tombstones")
	}
	// An exchange does not bring the collected tombstone back to n1, nor
	// the old value: n3 gets the tombstone.
	if _, err := nodes["n3"].svc.Repair(t.Context(), nil); err != nil {
		t.Fatal(err)
	}
	if !errors.Is(get("n1", "everywhere"), replica.ErrNotFound) {
		t.Fatal("exchange revived a collected tombstone")
	}
	if rec, err := nodes["n3"].store.Get(partitionOf([]byte("n3-has-old-value")), []byte("n3-has-old-value")); err != nil || !rec.Tombstone {
		t.Fatalf("n3 after exchange: %+v %v", rec, err)
	}
	for _, id := range []string{"n2", "n3"} {
		nodes[id].svc.CollectTombstones(t.Context())
	}
	nodes["n1"].svc.CollectTombstones(t.Context())
	for _, id := range []string{"n1", "n2", "n3"} {
		for _, key := range []string{"everywhere", "n3-has-old-value"} {
			if err := get(id, key); !errors.Is(err, replica.ErrNotFound) {
				t.Errorf("%s %s after collection: %v", id, key, err)
			}
		}
	}
}

// TestClientOverDRPC runs the exchange through Client against a real drpc
// server serving the Repair service and coordinator's Replica service.
func TestClientOverDRPC(t *testing.T) {
	nodes := newCluster(t, manual(), "n1", "n2")
	n2 := nodes["n2"]
	mux := drpcmux.New()
	if err := kvpb.DRPCRegisterRepair(mux, n2.svc); err != nil {
		t.Fatal(err)
	}
	rs, err := coordinator.NewReplicaServer(n2.store, replica.NewClock(nil, 0), coordinator.ReplicaServerOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if err := kvpb.DRPCRegisterReplica(mux, rs); err != nil {
		t.Fatal(err)
	}
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(t.Context())
	served := make(chan error, 1)
	go func() { served <- drpcserver.New(mux).Serve(ctx, lis) }()
	defer func() { cancel(); <-served }()

	cli := NewClient(resolverFunc(func(id string) (string, bool) { return lis.Addr().String(), id == "n2" }), nil, rpcconn.Identity{})
	defer func() { _ = cli.Close() }()
	n1 := nodes["n1"]
	for i := range 40 {
		put(t, n1, fmt.Sprintf("d%d", i), replica.Record{Value: []byte("x"), Timestamp: 9, NodeID: "n1"})
		put(t, n2, fmt.Sprintf("e%d", i), replica.Record{Value: []byte("y"), Timestamp: 9, NodeID: "n2"})
	}
	n1.svc.deps.Peers = cli
	rep, err := n1.svc.Repair(t.Context(), nil)
	if err != nil || len(rep.Failed) > 0 || rep.Pulled != 40 || rep.Pushed != 40 {
		t.Fatalf("repair over drpc: %+v %v", rep, err)
	}
	if err := rootsEqual(nodes); err != nil {
		t.Fatal(err)
	}
	res, err := cli.Read(t.Context(), "n2", []*kvpb.ReadKey{{Partition: partitionOf([]byte("d1")), Key: []byte("d1")}})
	if err != nil || len(res) != 1 || res[0].GetStatus() != kvpb.ReadResult_STATUS_FOUND {
		t.Fatalf("read: %v %v", res, err)
	}
	if _, err := cli.Tree(t.Context(), "n2", &kvpb.TreeRequest{Fanout: 2, Depth: 2}); !errors.Is(err, ErrBadRequest) {
		t.Errorf("tree with another shape: got %v, want ErrBadRequest", err)
	}
	if _, err := cli.Fetch(t.Context(), "n2", &kvpb.FetchRequest{Fanout: Fanout, Depth: Depth, Buckets: []uint32{Leaves}}); !errors.Is(err, ErrBadRequest) {
		t.Errorf("fetch of a bad bucket: got %v, want ErrBadRequest", err)
	}
	if _, err := cli.Tree(t.Context(), "n9", &kvpb.TreeRequest{}); !errors.Is(err, ErrUnknownPeer) {
		t.Errorf("unknown peer: got %v", err)
	}
}

type resolverFunc func(string) (string, bool)

func (f resolverFunc) RPCAddr(id string) (string, bool) { return f(id) }

func TestConfigValidate(t *testing.T) {
	if err := (Config{}).Validate(); err == nil {
		t.Error("empty NodeID accepted")
	}
	if err := (Config{NodeID: "n1", KeysPerSec: -1, PageRecords: -1, RPCTimeout: -1}).Validate(); err == nil {
		t.Error("negative values accepted")
	}
	if _, err := New(Config{NodeID: "n1"}, Deps{}); err == nil {
		t.Error("missing deps accepted")
	}
}

// An expired value is collected like a tombstone: once it expired more
// than the grace ago and every replica holds it (or newer, or nothing);
// a replica still holding an older value keeps it from being collected,
// and an exchange hands that replica the expired value, never the old
// value back.
func TestCollectExpiredValues(t *testing.T) {
	now := time.Now()
	cfg := manual()
	cfg.TombstoneGrace = time.Hour
	cfg.GCInterval = time.Hour
	cfg.Now = func() time.Time { return now }
	nodes := newCluster(t, cfg, "n1", "n2", "n3")
	old := replica.MakeTimestamp(now.Add(-3*time.Hour), 0)
	expired := func(ts replica.Timestamp, at time.Time) replica.Record {
		return replica.Record{Value: []byte("v"), Timestamp: ts, NodeID: "n1", ExpiresAt: at}
	}
	longAgo := expired(old, now.Add(-2*time.Hour))
	for _, n := range nodes {
		put(t, n, "everywhere", longAgo)
		put(t, n, "recently", expired(old, now.Add(-time.Minute)))
		put(t, n, "live", expired(old, now.Add(time.Hour)))
	}
	put(t, nodes["n1"], "n3-has-old-value", longAgo)
	put(t, nodes["n2"], "n3-has-old-value", longAgo)
	put(t, nodes["n3"], "n3-has-old-value", replica.Record{Value: []byte("old"), Timestamp: old - 1, NodeID: "n1"})

	if got := nodes["n1"].svc.CollectTombstones(t.Context()); got != 1 {
		t.Fatalf("n1 collected %d, want 1 (everywhere)", got)
	}
	get := func(n, key string) (replica.Record, error) {
		return nodes[n].store.Get(partitionOf([]byte(key)), []byte(key))
	}
	for _, key := range []string{"recently", "live", "n3-has-old-value"} {
		if _, err := get("n1", key); err != nil {
			t.Fatalf("n1 collected %s: %v", key, err)
		}
	}
	if _, err := nodes["n3"].svc.Repair(t.Context(), nil); err != nil {
		t.Fatal(err)
	}
	if _, err := get("n1", "everywhere"); !errors.Is(err, replica.ErrNotFound) {
		t.Fatalf("exchange revived a collected expired value: %v", err)
	}
	if rec, err := get("n3", "n3-has-old-value"); err != nil || !rec.ExpiresAt.Equal(longAgo.ExpiresAt) {
		t.Fatalf("n3 after exchange: %+v %v, want the expired value", rec, err)
	}
	for _, id := range []string{"n2", "n3", "n1"} {
		nodes[id].svc.CollectTombstones(t.Context())
	}
	for _, id := range []string{"n1", "n2", "n3"} {
		for _, key := range []string{"everywhere", "n3-has-old-value"} {
			if _, err := get(id, key); !errors.Is(err, replica.ErrNotFound) {
				t.Errorf("%s %s after collection: %v", id, key, err)
			}
		}
		if _, err := get(id, "live"); err != nil {
			t.Errorf("%s live: %v", id, err)
		}
	}
}

// TestTreeAndFetchRefuseOtherPartitions: a repair request for a partition
// the node does not replicate (or one out of range) is refused with
// ErrNotReplica and counted, before any tree is touched.
func TestTreeAndFetchRefuseOtherPartitions(t *testing.T) {
	ids := []string{"n1", "n2", "n3", "n4"}
	nodes := newCluster(t, manual(), ids...)
	r := testRing(t, ids...)
	n1 := nodes["n1"]
	mine, other := mineAndOther(t, r, "n1")
	ctx := t.Context()
	for _, p := range []uint32{other, 1 << 31} {
		_, err := n1.svc.Tree(ctx, &kvpb.TreeRequest{Partition: p, Fanout: Fanout, Depth: Depth})
		if !errors.Is(errorFor(err), ErrNotReplica) {
			t.Errorf("Tree of partition %d: %v, want ErrNotReplica", p, err)
		}
		_, err = n1.svc.Fetch(ctx, &kvpb.FetchRequest{Partition: p, Buckets: []uint32{0}, Fanout: Fanout, Depth: Depth})
		if !errors.Is(errorFor(err), ErrNotReplica) {
			t.Errorf("Fetch of partition %d: %v, want ErrNotReplica", p, err)
		}
	}
	if got := testutil.ToFloat64(n1.svc.metrics.refused); got != 4 {
		t.Errorf("requests_refused_total = %v, want 4", got)
	}
	if _, err := n1.svc.Tree(ctx, &kvpb.TreeRequest{Partition: mine, Fanout: Fanout, Depth: Depth}); err != nil {
		t.Errorf("Tree of its own partition %d: %v", mine, err)
	}
}

// TestScrubPassInterval: on an empty store a pass is over at once, and the
// next one starts only ScrubPassInterval after the last one started, so an
// idle node is not re-read back to back; a negative interval runs passes
// back to back.
func TestScrubPassInterval(t *testing.T) {
	for _, tc := range []struct {
		name     string
		interval time.Duration
	}{{"spaced", 300 * time.Millisecond}, {"back to back", -1}} {
		t.Run(tc.name, func(t *testing.T) {
			cfg := manual()
			cfg.ScrubPerSec = 2000
			cfg.ScrubPassInterval = tc.interval
			start := time.Now()
			nodes := newCluster(t, cfg, "n1")
			svc := nodes["n1"].svc
			poll(t, "three scrub passes", func() error {
				if got := testutil.ToFloat64(svc.metrics.scrubPasses); got < 3 {
					return fmt.Errorf("%v passes", got)
				}
				return nil
			})
			took := time.Since(start)
			if tc.interval > 0 && took < 2*tc.interval {
				t.Fatalf("three passes in %v, want at least %v between starts", took, tc.interval)
			}
		})
	}
}

// mineAndOther returns a partition of r that member replicates and one it
// does not, failing t if r has none of either.
func mineAndOther(t *testing.T, r *ring.Ring, member string) (mine, other uint32) {
	t.Helper()
	mine, other = testPartitions, testPartitions
	for p := range uint32(testPartitions) {
		if slices.Contains(r.Replicas(p), member) {
			mine = p
		} else {
			other = p
		}
	}
	if mine == testPartitions || other == testPartitions {
		t.Fatalf("ring places %s on every partition or none: %v", member, r)
	}
	return mine, other
}
