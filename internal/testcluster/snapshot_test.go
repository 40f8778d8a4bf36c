package testcluster

import (
	"context"
	"fmt"
	"net/http"
	"os"
	"strconv"
	"sync/atomic"
	"testing"
	"time"
)

// TestSnapshotCatchUp: a node is stopped, many linearizable writes are
// applied, the node restarts and catches up by InstallSnapshot (its
// restore metric proves it), and no group's raft log on any node grows past
// the snapshot threshold plus trailing logs (and the entries of one
// snapshot interval). RINGKV_LONG_TESTS=1 runs the 50,000 writes;
// CI runs 8,000.
func TestSnapshotCatchUp(t *testing.T) {
	if testing.Short() {
		t.Skip("starts real processes")
	}
	// Mostly waiting (repair rounds, catch-up): beside the other
	// parallel tests, to keep CI within its budget.
	t.Parallel()
	writes := 8000
	if os.Getenv("RINGKV_LONG_TESTS") != "" {
		writes = 50000
	}
	const threshold, trailing = 64, 32
	c := StartWith(t, 3, "--snapshot-threshold", strconv.Itoa(threshold), "--trailing-logs", strconv.Itoa(trailing), "--snapshot-interval", "200ms")
	c.WaitRaftReady(60*time.Second, 3)
	ctx := t.Context()
	n1, n2, n3 := c.Nodes[0], c.Nodes[1], c.Nodes[2]
	n3.Stop()

	start := time.Now()
	var next, acked atomic.Int64
	if err := parallel(32, func(w int) error {
		nd := []*Node{n1, n2}[w%2]
		for {
			i := int(next.Add(1)) - 1
			if i >= writes {
				return nil
			}
			wctx, cancel := context.WithTimeout(ctx, 10*time.Second)
			code, err := nd.Set(wctx, fmt.Sprintf("snap:%06d", i), fmt.Sprintf("v%d", i), "linearizable")
			cancel()
			if err != nil || code != http.StatusOK {
				return fmt.Errorf("write %d via %s: %d %w", i, nd.ID, code, err)
			}
			acked.Add(1)
		}
	}); err != nil {
		t.Fatal(err)
	}
	elapsed := time.Since(start)
	t.Logf("%d linearizable writes with n3 down in %v (%.0f/s through 2 nodes, race-built servers: %v)", acked.Load(), elapsed, float64(acked.Load())/elapsed.Seconds(), RaceServers())

	restarted := time.Now()
	n3.Start()
	c.WaitConverged(30 * time.Second)
	// n3 catches up: each of its groups applies what its leader committed.
	c.WaitFor(120*time.Second, "n3 to catch up", func(ctx context.Context) error {
		s1, err := n1.Stats(ctx)
		if err != nil {
			return err
		}
		commit := map[uint32]uint64{}
		for _, g := range s1.Groups {
			commit[g.Partition] = g.CommitIndex
		}
		s3, err := n3.Stats(ctx)
		if err != nil {
			return err
		}
		for _, g := range s3.Groups {
			if g.AppliedIndex+5 < commit[g.Partition] {
				return fmt.Errorf("group %d applied %d of %d", g.Partition, g.AppliedIndex, commit[g.Partition])
			}
		}
		return nil
	})
	t.Logf("n3 caught up %v after restarting", time.Since(restarted))
	restores, err := n3.Metric(ctx, "ringkv_consensus_snapshot_restores_total")
	if err != nil {
		t.Fatal(err)
	}
	installs, err := n3.Metric(ctx, "ringkv_consensus_transport_snapshots_installed_total")
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("n3: %v snapshot restores, %v snapshots installed over the transport", restores, installs)
	if restores == 0 || installs == 0 {
		t.Fatalf("n3 caught up without InstallSnapshot (restores %v, installs %v)", restores, installs)
	}
	// Every write reaches n3's own replica (a read at ONE asks n3 first).
	// "Caught up" above allows a group a few entries behind, so the last
	// writes of a group may still be on their way: poll until all are
	// there; a write that never arrives fails the test.
	checks := 0
	c.WaitFor(30*time.Second, "every sampled write on n3", func(ctx context.Context) error {
		checks++
		var missing []string
		for i := 0; i < writes; i += 97 {
			key := fmt.Sprintf("snap:%06d", i)
			got, code, err := n3.Get(ctx, key, "one")
			if err != nil || code != http.StatusOK || got != fmt.Sprintf("v%d", i) {
				missing = append(missing, key)
			}
		}
		if len(missing) > 0 {
			return fmt.Errorf("%d sampled writes missing on n3 (%v)", len(missing), missing[:min(len(missing), 5)])
		}
		return nil
	})
	t.Logf("every sampled write on n3 at check %d", checks)
	// Logs stay bounded on every node.
	bound := uint64(threshold + trailing + threshold) // + one snapshot interval's entries
	for _, nd := range c.Nodes {
		s, err := nd.Stats(ctx)
		if err != nil {
			t.Fatal(err)
		}
		var maxLog uint64
		for _, g := range s.Groups {
			maxLog = max(maxLog, g.LogEntries)
		}
		t.Logf("%s: longest raft log %d entries (threshold %d + trailing %d)", nd.ID, maxLog, threshold, trailing)
		if maxLog > bound {
			t.Errorf("%s holds a raft log of %d entries, bound %d", nd.ID, maxLog, bound)
		}
	}
}
