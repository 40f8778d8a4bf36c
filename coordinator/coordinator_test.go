package coordinator

import (
	"context"
	"errors"
	"fmt"
	"runtime"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"go.uber.org/goleak"

	"github.com/ringkv/ringkv/replica"
	"github.com/ringkv/ringkv/ring"
)

func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m, goleak.IgnoreTopFunction("github.com/golang/glog.(*fileSink).flushDaemon"),
		// A leadership round started as a group shut down waits on a
		// VerifyLeader future hashicorp/raft no longer answers (see
		// client/cluster_test.go's TestMain).
		goleak.IgnoreAnyFunction("github.com/ringkv/ringkv/consensus.(*readBatcher).run"),
		goleak.IgnoreAnyFunction("github.com/ringkv/ringkv/consensus.(*Group).leaderReady.func1"),
		// Likewise a proposal's waiter on an Apply future raft left
		// unanswered at shutdown (consensus/transport_test.go's TestMain;
		// seen once in a CI run of this package).
		goleak.IgnoreAnyFunction("github.com/ringkv/ringkv/consensus.(*Group).proposeLatched.func2"),
		// hashicorp/raft#696: see consensus/transport_test.go's TestMain.
		goleak.IgnoreAnyFunction("github.com/hashicorp/raft.(*Raft).leadershipTransfer"),
		goleak.IgnoreAnyFunction("github.com/hashicorp/raft.(*Raft).leaderLoop.func2"),
		goleak.IgnoreAnyFunction("github.com/dgraph-io/ristretto/v2.(*defaultPolicy[...]).processItems"),
		goleak.IgnoreAnyFunction("github.com/dgraph-io/ristretto/v2.(*Cache[...]).processItems"),
		goleak.IgnoreAnyFunction("github.com/dgraph-io/badger/v4/y.(*WaterMark).process"))
}

type staticRing struct {
	r atomic.Pointer[ring.Ring]
	// gate, when set, holds every Ring call until it is closed; held
	// counts the calls it holds.
	gate atomic.Pointer[chan struct{}]
	held atomic.Int64
}

func (s *staticRing) Ring() *ring.Ring {
	if g := s.gate.Load(); g != nil {
		s.held.Add(1)
		<-*g
	}
	return s.r.Load()
}

// memTransport connects coordinators to each other's stores in memory, with
// switches to take nodes down, stall them, or report corruption.
type memTransport struct {
	stores map[string]*replica.Store
	mu     sync.Mutex
	down   map[string]bool
	stall  map[string]bool
	calls  atomic.Int64
	// unstalled counts the stalled calls that ended with their context.
	unstalled atomic.Int64
	// closed is set by a test once a coordinator's Close has returned;
	// late counts the calls made while it is set.
	closed, late atomic.Int64
}

var errDown = errors.New("test: node down")

func (m *memTransport) check(ctx context.Context, node string) error {
	m.calls.Add(1)
	if m.closed.Load() != 0 {
		m.late.Add(1)
	}
	m.mu.Lock()
	down, stall := m.down[node], m.stall[node]
	m.mu.Unlock()
	if stall {
		<-ctx.Done()
		m.unstalled.Add(1)
		return ctx.Err()
	}
	if down {
		return errDown
	}
	return nil
}

func (m *memTransport) setDown(node string, v bool) {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.down[node] = v
}

func (m *memTransport) setStall(node string, v bool) {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.stall[node] = v
}

func (m *memTransport) Merge(ctx context.Context, node string, entries []replica.Entry) error {
	if err := m.check(ctx, node); err != nil {
		return err
	}
	return m.stores[node].Merge(ctx, entries)
}

func (m *memTransport) Read(ctx context.Context, node string, p uint32, key []byte) (replica.Record, error) {
	if err := m.check(ctx, node); err != nil {
		return replica.Record{}, err
	}
	return m.stores[node].Get(p, key)
}

