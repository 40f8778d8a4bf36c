package consensus

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"strconv"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/hashicorp/raft"

	"github.com/ringkv/ringkv/replica"
	"github.com/ringkv/ringkv/ring"
)

type ringBox struct{ r atomic.Pointer[ring.Ring] }

func (b *ringBox) Ring() *ring.Ring { return b.r.Load() }

// fabric connects every node's in-memory transport of the same group.
type fabric struct {
	mu    sync.Mutex
	trans map[uint32]map[string]*raft.InmemTransport
	logs  map[string]*raft.InmemStore // by node/group, kept across restarts
	mgrs  map[string]*Manager
	// wrap, if set, wraps each group transport a node gets (fault seams).
	wrap func(node string, group uint32, t raft.Transport) raft.Transport
	// tune, if set, adjusts each node's Config.
	tune func(*Config)
}

func newFabric() *fabric {
	return &fabric{trans: map[uint32]map[string]*raft.InmemTransport{}, logs: map[string]*raft.InmemStore{}, mgrs: map[string]*Manager{}}
}

type nodeTransports struct {
	f    *fabric
	node string
}

func (n nodeTransports) Group(p uint32) raft.Transport {
	n.f.mu.Lock()
	defer n.f.mu.Unlock()
	if n.f.trans[p] == nil {
		n.f.trans[p] = map[string]*raft.InmemTransport{}
	}
	_, t := raft.NewInmemTransport(raft.ServerAddress(n.node))
	for id, other := range n.f.trans[p] {
		t.Connect(raft.ServerAddress(id), other)
		other.Connect(raft.ServerAddress(n.node), t)
	}
	n.f.trans[p][n.node] = t
	if n.f.wrap != nil {
		return n.f.wrap(n.node, p, t)
	}
	return t
}

func (n nodeTransports) RemoveGroup(uint32) {}

// isolate disconnects node from every peer in every group.
func (f *fabric) isolate(node string) {
	f.mu.Lock()
	defer f.mu.Unlock()
	for _, byNode := range f.trans {
		for id, t := range byNode {
			if id == node {
				t.DisconnectAll()
			} else {
				t.Disconnect(raft.ServerAddress(node))
			}
		}
	}
}

func (f *fabric) AppliedIndex(_ context.Context, node string, group uint32) (uint64, error) {
	f.mu.Lock()
	m := f.mgrs[node]
	f.mu.Unlock()
	if m == nil {
		return 0, errors.New("no such node")
	}
	return m.AppliedIndex(group)
}

func (f *fabric) logFactory(node string) LogFactory {
	return func(group uint32) (raft.LogStore, raft.StableStore, error) {
		f.mu.Lock()
		defer f.mu.Unlock()
		k := node + "/" + strconv.Itoa(int(group))
		if f.logs[k] == nil {
			f.logs[k] = raft.NewInmemStore()
		}
		return f.logs[k], f.logs[k], nil
	}
}

func testConfig(t testing.TB, node string) Config {
	cfg := DefaultConfig()
	cfg.NodeID = node
	cfg.DataDir = t.TempDir()
	cfg.HeartbeatTimeout = 200 * time.Millisecond
	cfg.ElectionTimeout = 200 * time.Millisecond
	cfg.LeaderLeaseTimeout = 100 * time.Millisecond
	cfg.QuietHeartbeatTimeout = 300 * time.Millisecond
	cfg.CommitTimeout = 20 * time.Millisecond
	cfg.ReconcileInterval = 50 * time.Millisecond
	cfg.StuckLeaderTimeout = 2 * time.Second
	return cfg
}

type cluster struct {
	t      testing.TB
	f      *fabric
	ring   *ringBox
	stores map[string]*replica.Store
	drains *drainSet
}

func openStore(t testing.TB) *replica.Store { return openStoreIn(t, "") }

