package testcluster

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"sync"
	"testing"
	"time"
)

// ---- Added for the chaos harness (internal/chaos): clusters whose
// addresses are known before any node starts, spare nodes, and a binary
// built without the race detector. ----

var (
	fastOnce sync.Once
	fastBin  string
	fastErr  error
)

// BinaryNoRace builds ./cmd/ringkv without -race once per test process and
// returns its path: server processes about ten times faster than a race
// build, for tests whose own process may still run under -race. The binary
// lives in a temporary directory removed by Cleanup.
func BinaryNoRace(t testing.TB) string {
	t.Helper()
	if !RaceServers() {
		return Binary(t) // already a plain build
	}
	fastOnce.Do(func() {
		root, err := moduleRoot()
		if err != nil {
			fastErr = err
			return
		}
		dir, err := os.MkdirTemp("", "ringkv-bin-norace-")
		if err != nil {
			fastErr = fmt.Errorf("temp dir: %w", err)
			return
		}
		fastBin = filepath.Join(dir, "ringkv")
		cmd := exec.Command("go", "build", "-o", fastBin, "./cmd/ringkv")
		cmd.Dir = root
		if out, err := cmd.CombinedOutput(); err != nil {
			fastErr = fmt.Errorf("go build: %w\n%s", err, out)
		}
	})
	if fastErr != nil {
		t.Fatalf("build ringkv: %v", fastErr)
	}
	return fastBin
}

// CleanupNoRace removes the binary BinaryNoRace built; call it from
// TestMain after m.Run (with Cleanup).
func CleanupNoRace() {
	if fastBin != "" {
		_ = os.RemoveAll(filepath.Dir(fastBin)) // best effort: a temp dir
	}
}

// Options describe a cluster for StartOptions.
type Options struct {
	// Nodes is how many nodes start (n1 founds the cluster). Required.
	Nodes int
	// Spares is how many more nodes get ids, addresses and data
	// directories but are not started: Start one later to grow the
	// cluster (it joins through every earlier node's gossip address).
	Spares int
	// Args are extra `ringkv serve` flags for every node.
	Args []string
	// NoRace runs the server processes from BinaryNoRace.
	NoRace bool
	// Prepare, when set, is called once every node (spares included) has
	// its addresses and before any starts; it may change each Node's Args.
	Prepare func(nodes []*Node)
	// ConvergeTimeout bounds the wait for membership. Default 60s.
	ConvergeTimeout time.Duration
}

// StartOptions is StartWith with Options. Every process, spares included,
// is killed when the test ends, and every node's log is dumped into the
// test log if the test failed.
func StartOptions(t testing.TB, o Options) *Cluster {
	t.Helper()
	bin := Binary(t)
	if o.NoRace {
		bin = BinaryNoRace(t)
	}
	if o.ConvergeTimeout <= 0 {
		o.ConvergeTimeout = 60 * time.Second
	}
	root := t.TempDir()
	c := &Cluster{t: t}
	for i := 1; i <= o.Nodes+o.Spares; i++ {
		nd := &Node{
			ID:         fmt.Sprintf("n%d", i),
			HTTPAddr:   freeAddr(t),
			RPCAddr:    freeAddr(t),
			GossipAddr: freeAddr(t),
			t:          t,
			bin:        bin,
		}
		nd.Args = append([]string(nil), o.Args...)
		nd.DataDir = filepath.Join(root, nd.ID)
		nd.LogPath = filepath.Join(root, nd.ID+".log")
		for _, prev := range c.Nodes {
			nd.join = append(nd.join, prev.GossipAddr)
		}
		c.Nodes = append(c.Nodes, nd)
	}
	t.Cleanup(func() {
		for _, nd := range c.Nodes {
			nd.Kill()
		}
		if t.Failed() {
			for _, nd := range c.Nodes {
				b, err := os.ReadFile(nd.LogPath)
				if err != nil {
					continue // a spare never started
				}
				t.Logf("---- log of %s ----\n%s", nd.ID, b)
			}
		}
	})
	if o.Prepare != nil {
		o.Prepare(c.Nodes)
	}
	for _, nd := range c.Nodes[:o.Nodes] {
		nd.Start()
	}
	c.WaitConverged(o.ConvergeTimeout)
	return c
}