func (m *memTransport) Scan(ctx context.Context, node string, req ScanRequest) ([]ScanResult, error) {
	if err := m.check(ctx, node); err != nil {
		return nil, err
	}
	return scanLocal(m.stores[node], req)
}

// testCluster is three coordinators over three in-memory stores.
type testCluster struct {
	ids    []string
	stores map[string]*replica.Store
	coords map[string]*Coordinator
	trans  *memTransport
	ring   *staticRing
}

func newTestCluster(t testing.TB, mutate func(*Config)) *testCluster {
	t.Helper()
	rcfg := ring.DefaultConfig()
	r, err := ring.New(rcfg)
	if err != nil {
		t.Fatal(err)
	}
	tc := &testCluster{
		ids:    []string{"n1", "n2", "n3"},
		stores: map[string]*replica.Store{},
		coords: map[string]*Coordinator{},
		ring:   &staticRing{},
	}
	for _, id := range tc.ids {
		if r, err = r.Join(ring.Member{ID: id}); err != nil {
			t.Fatal(err)
		}
		cfg := replica.DefaultConfig()
		cfg.InMemory = true
		s, err := replica.Open(cfg, replica.Deps{})
		if err != nil {
			t.Fatal(err)
		}
		tc.stores[id] = s
	}
	tc.ring.r.Store(r)
	tc.trans = &memTransport{stores: tc.stores, down: map[string]bool{}, stall: map[string]bool{}}
	for _, id := range tc.ids {
		cfg := DefaultConfig()
		cfg.NodeID = id
		cfg.RequestTimeout = 2 * time.Second
		if mutate != nil {
			mutate(&cfg)
		}
		c, err := New(cfg, Deps{Store: tc.stores[id], Clock: replica.NewClock(nil, 0), Ring: tc.ring, Transport: tc.trans})
		if err != nil {
			t.Fatal(err)
		}
		tc.coords[id] = c
	}
	t.Cleanup(func() {
		for _, id := range tc.ids {
			if err := tc.coords[id].Close(); err != nil {
				t.Error(err)
			}
		}
		for _, id := range tc.ids {
			if err := tc.stores[id].Close(); err != nil {
				t.Error(err)
			}
		}
	})
	return tc
}

func TestParseLevel(t *testing.T) {
	for _, tc := range []struct {
		in   string
		want Level
		err  bool
	}{
		{"", Quorum, false}, {"quorum", Quorum, false}, {"ONE", One, false}, {"all", All, false},
		{" All ", All, false}, {"linearizable", Linearizable, false}, {"two", 0, true},
	} {
		t.Run(tc.in, func(t *testing.T) {
			got, err := ParseLevel(tc.in)
			if tc.err {
				if !errors.Is(err, ErrInvalidArgument) {
					t.Fatalf("got err %v, want ErrInvalidArgument", err)
				}
				return
			}
			if err != nil || got != tc.want {
				t.Fatalf("got %v, %v, want %v", got, err, tc.want)
			}
			if got.String() != strings.ToLower(strings.TrimSpace(tc.in)) && tc.in != "" {
				t.Fatalf("String: got %q", got.String())
			}
		})
	}
	if Level(9).String() != "Level(9)" {
		t.Fatalf("got %q", Level(9).String())
	}
	for _, tc := range []struct {
		l       Level
		n, want int
	}{{One, 3, 1}, {Quorum, 3, 2}, {All, 3, 3}, {Quorum, 5, 3}, {Quorum, 1, 1}, {One, 0, 0}} {
		if got := tc.l.required(tc.n); got != tc.want {
			t.Errorf("%v.required(%d): got %d, want %d", tc.l, tc.n, got, tc.want)
		}
	}
}

