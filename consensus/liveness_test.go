package consensus

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/hashicorp/raft"

	"github.com/ringkv/ringkv/proto/kvpb"
)

// trLiveness is the LivenessSource of one node of a trCluster: its
// replicas (a stopped one reports Shutdown).
type trLiveness map[uint32]*trReplica

func newTrLiveness(c *trCluster, n *trNode) trLiveness {
	l := trLiveness{}
	for g, reps := range c.reps {
		for _, rep := range reps {
			if rep.node == n {
				l[g] = rep
			}
		}
	}
	return l
}

func (l trLiveness) LivenessReport() LivenessReport {
	rep := LivenessReport{Followed: map[string][]GroupTerm{}}
	for g, tr := range l {
		r := tr.r
		switch r.State() {
		case raft.Leader:
			rep.Led = append(rep.Led, GroupTerm{Group: g, Term: r.CurrentTerm(), Commit: r.CommitIndex()})
		case raft.Follower:
			if _, id := r.LeaderWithID(); id != "" {
				rep.Followed[string(id)] = append(rep.Followed[string(id)], GroupTerm{Group: g, Term: r.CurrentTerm()})
			}
		}
	}
	return rep
}

func (l trLiveness) Following(group uint32) (string, uint64, bool) {
	tr, ok := l[group]
	if !ok || tr.r.State() != raft.Follower {
		return "", 0, false
	}
	_, id := tr.r.LeaderWithID()
	return string(id), tr.r.CurrentTerm(), id != ""
}

func (l trLiveness) Term(group uint32) (uint64, bool) {
	tr, ok := l[group]
	if !ok {
		return 0, false
	}
	return tr.r.CurrentTerm(), true
}

func (l trLiveness) Indexes(group uint32) (uint64, uint64, bool) {
	tr, ok := l[group]
	if !ok {
		return 0, 0, false
	}
	return tr.r.CommitIndex(), tr.r.LastIndex(), true
}

func (l trLiveness) EntryTerm(group uint32, index uint64) (uint64, bool) {
	tr, ok := l[group]
	if !ok {
		return 0, false
	}
	var e raft.Log
	if err := tr.logs.GetLog(index, &e); err != nil {
		return 0, false
	}
	return e.Term, true
}

// TestLivenessCarriesCommitIndex: with raft's idle append (CommitTimeout)
// an hour away, followers learn the commit index of a group's last write
// from the leader node's liveness messages alone, and apply it; with no
// liveness messages they do not.
func TestLivenessCarriesCommitIndex(t *testing.T) {
	const groups, commands = 2, 5
	conf := func() *raft.Config {
		c := trRaftConfig()
		c.CommitTimeout = time.Hour
		return c
	}
	for _, liveness := range []bool{true, false} {
		t.Run(fmt.Sprintf("liveness=%v", liveness), func(t *testing.T) {
			nodes := startTrNodes(t, 3, TransportConfig{})
			c := startTrCluster(t, nodes, groups, conf)
			if liveness {
				for _, n := range nodes {
					n.tr.SetLiveness(newTrLiveness(c, n))
				}
			}
			leads := c.waitLeaders(t)
			terms := map[uint32]uint64{}
			for g, lead := range leads {
				terms[g] = lead.r.CurrentTerm()
				for i := range commands {
					if err := lead.r.Apply(fmt.Appendf(nil, "g%d-c%d", g, i), 10*time.Second).Error(); err != nil {
						t.Fatalf("apply to group %d: %v", g, err)
					}
				}
			}
			if !liveness {
				// The last write's commit index reaches no follower: raft's
				// heartbeats do not carry it and its idle append is an hour
				// away. Two seconds is long enough for a liveness round
				// (200 ms) to have carried it, had there been one.
				// A follower whose append of the last write left the leader
				// after its commit (a slow replication goroutine on a loaded
				// machine) learns the commit from that append: so one
				// follower applying proves nothing, every follower of every
				// group applying would (a quiet machine: none does).
				deadline := time.Now().Add(2 * time.Second)
				followers, applied := 0, 0
				for time.Now().Before(deadline) {
					followers, applied = 0, 0
					for g := range uint32(groups) {
						if leads[g].r.CurrentTerm() != terms[g] {
							// A new term's first entry carries the commit
							// index: nothing left to show for this group.
							continue
						}
						for _, rep := range c.reps[g] {
							if rep == leads[g] {
								continue
							}
							followers++
							if n, _ := rep.fsm.digest(); n == commands {
								applied++
							}
						}
					}
					if followers > 0 && applied == followers {
						t.Fatalf("every follower (%d) applied the last write without liveness", followers)
					}
					tick := time.NewTimer(50 * time.Millisecond) // sampling an absence until the deadline
					<-tick.C
				}
				t.Logf("without liveness, %d of %d followers applied the last write within 2 s", applied, followers)
				return
			}
			for g := range uint32(groups) {
				c.waitConverged(t, g, commands)
			}
			var injected float64
			for _, n := range nodes {
				injected += n.metric(t, "ringkv_consensus_transport_commits_injected_total", nil)
			}
			if injected == 0 {
				t.Error("no commit index handed to a follower from liveness")
			}
		})
	}
}

