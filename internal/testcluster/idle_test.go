package testcluster

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"os"
	"testing"
	"time"
)

// idleFailoverBound is issue 22's bound: after a node leading a third of
// the groups of an idle cluster is SIGKILLed or frozen, every group it led
// has a new leader within 3 s. Raft's own timer decides most of it (a
// follower's election timer is re-armed for 1-2 s each time it finds
// recent contact, so detection alone takes 1-3 s), so the bound is
// asserted in dedicated runs (RINGKV_LONG_TESTS=1, figures in
// docs/BENCHMARKS.md); CI shares two cores with every other package's
// tests and bounds it loosely, as TestRaftElectionAndFailover does.
func idleFailoverBound() time.Duration {
	if os.Getenv("RINGKV_LONG_TESTS") != "" {
		return 3 * time.Second
	}
	return 10 * time.Second
}

// TestIdleCluster checks that an idle cluster, whose heartbeats the
// nodes' liveness messages stand for (consensus/liveness.go), keeps raft's
// guarantees: a write to an idle group is answered at once; a frozen
// leader (SIGSTOP, as if partitioned away) loses its groups within the
// bound and, thawed, steps down and follows the new leaders; a SIGKILLed
// leader's groups have new leaders within the bound.
func TestIdleCluster(t *testing.T) {
	if testing.Short() {
		t.Skip("starts real processes")
	}
	t.Parallel() // waits more than it computes (see doc.go)
	c := Start(t, 3)
	c.WaitRaftReady(60*time.Second, 3)
	ctx := t.Context()

	c.waitIdle(t)
	start := time.Now()
	if code, err := c.Nodes[0].Set(ctx, "idle", "v1", "linearizable"); err != nil || code != http.StatusOK {
		t.Fatalf("linearizable set on the idle cluster: %d %v", code, err)
	}
	idleWrite := time.Since(start)
	start = time.Now()
	if code, err := c.Nodes[0].Set(ctx, "idle", "v2", "linearizable"); err != nil || code != http.StatusOK {
		t.Fatalf("second linearizable set: %d %v", code, err)
	}
	t.Logf("linearizable write to an idle group: %v (the next one: %v)", idleWrite, time.Since(start))
	if idleWrite > time.Second {
		t.Errorf("a write to an idle group took %v, want well under 1s", idleWrite)
	}

	// A frozen leader: the others elect new leaders; thawed, it steps down.
	frozen, led := c.busiestLeader(t)
	frozen.Pause()
	took := c.waitNewLeaders(t, frozen, led)
	t.Logf("%s (leader of %d groups) frozen: every group it led had a new leader after %v", frozen.ID, len(led), took)
	if took > idleFailoverBound() {
		t.Errorf("new leaders after freezing %s took %v, want within %v", frozen.ID, took, idleFailoverBound())
	}
	frozen.Resume()
	c.WaitFor(30*time.Second, "the thawed node to follow the new leaders", func(ctx context.Context) error {
		return c.agreeOnLeaders(ctx)
	})
	if code, err := frozen.Set(ctx, "idle", "v3", "linearizable"); err != nil || code != http.StatusOK {
		t.Fatalf("linearizable set through the thawed node: %d %v", code, err)
	}

	// A killed leader, once the cluster is idle again.
	c.WaitRaftReady(60*time.Second, 3)
	c.waitIdle(t)
	victim, led := c.busiestLeader(t)
	victim.Kill()
	took = c.waitNewLeaders(t, victim, led)
	t.Logf("%s (leader of %d groups) killed: every group it led had a new leader after %v", victim.ID, len(led), took)
	if took > idleFailoverBound() {
		t.Errorf("new leaders after killing %s took %v, want within %v", victim.ID, took, idleFailoverBound())
	}
	for _, nd := range c.Nodes {
		if nd == victim {
			continue
		}
		got, code, err := nd.Get(ctx, "idle", "linearizable")
		if err != nil || code != http.StatusOK || got != "v3" {
			t.Fatalf("read through %s after failover: %q %d %v", nd.ID, got, code, err)
		}
	}
}