func TestSetGetDeleteAtEveryLevel(t *testing.T) {
	tc := newTestCluster(t, nil)
	ctx := t.Context()
	for _, level := range []Level{One, Quorum, All} {
		t.Run(level.String(), func(t *testing.T) {
			key := []byte("k-" + level.String())
			if err := tc.coords["n1"].Set(ctx, key, []byte("v1"), level); err != nil {
				t.Fatal(err)
			}
			for _, id := range tc.ids {
				// ALL reads every replica, so every coordinator sees the write
				got, found, err := tc.coords[id].Get(ctx, key, All)
				if err != nil || !found || string(got) != "v1" {
					t.Fatalf("get via %s: got %q %v %v, want v1", id, got, found, err)
				}
			}
			if err := tc.coords["n2"].Delete(ctx, key, level); err != nil {
				t.Fatal(err)
			}
			_, found, err := tc.coords["n3"].Get(ctx, key, All)
			if err != nil || found {
				t.Fatalf("after delete: found %v err %v, want not found", found, err)
			}
		})
	}
	// A missing key is not found, not an error.
	if _, found, err := tc.coords["n1"].Get(ctx, []byte("absent"), Quorum); err != nil || found {
		t.Fatalf("absent: found %v err %v", found, err)
	}
}

func TestInvalidArguments(t *testing.T) {
	tc := newTestCluster(t, func(c *Config) { c.MaxKeyBytes = 8; c.MaxValueBytes = 16 })
	c := tc.coords["n1"]
	ctx := t.Context()
	for _, tt := range []struct {
		name string
		err  error
	}{
		{"empty key set", c.Set(ctx, nil, []byte("v"), Quorum)},
		{"long key set", c.Set(ctx, []byte("123456789"), []byte("v"), Quorum)},
		{"long value", c.Set(ctx, []byte("k"), make([]byte, 17), Quorum)},
		{"empty key delete", c.Delete(ctx, nil, Quorum)},
		{"long key get", func() error { _, _, err := c.Get(ctx, []byte("123456789"), Quorum); return err }()},
		{"negative limit", func() error { _, err := c.List(ctx, nil, -1, Quorum); return err }()},
		{"huge limit", func() error { _, err := c.List(ctx, nil, 1<<30, Quorum); return err }()},
		{"long prefix", func() error { _, err := c.List(ctx, []byte("123456789"), 1, Quorum); return err }()},
	} {
		t.Run(tt.name, func(t *testing.T) {
			if !errors.Is(tt.err, ErrInvalidArgument) {
				t.Fatalf("got %v, want ErrInvalidArgument", tt.err)
			}
		})
	}
}

func TestUnavailableSaysHowManyAnswered(t *testing.T) {
	tc := newTestCluster(t, nil)
	ctx := t.Context()
	tc.trans.setDown("n2", true)
	tc.trans.setDown("n3", true)
	c := tc.coords["n1"]
	err := c.Set(ctx, []byte("k"), []byte("v"), Quorum)
	var ue *UnavailableError
	if !errors.As(err, &ue) || !errors.Is(err, ErrUnavailable) {
		t.Fatalf("got %v, want *UnavailableError", err)
	}
	if ue.Required != 2 || ue.Answered != 1 || ue.Replicas != 3 {
		t.Fatalf("got required %d answered %d replicas %d, want 2 1 3", ue.Required, ue.Answered, ue.Replicas)
	}
	if !strings.Contains(err.Error(), "1 of 2 required replicas answered") {
		t.Fatalf("message %q does not say how many answered", err)
	}
	// ONE still works with the local replica.
	if err := c.Set(ctx, []byte("k"), []byte("v"), One); err != nil {
		t.Fatal(err)
	}
	if _, _, err := c.Get(ctx, []byte("k"), Quorum); !errors.Is(err, ErrUnavailable) {
		t.Fatalf("quorum get: got %v, want unavailable", err)
	}
	if _, err := c.List(ctx, nil, 10, Quorum); !errors.Is(err, ErrUnavailable) {
		t.Fatalf("quorum list: got %v, want unavailable", err)
	}
	if got, found, err := c.Get(ctx, []byte("k"), One); err != nil || !found || string(got) != "v" {
		t.Fatalf("one get: %q %v %v", got, found, err)
	}
}

