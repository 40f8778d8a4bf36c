package coordinator

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"slices"
	"sync"
	"testing"
	"time"

	"storj.io/drpc/drpcerr"

	"github.com/ringkv/ringkv/consensus"
	"github.com/ringkv/ringkv/proto/kvpb"
	"github.com/ringkv/ringkv/replica"
	"github.com/ringkv/ringkv/ring"
)

// Tests of the coordinator on a ring that has split (docs/ARCHITECTURE.md,
// "Partition split"): partitions are named by id, a key's id under the
// ring's P, and replicas take ids of a level before or after their own
// ring's.

// splitRings returns a ring of members at partitions partitions with
// replication factor rf, the same ring split once (every child replicated
// by its parent's replicas), and the split ring joined by joiner, which
// spreads children: some keys' replicas then differ from their parent's.
func splitRings(t testing.TB, partitions, rf int, members []string, joiner string) (parent, split, grown *ring.Ring) {
	t.Helper()
	parent, err := ring.New(ring.Config{Partitions: partitions, ReplicationFactor: rf})
	if err != nil {
		t.Fatal(err)
	}
	for _, id := range members {
		if parent, err = parent.Join(ring.Member{ID: id}); err != nil {
			t.Fatal(err)
		}
	}
	if split, err = parent.Split(); err != nil {
		t.Fatal(err)
	}
	if grown, err = split.Join(ring.Member{ID: joiner}); err != nil {
		t.Fatal(err)
	}
	if split.Base() != partitions || split.Partitions() != 2*partitions || grown.Base() != partitions {
		t.Fatalf("split ring: base %d, P %d; want base %d, P %d", split.Base(), split.Partitions(), partitions, 2*partitions)
	}
	return parent, split, grown
}

// findKey returns the first key prefix+number for which ok holds.
func findKey(t testing.TB, prefix string, ok func(k []byte) bool) []byte {
	t.Helper()
	for i := range 1 << 16 {
		if k := fmt.Appendf(nil, "%s%d", prefix, i); ok(k) {
			return k
		}
	}
	t.Fatalf("no key with prefix %q fits", prefix)
	return nil
}

// sentOp is one key a transport carried to node, addressed to partition.
type sentOp struct {
	node      string
	partition uint32
	key       string
}

// serverTransport reaches each node's store through that node's
// ReplicaServer for merges, so that every merge meets the replica's
// placement check, and records the partition each merge and read names.
type serverTransport struct {
	stores  map[string]*replica.Store
	servers map[string]*ReplicaServer

	mu     sync.Mutex
	merges []sentOp
	reads  []sentOp
}

// newServerTransport returns a transport over stores whose replica
// servers check placement against src, each as its own node.
func newServerTransport(t testing.TB, stores map[string]*replica.Store, src RingSource) *serverTransport {
	t.Helper()
	st := &serverTransport{stores: stores, servers: map[string]*ReplicaServer{}}
	for id, s := range stores {
		srv, err := NewReplicaServer(s, replica.NewClock(nil, 0), ReplicaServerOptions{NodeID: id, Ring: src})
		if err != nil {
			t.Fatal(err)
		}
		st.servers[id] = srv
	}
	return st
}

func (st *serverTransport) Merge(ctx context.Context, node string, entries []replica.Entry) error {
	st.mu.Lock()
	for _, e := range entries {
		st.merges = append(st.merges, sentOp{node: node, partition: e.Partition, key: string(e.Key)})
	}
	st.mu.Unlock()
	if _, err := st.servers[node].Merge(ctx, &kvpb.MergeRequest{Records: entriesToWire(entries)}); err != nil {
		return errorFor(err)
	}
	return nil
}

func (st *serverTransport) Read(_ context.Context, node string, p uint32, key []byte) (replica.Record, error) {
	st.mu.Lock()
	st.reads = append(st.reads, sentOp{node: node, partition: p, key: string(key)})
	st.mu.Unlock()
	return st.stores[node].Get(p, key)
}

func (st *serverTransport) Scan(_ context.Context, node string, req ScanRequest) ([]ScanResult, error) {
	return scanLocal(st.stores[node], req)
}

// merged returns the merges of key carried so far.
func (st *serverTransport) merged(key []byte) []sentOp {
	st.mu.Lock()
	defer st.mu.Unlock()
	return ofKey(st.merges, key)
}

