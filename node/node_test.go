package node

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"os"
	"strings"
	"testing"
	"time"

	"go.uber.org/goleak"

	"github.com/ringkv/ringkv/coordinator"
	"github.com/ringkv/ringkv/internal/testlog"
	"github.com/ringkv/ringkv/ring"
	"github.com/ringkv/ringkv/ring/gossip"
)

func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m,
		// Waiters on futures hashicorp/raft leaves unanswered when a
		// group shuts down with them queued (consensus/transport_test.go's
		// TestMain; the coordinator's suite met the first in CI).
		goleak.IgnoreAnyFunction("github.com/ringkv/ringkv/consensus.(*Group).proposeLatched.func2"),
		goleak.IgnoreAnyFunction("github.com/ringkv/ringkv/consensus.(*readBatcher).run"),
		goleak.IgnoreAnyFunction("github.com/ringkv/ringkv/consensus.(*Group).leaderReady.func1"),
		// hashicorp/raft#696: see consensus/transport_test.go's TestMain.
		goleak.IgnoreAnyFunction("github.com/hashicorp/raft.(*Raft).leadershipTransfer"),
		goleak.IgnoreAnyFunction("github.com/hashicorp/raft.(*Raft).leaderLoop.func2"),
		goleak.IgnoreAnyFunction("github.com/dgraph-io/ristretto/v2.(*defaultPolicy[...]).processItems"),
		goleak.IgnoreAnyFunction("github.com/dgraph-io/ristretto/v2.(*Cache[...]).processItems"),
		goleak.IgnoreAnyFunction("github.com/dgraph-io/badger/v4/y.(*WaterMark).process"),
		// http.Client keep-alive connections of the test's own requests
		goleak.IgnoreAnyFunction("net/http.(*persistConn).readLoop"),
		goleak.IgnoreAnyFunction("net/http.(*persistConn).writeLoop"),
		goleak.IgnoreAnyFunction("internal/poll.runtime_pollWait"),
		// memberlist's Shutdown does not wait for a probe in flight; it
		// ends at its probe timeout.
		goleak.IgnoreAnyFunction("github.com/hashicorp/memberlist.(*Memberlist).probeNode"),
		// A leadership round started as a group shut down waits on a
		// VerifyLeader future hashicorp/raft no longer answers (see
		// client/cluster_test.go's TestMain; seen in this suite too).
		goleak.IgnoreAnyFunction("github.com/ringkv/ringkv/consensus.(*readBatcher).run"),
		goleak.IgnoreAnyFunction("github.com/ringkv/ringkv/consensus.(*Group).leaderReady.func1"))
}

// startCluster opens n in-process nodes on free loopback ports and waits
// until every node's ring holds all of them.
func startCluster(t testing.TB, n int) []*Node { return startClusterWith(t, n, nil) }

// testNodeConfig returns the configuration of node i (n1, n2, ...) of a
// test cluster, with its data in dir, joining join; tweak, if set, adjusts
// it.
func testNodeConfig(t testing.TB, i int, dir string, join []string, tweak func(*Config)) Config {
	cfg := DefaultConfig()
	cfg.ID = fmt.Sprintf("n%d", i)
	cfg.DataDir = dir
	cfg.HTTPAddr, cfg.RPCAddr, cfg.GossipAddr = "127.0.0.1:0", "127.0.0.1:0", "127.0.0.1:0"
	cfg.GossipProfile = gossip.Local
	cfg.Consensus.ReconcileInterval = 100 * time.Millisecond
	if ct := os.Getenv("RINGKV_BENCH_COMMIT_TIMEOUT"); ct != "" {
		d, err := time.ParseDuration(ct)
		if err != nil {
			t.Fatal(err)
		}
		cfg.Consensus.CommitTimeout = d
	}
	cfg.Join = join
	if _, ok := t.(*testing.T); ok {
		cfg.Logger = slog.New(slog.NewTextHandler(testlog.Writer(t), &slog.HandlerOptions{Level: slog.LevelWarn}))
	}
	if tweak != nil {
		tweak(&cfg)
	}
	return cfg
}

