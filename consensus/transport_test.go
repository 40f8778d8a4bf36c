package consensus

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"runtime"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/hashicorp/go-hclog"
	"github.com/hashicorp/raft"
	"github.com/prometheus/client_golang/prometheus"
	"go.uber.org/goleak"
	"storj.io/drpc/drpcmux"
	"storj.io/drpc/drpcserver"
)

func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m,
		// hashicorp/raft v1.8.0 leaks these two when a leader steps down or
		// shuts down during a leadership transfer whose replication worker
		// already exited (hashicorp/raft#696, fix proposed in #708):
		// leadershipTransfer blocks sending to that worker, and the
		// transfer's watcher waits for it. Upstream's bug, seen once in 40
		// runs of TestFailoverKeepsCommittedWrites and provoked on purpose
		// by TestWatchdogHealsGroupStuckByTransferBug; docs/ARCHITECTURE.md
		// (known limits) says what it means for a running node.
		goleak.IgnoreAnyFunction("github.com/hashicorp/raft.(*Raft).leadershipTransfer"),
		goleak.IgnoreAnyFunction("github.com/hashicorp/raft.(*Raft).leaderLoop.func2"),
		// hashicorp/raft leaves a future unanswered when it shuts down
		// with the future still in its buffered apply or verify channel
		// (Barrier and Apply give their futures no shutdown channel): the
		// goroutine waiting on it (proposeLatched's, readBatcher's,
		// leaderReady's barrier) waits for ever. Seen once in a full -race
		// run of this package, and leaderReady's once in ten -race runs of
		// TestTxnStrictSerializability; the client, coordinator and node
		// suites ignore them too.
		goleak.IgnoreAnyFunction("github.com/ringkv/ringkv/consensus.(*Group).proposeLatched.func2"),
		goleak.IgnoreAnyFunction("github.com/ringkv/ringkv/consensus.(*readBatcher).run"),
		goleak.IgnoreAnyFunction("github.com/ringkv/ringkv/consensus.(*Group).leaderReady.func1"),
	)
}

// trResolver maps node ids to drpc addresses.
type trResolver struct {
	mu    sync.Mutex
	addrs map[string]string
}

func (r *trResolver) RPCAddr(node string) (string, bool) {
	r.mu.Lock()
	defer r.mu.Unlock()
	a, ok := r.addrs[node]
	return a, ok
}

// trNode is one "node": a drpc server on 127.0.0.1:0 serving its Transport.
type trNode struct {
	id  string
	tr  *Transport
	reg *prometheus.Registry
	res *trResolver // shared by every node of startTrNodes
}

// startTrNodes starts n nodes (ids n1..nN) that resolve each other. They
// are closed in t.Cleanup: transport first, then server.
func startTrNodes(t *testing.T, n int, cfg TransportConfig) []*trNode {
	t.Helper()
	res := &trResolver{addrs: map[string]string{}}
	nodes := make([]*trNode, n)
	for i := range nodes {
		lis, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		id := fmt.Sprintf("n%d", i+1)
		res.addrs[id] = lis.Addr().String()
		c := cfg
		c.NodeID = id
		reg := prometheus.NewRegistry()
		tr, err := NewTransport(c, res, reg)
		if err != nil {
			t.Fatal(err)
		}
		mux := drpcmux.New()
		if err := tr.Register(mux); err != nil {
			t.Fatal(err)
		}
		ctx, cancel := context.WithCancel(context.Background())
		served := make(chan error, 1)
		go func() { served <- drpcserver.New(mux).Serve(ctx, lis) }()
		t.Cleanup(func() {
			if err := tr.Close(); err != nil {
				t.Errorf("close transport %s: %v", id, err)
			}
			cancel()
			if err := <-served; err != nil {
				t.Errorf("serve %s: %v", id, err)
			}
		})
		nodes[i] = &trNode{id: id, tr: tr, reg: reg, res: res}
	}
	return nodes
}