// openStoreIn opens a replica store with the node's defaults in dir, or
// in memory when dir is empty, closed at the end of the test.
func openStoreIn(tb testing.TB, dir string) *replica.Store {
	tb.Helper()
	cfg := replica.DefaultConfig()
	cfg.Dir, cfg.InMemory = dir, dir == ""
	s, err := replica.Open(cfg, replica.Deps{})
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(func() {
		if err := s.Close(); err != nil {
			tb.Error(err)
		}
	})
	return s
}

func (c *cluster) start(node string) *Manager {
	c.t.Helper()
	return c.startWith(node, node == "n1")
}

func (c *cluster) startWith(node string, founder bool) *Manager {
	c.t.Helper()
	if c.stores[node] == nil {
		c.stores[node] = openStore(c.t)
	}
	cfg := testConfig(c.t, node)
	cfg.Founder = founder
	if c.f.tune != nil {
		c.f.tune(&cfg)
	}
	m, err := NewManager(cfg, Deps{
		Store: c.stores[node], Clock: replica.NewClock(nil, 0), Ring: c.ring,
		Transports: nodeTransports{c.f, node}, Logs: c.f.logFactory(node), Progress: c.f,
		Drains: c.drains,
	})
	if err != nil {
		c.t.Fatal(err)
	}
	c.f.mu.Lock()
	c.f.mgrs[node] = m
	c.f.mu.Unlock()
	if err := m.Start(); err != nil {
		c.t.Fatal(err)
	}
	c.t.Cleanup(func() {
		if err := m.Close(); err != nil {
			c.t.Error(err)
		}
	})
	return m
}

// newCluster forms a 3-node cluster the way a real one forms: n1 founds
// the ring alone and bootstraps every group, then n2 and n3 join the ring
// and the leaders add them.
func newCluster(t testing.TB, partitions int) (*cluster, map[string]*Manager) {
	return newClusterOn(t, newFabric(), partitions)
}

// newClusterOn is newCluster over the fabric f.
func newClusterOn(t testing.TB, f *fabric, partitions int) (*cluster, map[string]*Manager) {
	r, err := ring.New(ring.Config{Partitions: partitions, ReplicationFactor: 3})
	if err != nil {
		t.Fatal(err)
	}
	c := &cluster{t: t, f: f, ring: &ringBox{}, stores: map[string]*replica.Store{}, drains: &drainSet{}}
	if r, err = r.Join(ring.Member{ID: "n1"}); err != nil {
		t.Fatal(err)
	}
	c.ring.r.Store(r)
	mgrs := map[string]*Manager{"n1": c.start("n1")}
	for _, id := range []string{"n2", "n3"} {
		if r, err = r.Join(ring.Member{ID: id}); err != nil {
			t.Fatal(err)
		}
	}
	c.ring.r.Store(r)
	mgrs["n2"] = c.start("n2")
	mgrs["n3"] = c.start("n3")
	// Every node, not only the leader, must hold the configuration with
	// three voters: hashicorp/raft refuses a vote to a candidate that its
	// own latest configuration names a non-voter, so a follower still
	// holding the configuration before the promotions would never elect
	// the other follower if the leader failed (ARCHITECTURE, Known
	// limits; a CI run saw a failover test stall so, 2026-12-06).
	waitFor(t, 30*time.Second, "every group to have 3 voters on every node", func() error {
		for p := range partitions {
			if leaderOf(mgrs, uint32(p)) == nil {
				return fmt.Errorf("group %d has no leader", p)
			}
			for id, m := range mgrs {
				g, ok := m.Group(uint32(p))
				if !ok {
					return fmt.Errorf("%s has no group %d", id, p)
				}
				cf := g.raft.GetConfiguration()
				if err := cf.Error(); err != nil {
					return err
				}
				voters := 0
				for _, s := range cf.Configuration().Servers {
					if s.Suffrage == raft.Voter {
						voters++
					}
				}
				if voters != 3 {
					return fmt.Errorf("group %d has %d voters on %s", p, voters, id)
				}
			}
		}
		return nil
	})
	return c, mgrs
}