// read returns the reads of key carried so far.
func (st *serverTransport) read(key []byte) []sentOp {
	st.mu.Lock()
	defer st.mu.Unlock()
	return ofKey(st.reads, key)
}

// allMerges returns every merge carried so far.
func (st *serverTransport) allMerges() []sentOp {
	st.mu.Lock()
	defer st.mu.Unlock()
	return slices.Clone(st.merges)
}

func ofKey(ops []sentOp, key []byte) []sentOp {
	var out []sentOp
	for _, o := range ops {
		if o.key == string(key) {
			out = append(out, o)
		}
	}
	return out
}

// splitCluster is six coordinators over in-memory stores whose merges go
// through each node's ReplicaServer. The ring starts as grown: five
// members at 8 partitions (replication factor 3), split to 16, then
// joined by n6.
type splitCluster struct {
	parent, split, grown *ring.Ring

	ids    []string
	src    *staticRing
	stores map[string]*replica.Store
	trans  *serverTransport
	coords map[string]*Coordinator
}

func newSplitCluster(t *testing.T, mutate func(*Config)) *splitCluster {
	t.Helper()
	sc := &splitCluster{
		ids:    []string{"n1", "n2", "n3", "n4", "n5", "n6"},
		src:    &staticRing{},
		stores: map[string]*replica.Store{},
		coords: map[string]*Coordinator{},
	}
	sc.parent, sc.split, sc.grown = splitRings(t, 8, 3, sc.ids[:5], "n6")
	sc.src.r.Store(sc.grown)
	for _, id := range sc.ids {
		s := openMemStore(t)
		if err := s.SetBasePartitions(sc.grown.Base()); err != nil {
			t.Fatal(err)
		}
		sc.stores[id] = s
	}
	sc.trans = newServerTransport(t, sc.stores, sc.src)
	for _, id := range sc.ids {
		cfg := DefaultConfig()
		cfg.NodeID = id
		cfg.RequestTimeout = 5 * time.Second
		cfg.HintedHandoff = false // a refused merge must show, not be retried
		if mutate != nil {
			mutate(&cfg)
		}
		c, err := New(cfg, Deps{Store: sc.stores[id], Clock: replica.NewClock(nil, 0), Ring: sc.src, Transport: sc.trans})
		if err != nil {
			t.Fatal(err)
		}
		sc.coords[id] = c
	}
	t.Cleanup(func() {
		for _, id := range sc.ids {
			if err := sc.coords[id].Close(); err != nil {
				t.Error(err)
			}
		}
	})
	return sc
}

// onReplicas reports whether exactly the replicas of key's id in r hold
// value (found by that id), and no other node holds key.
func (sc *splitCluster) onReplicas(t *testing.T, r *ring.Ring, key []byte, value string) bool {
	t.Helper()
	id := r.IDOf(key)
	replicas := r.ReplicasOf(id)
	for _, node := range sc.ids {
		rec, err := sc.stores[node].Get(id, key)
		switch {
		case err != nil && !errors.Is(err, replica.ErrNotFound):
			t.Fatalf("get %s on %s: %v", key, node, err)
		case slices.Contains(replicas, node) && (err != nil || string(rec.Value) != value):
			return false
		case !slices.Contains(replicas, node) && err == nil:
			t.Fatalf("%s holds %s, which its partition %d's replicas %v do not include", node, key, id, replicas)
		}
	}
	return true
}

// checkMerges fails the test unless every merge carried so far named its
// key's id in r and went to one of that id's replicas.
func (sc *splitCluster) checkMerges(t *testing.T, r *ring.Ring) {
	t.Helper()
	for _, m := range sc.trans.allMerges() {
		id := r.IDOf([]byte(m.key))
		if m.partition != id || !slices.Contains(r.ReplicasOf(id), m.node) {
			t.Fatalf("merge of %q to %s under partition %d; want partition %d on one of %v", m.key, m.node, m.partition, id, r.ReplicasOf(id))
		}
	}
}