// metric returns the value of a counter (summed over label sets whose
// labels include want) or the sample count of a histogram.
func (n *trNode) metric(t *testing.T, name string, want map[string]string) float64 {
	t.Helper()
	mfs, err := n.reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	var sum float64
	for _, mf := range mfs {
		if mf.GetName() != name {
			continue
		}
	metrics:
		for _, m := range mf.GetMetric() {
			for _, lp := range m.GetLabel() {
				if v, ok := want[lp.GetName()]; ok && v != lp.GetValue() {
					continue metrics
				}
			}
			switch {
			case m.GetCounter() != nil:
				sum += m.GetCounter().GetValue()
			case m.GetHistogram() != nil:
				sum += float64(m.GetHistogram().GetSampleCount())
			}
		}
	}
	return sum
}

// trPollUntil polls cond every 10ms until it returns nil or d passes.
func trPollUntil(t *testing.T, d time.Duration, what string, cond func() error) {
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
			t.Fatalf("%s: not done after %v: %v", what, d, err)
		}
		select {
		case <-tick.C:
		case <-t.Context().Done():
			t.Fatalf("%s: %v", what, t.Context().Err())
		}
	}
}

// trFSM is a trivial FSM that keeps every distinct command once. A test
// that re-applies a command whose first apply had an unknown outcome
// (leadership lost mid-commit) then still counts it once, and every
// replica, applying the same log, keeps the same list.
type trFSM struct {
	mu       sync.Mutex
	cmds     [][]byte
	seen     map[string]bool
	restores int
}

func (f *trFSM) Apply(l *raft.Log) any {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.seen == nil {
		f.seen = map[string]bool{}
	}
	if !f.seen[string(l.Data)] {
		f.seen[string(l.Data)] = true
		f.cmds = append(f.cmds, bytes.Clone(l.Data))
	}
	return len(f.cmds)
}

func (f *trFSM) Snapshot() (raft.FSMSnapshot, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	return trSnapshot(f.cmds[:len(f.cmds):len(f.cmds)]), nil
}