// TestLivenessStandsForIdleHeartbeats: once the nodes exchange liveness
// messages, idle groups send (almost) no heartbeats or idle appends, yet a
// leadership confirmation still travels and is answered, and when a node
// goes away the groups it led elect new leaders.
func TestLivenessStandsForIdleHeartbeats(t *testing.T) {
	const groups = 4
	nodes := startTrNodes(t, 3, TransportConfig{})
	c := startTrCluster(t, nodes, groups, trRaftConfig)
	for _, n := range nodes {
		n.tr.SetLiveness(newTrLiveness(c, n))
		n.tr.SetLiveness(newTrLiveness(c, n)) // ignored
	}
	leaders := c.waitLeaders(t)
	sum := func(name string, labels map[string]string) (v float64) {
		for _, n := range nodes {
			v += n.metric(t, name, labels)
		}
		return v
	}
	travelled := func() float64 {
		return sum("ringkv_consensus_transport_rpcs_sent_total", map[string]string{"rpc": rpcHeartbeat}) +
			sum("ringkv_consensus_transport_rpcs_sent_total", map[string]string{"rpc": rpcPipeline})
	}
	const elided, injected = "ringkv_consensus_transport_heartbeats_elided_total", "ringkv_consensus_transport_heartbeats_injected_total"
	trPollUntil(t, 30*time.Second, "heartbeats stood for", func() error {
		if e, i := sum(elided, nil), sum(injected, nil); e < 50 || i < 20 {
			return fmt.Errorf("elided %v, injected %v", e, i)
		}
		return nil
	})
	// How many still travel depends on the machine's load (a liveness
	// message delayed past its timeout stands for nothing): logged only.
	e0, s0 := sum(elided, nil), travelled()
	trPollUntil(t, 10*time.Second, "more idle traffic", func() error {
		if e := sum(elided, nil) - e0; e < 100 {
			return fmt.Errorf("elided %v", e)
		}
		return nil
	})
	t.Logf("idle groups: %v heartbeats and appends elided while %v travelled", sum(elided, nil)-e0, travelled()-s0)

	// A leadership confirmation travels and is answered.
	lead := leaders[0]
	hb := sum("ringkv_consensus_transport_rpcs_sent_total", map[string]string{"rpc": rpcHeartbeat})
	gt, ok := lead.node.tr.Group(0).(*groupTransport)
	if !ok {
		t.Fatal("not a groupTransport")
	}
	end := gt.BeginUrgent()
	if err := lead.r.VerifyLeader().Error(); err != nil {
		end()
		t.Fatalf("verify leader: %v", err)
	}
	// Raft may count the answer to an append that crossed the
	// confirmation before its heartbeat goroutine sends: wait for that
	// heartbeat, still urgent so that it travels.
	trPollUntil(t, 10*time.Second, "a heartbeat sent for the confirmation", func() error {
		if got := sum("ringkv_consensus_transport_rpcs_sent_total", map[string]string{"rpc": rpcHeartbeat}); got <= hb {
			return fmt.Errorf("heartbeats sent: %v more", got-hb)
		}
		return nil
	})
	end()

	// The leader's node goes away: its groups elect new leaders.
	gone := lead.node
	c.stopNode(t, gone)
	start := time.Now()
	trPollUntil(t, 30*time.Second, "new leaders", func() error {
		for g := range uint32(groups) {
			l, err := c.leader(g)
			if err != nil {
				return err
			}
			if l.node == gone {
				return fmt.Errorf("group %d led by the departed node", g)
			}
		}
		return nil
	})
	t.Logf("every group had a leader %v after %s went away", time.Since(start), gone.id)
}