// TestSplitRingQuorumWritesAndReads: on a split ring (grown since by a
// join), a QUORUM write goes to the replicas of the key's id and stores
// its record under that id, a QUORUM read asks those replicas by that id,
// and a list of the split ring's partitions (each a hash range of its
// storage partition) returns every key once.
func TestSplitRingQuorumWritesAndReads(t *testing.T) {
	sc := newSplitCluster(t, func(c *Config) { c.ListPageSize = 3 })
	ctx := t.Context()
	r := sc.grown
	if r.Base() >= r.Partitions() {
		t.Fatalf("ring of base %d and P %d has not split", r.Base(), r.Partitions())
	}
	n1 := sc.coords["n1"]
	// A key n1 does not replicate (every replica is reached through the
	// transport), whose replicas the join changed (its parent partition's
	// replicas are not its own).
	key := findKey(t, "k", func(k []byte) bool {
		replicas := r.ReplicasOf(r.IDOf(k))
		return !slices.Contains(replicas, "n1") && !slices.Equal(replicas, sc.parent.Replicas(sc.parent.PartitionOf(k)))
	})
	id := r.IDOf(key)
	replicas := r.ReplicasOf(id)
	if id < uint32(r.Partitions()) {
		t.Fatalf("key id %d is not of the split level [%d, %d)", id, r.Partitions(), 2*r.Partitions())
	}

	if err := n1.Set(ctx, key, []byte("v1"), Quorum); err != nil {
		t.Fatalf("quorum set on the split ring: %v", err)
	}
	pollUntil(t, 10*time.Second, "the write on every replica", func() bool { return len(sc.trans.merged(key)) == len(replicas) })
	var to []string
	for _, m := range sc.trans.merged(key) {
		if m.partition != id {
			t.Fatalf("merge to %s under partition %d, want the key's id %d", m.node, m.partition, id)
		}
		to = append(to, m.node)
	}
	slices.Sort(to)
	if want := slices.Sorted(slices.Values(replicas)); !slices.Equal(to, want) {
		t.Fatalf("merged on %v, want the replicas of partition %d: %v", to, id, want)
	}
	pollUntil(t, 10*time.Second, "the record on every replica", func() bool { return sc.onReplicas(t, r, key, "v1") })

	got, found, err := n1.Get(ctx, key, Quorum)
	if err != nil || !found || string(got) != "v1" {
		t.Fatalf("quorum get via n1: %q %v %v, want v1", got, found, err)
	}
	reads := sc.trans.read(key)
	if len(reads) < Quorum.required(len(replicas)) {
		t.Fatalf("quorum get asked %d replicas, want at least %d", len(reads), Quorum.required(len(replicas)))
	}
	for _, rd := range reads {
		if rd.partition != id || !slices.Contains(replicas, rd.node) {
			t.Fatalf("read on %s of partition %d, want partition %d on one of %v", rd.node, rd.partition, id, replicas)
		}
	}
	if got, found, err := sc.coords[replicas[0]].Get(ctx, key, Quorum); err != nil || !found || string(got) != "v1" {
		t.Fatalf("quorum get via replica %s: %q %v %v, want v1", replicas[0], got, found, err)
	}

	// Many keys, by single writes and a logged batch, then a list.
	var keys [][]byte
	for i := range 24 {
		k := fmt.Appendf(nil, "list/%02d", i)
		keys = append(keys, k)
		if i < 12 {
			if err := sc.coords[sc.ids[i%len(sc.ids)]].Set(ctx, k, k, Quorum); err != nil {
				t.Fatalf("set %s: %v", k, err)
			}
		}
	}
	var batch []MSetPair
	for _, k := range keys[12:] {
		batch = append(batch, MSetPair{Key: k, Value: k})
	}
	if err := sc.coords["n2"].MSet(ctx, batch, Quorum); err != nil {
		t.Fatalf("logged batch on the split ring: %v", err)
	}
	for _, k := range keys {
		pollUntil(t, 10*time.Second, fmt.Sprintf("%s on its replicas", k), func() bool { return sc.onReplicas(t, r, k, string(k)) })
	}
	sc.checkMerges(t, r)
	pairs, err := sc.coords["n4"].List(ctx, []byte("list/"), 100, Quorum)
	if err != nil {
		t.Fatalf("quorum list on the split ring: %v", err)
	}
	if len(pairs) != len(keys) {
		t.Fatalf("list: got %d pairs, want %d", len(pairs), len(keys))
	}
	for i, p := range pairs {
		if !bytes.Equal(p.Key, keys[i]) || !bytes.Equal(p.Value, keys[i]) {
			t.Fatalf("list pair %d: got %s=%s, want %s=%s", i, p.Key, p.Value, keys[i], keys[i])
		}
	}
}

