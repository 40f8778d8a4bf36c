package gossip

import (
	"bytes"
	"context"
	"fmt"
	"log/slog"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/ringkv/ringkv/internal/testlog"
)

// convergeTimeout bounds every wait on the cluster. Push-pull runs every 15s
// under the Local profile, so anything that depends on it needs more.
const convergeTimeout = 40 * time.Second

// testLogger returns a logger that writes to t.Log until the test's cleanups
// have closed every node (its own cleanup is registered first, so it runs
// last).
func testLogger(t testing.TB) *slog.Logger {
	return slog.New(slog.NewTextHandler(testlog.Writer(t), &slog.HandlerOptions{Level: slog.LevelInfo}))
}

// testConfig returns a Local config for node id with its data under base.
func testConfig(t testing.TB, log *slog.Logger, base, id string, seeds ...string) Config {
	cfg := LocalConfig()
	cfg.NodeID = id
	cfg.Zone = "zone-" + id
	cfg.RPCAddr = "127.0.0.1:1" + id[len(id)-1:]
	cfg.HTTPAddr = "127.0.0.1:2" + id[len(id)-1:]
	cfg.DataDir = filepath.Join(base, id)
	cfg.Seeds = seeds
	cfg.Logger = log
	return cfg
}

// open opens a node and closes it in t.Cleanup. Every node a test opens
// decides ring changes on the same memStore (storeFor).
func open(t testing.TB, cfg Config) *Gossip {
	t.Helper()
	g, err := Open(cfg, Deps{})
	if err != nil {
		t.Fatalf("Open(%s): %v", cfg.NodeID, err)
	}
	g.SetStore(storeFor(t))
	t.Cleanup(func() {
		if err := g.Close(); err != nil {
			t.Errorf("Close(%s): %v", cfg.NodeID, err)
		}
	})
	return g
}

// waitFor polls cond every 20ms until it returns "" or the deadline passes;
// cond returns why the condition does not hold yet.
func waitFor(t testing.TB, what string, cond func() string) {
	t.Helper()
	start := time.Now()
	deadline := start.Add(convergeTimeout)
	warned := false
	tick := time.NewTicker(20 * time.Millisecond)
	defer tick.Stop()
	for {
		why := cond()
		if why == "" {
			return
		}
		if time.Since(start) > 3*time.Second && !warned {
			warned = true
			t.Logf("%s: still waiting: %s", what, why)
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s: not reached within %s: %s", what, convergeTimeout, why)
		}
		<-tick.C
	}
}

// converged reports why the nodes do not yet share one ring with exactly
// the ids Joined, or "" if they do.
func converged(nodes []*Gossip, ids ...string) string {
	first := nodes[0].Ring()
	for _, g := range nodes {
		r := g.Ring()
		if r.Version() != first.Version() || r.Hash() != first.Hash() {
			return fmt.Sprintf("%s at version %d, %s at version %d", nodes[0].cfg.NodeID, first.Version(), g.cfg.NodeID, r.Version())
		}
		var active []string
		for _, m := range r.Active() {
			active = append(active, m.ID)
		}
		if strings.Join(active, ",") != strings.Join(ids, ",") {
			return fmt.Sprintf("%s has active %v, want %v", g.cfg.NodeID, active, ids)
		}
	}
	return ""
}

// seesAlive reports why g does not see every id Alive, or "".
func seesAlive(g *Gossip, ids ...string) string {
	for _, id := range ids {
		mi, ok := g.Member(id)
		if !ok || mi.Liveness != Alive {
			return fmt.Sprintf("%s sees %s as %+v", g.cfg.NodeID, id, mi)
		}
	}
	return ""
}

// startCluster opens n1 (bootstrap) and n2..nN, each seeded with every node
// opened before it, and waits until they all share a ring with every node
// Joined and see each other alive. Seeding with every earlier node makes
// each pair meet through a join push-pull instead of memberlist's gossip,
// which under the Local profile may need a whole PushPullInterval (15s).
func startCluster(t *testing.T, n int) (nodes []*Gossip, base string, log *slog.Logger) {
	t.Helper()
	return startClusterWith(t, n, nil)
}

// startClusterWith is startCluster with each node's config passed through
// modify (if not nil) before the node is opened.
func startClusterWith(t *testing.T, n int, modify func(*Config)) (nodes []*Gossip, base string, log *slog.Logger) {
	t.Helper()
	log = testLogger(t)
	base = t.TempDir()
	var ids []string
	for i := 1; i <= n; i++ {
		id := fmt.Sprintf("n%d", i)
		cfg := testConfig(t, log, base, id, addrs(nodes)...)
		if modify != nil {
			modify(&cfg)
		}
		nodes = append(nodes, open(t, cfg))
		ids = append(ids, id)
	}
	waitFor(t, "cluster converges", func() string { return converged(nodes, ids...) })
	for _, g := range nodes {
		waitFor(t, "everyone alive", func() string { return seesAlive(g, ids...) })
	}
	return nodes, base, log
}

func addrs(nodes []*Gossip) []string {
	var out []string
	for _, g := range nodes {
		out = append(out, g.Addr())
	}
	return out
}

// waitSteps waits until g's run loop has gone around k more times, so that
// the claimant has had k chances to act.
func waitSteps(t *testing.T, g *Gossip, k uint64) {
	t.Helper()
	target := g.steps.Load() + k
	waitFor(t, "run loop steps", func() string {
		if s := g.steps.Load(); s < target {
			return fmt.Sprintf("at step %d, want %d", s, target)
		}
		return ""
	})
}

// memStore is an in-memory Store: the linearizable register that the node
// backs with a reserved key. fault, if set, is called on every
// CompareAndSet and decides whether the call applies and what it returns.
type memStore struct {
	mu    sync.Mutex
	value []byte
	found bool
	cas   int // CompareAndSet calls
	fault func(n int) (apply bool, err error)
}

var stores sync.Map // testing.TB -> *memStore

// storeFor returns the memStore shared by the nodes of t.
func storeFor(t testing.TB) *memStore {
	s, _ := stores.LoadOrStore(t, &memStore{})
	ms, _ := s.(*memStore) // only memStores are stored
	return ms
}

func (s *memStore) Get(ctx context.Context) ([]byte, bool, error) {
	if err := ctx.Err(); err != nil {
		return nil, false, err
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	return bytes.Clone(s.value), s.found, nil
}

func (s *memStore) CompareAndSet(ctx context.Context, expected *[]byte, value []byte) (bool, error) {
	if err := ctx.Err(); err != nil {
		return false, err
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	s.cas++
	apply, err := true, error(nil)
	if s.fault != nil {
		apply, err = s.fault(s.cas)
	}
	match := (expected == nil && !s.found) || (expected != nil && s.found && bytes.Equal(*expected, s.value))
	if !apply {
		return false, err
	}
	if match {
		s.value, s.found = bytes.Clone(value), true
	}
	return match, err
}

// change makes one operator change on g.
func change(t testing.TB, g *Gossip, op Op, id string) (Result, error) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), convergeTimeout)
	defer cancel()
	return g.Change(ctx, Change{Op: op, ID: id})
}