func TestLivenessConfig(t *testing.T) {
	cfg := DefaultTransportConfig()
	cfg.NodeID = "n1"
	if err := cfg.Validate(); err != nil {
		t.Fatalf("defaults: %v", err)
	}
	cfg.LivenessTimeout = cfg.LivenessInterval
	if err := cfg.Validate(); err == nil || !strings.Contains(err.Error(), "LivenessTimeout") {
		t.Errorf("got %v, want a LivenessTimeout error", err)
	}
	tr, err := NewTransport(TransportConfig{NodeID: "n1", LivenessInterval: time.Second}, &trResolver{}, nil)
	if err != nil {
		t.Fatal(err)
	}
	if got, want := tr.cfg.LivenessTimeout, 3*time.Second; got != want {
		t.Errorf("filled LivenessTimeout: got %v, want %v", got, want)
	}
	tr.SetLiveness(trLiveness{}) // sends nothing: no group
	if err := tr.Close(); err != nil {
		t.Fatal(err)
	}
	tr.SetLiveness(trLiveness{}) // closed: ignored

	c := testConfig(t, "n1")
	for _, tc := range []struct {
		name  string
		quiet time.Duration
		ok    bool
	}{
		{"off", 0, true},
		{"heartbeat timeout", c.HeartbeatTimeout, true},
		{"3x lease", 3 * c.LeaderLeaseTimeout, true},
		{"below heartbeat timeout", c.HeartbeatTimeout / 2, false},
		{"beyond 3x lease", 3*c.LeaderLeaseTimeout + time.Millisecond, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c.QuietHeartbeatTimeout = tc.quiet
			err := c.Validate()
			if got := err == nil; got != tc.ok {
				t.Errorf("QuietHeartbeatTimeout %v: got %v, want ok %v", tc.quiet, err, tc.ok)
			}
		})
	}
}

// TestQuietLeaderTimeouts: a group's leader runs with the quiet
// heartbeat timeout, its followers with the normal one; a transfer
// restores the normal one before it starts, and the new leader goes quiet.
func TestQuietLeaderTimeouts(t *testing.T) {
	_, mgrs := newCluster(t, 1)
	cfg := testConfig(t, "n1")
	check := func() error {
		lead := leaderOf(mgrs, 0)
		if lead == nil {
			return errors.New("no leader")
		}
		for id, m := range mgrs {
			g, ok := m.Group(0)
			if !ok {
				return fmt.Errorf("%s has no group", id)
			}
			want := cfg.HeartbeatTimeout
			if g == lead {
				want = cfg.QuietHeartbeatTimeout
			}
			if got := g.raft.ReloadableConfig().HeartbeatTimeout; got != want {
				return fmt.Errorf("%s (%v): heartbeat timeout %v, want %v", id, g.raft.State(), got, want)
			}
		}
		return nil
	}
	waitFor(t, 10*time.Second, "quiet leader, normal followers", check)
	lead := leaderOf(mgrs, 0)
	if err := lead.transferLeadership(""); err != nil {
		t.Fatalf("transfer: %v", err)
	}
	waitFor(t, 10*time.Second, "the new leader quiet, the old one normal", check)
}

// TestManagerLivenessReport: the Manager reports the groups it leads and,
// by leader, those it follows, each at its term.
func TestManagerLivenessReport(t *testing.T) {
	_, mgrs := newCluster(t, 1)
	for id, m := range mgrs {
		if _, _, ok := m.Indexes(99); ok {
			t.Errorf("%s: Indexes of a group it does not host", id)
		}
		if _, ok := m.EntryTerm(99, 1); ok {
			t.Errorf("%s: EntryTerm of a group it does not host", id)
		}
	}
	waitFor(t, 10*time.Second, "a consistent report", func() error {
		lead := leaderOf(mgrs, 0)
		if lead == nil {
			return errors.New("no leader")
		}
		term := lead.raft.CurrentTerm()
		for id, m := range mgrs {
			rep := m.LivenessReport()
			leader, ft, ok := m.Following(0)
			if id == lead.nodeID {
				if len(rep.Led) != 1 || rep.Led[0].Group != 0 || rep.Led[0].Term != term || rep.Led[0].Commit != lead.raft.CommitIndex() {
					return fmt.Errorf("leader %s reports led %v, want group 0 at term %d, commit %d", id, rep.Led, term, lead.raft.CommitIndex())
				}
				if et, ok := m.EntryTerm(0, rep.Led[0].Commit); !ok || et == 0 || et > term {
					return fmt.Errorf("leader %s: the term of its entry at its commit index %d: %d %v", id, rep.Led[0].Commit, et, ok)
				}
				if commit, last, ok := m.Indexes(0); !ok || commit != rep.Led[0].Commit || last < commit {
					return fmt.Errorf("leader %s: Indexes = %d %d %v", id, commit, last, ok)
				}
				if ok {
					return fmt.Errorf("leader %s says it follows %s", id, leader)
				}
				continue
			}
			if got := rep.Followed[lead.nodeID]; len(got) != 1 || got[0] != (GroupTerm{Group: 0, Term: term}) {
				return fmt.Errorf("follower %s reports followed %v, want group 0 at term %d", id, rep.Followed, term)
			}
			if !ok || leader != lead.nodeID || ft != term {
				return fmt.Errorf("follower %s: Following = %q %d %v, want %s %d", id, leader, ft, ok, lead.nodeID, term)
			}
		}
		return nil
	})
	if _, _, ok := mgrs["n1"].Following(99); ok {
		t.Error("Following(99) on a node without group 99: got ok")
	}
}