// TestSplitRingReplaysBatchLoggedBeforeSplit: a batch logged under the
// ring before a split (its records addressed by parent ids) and left
// unwritten is replayed after the split by key: each record goes to its
// key's replicas under its key's id, which the replicas' placement check
// accepts.
func TestSplitRingReplaysBatchLoggedBeforeSplit(t *testing.T) {
	sc := newSplitCluster(t, func(c *Config) {
		c.BatchReplayAge = time.Millisecond
		c.BatchReplayInterval = time.Hour // replayOnce is called below
	})
	ctx := t.Context()
	sc.src.r.Store(sc.parent)
	n1 := sc.coords["n1"]
	var pairs []MSetPair
	for i := range 12 {
		k := fmt.Appendf(nil, "b%02d", i)
		pairs = append(pairs, MSetPair{Key: k, Value: k})
	}
	n1.batchHooks.skipRecord = func(int) bool { return true }
	if err := n1.MSet(ctx, pairs, Quorum); !errors.Is(err, errBatchStopped) {
		t.Fatalf("got %v, want errBatchStopped", err)
	}
	// The split keeps every key on its replicas, the batch entry included;
	// a parent id read as an index under the new P names another partition.
	sc.src.r.Store(sc.split)
	r := sc.split
	for _, p := range pairs {
		if sc.onReplicas(t, r, p.Key, string(p.Value)) {
			t.Fatalf("%s written before the replay", p.Key)
		}
	}
	logged := map[string]bool{} // each replay error once
	pollUntil(t, 20*time.Second, "replay of every record to its replicas", func() bool {
		for _, id := range sc.ids {
			if err := sc.coords[id].replayOnce(ctx); err != nil && !logged[err.Error()] {
				logged[err.Error()] = true
				t.Logf("replay on %s: %v", id, err)
			}
		}
		for _, p := range pairs {
			if !sc.onReplicas(t, r, p.Key, string(p.Value)) {
				return false
			}
		}
		return true
	})
	for _, m := range sc.trans.allMerges() {
		if bytes.HasPrefix([]byte(m.key), []byte("b")) {
			if id := r.IDOf([]byte(m.key)); m.partition != id {
				t.Fatalf("replayed %q under partition %d, want its id %d", m.key, m.partition, id)
			}
		}
	}
}