func leaderOf(mgrs map[string]*Manager, p uint32) *Group {
	for _, m := range mgrs {
		if g, ok := m.Group(p); ok && g.raft.State() == raft.Leader {
			return g
		}
	}
	return nil
}

func waitFor(t testing.TB, d time.Duration, what string, cond func() error) {
	t.Helper()
	deadline := time.Now().Add(d)
	tick := time.NewTicker(10 * time.Millisecond)
	defer tick.Stop()
	for {
		err := cond()
		if err == nil {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("waiting for %s: %v", what, err)
		}
		<-tick.C
	}
}

func TestLinearizableOpsAndCAS(t *testing.T) {
	c, mgrs := newCluster(t, 4)
	ctx, cancel := context.WithTimeout(t.Context(), 20*time.Second)
	defer cancel()
	r := c.ring.Ring()
	key := []byte("counter")
	p := r.PartitionOf(key)
	g := leaderOf(mgrs, p)

	// put-if-absent, then CAS mismatch and match
	ok, _, _, err := g.CompareAndSet(ctx, key, nil, []byte("0"), time.Time{})
	if err != nil || !ok {
		t.Fatalf("put-if-absent: %v %v", ok, err)
	}
	ok, cur, found, err := g.CompareAndSet(ctx, key, nil, []byte("x"), time.Time{})
	if err != nil || ok || !found || string(cur) != "0" {
		t.Fatalf("second put-if-absent: ok %v cur %q found %v err %v", ok, cur, found, err)
	}
	wrong := []byte("7")
	if ok, cur, _, err = g.CompareAndSet(ctx, key, &wrong, []byte("8"), time.Time{}); err != nil || ok || string(cur) != "0" {
		t.Fatalf("cas mismatch: ok %v cur %q err %v", ok, cur, err)
	}

	// 8 concurrent incrementers: no lost update.
	var swaps atomic.Int64
	var wg sync.WaitGroup
	for range 8 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for range 15 {
				rec, err := g.Get(ctx, key)
				if err != nil {
					t.Error(err)
					return
				}
				n, _ := strconv.Atoi(string(rec.Value))
				exp := rec.Value
				ok, _, _, err := g.CompareAndSet(ctx, key, &exp, []byte(strconv.Itoa(n+1)), time.Time{})
				if err != nil {
					t.Error(err)
					return
				}
				if ok {
					swaps.Add(1)
				}
			}
		}()
	}
	wg.Wait()
	rec, err := g.Get(ctx, key)
	if err != nil {
		t.Fatal(err)
	}
	if got := string(rec.Value); got != strconv.FormatInt(swaps.Load(), 10) {
		t.Fatalf("counter is %s after %d successful CASes", got, swaps.Load())
	}

	// Put and delete; every replica's store converges to the same record.
	if err := g.Put(ctx, []byte("k"), []byte("v"), false, time.Time{}); err != nil {
		t.Fatal(err)
	}
	pk := r.PartitionOf([]byte("k"))
	gk := leaderOf(mgrs, pk)
	if err := gk.Put(ctx, []byte("k"), []byte("v"), false, time.Time{}); err != nil {
		t.Fatal(err)
	}
	if err := gk.Put(ctx, []byte("k"), nil, true, time.Time{}); err != nil {
		t.Fatal(err)
	}
	rec, err = gk.Get(ctx, []byte("k"))
	if err != nil || rec.Live(time.Now()) {
		t.Fatalf("after delete: %+v %v", rec, err)
	}
	waitFor(t, 10*time.Second, "replicas to apply the delete", func() error {
		for id, s := range c.stores {
			got, err := s.Get(pk, []byte("k"))
			if err != nil || !got.Tombstone {
				return fmt.Errorf("%s: %+v %w", id, got, err)
			}
		}
		return nil
	})

	// A follower refuses and names the leader.
	for id, m := range mgrs {
		fg, _ := m.Group(p)
		if fg == g {
			continue
		}
		_, err := fg.Get(ctx, key)
		var nle *NotLeaderError
		if !errors.As(err, &nle) || nle.Leader != g.nodeID || !errors.Is(err, ErrNotLeader) {
			t.Fatalf("get on follower %s: %v", id, err)
		}
		if err := fg.Put(ctx, key, []byte("x"), false, time.Time{}); !errors.Is(err, ErrNotLeader) {
			t.Fatalf("put on follower %s: %v", id, err)
		}
		break
	}
}