func (f *trFSM) Restore(rc io.ReadCloser) error {
	defer func() { _ = rc.Close() }()
	var n uint32
	if err := binary.Read(rc, binary.BigEndian, &n); err != nil {
		return err
	}
	cmds := make([][]byte, n)
	for i := range cmds {
		var l uint32
		if err := binary.Read(rc, binary.BigEndian, &l); err != nil {
			return err
		}
		cmds[i] = make([]byte, l)
		if _, err := io.ReadFull(rc, cmds[i]); err != nil {
			return err
		}
	}
	seen := make(map[string]bool, len(cmds))
	for _, c := range cmds {
		seen[string(c)] = true
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	f.cmds, f.seen = cmds, seen
	f.restores++
	return nil
}

// digest summarizes the FSM's state: command count and a hash of them all.
func (f *trFSM) digest() (int, [32]byte) {
	f.mu.Lock()
	defer f.mu.Unlock()
	h := sha256.New()
	for _, c := range f.cmds {
		h.Write(c)
	}
	var sum [32]byte
	copy(sum[:], h.Sum(nil))
	return len(f.cmds), sum
}

type trSnapshot [][]byte

func (s trSnapshot) Persist(sink raft.SnapshotSink) error {
	var buf bytes.Buffer
	_ = binary.Write(&buf, binary.BigEndian, uint32(len(s)))
	for _, c := range s {
		_ = binary.Write(&buf, binary.BigEndian, uint32(len(c)))
		buf.Write(c)
	}
	if _, err := sink.Write(buf.Bytes()); err != nil {
		_ = sink.Cancel()
		return err
	}
	return sink.Close()
}

func (trSnapshot) Release() {}

// trReplica is one group's raft on one node, with stores that survive a
// restart.
type trReplica struct {
	node   *trNode
	group  uint32
	conf   *raft.Config
	logs   *raft.InmemStore
	snaps  *raft.InmemSnapshotStore
	fsm    *trFSM
	r      *raft.Raft
	closed bool
}

func (rep *trReplica) start(t *testing.T) {
	t.Helper()
	rep.fsm = &trFSM{}
	r, err := raft.NewRaft(rep.conf, rep.fsm, rep.logs, rep.logs, rep.snaps, rep.node.tr.Group(rep.group))
	if err != nil {
		t.Fatal(err)
	}
	rep.r = r
	rep.closed = false
}

func (rep *trReplica) stop(t *testing.T) {
	t.Helper()
	if rep.closed {
		return
	}
	rep.closed = true
	if err := rep.r.Shutdown().Error(); err != nil {
		t.Errorf("shutdown %s/%d: %v", rep.node.id, rep.group, err)
	}
}

// trCluster runs groups raft groups on every node.
type trCluster struct {
	nodes []*trNode
	reps  map[uint32][]*trReplica // by group, in node order
}

func trRaftConfig() *raft.Config {
	c := raft.DefaultConfig()
	// Loose enough for a loaded 2-core machine running the race detector
	// beside the other suites: at the production timers (1 s) leaders of
	// TestRaftGroupsOverTransport lost leadership mid-apply in a CI run
	// (2026-12-05); it still happened once at 2 s (2026-12-06), so
	// trApplyN also applies again through the next leader.
	c.HeartbeatTimeout = 2 * time.Second
	c.ElectionTimeout = 2 * time.Second
	c.LeaderLeaseTimeout = 2 * time.Second
	c.CommitTimeout = 10 * time.Millisecond
	return c
}

// startTrCluster bootstraps groups 0..groups-1 on every node. Rafts are
// shut down in t.Cleanup before the transports close.
func startTrCluster(t *testing.T, nodes []*trNode, groups int, conf func() *raft.Config) *trCluster {
	t.Helper()
	c := &trCluster{nodes: nodes, reps: map[uint32][]*trReplica{}}
	var servers []raft.Server
	for _, n := range nodes {
		servers = append(servers, raft.Server{ID: raft.ServerID(n.id), Address: raft.ServerAddress(n.id)})
	}
	for g := range uint32(groups) {
		for _, n := range nodes {
			rc := conf()
			rc.LocalID = raft.ServerID(n.id)
			rc.Logger = hclog.NewNullLogger()
			rep := &trReplica{node: n, group: g, conf: rc, logs: raft.NewInmemStore(), snaps: raft.NewInmemSnapshotStore()}
			rep.start(t)
			if err := rep.r.BootstrapCluster(raft.Configuration{Servers: servers}).Error(); err != nil {
				t.Fatal(err)
			}
			c.reps[g] = append(c.reps[g], rep)
		}
	}
	t.Cleanup(func() {
		var wg sync.WaitGroup
		for _, reps := range c.reps {
			for _, rep := range reps {
				wg.Go(func() { rep.stop(t) })
			}
		}
		wg.Wait()
	})
	return c
}

// stopNode shuts down every replica on n, then n's transport.
func (c *trCluster) stopNode(t *testing.T, n *trNode) {
	t.Helper()
	for _, reps := range c.reps {
		for _, rep := range reps {
			if rep.node == n {
				rep.stop(t)
			}
		}
	}
	if err := n.tr.Close(); err != nil {
		t.Fatal(err)
	}
}

// leader returns the replica leading group, once exactly one does and
// every live replica knows it.
func (c *trCluster) leader(group uint32) (*trReplica, error) {
	var lead *trReplica
	for _, rep := range c.reps[group] {
		if !rep.closed && rep.r.State() == raft.Leader {
			if lead != nil {
				return nil, fmt.Errorf("group %d has two leaders", group)
			}
			lead = rep
		}
	}
	if lead == nil {
		return nil, fmt.Errorf("group %d has no leader", group)
	}
	for _, rep := range c.reps[group] {
		if addr, _ := rep.r.LeaderWithID(); !rep.closed && string(addr) != lead.node.id {
			return nil, fmt.Errorf("%s thinks %q leads group %d, not %s", rep.node.id, addr, group, lead.node.id)
		}
	}
	return lead, nil
}

func (c *trCluster) waitLeaders(t *testing.T) map[uint32]*trReplica {
	t.Helper()
	leaders := map[uint32]*trReplica{}
	trPollUntil(t, 30*time.Second, "every group elects a leader", func() error {
		for g := range c.reps {
			l, err := c.leader(g)
			if err != nil {
				return err
			}
			leaders[g] = l
		}
		return nil
	})
	return leaders
}

// trCommand returns the i-th command of group, about 1 KiB so that a
// snapshot of a few hundred spans several 256 KiB chunks.
func trCommand(group uint32, i int) []byte {
	return fmt.Appendf(bytes.Repeat([]byte{'.'}, 1000), "g%d-%05d", group, i)
}

// waitLeader waits until group has one leader that every live replica
// knows, and returns it.
func (c *trCluster) waitLeader(t *testing.T, group uint32) *trReplica {
	t.Helper()
	lead, err := c.leaderWithin(group, 30*time.Second)
	if err != nil {
		t.Fatalf("group %d elects a leader: %v", group, err)
	}
	return lead
}

// trApplyN applies commands from..from+n-1 to group through its leader and
// reports failures with t.Errorf, so it may run in any goroutine. On a
// loaded machine a leader can lose leadership mid-commit: the commands
// from the first one answered with such an unknown outcome are applied
// again through the next leader (trFSM keeps a command once), a few times
// at most.
func trApplyN(t *testing.T, c *trCluster, group uint32, from, n int) bool {
	t.Helper()
	next := from
	for attempt := 1; ; attempt++ {
		lead, err := c.leaderWithin(group, 30*time.Second)
		if err != nil {
			t.Errorf("apply to group %d: %v", group, err)
			return false
		}
		futures := make([]raft.ApplyFuture, from+n-next)
		for i := range futures {
			futures[i] = lead.r.Apply(trCommand(group, next+i), 10*time.Second)
		}
		failed := -1
		for i, f := range futures {
			err = f.Error()
			if err == nil {
				continue
			}
			if !trRetryable(err) || attempt == 5 {
				t.Errorf("apply %d to group %d (attempt %d): %v", next+i, group, attempt, err)
				return false
			}
			failed = i
			break
		}
		if failed < 0 {
			return true
		}
		// Wait out the rest so that none is still in flight when the next
		// leader is asked; their outcomes are as unknown as the first's.
		for _, f := range futures[failed+1:] {
			_ = f.Error()
		}
		t.Logf("apply %d to group %d: %v; again through the next leader", next+failed, group, err)
		next += failed
	}
}

// trRetryable reports whether an apply failed because leadership moved:
// the command may or may not have committed, and the next leader may be
// asked again.
func trRetryable(err error) bool {
	return errors.Is(err, raft.ErrLeadershipLost) || errors.Is(err, raft.ErrNotLeader) ||
		errors.Is(err, raft.ErrLeadershipTransferInProgress)
}

// leaderWithin polls c.leader until it answers or d has passed; it
// returns an error rather than failing the test, so any goroutine may
// call it.
func (c *trCluster) leaderWithin(group uint32, d time.Duration) (*trReplica, error) {
	deadline := time.Now().Add(d)
	for {
		l, err := c.leader(group)
		if err == nil {
			return l, nil
		}
		if time.Now().After(deadline) {
			return nil, fmt.Errorf("no leader after %v: %w", d, err)
		}
		<-time.After(10 * time.Millisecond)
	}
}

// waitConverged waits until every live replica of group holds want
// commands, identical to the leader's.
func (c *trCluster) waitConverged(t *testing.T, group uint32, want int) {
	t.Helper()
	trPollUntil(t, 30*time.Second, fmt.Sprintf("group %d converges on %d commands", group, want), func() error {
		var ref [32]byte
		for i, rep := range c.reps[group] {
			if rep.closed {
				continue
			}
			n, sum := rep.fsm.digest()
			if n != want {
				return fmt.Errorf("%s has %d commands, want %d", rep.node.id, n, want)
			}
			if i > 0 && sum != ref {
				return fmt.Errorf("%s diverges", rep.node.id)
			}
			ref = sum
		}
		return nil
	})
}

// TestRaftGroupsOverTransport runs 8 real raft groups on 3 nodes whose
// transports share one drpc server each.
func TestRaftGroupsOverTransport(t *testing.T) {
	const groups, commands = 8, 500
	nodes := startTrNodes(t, 3, TransportConfig{})
	c := startTrCluster(t, nodes, groups, func() *raft.Config {
		conf := trRaftConfig()
		conf.TrailingLogs = 10
		conf.SnapshotThreshold = 1 << 20 // snapshots only when the test asks
		return conf
	})
	leaders := c.waitLeaders(t)

	t.Run("every group replicates its commands to all", func(t *testing.T) {
		var wg sync.WaitGroup
		for g := range leaders {
			wg.Go(func() { trApplyN(t, c, g, 0, commands) })
		}
		wg.Wait()
		if t.Failed() {
			t.FailNow()
		}
		for g := range uint32(groups) {
			c.waitConverged(t, g, commands)
		}
		for _, n := range nodes {
			if got := n.metric(t, "ringkv_consensus_transport_rpcs_received_total", map[string]string{"rpc": rpcPipeline}); got == 0 && trHasFollower(c, n) {
				t.Errorf("%s received no pipelined append entries", n.id)
			}
		}
	})

	t.Run("a follower that returns after compaction is caught up by snapshot", func(t *testing.T) {
		const g = 0
		lead := c.waitLeader(t, g)
		var follower *trReplica
		for _, rep := range c.reps[g] {
			if rep != lead {
				follower = rep
				break
			}
		}
		follower.stop(t)
		if follower.node.tr.group(g) != nil {
			t.Fatalf("raft shutdown left group %d registered on %s", g, follower.node.id)
		}
		if !trApplyN(t, c, g, commands, 100) {
			t.FailNow()
		}
		if err := c.waitLeader(t, g).r.Snapshot().Error(); err != nil {
			t.Fatal(err)
		}
		installed := follower.node.metric(t, "ringkv_consensus_transport_snapshots_installed_total", nil)
		follower.start(t)
		c.waitConverged(t, g, commands+100)
		// Raft restores the FSM before it answers the RPC, and the
		// transport counts the install after that answer: the digest can
		// converge a moment before the counter moves.
		trPollUntil(t, 10*time.Second, "snapshot install counted on "+follower.node.id, func() error {
			if got := follower.node.metric(t, "ringkv_consensus_transport_snapshots_installed_total", nil); got <= installed {
				return fmt.Errorf("snapshots installed on %s: got %v, want > %v", follower.node.id, got, installed)
			}
			return nil
		})
		if follower.fsm.restores == 0 {
			t.Errorf("follower FSM restores: got 0, want > 0")
		}
		if got := lead.node.metric(t, "ringkv_consensus_transport_rpcs_sent_total", map[string]string{"rpc": rpcInstallSnapshot}); got == 0 {
			t.Errorf("install snapshot RPCs sent by leader: got 0, want > 0")
		}
	})

	t.Run("leadership transfer goes through TimeoutNow", func(t *testing.T) {
		const g = 1
		old := c.waitLeader(t, g)
		if err := old.r.LeadershipTransfer().Error(); err != nil {
			t.Fatal(err)
		}
		trPollUntil(t, 30*time.Second, "new leader", func() error {
			l, err := c.leader(g)
			if err != nil {
				return err
			}
			if l == old {
				return errors.New("old leader still leads")
			}
			return nil
		})
		if got := old.node.metric(t, "ringkv_consensus_transport_rpcs_sent_total", map[string]string{"rpc": rpcTimeoutNow}); got == 0 {
			t.Errorf("timeout now RPCs sent by old leader: got 0, want > 0")
		}
	})
}

func trHasFollower(c *trCluster, n *trNode) bool {
	for _, reps := range c.reps {
		for _, rep := range reps {
			if rep.node == n && rep.r.State() == raft.Follower {
				return true
			}
		}
	}
	return false
}

// trAnswer serves a group's consumer in the background, responding to each
// RPC with respond, until the test ends.
func trAnswer(t *testing.T, tr raft.Transport, respond func(raft.RPC)) {
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() {
		defer close(done)
		for {
			select {
			case rpc := <-tr.Consumer():
				respond(rpc)
			case <-ctx.Done():
				return
			}
		}
	}()
	t.Cleanup(func() { cancel(); <-done })
}

// TestIdleCPU reports the CPU that 64 idle groups on each of 3 nodes cost,
// with the timers DESIGN.md recommends, with and without a heartbeat
// window. It asserts nothing about time, so it is a measurement, not a
// check: it runs only with RINGKV_IDLE_CPU=1 (about 15 s alone, 20-odd s
// beside the rest of CI, whose budget it would spend on nothing it checks).
//
//	RINGKV_IDLE_CPU=1 go test -run TestIdleCPU -v ./consensus/
func TestIdleCPU(t *testing.T) {
	if testing.Short() || os.Getenv("RINGKV_IDLE_CPU") != "1" {
		t.Skip("a measurement: set RINGKV_IDLE_CPU=1 to run it")
	}
	const groups = 64
	const window = 5 * time.Second
	for _, hw := range []time.Duration{-1, DefaultTransportConfig().HeartbeatWindow, 10 * time.Millisecond} {
		t.Run(fmt.Sprintf("heartbeat window %v", hw), func(t *testing.T) {
			nodes := startTrNodes(t, 3, TransportConfig{HeartbeatWindow: hw})
			c := startTrCluster(t, nodes, groups, func() *raft.Config {
				conf := raft.DefaultConfig()
				conf.HeartbeatTimeout = time.Second
				conf.ElectionTimeout = time.Second
				conf.LeaderLeaseTimeout = 500 * time.Millisecond
				conf.CommitTimeout = 500 * time.Millisecond
				return conf
			})
			c.waitLeaders(t)
			for g := range uint32(groups) {
				c.waitConverged(t, g, 0)
			}
			before := trRusage(t)
			beforeSent, beforeFrames := trIdleTraffic(t, nodes)
			timer := time.NewTimer(window)
			select {
			case <-timer.C:
			case <-t.Context().Done():
				timer.Stop()
				t.Fatal(t.Context().Err())
			}
			cpu := trRusage(t) - before
			sent, frames := trIdleTraffic(t, nodes)
			t.Logf("%d groups x 3 nodes idle for %v: CPU %.1f%% of one core; %.0f raft RPCs/s in %.0f drpc calls+frames/s; %d goroutines",
				groups, window, 100*cpu.Seconds()/window.Seconds(),
				(sent-beforeSent)/window.Seconds(), (frames-beforeFrames)/window.Seconds(), runtime.NumGoroutine())
		})
	}
}

func trIdleTraffic(t *testing.T, nodes []*trNode) (sent, frames float64) {
	for _, n := range nodes {
		sent += n.metric(t, "ringkv_consensus_transport_rpcs_sent_total", nil)
		frames += n.metric(t, "ringkv_consensus_transport_frames_sent_total", nil)
	}
	return sent, frames
}

// trRusage returns the user+system CPU time this process has used.
func trRusage(t testing.TB) time.Duration {
	t.Helper()
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		t.Fatal(err)
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

// stallProxy relays TCP connections to target. stall makes every
// connection open at that moment stop carrying bytes, in both directions,
// without closing it: what a connection looks like after a cable was cut
// and put back while TCP's retransmission backoff still waits. Later
// connections relay normally.
type stallProxy struct {
	lis    net.Listener
	target string
	mu     sync.Mutex
	conns  []net.Conn
	stuck  bool
}

func newStallProxy(t *testing.T, target string) *stallProxy {
	t.Helper()
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	p := &stallProxy{lis: lis, target: target}
	var wg sync.WaitGroup
	t.Cleanup(func() {
		_ = lis.Close()
		p.mu.Lock()
		for _, c := range p.conns {
			_ = c.Close()
		}
		p.mu.Unlock()
		wg.Wait()
	})
	wg.Go(func() {
		for {
			in, err := lis.Accept()
			if err != nil {
				return
			}
			out, err := net.Dial("tcp", target)
			if err != nil {
				_ = in.Close()
				continue
			}
			stuck := new(atomic.Bool)
			p.mu.Lock()
			p.conns = append(p.conns, in, out)
			p.mu.Unlock()
			relay := func(dst, src net.Conn) {
				buf := make([]byte, 32<<10)
				for {
					n, err := src.Read(buf)
					if err != nil {
						_ = dst.Close()
						return
					}
					p.mu.Lock()
					if p.stuck {
						stuck.Store(true)
					}
					p.mu.Unlock()
					if stuck.Load() {
						continue // swallowed: the connection hangs
					}
					if _, err := dst.Write(buf[:n]); err != nil {
						_ = src.Close()
						return
					}
				}
			}
			wg.Go(func() { relay(out, in) })
			wg.Go(func() { relay(in, out) })
		}
	})
	return p
}

func (p *stallProxy) addr() string { return p.lis.Addr().String() }

// stall makes the connections open now hang; new ones relay.
func (p *stallProxy) stall() {
	p.mu.Lock()
	p.stuck = true
	p.mu.Unlock()
}

// unstall lets connections opened from now on relay (the stalled ones
// stay stalled).
func (p *stallProxy) unstall() {
	p.mu.Lock()
	p.stuck = false
	p.mu.Unlock()
}

// TestHeartbeatTimeoutReplacesStream: a heartbeat that times out fails
// the stream it was sent on, so the next heartbeat opens a new
// connection. Before, the stream stayed in use: after a link came back
// while its connection waited in TCP's retransmission backoff (tens of
// seconds after a 30 s cut), every heartbeat and pipelined append to that
// peer timed out until then (the five-host chaos run: a follower unable
// to take part in its groups long after its link was restored).
func TestHeartbeatTimeoutReplacesStream(t *testing.T) {
	nodes := startTrNodes(t, 2, TransportConfig{Timeout: 300 * time.Millisecond})
	tr := nodes[1].tr.Group(0)
	tr.SetHeartbeatHandler(func(rpc raft.RPC) {
		rpc.Respond(&raft.AppendEntriesResponse{Term: 1, Success: true}, nil)
	})
	trAnswer(t, tr, func(rpc raft.RPC) { rpc.Respond(nil, fmt.Errorf("unexpected %T", rpc.Command)) })
	px := newStallProxy(t, nodes[0].res.addrs["n2"])
	nodes[0].res.mu.Lock()
	nodes[0].res.addrs["n2"] = px.addr()
	nodes[0].res.mu.Unlock()

	heartbeat := func() error {
		req := &raft.AppendEntriesRequest{Term: 1, RPCHeader: raft.RPCHeader{Addr: []byte("n1")}}
		var resp raft.AppendEntriesResponse
		return nodes[0].tr.Group(0).AppendEntries("n2", "n2", req, &resp)
	}
	if err := heartbeat(); err != nil {
		t.Fatalf("first heartbeat: %v", err)
	}
	px.stall()
	if err := heartbeat(); !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("heartbeat on a stalled connection: %v, want a deadline error", err)
	}
	px.unstall()
	if err := heartbeat(); err != nil {
		t.Fatalf("heartbeat after the stall: %v (the stalled stream was kept)", err)
	}
}