// TestRisenCommits: a led group's commit index is reported, with its
// entry's term, for commitRounds rounds after it changes (or the group is
// newly led), not when its entry is unknown, and groups no longer led are
// forgotten.
func TestRisenCommits(t *testing.T) {
	lookups := 0
	entryTerm := func(group uint32, index uint64) (uint64, bool) {
		lookups++
		if group == 9 {
			return 0, false // compacted away
		}
		return 4, true
	}
	marks := map[uint32]commitMark{}
	got := func(round uint64, led ...GroupTerm) []GroupTerm {
		return risenCommits(marks, led, round, entryTerm)
	}
	if r := got(1, GroupTerm{Group: 1, Term: 5, Commit: 10}, GroupTerm{Group: 9, Term: 5, Commit: 3}, GroupTerm{Group: 2, Term: 5}); len(r) != 1 ||
		r[0] != (GroupTerm{Group: 1, Term: 5, Commit: 10, CommitTerm: 4}) {
		t.Fatalf("round 1: %+v", r)
	}
	for round := uint64(2); round <= commitRounds; round++ {
		if r := got(round, GroupTerm{Group: 1, Term: 5, Commit: 10}); len(r) != 1 {
			t.Fatalf("round %d: %+v, want the repeat", round, r)
		}
	}
	if r := got(commitRounds+1, GroupTerm{Group: 1, Term: 5, Commit: 10}); len(r) != 0 {
		t.Fatalf("round %d: %+v, want nothing (unchanged for %d rounds)", commitRounds+1, r, commitRounds)
	}
	if lookups != 2 {
		t.Errorf("entry terms looked up %d times, want 2 (once per change)", lookups)
	}
	if r := got(10, GroupTerm{Group: 1, Term: 5, Commit: 12}); len(r) != 1 || r[0].Commit != 12 {
		t.Fatalf("a risen commit: %+v", r)
	}
	if r := got(11, GroupTerm{Group: 1, Term: 6, Commit: 12}); len(r) != 1 || r[0].Term != 6 {
		t.Fatalf("a new term: %+v", r)
	}
	got(12)
	if len(marks) != 0 {
		t.Errorf("marks of groups no longer led kept: %v", marks)
	}
}

// TestElidableNeedsTheLiveStream: an idle append repeating the last one a
// pipeline sent is answered for a follower whose liveness stands for it
// only while the stream that carried the last one is up. A follower whose
// connection broke restarted, maybe with an empty log (a wiped node
// rejoining): its liveness stands for it again as soon as a heartbeat
// names the leader, and an elided append would keep its log empty for
// good (2026-12-06: a wiped node's groups, 1 or 2 in 64, never refilled).
func TestElidableNeedsTheLiveStream(t *testing.T) {
	tr := newLoneTransport(t, "n1", nil)
	now := time.Now()
	tr.mu.Lock()
	tr.mu.live["n2"] = &peerLiveness{at: now, followed: map[uint32]uint64{7: 3}}
	tr.mu.Unlock()
	ctx, cancel := context.WithCancel(t.Context())
	defer cancel()
	g := &groupTransport{t: tr, group: 7}
	req := func(commit uint64) *kvpb.AppendEntriesRequest {
		return &kvpb.AppendEntriesRequest{Term: 3, PrevLogEntry: 40, PrevLogTerm: 3, LeaderCommitIndex: commit}
	}
	p := &pipeline{g: g, s: &appendStream{ctx: ctx}, target: "n2", last: req(40)}
	same := req(40)
	if !p.elidable(same, now) {
		t.Fatal("an idle append repeating the last one, follower live: not elided")
	}
	newer := req(41)
	if p.elidable(newer, now) {
		t.Error("an append with a new commit index elided")
	}
	cancel() // the stream failed: the follower's process may be another
	if p.elidable(same, now) {
		t.Error("an idle append elided after the stream that carried the last one failed")
	}
}