// startClusterWith is startCluster with tweak applied to every node's
// configuration.
func startClusterWith(t testing.TB, n int, tweak func(*Config)) []*Node {
	t.Helper()
	// Directories first: cleanups run last-in first-out, so the nodes must
	// be closed (by the cleanup registered below) before their dirs go.
	dirs := make([]string, n)
	for i := range dirs {
		dirs[i] = t.TempDir()
	}
	var nodes []*Node
	t.Cleanup(func() {
		for i := len(nodes) - 1; i >= 0; i-- {
			if err := nodes[i].Close(); err != nil {
				t.Error(err)
			}
		}
	})
	for i := 1; i <= n; i++ {
		var join []string
		if i > 1 {
			join = []string{nodes[0].GossipAddr()}
		}
		nd, err := Open(testNodeConfig(t, i, dirs[i-1], join, tweak), Deps{})
		if err != nil {
			t.Fatal(err)
		}
		nodes = append(nodes, nd)
	}
	deadline := time.Now().Add(30 * time.Second)
	for {
		done := true
		for _, nd := range nodes {
			r := nd.Gossip().Ring()
			for _, other := range nodes {
				if m, ok := r.Member(other.ID()); !ok || m.Status != ring.Joined {
					done = false
				}
				if info, ok := nd.Gossip().Member(other.ID()); !ok || info.Liveness != gossip.Alive {
					done = false
				}
			}
		}
		if done {
			return nodes
		}
		if time.Now().After(deadline) {
			t.Fatal("cluster did not converge")
		}
		tick := time.NewTimer(20 * time.Millisecond)
		<-tick.C
	}
}

func getJSON(t *testing.T, url string, v any) int {
	t.Helper()
	req, err := http.NewRequestWithContext(t.Context(), http.MethodGet, url, nil)
	if err != nil {
		t.Fatal(err)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = resp.Body.Close() }() // read fully below
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	if v != nil {
		if err := json.Unmarshal(b, v); err != nil {
			t.Fatalf("%s: %v in %q", url, err, b)
		}
	}
	return resp.StatusCode
}

func TestClusterServesAndReports(t *testing.T) {
	nodes := startCluster(t, 3)
	ctx := t.Context()
	// Writes through one node's coordinator are read through another's.
	if err := nodes[0].Coordinator().Set(ctx, []byte("user:1001"), []byte("John Doe"), coordinator.All); err != nil {
		t.Fatal(err)
	}
	got, found, err := nodes[2].Coordinator().Get(ctx, []byte("user:1001"), coordinator.Quorum)
	if err != nil || !found || string(got) != "John Doe" {
		t.Fatalf("get: %q %v %v", got, found, err)
	}
	// ... and over HTTP.
	var g struct {
		Value string `json:"value"`
		Found bool   `json:"found"`
	}
	if code := getJSON(t, "http://"+nodes[1].HTTPAddr()+"/api/get?key=user:1001", &g); code != 200 || g.Value != "John Doe" {
		t.Fatalf("http get: %d %+v", code, g)
	}

	var h Health
	if code := getJSON(t, "http://"+nodes[0].HTTPAddr()+"/health", &h); code != 200 || h.Status != "ok" || h.NodeID != "n1" {
		t.Fatalf("health: %d %+v", code, h)
	}
	var s Stats
	if code := getJSON(t, "http://"+nodes[1].HTTPAddr()+"/api/stats", &s); code != 200 {
		t.Fatalf("stats: %d", code)
	}
	if s.NodeID != "n2" || len(s.Members) != 3 || s.PartitionCount != 64 || len(s.Partitions) != 64 || s.ReplicationFactor != 3 {
		t.Fatalf("stats: %+v", s)
	}
	for _, m := range s.Members {
		if m.Liveness != "alive" || m.Status != "joined" || m.RPCAddr == "" || m.HTTPAddr == "" {
			t.Fatalf("member %+v", m)
		}
	}
	// Every group gets a leader and, once reconfigured, three voters.
	deadline := time.Now().Add(60 * time.Second)
	for {
		var rd map[string]any
		code := getJSON(t, "http://"+nodes[2].HTTPAddr()+"/ready", &rd)
		var st Stats
		getJSON(t, "http://"+nodes[1].HTTPAddr()+"/api/stats", &st)
		full := 0
		for _, g := range st.Groups {
			if len(g.Voters) == 3 {
				full++
			}
		}
		if code == 200 && full == 64 && len(st.Groups) == 64 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("not ready: %d %v; %d of 64 groups have 3 voters", code, rd, full)
		}
		tick := time.NewTimer(50 * time.Millisecond)
		<-tick.C
	}
	if err := nodes[1].Coordinator().Set(ctx, []byte("lin"), []byte("x"), coordinator.Linearizable); err != nil {
		t.Fatal(err)
	}
	if got, found, err := nodes[2].Coordinator().Get(ctx, []byte("lin"), coordinator.Linearizable); err != nil || !found || string(got) != "x" {
		t.Fatalf("linearizable get: %q %v %v", got, found, err)
	}
	if code := getJSON(t, "http://"+nodes[0].HTTPAddr()+"/nope", nil); code != 404 {
		t.Fatalf("unknown path: %d", code)
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, "http://"+nodes[0].HTTPAddr()+"/metrics", nil)
	if err != nil {
		t.Fatal(err)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	body, err := io.ReadAll(resp.Body)
	_ = resp.Body.Close() // read fully above
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{
		`ringkv_coordinator_requests_total{level="all",op="set",outcome="ok"} 1`,
		"ringkv_coordinator_request_duration_seconds_bucket",
		"ringkv_replica_",
		"ringkv_gossip_",
	} {
		if !strings.Contains(string(body), want) {
			t.Errorf("/metrics lacks %q", want)
		}
	}

	// A stopped node: membership still lists it (dead, still joined), quorum works.
	if err := nodes[2].Close(); err != nil {
		t.Fatal(err)
	}
	if err := nodes[0].Coordinator().Set(ctx, []byte("k2"), []byte("v"), coordinator.Quorum); err != nil {
		t.Fatal(err)
	}
	ctxAll, cancel := context.WithTimeout(ctx, 2*time.Second)
	defer cancel()
	if err := nodes[0].Coordinator().Set(ctxAll, []byte("k3"), []byte("v"), coordinator.All); err == nil {
		t.Fatal("ALL succeeded with a node down")
	}
}