func TestFailoverKeepsCommittedWrites(t *testing.T) {
	c, mgrs := newCluster(t, 2)
	ctx, cancel := context.WithTimeout(t.Context(), 30*time.Second)
	defer cancel()
	key := []byte("durable")
	p := c.ring.Ring().PartitionOf(key)
	g := leaderOf(mgrs, p)
	if err := g.Put(ctx, key, []byte("before"), false, time.Time{}); err != nil {
		t.Fatal(err)
	}
	old := g.nodeID
	c.f.isolate(old)
	start := time.Now()
	var ng *Group
	// 30 s: a CI run under the race detector beside the other packages
	// once saw no leader within 15 s (2026-12-06; raft's InmemTransport,
	// elections at 1 s timeouts on two shared cores).
	waitFor(t, 30*time.Second, "a new leader", func() error {
		for id, m := range mgrs {
			if id == old {
				continue
			}
			if gg, ok := m.Group(p); ok && gg.raft.State() == raft.Leader {
				ng = gg
				return nil
			}
		}
		return errors.New("none yet")
	})
	t.Logf("new leader %s after %v", ng.nodeID, time.Since(start))
	// The new leader may hand leadership to the partition's primary right
	// away (reconcile): like a client, follow the leader.
	waitFor(t, 15*time.Second, "a read and a write through the new leader", func() error {
		for id, m := range mgrs {
			gg, ok := m.Group(p)
			if id == old || !ok || gg.raft.State() != raft.Leader {
				continue
			}
			rec, err := gg.Get(ctx, key)
			if err != nil {
				return err
			}
			if string(rec.Value) != "before" && string(rec.Value) != "after" {
				t.Fatalf("after failover: %q", rec.Value)
			}
			return gg.Put(ctx, key, []byte("after"), false, time.Time{})
		}
		return errors.New("no leader")
	})
	// The isolated old leader cannot serve linearizable reads.
	shortCtx, cancelShort := context.WithTimeout(ctx, time.Second)
	defer cancelShort()
	if _, err := g.Get(shortCtx, key); err == nil {
		t.Fatal("isolated old leader served a linearizable read")
	}
}

func TestCommandCodec(t *testing.T) {
	rec := replica.Record{Value: []byte("v"), Timestamp: 42, NodeID: "n1", ExpiresAt: time.Unix(1_900_000_000, 7).UTC()}
	b := encodeMerge([]byte("key"), rec)
	k, got, err := decodeMerge(b)
	if err != nil || string(k) != "key" || replica.Compare(got, rec) != 0 {
		t.Fatalf("round trip: %q %+v %v", k, got, err)
	}
	for i := range b {
		bad := bytes.Clone(b)
		bad[i] ^= 0x40
		if _, _, err := decodeMerge(bad); err == nil && i < 3 {
			t.Fatalf("flipping header byte %d went unnoticed", i)
		}
	}
	if _, _, err := decodeMerge(nil); !errors.Is(err, ErrCorruptCommand) {
		t.Fatalf("nil: %v", err)
	}
}

func FuzzDecodeMerge(f *testing.F) {
	f.Add(encodeMerge([]byte("k"), replica.Record{Value: []byte("v"), Timestamp: 1, NodeID: "n"}))
	f.Add([]byte{1, 1, 200})
	f.Fuzz(func(t *testing.T, b []byte) {
		k, rec, err := decodeMerge(b)
		if err != nil {
			return
		}
		if !bytes.Equal(encodeMerge(k, rec), b) {
			t.Fatalf("accepted input does not re-encode identically")
		}
	})
}