func TestStalledReplicaNeverHangs(t *testing.T) {
	tc := newTestCluster(t, func(c *Config) { c.RequestTimeout = 200 * time.Millisecond; c.SpeculativeDelay = 20 * time.Millisecond })
	ctx := t.Context()
	c := tc.coords["n1"]
	if err := c.Set(ctx, []byte("k"), []byte("v"), All); err != nil {
		t.Fatal(err)
	}
	tc.trans.setStall("n2", true)
	// Quorum still answers: the speculative read goes to n3.
	if got, found, err := c.Get(ctx, []byte("k"), Quorum); err != nil || !found || string(got) != "v" {
		t.Fatalf("quorum get with n2 stalled: %q %v %v", got, found, err)
	}
	if err := c.Set(ctx, []byte("k"), []byte("v2"), Quorum); err != nil {
		t.Fatal(err)
	}
	// All cannot: it fails when the deadline passes instead of hanging.
	start := time.Now()
	err := c.Set(ctx, []byte("k"), []byte("v3"), All)
	if !errors.Is(err, ErrUnavailable) || !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("all set with n2 stalled: got %v, want unavailable after deadline", err)
	}
	if _, _, err := c.Get(ctx, []byte("k"), All); !errors.Is(err, ErrUnavailable) {
		t.Fatalf("all get with n2 stalled: got %v", err)
	}
	t.Logf("ALL failed after %v", time.Since(start))
	tc.trans.setStall("n2", false)
}

func TestReadRepair(t *testing.T) {
	tc := newTestCluster(t, nil)
	ctx := t.Context()
	tc.trans.setDown("n3", true)
	if err := tc.coords["n1"].Set(ctx, []byte("k"), []byte("new"), Quorum); err != nil {
		t.Fatal(err)
	}
	p := tc.ring.Ring().PartitionOf([]byte("k"))
	if _, err := tc.stores["n3"].Get(p, []byte("k")); !errors.Is(err, replica.ErrNotFound) {
		t.Fatalf("n3 should have missed the write, got %v", err)
	}
	tc.trans.setDown("n3", false)
	// A quorum read through n3 asks n3 (itself) first and another replica,
	// finds its own copy missing and repairs it before answering.
	got, found, err := tc.coords["n3"].Get(ctx, []byte("k"), Quorum)
	if err != nil || !found || string(got) != "new" {
		t.Fatalf("quorum get via n3: %q %v %v", got, found, err)
	}
	rec, err := tc.stores["n3"].Get(p, []byte("k"))
	if err != nil || string(rec.Value) != "new" {
		t.Fatalf("n3 after read repair: %q %v, want new", rec.Value, err)
	}
	if got, _, _ := tc.coords["n3"].Get(ctx, []byte("k"), One); string(got) != "new" {
		t.Fatalf("ONE via n3 after repair: got %q", got)
	}
}

