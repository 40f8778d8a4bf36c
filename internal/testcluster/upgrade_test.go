package testcluster

import (
	"context"
	"fmt"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// prevCommit is the last commit before the drain and version checks
// (issue 18): the "previous release" of the rolling upgrade test.
const prevCommit = "af7ff32"

// prevBinary returns the ringkv binary of RINGKV_PREV_BIN, or builds the
// one of RINGKV_PREV_COMMIT (default prevCommit) from a temporary git
// worktree of this repository.
func prevBinary(t *testing.T) string {
	t.Helper()
	if bin := os.Getenv("RINGKV_PREV_BIN"); bin != "" {
		return bin
	}
	commit := prevCommit
	if c := os.Getenv("RINGKV_PREV_COMMIT"); c != "" {
		commit = c
	}
	root, err := moduleRoot()
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	src := filepath.Join(dir, "src")
	run := func(wd string, name string, args ...string) {
		t.Helper()
		cmd := exec.Command(name, args...)
		cmd.Dir = wd
		if out, err := cmd.CombinedOutput(); err != nil {
			t.Fatalf("%s %v: %v\n%s", name, args, err, out)
		}
	}
	run(root, "git", "worktree", "add", "--detach", src, commit)
	t.Cleanup(func() {
		cmd := exec.Command("git", "worktree", "remove", "--force", src)
		cmd.Dir = root
		_ = cmd.Run() // best effort; 'git worktree prune' cleans up otherwise
	})
	bin := filepath.Join(dir, "ringkv-prev")
	run(src, "go", "build", "-o", bin, "./cmd/ringkv")
	return bin
}

// rollStep is one node's replacement.
type rollStep struct {
	node  string
	at    time.Time     // SIGTERM sent
	stop  time.Duration // SIGTERM to exit
	ready time.Duration // start to every node ready again
}

// TestRollingUpgrade (RINGKV_UPGRADE=1; about two minutes) runs a steady
// load of quorum and linearizable writes, linearizable reads and
// compare-and-sets through the client library against three nodes, and
// replaces the nodes one at a time: SIGTERM, wait for the exit, start
// the same data directory and ports again, wait until every node is
// ready. "previous-to-new" starts the cluster on the previous release's
// binary (prevCommit, which stops at once on SIGTERM) and replaces it with
// this build; "new-to-new" is a rolling restart of this build, whose
// SIGTERM drains. Each reports failed requests, acknowledged writes lost
// (every one is read back at the level it was written at) and the longest
// write stall (the longest gap between two successful writes); the
// figures are in docs/OPERATIONS.md, "Upgrades".
func TestRollingUpgrade(t *testing.T) {
	if os.Getenv("RINGKV_UPGRADE") != "1" {
		t.Skip("set RINGKV_UPGRADE=1 to run the rolling upgrade (builds the previous release)")
	}
	newBin := BinaryNoRace(t)
	for _, tc := range []struct {
		name string
		from string
	}{
		{"previous-to-new", prevBinary(t)},
		{"new-to-new", newBin},
	} {
		t.Run(tc.name, func(t *testing.T) {
			res, steps := rollingUpgrade(t, tc.from, newBin)
			t.Logf("%s: %s", tc.name, res)
			for _, s := range steps {
				t.Logf("%s: replaced %s: SIGTERM at %s, stopped in %s, all ready %s after its start", tc.name, s.node,
					s.at.Format("15:04:05.000"), s.stop.Round(time.Millisecond), s.ready.Round(time.Millisecond))
			}
			if len(res.lost) != 0 {
				t.Errorf("%d acknowledged writes lost, want 0", len(res.lost))
			}
			if tc.from == newBin && res.failures() != 0 {
				t.Errorf("%d requests failed during a rolling restart that drains, want 0", res.failures())
			}
		})
	}
}

// rollingUpgrade starts three nodes on from, runs the load, replaces each
// node in turn with to, and returns the load's result.
func rollingUpgrade(t *testing.T, from, to string) (loadResult, []rollStep) {
	c := StartOptions(t, Options{Nodes: 3, Binary: from})
	c.WaitRaftReady(90*time.Second, 3)
	load := newSteadyLoad(newLoadClient(t, c), 4)
	stop := load.run()
	waitOps(t, load, 300)
	var steps []rollStep
	for _, nd := range c.Nodes {
		start := time.Now()
		nd.Stop()
		step := rollStep{node: nd.ID, at: start, stop: time.Since(start)}
		nd.SetBinary(to)
		start = time.Now()
		nd.Start()
		waitReady(t, c, nd)
		step.ready = time.Since(start)
		steps = append(steps, step)
		waitOps(t, load, 300)
	}
	waitOps(t, load, 300)
	stop()
	for _, nd := range c.Nodes {
		b, err := os.ReadFile(nd.LogPath)
		if err == nil && strings.Contains(string(b), "incompatible wire protocol") {
			t.Errorf("%s refused a peer of the other release:\n%s", nd.ID, tail(string(b), 20))
		}
	}
	return load.verify(t), steps
}

// waitReady waits until nd answers /ready and every node of c does.
func waitReady(t *testing.T, c *Cluster, nd *Node) {
	t.Helper()
	c.WaitFor(90*time.Second, nd.ID+" to be ready", func(ctx context.Context) error {
		code, body, err := nd.Do(ctx, http.MethodGet, "/ready", nil, nil)
		if err != nil {
			return err
		}
		if code != http.StatusOK {
			return fmt.Errorf("%s: %s", nd.ID, body)
		}
		return nil
	})
	c.WaitRaftReady(90*time.Second, 3)
}