// waitIdle waits until no node has sent a raft heartbeat for a second
// while the liveness messages answered some: the groups are idle and
// their heartbeats stood for.
func (c *Cluster) waitIdle(t *testing.T) {
	t.Helper()
	const sent = `ringkv_consensus_transport_rpcs_sent_total{rpc="heartbeat"}`
	const elided = "ringkv_consensus_transport_heartbeats_elided_total"
	read := func(ctx context.Context) (s, e float64, err error) {
		for _, nd := range c.Nodes {
			if !nd.Running() {
				continue
			}
			ns, err1 := nd.Metric(ctx, sent)
			ne, err2 := nd.Metric(ctx, elided)
			if err := errors.Join(err1, err2); err != nil {
				return 0, 0, err
			}
			s, e = s+ns, e+ne
		}
		return s, e, nil
	}
	var lastSent, lastElided float64
	var since time.Time
	c.WaitFor(60*time.Second, "idle groups whose heartbeats liveness stands for", func(ctx context.Context) error {
		s, e, err := read(ctx)
		if err != nil {
			return err
		}
		if since.IsZero() || s != lastSent || e <= lastElided {
			lastSent, lastElided, since = s, e, time.Now()
			return fmt.Errorf("heartbeats sent %v, elided %v", s, e)
		}
		lastElided = e
		if time.Since(since) < time.Second {
			return errors.New("heartbeats quiet for less than 1s")
		}
		return nil
	})
	// And every process on one P (serve's --idle-procs-after, 10 s): the
	// failovers below start from the state an idle cluster is in. Polled
	// every second: scraping /metrics every 50 ms keeps a node busy.
	c.WaitForEvery(60*time.Second, time.Second, "every node on one P", func(ctx context.Context) error {
		for _, nd := range c.Nodes {
			if !nd.Running() {
				continue
			}
			v, err := nd.Metric(ctx, "ringkv_node_idle_one_proc")
			if err != nil {
				return err
			}
			if v != 1 {
				return fmt.Errorf("%s not on one P", nd.ID)
			}
		}
		return nil
	})
}

// busiestLeader returns the running node that leads the most groups and
// those groups, as the first running node sees them.
func (c *Cluster) busiestLeader(t *testing.T) (*Node, map[uint32]bool) {
	t.Helper()
	var s Stats
	c.WaitFor(30*time.Second, "stats", func(ctx context.Context) error {
		for _, nd := range c.Nodes {
			if nd.Running() {
				var err error
				s, err = nd.Stats(ctx)
				return err
			}
		}
		return errors.New("no node running")
	})
	led := map[string]map[uint32]bool{}
	for _, g := range s.Groups {
		if led[g.Leader] == nil {
			led[g.Leader] = map[uint32]bool{}
		}
		led[g.Leader][g.Partition] = true
	}
	var best *Node
	for _, nd := range c.Nodes {
		if nd.Running() && (best == nil || len(led[nd.ID]) > len(led[best.ID])) {
			best = nd
		}
	}
	return best, led[best.ID]
}

// waitNewLeaders polls the other running nodes until each of them sees a
// leader other than gone for every group in led, and returns how long that
// took.
func (c *Cluster) waitNewLeaders(t *testing.T, gone *Node, led map[uint32]bool) time.Duration {
	t.Helper()
	start := time.Now()
	c.WaitFor(30*time.Second, "new leaders", func(ctx context.Context) error {
		for _, nd := range c.Nodes {
			if nd == gone || !nd.Running() {
				continue
			}
			s, err := nd.Stats(ctx)
			if err != nil {
				return err
			}
			for _, g := range s.Groups {
				if led[g.Partition] && (g.Leader == "" || g.Leader == gone.ID) {
					return fmt.Errorf("%s: group %d leader %q", nd.ID, g.Partition, g.Leader)
				}
			}
		}
		return nil
	})
	return time.Since(start)
}

// agreeOnLeaders reports an error unless every running node names the
// same leader for every group, and that leader says it leads.
func (c *Cluster) agreeOnLeaders(ctx context.Context) error {
	leaders := map[uint32]string{}
	leading := map[string]map[uint32]bool{}
	for _, nd := range c.Nodes {
		if !nd.Running() {
			continue
		}
		s, err := nd.Stats(ctx)
		if err != nil {
			return err
		}
		leading[nd.ID] = map[uint32]bool{}
		for _, g := range s.Groups {
			if g.State == "Leader" {
				leading[nd.ID][g.Partition] = true
			}
			if prev, ok := leaders[g.Partition]; g.Leader == "" || (ok && prev != g.Leader) {
				return fmt.Errorf("%s: group %d leader %q, another node names %q", nd.ID, g.Partition, g.Leader, prev)
			}
			leaders[g.Partition] = g.Leader
		}
	}
	for p, l := range leaders {
		if !leading[l][p] {
			return fmt.Errorf("group %d: %s is named leader but does not lead", p, l)
		}
	}
	return nil
}