func TestReadFallsBackOnCorruption(t *testing.T) {
	tc := newTestCluster(t, nil)
	ctx := t.Context()
	key := []byte("k")
	if err := tc.coords["n1"].Set(ctx, key, []byte("good"), All); err != nil {
		t.Fatal(err)
	}
	p := tc.ring.Ring().PartitionOf(key)
	corruptTrans := &corruptingTransport{Transport: tc.trans, corrupt: map[string]bool{"n2": true}}
	cfg := DefaultConfig()
	cfg.NodeID = "n1"
	c, err := New(cfg, Deps{Store: tc.stores["n1"], Clock: replica.NewClock(nil, 0), Ring: tc.ring, Transport: corruptTrans})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = c.Close() }) // Close always returns nil
	// n2 answers corrupt; ALL needs n2 and so fails, QUORUM falls back to n3.
	if got, found, err := c.Get(ctx, key, Quorum); err != nil || !found || string(got) != "good" {
		t.Fatalf("quorum with n2 corrupt: %q %v %v", got, found, err)
	}
	if _, _, err := c.Get(ctx, key, All); !errors.Is(err, ErrUnavailable) {
		t.Fatalf("all with n2 corrupt: got %v", err)
	}
	// Every replica corrupt: ErrCorrupt, never bytes.
	corruptTrans.corrupt["n3"] = true
	corruptTrans.corrupt["n1"] = true
	c2cfg := DefaultConfig()
	c2cfg.NodeID = "n9" // not a replica: every read goes through the transport
	c2, err := New(c2cfg, Deps{Store: tc.stores["n1"], Clock: replica.NewClock(nil, 0), Ring: tc.ring, Transport: corruptTrans})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = c2.Close() }) // Close always returns nil
	if got, _, err := c2.Get(ctx, key, One); !errors.Is(err, ErrCorrupt) || got != nil {
		t.Fatalf("all corrupt: got %q %v, want ErrCorrupt", got, err)
	}
	_ = p
}

// TestOneReadOnAReplicaIsLocal: a read at ONE on a node holding a replica
// is answered by its own store without a call to any other node; when
// that store fails, the read asks the other replicas.
func TestOneReadOnAReplicaIsLocal(t *testing.T) {
	tc := newTestCluster(t, nil)
	ctx := t.Context()
	if err := tc.coords["n1"].Set(ctx, []byte("k"), []byte("v"), All); err != nil {
		t.Fatal(err)
	}
	if err := tc.coords["n1"].Delete(ctx, []byte("gone"), All); err != nil {
		t.Fatal(err)
	}
	before := tc.trans.calls.Load()
	if got, found, err := tc.coords["n1"].Get(ctx, []byte("k"), One); err != nil || !found || string(got) != "v" {
		t.Fatalf("ONE on a replica: %q %v %v", got, found, err)
	}
	if got, found, err := tc.coords["n1"].Get(ctx, []byte("gone"), One); err != nil || found || got != nil {
		t.Fatalf("ONE of a deleted key on a replica: %q %v %v", got, found, err)
	}
	if _, found, err := tc.coords["n1"].Get(ctx, []byte("never"), One); err != nil || found {
		t.Fatalf("ONE of a missing key on a replica: %v %v", found, err)
	}
	if n := tc.trans.calls.Load() - before; n != 0 {
		t.Fatalf("ONE reads on a replica made %d calls to other nodes, want 0", n)
	}

	// A failing local store (closed): the others answer.
	scfg := replica.DefaultConfig()
	scfg.InMemory = true
	broken, err := replica.Open(scfg, replica.Deps{})
	if err != nil {
		t.Fatal(err)
	}
	cfg := DefaultConfig()
	cfg.NodeID = "n1"
	c, err := New(cfg, Deps{Store: broken, Clock: replica.NewClock(nil, 0), Ring: tc.ring, Transport: tc.trans})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = c.Close() }) // Close always returns nil
	if err := broken.Close(); err != nil {
		t.Fatal(err)
	}
	if got, found, err := c.Get(ctx, []byte("k"), One); err != nil || !found || string(got) != "v" {
		t.Fatalf("ONE on a replica whose store fails: %q %v %v, want the others' v", got, found, err)
	}
}

type corruptingTransport struct {
	Transport
	corrupt map[string]bool
}

func (c *corruptingTransport) Read(ctx context.Context, node string, p uint32, key []byte) (replica.Record, error) {
	if c.corrupt[node] {
		return replica.Record{}, &replica.CorruptError{Partition: p, Key: key}
	}
	return c.Transport.Read(ctx, node, p, key)
}