// TestReplicaServerAcceptsIDsOfEveryLevel: a replica whose ring has split
// (and grown since) takes a key addressed by its parent's id (a sender a
// split behind), by its own id, or by its child's (a sender a split
// ahead); it refuses an id the key does not belong to (ErrInvalidArgument)
// and a key whose partition it does not replicate in its ring, whatever
// the id (ErrNotReplica). A replica a split behind takes the child id.
func TestReplicaServerAcceptsIDsOfEveryLevel(t *testing.T) {
	parent, _, grown := splitRings(t, 8, 2, []string{"n1", "n2", "n3", "n4"}, "n5")
	ahead, err := grown.Split()
	if err != nil {
		t.Fatal(err)
	}
	newServer := func(r *ring.Ring) (*ReplicaServer, *replica.Store) {
		src := &staticRing{}
		src.r.Store(r)
		store := openMemStore(t)
		if err := store.SetBasePartitions(r.Base()); err != nil {
			t.Fatal(err)
		}
		srv, err := NewReplicaServer(store, replica.NewClock(nil, 0), ReplicaServerOptions{NodeID: "n1", Ring: src})
		if err != nil {
			t.Fatal(err)
		}
		return srv, store
	}
	merge := func(srv *ReplicaServer, id uint32, key []byte) error {
		rec := &kvpb.Record{Value: key, Timestamp: uint64(replica.MakeTimestamp(time.Now(), 0)), NodeId: "n2"}
		_, err := srv.Merge(t.Context(), &kvpb.MergeRequest{Records: []*kvpb.KeyedRecord{{Partition: id, Key: key, Record: rec}}})
		return err
	}
	holds := func(r *ring.Ring, k []byte) bool { return slices.Contains(r.ReplicasOf(r.IDOf(k)), "n1") }
	sibling := func(id uint32) uint32 { return id ^ 1 }

	srv, store := newServer(grown)
	mine := findKey(t, "mine", func(k []byte) bool { return holds(grown, k) })
	// A key whose parent n1 replicated but whose own partition the join
	// moved away from n1: its parent's id must not let it in.
	moved := findKey(t, "moved", func(k []byte) bool { return !holds(grown, k) && holds(parent, k) })
	other := findKey(t, "other", func(k []byte) bool { return !holds(grown, k) && !holds(parent, k) })
	for _, tc := range []struct {
		name string
		id   uint32
		key  []byte
		want error // nil: accepted
		code uint64
	}{
		{"own id", grown.IDOf(mine), mine, nil, 0},
		{"parent id (sender a split behind)", parent.IDOf(mine), mine, nil, 0},
		{"child id (sender a split ahead)", ahead.IDOf(mine), mine, nil, 0},
		{"sibling's id", sibling(grown.IDOf(mine)), mine, ErrInvalidArgument, codeInvalid},
		{"parent's sibling's id", sibling(parent.IDOf(mine)), mine, ErrInvalidArgument, codeInvalid},
		{"child's sibling's id", sibling(ahead.IDOf(mine)), mine, ErrInvalidArgument, codeInvalid},
		{"an id of no level", uint32(grown.Base()), mine, ErrInvalidArgument, codeInvalid},
		{"moved key by its id", grown.IDOf(moved), moved, ErrNotReplica, codeNotReplica},
		{"moved key by its parent id", parent.IDOf(moved), moved, ErrNotReplica, codeNotReplica},
		{"moved key by its child id", ahead.IDOf(moved), moved, ErrNotReplica, codeNotReplica},
		{"other key by its id", grown.IDOf(other), other, ErrNotReplica, codeNotReplica},
	} {
		t.Run(tc.name, func(t *testing.T) {
			err := merge(srv, tc.id, tc.key)
			if tc.want == nil {
				if err != nil {
					t.Fatalf("merge of %s under %d: %v", tc.key, tc.id, err)
				}
				rec, err := store.Get(grown.IDOf(tc.key), tc.key)
				if err != nil || !bytes.Equal(rec.Value, tc.key) {
					t.Fatalf("get %s by its id after the merge: %q %v", tc.key, rec.Value, err)
				}
				return
			}
			if !errors.Is(err, tc.want) || drpcerr.Code(err) != tc.code {
				t.Fatalf("merge of %s under %d: %v (code %d), want %v (code %d)", tc.key, tc.id, err, drpcerr.Code(err), tc.want, tc.code)
			}
			if bytes.Equal(tc.key, mine) {
				return // stored by the accepted cases
			}
			if _, err := store.Get(grown.IDOf(tc.key), tc.key); !errors.Is(err, replica.ErrNotFound) {
				t.Fatalf("a refused record of %s was stored: %v", tc.key, err)
			}
		})
	}

	// A replica a split behind (its ring is parent) takes a key it
	// replicates addressed by the key's id in the split ring.
	behind, behindStore := newServer(parent)
	old := findKey(t, "old", func(k []byte) bool { return holds(parent, k) })
	if err := merge(behind, grown.IDOf(old), old); err != nil {
		t.Fatalf("merge on a replica a split behind, under the split id %d: %v", grown.IDOf(old), err)
	}
	if rec, err := behindStore.Get(parent.IDOf(old), old); err != nil || !bytes.Equal(rec.Value, old) {
		t.Fatalf("get on the replica a split behind: %q %v", rec.Value, err)
	}
	if err := merge(behind, sibling(grown.IDOf(old)), old); !errors.Is(err, ErrInvalidArgument) {
		t.Fatalf("merge on a replica a split behind, under the sibling's id: %v, want ErrInvalidArgument", err)
	}
	notOld := findKey(t, "old", func(k []byte) bool { return !holds(parent, k) })
	if err := merge(behind, grown.IDOf(notOld), notOld); !errors.Is(err, ErrNotReplica) {
		t.Fatalf("merge on a replica a split behind of a key it does not replicate: %v, want ErrNotReplica", err)
	}
}

