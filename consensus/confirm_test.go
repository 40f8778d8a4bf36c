package consensus

import (
	"context"
	"errors"
	"sync"
	"testing"
	"time"

	"github.com/hashicorp/raft"
)

// confirmOf confirms rep's leadership of its group at term through the
// node-level round.
func confirmOf(ctx context.Context, rep *trReplica, term uint64) error {
	gt, ok := rep.node.tr.Group(rep.group).(*groupTransport)
	if !ok {
		return errors.New("not a groupTransport")
	}
	return gt.ConfirmLeadership(ctx, term, rep.r.GetConfiguration().Configuration().Servers)
}

func TestConfirmLeadership(t *testing.T) {
	const groups = 4
	nodes := startTrNodes(t, 3, TransportConfig{})
	c := startTrCluster(t, nodes, groups, trRaftConfig)
	for _, n := range nodes {
		n.tr.SetLiveness(newTrLiveness(c, n))
	}
	leaders := c.waitLeaders(t)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	sum := func(name string) (v float64) {
		for _, n := range nodes {
			v += n.metric(t, name, nil)
		}
		return v
	}

	// Every leader, at its term, concurrently: the rounds are shared.
	rounds := sum("ringkv_consensus_transport_confirm_rounds_total")
	const perGroup = 20
	var wg sync.WaitGroup
	for g, lead := range leaders {
		term := lead.r.CurrentTerm()
		for range perGroup {
			wg.Go(func() {
				err := confirmOf(ctx, lead, term)
				// A leader may lose its group on a loaded machine: then
				// raft's own round answers for it (not this test's
				// subject).
				if err != nil && lead.r.State() == raft.Leader && lead.r.CurrentTerm() == term {
					t.Errorf("group %d at term %d: %v", g, term, err)
				}
			})
		}
	}
	wg.Wait()
	ran := sum("ringkv_consensus_transport_confirm_rounds_total") - rounds
	if ran == 0 || ran >= groups*perGroup {
		t.Errorf("%v rounds for %d confirmations, want between 1 and fewer than the confirmations", ran, groups*perGroup)
	}
	if a := sum("ringkv_consensus_transport_confirms_answered_total"); a == 0 {
		t.Error("no Confirm answered")
	}
	t.Logf("%d confirmations in %v rounds", groups*perGroup, ran)

	// A term no longer current: every follower is past it.
	lead := leaders[0]
	term := lead.r.CurrentTerm()
	if err := confirmOf(ctx, lead, term-1); !errors.Is(err, errUnconfirmed) {
		t.Errorf("confirm at the previous term %d: %v, want errUnconfirmed", term-1, err)
	}

	// A quorum is enough: one follower node gone, then both.
	var followers []*trNode
	for _, n := range nodes {
		if n != lead.node {
			followers = append(followers, n)
		}
	}
	c.stopNode(t, followers[0])
	trPollUntil(t, 10*time.Second, "confirmed by the other follower", func() error {
		if lead.r.State() != raft.Leader {
			return errors.New("lost leadership")
		}
		return confirmOf(ctx, lead, lead.r.CurrentTerm())
	})
	c.stopNode(t, followers[1])
	if err := confirmOf(ctx, lead, lead.r.CurrentTerm()); !errors.Is(err, errUnconfirmed) {
		t.Errorf("confirm with both followers gone: %v, want errUnconfirmed", err)
	}
	if u := lead.node.metric(t, "ringkv_consensus_transport_confirm_unresolved_total", nil); u == 0 {
		t.Error("no unresolved group counted")
	}
}

// A peer that does not answer (an older node ignores Confirm, or one
// without a liveness source) leaves the group unconfirmed, and a context
// that ends first ends the wait.
func TestConfirmNeedsAnswers(t *testing.T) {
	nodes := startTrNodes(t, 3, TransportConfig{ConfirmTimeout: 200 * time.Millisecond})
	c := startTrCluster(t, nodes, 1, trRaftConfig)
	lead := c.waitLeader(t, 0) // no SetLiveness: nobody answers for a group
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := confirmOf(ctx, lead, lead.r.CurrentTerm()); !errors.Is(err, errUnconfirmed) {
		t.Errorf("confirm with no peer answering: %v, want errUnconfirmed", err)
	}
	done, stop := context.WithCancel(ctx)
	stop()
	if err := confirmOf(done, lead, lead.r.CurrentTerm()); !errors.Is(err, context.Canceled) && !errors.Is(err, errUnconfirmed) {
		t.Errorf("confirm with an ended context: %v, want context.Canceled", err)
	}
}

func TestConfirmQuorum(t *testing.T) {
	nodes := startTrNodes(t, 1, TransportConfig{})
	tr := nodes[0].tr // n1
	v := func(id string) raft.Server { return raft.Server{Suffrage: raft.Voter, ID: raft.ServerID(id)} }
	nv := func(id string) raft.Server { return raft.Server{Suffrage: raft.Nonvoter, ID: raft.ServerID(id)} }
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	// The only voter: confirmed at once, no round.
	if err := tr.confirmLeadership(ctx, 7, 1, []raft.Server{v("n1"), nv("n2")}); err != nil {
		t.Errorf("single voter: %v", err)
	}
	if r := nodes[0].metric(t, "ringkv_consensus_transport_confirm_rounds_total", nil); r != 0 {
		t.Errorf("rounds for a single voter: %v, want 0", r)
	}
	// Others needed but unknown to the resolver: the round ends at once
	// with nobody to ask.
	start := time.Now()
	if err := tr.confirmLeadership(ctx, 7, 1, []raft.Server{v("n1"), v("x2"), v("x3")}); !errors.Is(err, errUnconfirmed) {
		t.Errorf("unknown peers: %v, want errUnconfirmed", err)
	}
	if d := time.Since(start); d > 5*time.Second {
		t.Errorf("unknown peers took %v", d)
	}
	off := startTrNodes(t, 1, TransportConfig{ConfirmTimeout: -1})[0].tr
	if err := off.confirmLeadership(ctx, 7, 1, []raft.Server{v("n1"), v("n2"), v("n3")}); !errors.Is(err, errUnconfirmed) {
		t.Errorf("confirmation off: %v, want errUnconfirmed", err)
	}
}

// A leader confirms per node only while every member speaks
// ConfirmWireVersion.
func TestSpeaksConfirm(t *testing.T) {
	g := &Group{}
	if !g.speaksConfirm() {
		t.Error("without Features: want true")
	}
	g.features = wireFeatures(ConfirmWireVersion - 1)
	if g.speaksConfirm() {
		t.Errorf("a member at wire %d: want false", ConfirmWireVersion-1)
	}
	g.confirmWire.until.Store(0) // past the cached answer
	g.features = wireFeatures(ConfirmWireVersion)
	if !g.speaksConfirm() {
		t.Errorf("every member at wire %d: want true", ConfirmWireVersion)
	}
}
