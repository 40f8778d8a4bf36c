package testcluster

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"os"
	"sync/atomic"
	"testing"
	"time"
)

// clusterRoots returns, per partition, the Merkle root nd reports ("" while
// its tree is being built).
func clusterRoots(ctx context.Context, nd *Node) ([]string, error) {
	code, body, err := nd.Do(ctx, http.MethodGet, "/api/cluster/status", nil, nil)
	if err != nil {
		return nil, err
	}
	if code != http.StatusOK {
		return nil, fmt.Errorf("status: HTTP %d: %s", code, body)
	}
	var st struct {
		Partitions []struct {
			MerkleRoot string `json:"merkle_root"`
		} `json:"partitions"`
	}
	if err := json.Unmarshal(body, &st); err != nil {
		return nil, fmt.Errorf("status: %w", err)
	}
	roots := make([]string, len(st.Partitions))
	for i, p := range st.Partitions {
		roots[i] = p.MerkleRoot
	}
	return roots, nil
}

// rootsEqual returns nil when every running node reports the same,
// non-empty root for every partition (with N = number of nodes, every node
// replicates every partition).
func (c *Cluster) rootsEqual(ctx context.Context) error {
	var want []string
	var from string
	for _, nd := range c.Nodes {
		if !nd.Running() {
			continue
		}
		roots, err := clusterRoots(ctx, nd)
		if err != nil {
			return err
		}
		if want == nil {
			want, from = roots, nd.ID
			continue
		}
		diff := 0
		for p := range roots {
			if roots[p] == "" || roots[p] != want[p] {
				diff++
			}
		}
		if diff > 0 {
			return fmt.Errorf("%d of %d partitions of %s differ from %s", diff, len(roots), nd.ID, from)
		}
	}
	return nil
}

// TestWipedNodeRecoversByAntiEntropy stops a node, wipes its data
// directory and restarts it: anti-entropy alone (no hints, no reads that
// could repair) must bring every partition's Merkle root back to its
// peers', after which reads at ONE from that node find every key.
// RINGKV_LONG_TESTS=1 uses the 100,000 keys; CI uses 10,000.
func TestWipedNodeRecoversByAntiEntropy(t *testing.T) {
	if testing.Short() {
		t.Skip("starts real processes")
	}
	// Mostly waiting (repair rounds, catch-up): beside the other
	// parallel tests, to keep CI within its budget.
	t.Parallel()
	keys := 10000
	if os.Getenv("RINGKV_LONG_TESTS") != "" {
		keys = 100000
	}
	missed := keys / 10 // written while the node is away
	c := StartWith(t, 3, "--ae-interval", "1s", "--scrub-rate", "-1", "--hints=false")
	c.WaitRaftReady(120*time.Second, 0)
	n1, n2 := c.Nodes[0], c.Nodes[1]
	ctx := t.Context()
	key := func(i int) string { return fmt.Sprintf("ae-%07d", i) }
	val := func(i int) string { return fmt.Sprintf("value-%d", i) }
	set := func(level string) func(i int) error {
		return func(i int) error {
			code, err := n1.Set(ctx, key(i), val(i), level)
			if err != nil || code != http.StatusOK {
				return fmt.Errorf("set %s: %d %w", key(i), code, err)
			}
			return nil
		}
	}
	if err := parallel(keys, set("all")); err != nil {
		t.Fatal(err)
	}
	c.WaitFor(120*time.Second, "equal trees before the wipe", c.rootsEqual)

	// Each raft group's commit index before the wipe: the wiped node's
	// groups must get their logs back too (an idle append answered for
	// it from liveness once left a group or two of 64 empty there).
	commits := map[uint32]uint64{}
	for _, nd := range []*Node{n1, c.Nodes[2]} {
		st, err := nd.Stats(ctx)
		if err != nil {
			t.Fatal(err)
		}
		for _, g := range st.Groups {
			commits[g.Partition] = max(commits[g.Partition], g.CommitIndex)
		}
	}
	n2.Stop()
	if err := os.RemoveAll(n2.DataDir); err != nil {
		t.Fatal(err)
	}
	if err := parallel(missed, func(i int) error { return set("quorum")(keys + i) }); err != nil {
		t.Fatal(err)
	}
	wiped := time.Now()
	n2.Start()
	c.WaitConverged(60 * time.Second)
	c.WaitFor(10*time.Minute, "anti-entropy to repair the wiped node", c.rootsEqual)
	took := time.Since(wiped)
	t.Logf("anti-entropy brought every partition's root on the wiped node equal to its peers' for %d keys in %v (from restart)", keys+missed, took)
	c.WaitFor(60*time.Second, "the wiped node's raft groups to apply their logs", func(ctx context.Context) error {
		st, err := n2.Stats(ctx)
		if err != nil {
			return err
		}
		applied := map[uint32]uint64{}
		for _, g := range st.Groups {
			applied[g.Partition] = g.AppliedIndex
		}
		for p, want := range commits {
			if applied[p] < want {
				return fmt.Errorf("group %d on %s applied %d of %d", p, n2.ID, applied[p], want)
			}
		}
		return nil
	})

	// Reads at ONE through n2 answer from n2's own replica first.
	var notFound, wrong atomic.Int64
	err := parallel(keys+missed, func(i int) error {
		got, code, err := n2.Get(ctx, key(i), "one")
		switch {
		case err != nil:
			return err
		case code == http.StatusNotFound:
			notFound.Add(1)
		case code != http.StatusOK || got != val(i):
			wrong.Add(1)
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	if notFound.Load()+wrong.Load() > 0 {
		t.Fatalf("reads at ONE from the wiped node: %d not found, %d wrong of %d", notFound.Load(), wrong.Load(), keys+missed)
	}
	pulled, err := n2.Metric(ctx, "ringkv_antientropy_keys_repaired_total")
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("records moved by exchanges n2 initiated: %v", pulled)
}