// memSink is a raft.SnapshotSink in memory.
type memSink struct {
	bytes.Buffer
	cancelled bool
}

func (s *memSink) ID() string    { return "mem" }
func (s *memSink) Cancel() error { s.cancelled = true; return nil }
func (s *memSink) Close() error  { return nil }

type nopCloser struct{ *bytes.Reader }

func (nopCloser) Close() error { return nil }

func TestSnapshotRestoreMerges(t *testing.T) {
	src, dst := openStore(t), openStore(t)
	ctx := t.Context()
	var entries []replica.Entry
	expiresAt := time.Unix(1_900_000_000, 9).UTC()
	for i := range 1000 {
		rec := replica.Record{Value: []byte("old"), Timestamp: 10, NodeID: "a"}
		if i%2 == 1 {
			rec.ExpiresAt = expiresAt // expiry travels with the record through snapshots
		}
		entries = append(entries, replica.Entry{Partition: 3, Key: fmt.Appendf(nil, "k%04d", i), Record: rec})
	}
	entries = append(entries, replica.Entry{Partition: 4, Key: []byte("other-partition"), Record: replica.Record{Value: []byte("x"), Timestamp: 10, NodeID: "a"}})
	if err := src.Merge(ctx, entries); err != nil {
		t.Fatal(err)
	}
	// dst already holds a newer version of one key: restore must keep it.
	if err := dst.Merge(ctx, []replica.Entry{{Partition: 3, Key: []byte("k0007"), Record: replica.Record{Value: []byte("newer"), Timestamp: 99, NodeID: "b"}}}); err != nil {
		t.Fatal(err)
	}
	f := &fsm{group: 3, store: src}
	snap, err := f.Snapshot()
	if err != nil {
		t.Fatal(err)
	}
	var sink memSink
	if err := snap.Persist(&sink); err != nil {
		t.Fatal(err)
	}
	snap.Release()
	g := &fsm{group: 3, store: dst}
	if err := g.Restore(nopCloser{bytes.NewReader(sink.Bytes())}); err != nil {
		t.Fatal(err)
	}
	n := 0
	if err := dst.Scan(3, nil, nil, func(key []byte, rec replica.Record) bool {
		n++
		want := "old"
		if string(key) == "k0007" {
			want = "newer"
		}
		if string(rec.Value) != want {
			t.Errorf("%s: got %q, want %q", key, rec.Value, want)
		}
		if odd := key[len(key)-1]%2 == 1; want == "old" && odd != rec.ExpiresAt.Equal(expiresAt) {
			t.Errorf("%s: expiry %s after restore", key, rec.ExpiresAt)
		}
		return true
	}); err != nil {
		t.Fatal(err)
	}
	if n != 1000 {
		t.Fatalf("restored %d records, want 1000", n)
	}
	if _, err := dst.Get(4, []byte("other-partition")); !errors.Is(err, replica.ErrNotFound) {
		t.Fatalf("snapshot leaked another partition: %v", err)
	}
	// A truncated stream is an error, not a silent partial restore.
	if err := g.Restore(nopCloser{bytes.NewReader(sink.Bytes()[:sink.Len()/2])}); err == nil {
		t.Fatal("truncated snapshot restored without error")
	}
}

func TestConfigValidate(t *testing.T) {
	err := Config{}.Validate()
	for _, want := range []string{"NodeID", "DataDir", "HeartbeatTimeout", "SnapshotThreshold"} {
		if err == nil || !bytes.Contains([]byte(err.Error()), []byte(want)) {
			t.Errorf("got %v, want %s", err, want)
		}
	}
	if _, err := NewManager(testConfig(t, "n1"), Deps{}); err == nil {
		t.Fatal("NewManager accepted empty deps")
	}
	e := &NotLeaderError{Group: 3}
	if e.Error() == "" || !errors.Is(e, ErrNotLeader) {
		t.Fatal(e)
	}
}