// TestHintReplayedByKeyAfterSplit: hints stored under parent ids, for
// keys their target replicated, are replayed after a split (and a join
// that moved some children) when the target replicates the key's
// partition in the new ring, addressed by the key's new id, and dropped
// as moved when it does not, whatever the parent id names in the new ring.
func TestHintReplayedByKeyAfterSplit(t *testing.T) {
	rig := newHandoffRig(t, openMemStore(t), func(c *Config) { c.HintReplayBatch = 64 })
	parent, _, grown := splitRings(t, 8, 2, []string{"n1", "n2", "n3", "n4", "n5"}, "n6")
	rig.ring.r.Store(parent)
	if err := rig.dest.SetBasePartitions(parent.Base()); err != nil {
		t.Fatal(err)
	}
	trans := newServerTransport(t, map[string]*replica.Store{"n3": rig.dest}, rig.ring)
	rig.h.trans = trans

	var keys [][]byte
	for i := 0; len(keys) < 60; i++ {
		k := fmt.Appendf(nil, "h%d", i)
		if slices.Contains(parent.Replicas(parent.PartitionOf(k)), "n3") {
			keys = append(keys, k)
			rig.h.add("n3", replica.Entry{Partition: parent.IDOf(k), Key: k, Record: replica.Record{Value: k, Timestamp: 1, NodeID: "n1"}})
		}
	}
	rig.ring.r.Store(grown)
	keep, byStoredID := 0, 0
	for _, k := range keys {
		mine := slices.Contains(grown.ReplicasOf(grown.IDOf(k)), "n3")
		if mine {
			keep++
		}
		// The stored id read as an index of the new ring.
		if slices.Contains(grown.Replicas(parent.IDOf(k)), "n3") != mine {
			byStoredID++
		}
	}
	if keep == 0 || keep == len(keys) || byStoredID == 0 {
		t.Fatalf("fixture: %d of %d keys stay on n3, %d judged otherwise by their stored id; want some of each", keep, len(keys), byStoredID)
	}

	rig.run(t.Context())
	if got := rig.h.pending("n3"); got != 0 {
		t.Fatalf("pending after replay: got %d, want 0", got)
	}
	for _, k := range keys {
		id := grown.IDOf(k)
		_, err := rig.dest.Get(id, k)
		delivered := err == nil
		if want := slices.Contains(grown.ReplicasOf(id), "n3"); delivered != want {
			t.Errorf("%s (partition %d, stored under %d): delivered %v, want %v (%v)", k, id, parent.IDOf(k), delivered, want, err)
		}
		if sent := trans.merged(k); delivered && (len(sent) != 1 || sent[0].partition != id) {
			t.Errorf("%s replayed as %+v, want once under its id %d", k, sent, id)
		}
	}
}

// newSplitLinNode is newLinNode whose store knows the ring's base P, so
// that the test can split the ring (src, holding r) under it.
func newSplitLinNode(t *testing.T) (n1, n9 *Coordinator, src *staticRing, r *ring.Ring) {
	t.Helper()
	n1, n9, _ = newLinNode(t)
	src, ok := n1.deps.Ring.(*staticRing)
	if !ok {
		t.Fatalf("ring source %T", n1.deps.Ring)
	}
	r = src.Ring()
	if err := n1.deps.Store.SetBasePartitions(r.Base()); err != nil {
		t.Fatal(err)
	}
	return n1, n9, src, r
}