// soloConfig is the config of a one-node cluster "solo" on loopback, in
// a temporary directory.
func soloConfig(t *testing.T) Config {
	cfg := DefaultConfig()
	cfg.ID = "solo"
	cfg.DataDir = t.TempDir()
	cfg.HTTPAddr, cfg.RPCAddr, cfg.GossipAddr = "127.0.0.1:0", "127.0.0.1:0", "127.0.0.1:0"
	cfg.GossipProfile = gossip.Local
	return cfg
}

func TestRestartKeepsData(t *testing.T) {
	cfg := soloConfig(t)
	ctx := t.Context()
	for round := range 2 {
		nd, err := Open(cfg, Deps{})
		if err != nil {
			t.Fatal(err)
		}
		deadline := time.Now().Add(10 * time.Second)
		for len(nd.Gossip().Ring().Active()) == 0 {
			if time.Now().After(deadline) {
				t.Fatal("solo node never founded its ring")
			}
			tick := time.NewTimer(10 * time.Millisecond)
			<-tick.C
		}
		if round == 0 {
			if err := nd.Coordinator().Set(ctx, []byte("k"), []byte("durable"), coordinator.All); err != nil {
				t.Fatal(err)
			}
		} else {
			got, found, err := nd.Coordinator().Get(ctx, []byte("k"), coordinator.All)
			if err != nil || !found || string(got) != "durable" {
				t.Fatalf("after restart: %q %v %v", got, found, err)
			}
		}
		if err := nd.Close(); err != nil {
			t.Fatal(err)
		}
		if err := nd.Close(); err != nil { // idempotent
			t.Fatal(err)
		}
	}
}

func TestConfigErrors(t *testing.T) {
	cfg := Config{Ring: ring.Config{Partitions: 3, ReplicationFactor: 3}}
	err := cfg.Validate()
	for _, want := range []string{"ID is required", "DataDir is required", "HTTPAddr is required", "RPCAddr", "GossipAddr"} {
		if err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("got %v, want %q", err, want)
		}
	}
	if _, err := Open(cfg, Deps{}); err == nil {
		t.Fatal("Open accepted an invalid config")
	}
	// A port that is taken makes Open fail cleanly, closing what it opened.
	good := DefaultConfig()
	good.ID, good.DataDir = "n1", t.TempDir()
	good.HTTPAddr, good.RPCAddr, good.GossipAddr = "127.0.0.1:0", "127.0.0.1:0", "127.0.0.1:0"
	first, err := Open(good, Deps{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := first.Close(); err != nil {
			t.Error(err)
		}
	})
	clash := good
	clash.DataDir = t.TempDir()
	clash.RPCAddr = first.RPCAddr()
	if _, err := Open(clash, Deps{}); err == nil || !strings.Contains(err.Error(), "listen rpc") {
		t.Fatalf("got %v, want listen error", err)
	}
}

// BenchmarkQuorumWrite measures a QUORUM Set through the coordinator of an
// in-process 3-node cluster (real drpc on loopback, real fsyncing Badger).