func TestListMergesSortsAndPages(t *testing.T) {
	tc := newTestCluster(t, func(c *Config) { c.ListPageSize = 3 })
	ctx := t.Context()
	c := tc.coords["n1"]
	const n = 200
	for i := range n {
		if err := c.Set(ctx, fmt.Appendf(nil, "user:%03d", i), fmt.Appendf(nil, "v%d", i), Quorum); err != nil {
			t.Fatal(err)
		}
	}
	for i := range 20 {
		if err := c.Set(ctx, fmt.Appendf(nil, "other:%d", i), []byte("x"), Quorum); err != nil {
			t.Fatal(err)
		}
	}
	// delete every tenth user
	for i := 0; i < n; i += 10 {
		if err := c.Delete(ctx, fmt.Appendf(nil, "user:%03d", i), Quorum); err != nil {
			t.Fatal(err)
		}
	}
	for _, tt := range []struct {
		name  string
		limit int
		want  int
	}{{"all", 0, 180}, {"limit 7", 7, 7}, {"limit 179", 179, 179}, {"limit above count", 500, 180}} {
		t.Run(tt.name, func(t *testing.T) {
			pairs, err := tc.coords["n2"].List(ctx, []byte("user:"), tt.limit, Quorum)
			if err != nil {
				t.Fatal(err)
			}
			if len(pairs) != tt.want {
				t.Fatalf("got %d pairs, want %d", len(pairs), tt.want)
			}
			j := 0
			for i := 0; i < n && j < len(pairs); i++ {
				if i%10 == 0 {
					continue
				}
				if want := fmt.Sprintf("user:%03d", i); string(pairs[j].Key) != want || string(pairs[j].Value) != fmt.Sprintf("v%d", i) {
					t.Fatalf("pair %d: got %s=%s, want %s", j, pairs[j].Key, pairs[j].Value, want)
				}
				j++
			}
		})
	}
	// ONE with two nodes down still lists everything from the live one.
	tc.trans.setDown("n2", true)
	tc.trans.setDown("n3", true)
	pairs, err := c.List(ctx, []byte("other:"), 0, One)
	if err != nil || len(pairs) != 20 {
		t.Fatalf("list at one: %d pairs, %v", len(pairs), err)
	}
}

func TestNotJoinedIsUnavailable(t *testing.T) {
	r, err := ring.New(ring.DefaultConfig())
	if err != nil {
		t.Fatal(err)
	}
	src := &staticRing{}
	src.r.Store(r)
	cfg := replica.DefaultConfig()
	cfg.InMemory = true
	s, err := replica.Open(cfg, replica.Deps{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := s.Close(); err != nil {
			t.Error(err)
		}
	})
	ccfg := DefaultConfig()
	ccfg.NodeID = "n1"
	c, err := New(ccfg, Deps{Store: s, Clock: replica.NewClock(nil, 0), Ring: src, Transport: &memTransport{}})
	if err != nil {
		t.Fatal(err)
	}
	if err := c.Set(t.Context(), []byte("k"), []byte("v"), One); !errors.Is(err, ErrUnavailable) {
		t.Fatalf("set: got %v", err)
	}
	if _, _, err := c.Get(t.Context(), []byte("k"), One); !errors.Is(err, ErrUnavailable) {
		t.Fatalf("get: got %v", err)
	}
	if _, err := c.List(t.Context(), nil, 0, One); !errors.Is(err, ErrUnavailable) {
		t.Fatalf("list: got %v", err)
	}
	if err := c.Close(); err != nil {
		t.Fatal(err)
	}
	if err := c.Set(t.Context(), []byte("k"), []byte("v"), One); !errors.Is(err, ErrClosed) {
		t.Fatalf("after close: got %v", err)
	}
	if _, err := c.List(t.Context(), nil, 0, One); !errors.Is(err, ErrClosed) {
		t.Fatalf("list after close: got %v", err)
	}
}