// TestLinearizableAfterSplit: once the ring splits and the raft tier
// splits every parent group (consensus, step 4), linearizable reads,
// writes, transactions across partitions and lists name the children by
// id, on this node's groups (n1) and forwarded (n9); a reserved key,
// which every child of its storage partition shows, is listed once.
func TestLinearizableAfterSplit(t *testing.T) {
	n1, n9, src, r := newSplitLinNode(t)
	ctx := t.Context()
	var keys [][]byte
	for i := range 12 {
		k := fmt.Appendf(nil, "lin/%02d", i)
		keys = append(keys, k)
		if err := n1.Set(ctx, k, k, Linearizable); err != nil {
			t.Fatal(err)
		}
	}
	reserved := []byte("\x00split-test")
	if err := n1.Set(System(ctx), reserved, []byte("r"), Linearizable); err != nil {
		t.Fatal(err)
	}
	split, err := r.Split()
	if err != nil {
		t.Fatal(err)
	}
	src.r.Store(split)
	for _, k := range keys {
		pollUntil(t, 60*time.Second, fmt.Sprintf("%s read from its child group", k), func() bool {
			got, found, err := n1.Get(ctx, k, Linearizable)
			return err == nil && found && bytes.Equal(got, k)
		})
		id := split.IDOf(k)
		if _, ok := n1.deps.Groups.Group(id); !ok || id < uint32(split.Partitions()) {
			t.Fatalf("%s: no group for its child id %d", k, id)
		}
	}

	// Writes on the children, one by one, as a transaction across
	// partitions, and through n9.
	for i, c := range []*Coordinator{n1, n9} {
		k := keys[i]
		if err := c.Set(ctx, k, []byte("again"), Linearizable); err != nil {
			t.Fatalf("%s: set after the split: %v", c.cfg.NodeID, err)
		}
		old := []byte("again")
		if res, err := c.CompareAndSet(ctx, k, &old, k); err != nil || !res.Swapped {
			t.Fatalf("%s: cas after the split: %+v %v", c.cfg.NodeID, res, err)
		}
	}
	more := make([]MSetPair, 0, 6)
	for i := range 6 {
		k := fmt.Appendf(nil, "lin/txn%d", i)
		more = append(more, MSetPair{Key: k, Value: k})
		keys = append(keys, k)
	}
	if err := n9.MSet(ctx, more, Linearizable); err != nil {
		t.Fatalf("linearizable mset across child partitions: %v", err)
	}
	// The transaction's intents are resolved in the background: the list
	// right after it reads through them (scanThrough), and must see every
	// key whether or not a resolve lands while it reads.
	slices.SortFunc(keys, bytes.Compare)
	for _, c := range []*Coordinator{n1, n9} {
		pairs, err := c.List(ctx, []byte("lin/"), 0, Linearizable)
		if err != nil {
			t.Fatalf("%s: linearizable list after the split: %v", c.cfg.NodeID, err)
		}
		if len(pairs) != len(keys) {
			t.Fatalf("%s: linearizable list: %d pairs, want %d: %s", c.cfg.NodeID, len(pairs), len(keys), pairsString(pairs))
		}
		for i, p := range pairs {
			if !bytes.Equal(p.Key, keys[i]) || !bytes.Equal(p.Value, keys[i]) {
				t.Fatalf("%s: pair %d is %s=%s, want %s=%s", c.cfg.NodeID, i, p.Key, p.Value, keys[i], keys[i])
			}
		}
	}
	pairs, err := n1.List(System(ctx), reserved, 0, Linearizable)
	if err != nil || len(pairs) != 1 || string(pairs[0].Value) != "r" {
		t.Fatalf("linearizable list of a reserved key after the split: %v %v, want it once", pairs, err)
	}
}

func pairsString(pairs []Pair) string {
	var b bytes.Buffer
	for _, p := range pairs {
		fmt.Fprintf(&b, "%q ", p.Key)
	}
	return b.String()
}

// TestCommittedIntentReadAfterSplit: a transaction across partitions
// committed before the ring split, its intents not yet resolved (the
// coordinator stops after the decision), is read after the split from
// the children: each key answers the transaction's write, though the
// transaction's record names the keys' partitions by their parents' ids.
// (TestChaosTxnSplit found reads answering the value under the intent:
// the read matched the record's writes by partition id.)
func TestCommittedIntentReadAfterSplit(t *testing.T) {
	n1, n9, src, r := newSplitLinNode(t)
	ctx := t.Context()
	var pairs []MSetPair
	seen := map[uint32]bool{}
	for i := 0; len(pairs) < 4; i++ {
		k := fmt.Appendf(nil, "committed/%d", i)
		if p := r.IDOf(k); !seen[p] {
			seen[p] = true
			pairs = append(pairs, MSetPair{Key: k, Value: []byte("old")})
		}
	}
	if err := n1.MSet(ctx, pairs, Linearizable); err != nil {
		t.Fatal(err)
	}
	for i := range pairs {
		pairs[i].Value = []byte("new")
	}
	n1.hooks.afterCommit = func(consensus.TxnID) bool { return true } // leave the intents
	if err := n1.MSet(ctx, pairs, Linearizable); err != nil {
		t.Fatal(err)
	}
	n1.hooks.afterCommit = nil
	split, err := r.Split()
	if err != nil {
		t.Fatal(err)
	}
	src.r.Store(split)
	for _, c := range []*Coordinator{n1, n9} {
		for _, p := range pairs {
			var got []byte
			pollUntil(t, 60*time.Second, fmt.Sprintf("%s read from its child group through %s", p.Key, c.cfg.NodeID), func() bool {
				v, found, err := c.Get(ctx, p.Key, Linearizable)
				if err != nil {
					return false
				}
				if !found {
					t.Fatalf("%s: not found after the split", p.Key)
				}
				got = v
				return true
			})
			if string(got) != "new" {
				t.Fatalf("%s through %s after the split: got %q, want the committed transaction's %q", p.Key, c.cfg.NodeID, got, "new")
			}
		}
	}
}