func TestConfigValidate(t *testing.T) {
	cfg := DefaultConfig()
	if err := cfg.Validate(); err == nil || !strings.Contains(err.Error(), "NodeID") {
		t.Fatalf("got %v, want NodeID error", err)
	}
	cfg = Config{NodeID: "n1", DefaultListLimit: 10, MaxListLimit: 5}
	err := cfg.Validate()
	for _, want := range []string{"MaxKeyBytes", "RequestTimeout", "DefaultListLimit 10 exceeds"} {
		if err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("got %v, want mention of %s", err, want)
		}
	}
	if _, err := New(DefaultConfig(), Deps{}); err == nil {
		t.Fatal("New accepted an invalid config")
	}
	ok := DefaultConfig()
	ok.NodeID = "n1"
	if _, err := New(ok, Deps{}); err == nil || !strings.Contains(err.Error(), "Deps.Store") {
		t.Fatalf("got %v, want missing deps", err)
	}
}

func TestConcurrentWritersConverge(t *testing.T) {
	tc := newTestCluster(t, nil)
	ctx := t.Context()
	var wg sync.WaitGroup
	for w := range 8 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			c := tc.coords[tc.ids[w%3]]
			for i := range 50 {
				if err := c.Set(ctx, fmt.Appendf(nil, "k%d", i%5), fmt.Appendf(nil, "w%d-%d", w, i), Quorum); err != nil {
					t.Error(err)
					return
				}
			}
		}()
	}
	wg.Wait()
	// Every replica ends with the same value per key once ALL reads repaired them.
	for i := range 5 {
		key := fmt.Appendf(nil, "k%d", i)
		want, _, err := tc.coords["n1"].Get(ctx, key, All)
		if err != nil {
			t.Fatal(err)
		}
		p := tc.ring.Ring().PartitionOf(key)
		for _, id := range tc.ids {
			rec, err := tc.stores[id].Get(p, key)
			if err != nil || string(rec.Value) != string(want) {
				t.Fatalf("%s holds %q (%v), want %q", id, rec.Value, err, want)
			}
		}
	}
}

// TestReservedKeys: keys that begin with 0x00 are the cluster's own. A
// request without System's context cannot read, write or list them; the
// node's components can, and List leaves them out for everyone else.
func TestReservedKeys(t *testing.T) {
	tc := newTestCluster(t, nil)
	c := tc.coords["n1"]
	ctx := t.Context()
	sys := System(ctx)
	key := []byte("\x00ringkv/test")
	if err := c.Set(ctx, key, []byte("v"), Quorum); !errors.Is(err, ErrInvalidArgument) || !strings.Contains(err.Error(), "reserved") {
		t.Fatalf("Set of a reserved key: got %v, want ErrInvalidArgument saying reserved", err)
	}
	if _, _, err := c.Get(ctx, key, Quorum); !errors.Is(err, ErrInvalidArgument) {
		t.Fatalf("Get of a reserved key: got %v, want ErrInvalidArgument", err)
	}
	if err := c.Delete(ctx, key, Quorum); !errors.Is(err, ErrInvalidArgument) {
		t.Fatalf("Delete of a reserved key: got %v, want ErrInvalidArgument", err)
	}
	if _, err := c.List(ctx, []byte{0}, 0, Quorum); !errors.Is(err, ErrInvalidArgument) {
		t.Fatalf("List of the reserved prefix: got %v, want ErrInvalidArgument", err)
	}
	if err := c.Set(sys, key, []byte("v"), Quorum); err != nil {
		t.Fatalf("Set under System: %v", err)
	}
	if err := c.Set(ctx, []byte("user"), []byte("u"), Quorum); err != nil {
		t.Fatal(err)
	}
	if v, found, err := c.Get(sys, key, Quorum); err != nil || !found || string(v) != "v" {
		t.Fatalf("Get under System: got %q %v %v", v, found, err)
	}
	pairs, err := c.List(ctx, nil, 0, Quorum)
	if err != nil || len(pairs) != 1 || string(pairs[0].Key) != "user" {
		t.Fatalf("List: got %v %v, want only the user's key", pairs, err)
	}
	if pairs, err := c.List(sys, nil, 0, Quorum); err != nil || len(pairs) != 2 {
		t.Fatalf("List under System: got %v %v, want both keys", pairs, err)
	}
}

// TestCloseWaitsForEverythingItStarted closes a coordinator while 8
// callers write, read and list through it, many times over: Close returns
// only after the background work it started (replica writes beyond W,
// repairs, scans) has ended, and no request starts replica work after it
// (calls get ErrClosed instead). A bare WaitGroup fails this: a request
// past the closed check could still Add after Close's Wait.
func TestCloseWaitsForEverythingItStarted(t *testing.T) {
	tc := newTestCluster(t, nil)
	ctx := t.Context()
	for round := range 30 {
		cfg := DefaultConfig()
		cfg.NodeID = "n1"
		cfg.RequestTimeout = 2 * time.Second
		c, err := New(cfg, Deps{Store: tc.stores["n1"], Clock: replica.NewClock(nil, 0), Ring: tc.ring, Transport: tc.trans})
		if err != nil {
			t.Fatal(err)
		}
		var wg sync.WaitGroup
		var ops atomic.Int64
		var closing atomic.Bool
		for w := range 8 {
			wg.Go(func() {
				for i := 0; ; i++ {
					key := fmt.Appendf(nil, "close-%d-%d", w, i%7)
					var err error
					switch i % 3 {
					case 0:
						err = c.Set(ctx, key, []byte("v"), Quorum)
					case 1:
						_, _, err = c.Get(ctx, key, All)
					default:
						_, err = c.List(ctx, []byte("close-"), 10, One)
					}
					if errors.Is(err, ErrClosed) {
						return
					}
					if err != nil {
						// In flight when Close cancelled its replica calls.
						if !closing.Load() {
							t.Errorf("round %d: %v", round, err)
						}
						return
					}
					ops.Add(1)
				}
			})
		}
		for ops.Load() < 50 {
			runtime.Gosched()
		}
		closing.Store(true)
		if err := c.Close(); err != nil {
			t.Fatal(err)
		}
		tc.trans.closed.Store(1)
		wg.Wait()
		tc.trans.closed.Store(0)
		if n := tc.trans.late.Swap(0); n != 0 {
			t.Fatalf("round %d: %d replica calls after Close returned", round, n)
		}
	}

	// The window itself, made wide: a write holds between its closed
	// check and its first replica call (in placement's ring lookup) while
	// Close runs and returns; released, it must get ErrClosed and call no
	// replica.
	cfg := DefaultConfig()
	cfg.NodeID = "n1"
	c, err := New(cfg, Deps{Store: tc.stores["n1"], Clock: replica.NewClock(nil, 0), Ring: tc.ring, Transport: tc.trans})
	if err != nil {
		t.Fatal(err)
	}
	gate := make(chan struct{})
	tc.ring.gate.Store(&gate)
	tc.ring.held.Store(0)
	done := make(chan error, 1)
	go func() { done <- c.Set(ctx, []byte("close-window"), []byte("v"), Quorum) }()
	deadline := time.Now().Add(10 * time.Second)
	for tc.ring.held.Load() == 0 {
		if time.Now().After(deadline) {
			t.Fatal("the write never reached placement")
		}
		runtime.Gosched()
	}
	if err := c.Close(); err != nil {
		t.Fatal(err)
	}
	tc.trans.closed.Store(1)
	tc.ring.gate.Store(nil)
	close(gate)
	if err := <-done; !errors.Is(err, ErrClosed) {
		t.Errorf("write held across Close: got %v, want ErrClosed", err)
	}
	tc.trans.closed.Store(0)
	if n := tc.trans.late.Load(); n != 0 {
		t.Errorf("%d replica calls after Close returned", n)
	}
}
