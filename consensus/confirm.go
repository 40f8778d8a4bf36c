package consensus

// Leadership confirmation for linearizable reads, per node: one Confirm
// message per peer stands for the heartbeat round (raft's VerifyLeader) of
// every group this node leads that has reads waiting.
//
// A read captures its group's commit index, then needs proof that no
// other leader could have committed anything at that moment: that a
// quorum of the group's voters had not yet voted in a later term. Raft's
// VerifyLeader gets it with a heartbeat per follower, answered by each
// follower's raft; with 64 groups, reads of different groups share no
// round. Here a node's reads of every group join one round: the node
// sends each peer one Confirm naming the groups (and terms) it shares with
// that peer, and the peer answers at once with the groups whose current
// term there is at most the term named. Raft stores a higher term before
// it grants a vote in it, so a peer whose term is still at most T when the
// Confirm arrives had voted for no leader of a later term by then; once a
// quorum (this node included, if it is a voter) answers so, every leader
// of a later term is elected after the read began, and so commits after
// it: the captured index is current, as with VerifyLeader. A group the
// round leaves unconfirmed (no quorum answered within ConfirmTimeout: a
// cut-off leader, an older peer that ignores Confirm) falls back to raft's
// VerifyLeader, which also makes a deposed leader step down.

import (
	"context"
	"errors"
	"fmt"
	"runtime"
	"slices"
	"sync"
	"time"

	"github.com/hashicorp/raft"

	"github.com/ringkv/ringkv/proto/kvpb"
)

// ConfirmWireVersion is the wire version (ring/gossip) that brought the
// raft stream's Confirm and ConfirmAck: a leader confirms its leadership
// per node only while every member speaks it, since an older peer ignores
// a Confirm (and each round would wait ConfirmTimeout for it).
const ConfirmWireVersion = 5

// errUnconfirmed is returned by ConfirmLeadership when the round ended
// without a quorum's answer: the caller asks raft (VerifyLeader).
var errUnconfirmed = errors.New("consensus: leadership not confirmed by a quorum")

// leaderConfirmer is a raft.Transport that can confirm its group's
// leadership with the node's other groups (groupTransport can).
type leaderConfirmer interface {
	ConfirmLeadership(ctx context.Context, term uint64, servers []raft.Server) error
}

// ConfirmLeadership returns nil once a quorum of servers' voters (this
// node counting for itself if it is one) has answered that its current
// term for the group is at most term, in a round that began after the
// call; errUnconfirmed when the round ended without, or when node-level
// confirmation is off (ConfirmTimeout < 0); ctx's error if it ends first.
func (g *groupTransport) ConfirmLeadership(ctx context.Context, term uint64, servers []raft.Server) error {
	return g.t.confirmLeadership(ctx, g.group, term, servers)
}

// confirmer runs the node's confirmation rounds: at most one in flight;
// every group asking meanwhile joins the next, which starts when the
// current one ends. A round takes its groups when it is sent, not when
// its first group asked: reads arriving while the runner is scheduled
// join it.
type confirmer struct {
	mu       sync.Mutex
	inflight bool
	next     *confirmRound // waiting to start; nil if none
	cur      *confirmRound // in flight, for the stream readers' answers
	lastID   uint64
}

// confirmRound is one round: its groups, and the peers it asked.
type confirmRound struct {
	id uint64
	// groups is written only before the round starts (under confirmer.mu),
	// read-only after.
	groups map[uint32]*confirmGroup

	mu sync.Mutex
	// asked maps each stream the round went out on to the peer node.
	asked map[*appendStream]string
	// waiting counts asked peers yet to answer; open, groups unresolved.
	waiting, open int
	ended         bool
	// wake tells the round's runner that waiting or open reached 0.
	wake chan struct{}
}

// confirmGroup is one group's part in a round.
type confirmGroup struct {
	term uint64
	// voters are the group's other voters not yet counted; need the
	// answers still needed.
	voters map[string]bool
	need   int
	ok     bool          // set before done is closed
	done   chan struct{} // closed when resolved
}

func (t *Transport) confirmLeadership(ctx context.Context, group uint32, term uint64, servers []raft.Server) error {
	if t.cfg.ConfirmTimeout < 0 {
		return errUnconfirmed
	}
	voters, self := 0, false
	for _, s := range servers {
		switch {
		case s.Suffrage != raft.Voter:
		case string(s.ID) == t.cfg.NodeID:
			self = true
		default:
			voters++
		}
	}
	need := (voters+b2i(self))/2 + 1 - b2i(self)
	if need <= 0 {
		return nil // a single voter: itself
	}
	c := &t.confirm
	c.mu.Lock()
	if c.next == nil {
		c.lastID++
		c.next = &confirmRound{id: c.lastID, groups: make(map[uint32]*confirmGroup), wake: make(chan struct{}, 1)}
	}
	r := c.next
	cg := r.groups[group]
	if cg == nil {
		// Only the first read of the group in this round names its
		// voters; the others join it.
		cg = &confirmGroup{term: term, voters: otherVoters(servers, t.cfg.NodeID), need: need, done: make(chan struct{})}
		r.groups[group] = cg
	}
	if cg.term != term {
		c.mu.Unlock()
		return errUnconfirmed // a read of another term: raft settles it
	}
	if !c.inflight {
		if err := t.begin(); err != nil {
			c.mu.Unlock()
			return err
		}
		c.inflight = true
		go t.runConfirms()
	}
	c.mu.Unlock()
	select {
	case <-cg.done:
		if cg.ok {
			return nil
		}
		return errUnconfirmed
	case <-ctx.Done():
		return fmt.Errorf("consensus: confirm leadership of group %d: %w", group, ctx.Err())
	}
}

// speaksConfirm reports whether every member speaks ConfirmWireVersion
// (always, without Features), asking Features at most once a second: it
// walks the ring's members.
func (g *Group) speaksConfirm() bool {
	if g.features == nil {
		return true
	}
	now := time.Now().UnixNano()
	if now < g.confirmWire.until.Load() {
		return g.confirmWire.ok.Load()
	}
	ok := g.features.SpeaksWire(ConfirmWireVersion)
	g.confirmWire.ok.Store(ok)
	g.confirmWire.until.Store(now + int64(time.Second))
	return ok
}

// otherVoters returns the voters among servers other than self.
func otherVoters(servers []raft.Server, self string) map[string]bool {
	out := make(map[string]bool, len(servers))
	for _, s := range servers {
		if s.Suffrage == raft.Voter && string(s.ID) != self {
			out[string(s.ID)] = true
		}
	}
	return out
}

func b2i(b bool) int {
	if b {
		return 1
	}
	return 0
}

// runConfirms runs rounds until none is waiting. Each round is taken
// under the lock before its Confirms are sent, so every group in it asked
// before they were.
func (t *Transport) runConfirms() {
	defer t.wg.Done()
	c := &t.confirm
	for {
		// Let the reads about to ask (runnable now) join this round.
		runtime.Gosched()
		c.mu.Lock()
		r := c.next
		c.next = nil
		if r == nil {
			c.inflight = false
			c.mu.Unlock()
			return
		}
		c.mu.Unlock()
		t.confirmRound(r)
	}
}

// confirmEscalate is how long a round waits for the peers it asked
// first before it asks the group's other voters too.
const confirmEscalate = 10 * time.Millisecond

// confirmRound asks, for each of r's groups, just enough of its other
// voters for a quorum (those whose liveness is fresh first, the order
// rotating from round to round; a peer asked is asked about all its
// groups), then, if they have not confirmed every group within
// confirmEscalate or answered without, the other peers; it returns when
// every group is resolved, every asked peer answered after the rest were
// asked, ConfirmTimeout passed or t closed. Groups left open are resolved
// unconfirmed. In a cluster of three, one peer answers each round.
func (t *Transport) confirmRound(r *confirmRound) {
	t.m.confirmRounds.Inc()
	t.m.confirmGroups.Observe(float64(len(r.groups)))
	order := t.confirmOrder(r)
	first := make(map[string]*kvpb.Confirm)
	rest := make(map[string]*kvpb.Confirm)
	add := func(msgs map[string]*kvpb.Confirm, node string, group uint32, term uint64) {
		m := msgs[node]
		if m == nil {
			m = &kvpb.Confirm{Id: r.id}
			msgs[node] = m
		}
		m.Groups = append(m.Groups, group)
		m.Terms = append(m.Terms, term)
	}
	// The peers asked first: each group's first need voters in order.
	// Each of them is asked about every group it votes in, so that the
	// rest, asked later, are other peers (a stream carries one Confirm
	// of a round).
	asked := make(map[string]bool)
	for _, cg := range r.groups {
		picked := 0
		for _, node := range order {
			if picked == cg.need {
				break
			}
			if cg.voters[node] {
				asked[node] = true
				picked++
			}
		}
	}
	for group, cg := range r.groups {
		for node := range cg.voters {
			if asked[node] {
				add(first, node, group, cg.term)
			} else {
				add(rest, node, group, cg.term)
			}
		}
	}
	r.mu.Lock()
	r.asked = make(map[*appendStream]string, len(first)+len(rest))
	r.open = len(r.groups)
	r.mu.Unlock()
	c := &t.confirm
	c.mu.Lock()
	c.cur = r
	c.mu.Unlock()
	t.sendConfirms(r, first)

	deadline := time.NewTimer(t.cfg.ConfirmTimeout)
	defer deadline.Stop()
	escalate := time.NewTimer(confirmEscalate)
	defer escalate.Stop()
	escalated := len(rest) == 0
	for done := false; !done; {
		r.mu.Lock()
		open, waiting := r.open, r.waiting
		r.mu.Unlock()
		switch {
		case open == 0, waiting == 0 && escalated:
			done = true
			continue
		case waiting == 0:
			escalated = true
			t.sendConfirms(r, rest)
			continue
		}
		select {
		case <-r.wake:
		case <-escalate.C:
			if !escalated {
				escalated = true
				t.sendConfirms(r, rest)
			}
		case <-deadline.C:
			done = true
		case <-t.lifetime.Done():
			done = true
		}
	}
	c.mu.Lock()
	c.cur = nil
	c.mu.Unlock()
	r.mu.Lock()
	r.ended = true
	for _, cg := range r.groups {
		if cg.need > 0 {
			cg.need = 0
			close(cg.done) // ok stays false
			t.m.confirmUnresolved.Inc()
		}
	}
	r.mu.Unlock()
}

// confirmOrder returns the peer nodes r's groups name: those whose
// liveness message is fresh first, each part rotated by r's id so that
// rounds spread over the peers.
func (t *Transport) confirmOrder(r *confirmRound) []string {
	seen := make(map[string]bool)
	var nodes []string
	for _, cg := range r.groups {
		for node := range cg.voters {
			if !seen[node] {
				seen[node] = true
				nodes = append(nodes, node)
			}
		}
	}
	slices.Sort(nodes)
	if n := len(nodes); n > 1 {
		k := int(r.id % uint64(n))
		nodes = append(nodes[k:], nodes[:k]...)
	}
	now := time.Now()
	t.mu.Lock()
	defer t.mu.Unlock()
	fresh := func(node string) bool {
		v := t.mu.live[node]
		return v != nil && now.Sub(v.at) < t.cfg.LivenessTimeout
	}
	slices.SortStableFunc(nodes, func(a, b string) int {
		return b2i(fresh(b)) - b2i(fresh(a))
	})
	return nodes
}

// sendConfirms sends each node its Confirm on the node's open stream
// (only an open one: dialing a peer that is down would hold the round for
// DialTimeout; heartbeats, appends and the liveness loop (re)open
// streams), counting it in r as asked; a node without one is not asked.
func (t *Transport) sendConfirms(r *confirmRound, msgs map[string]*kvpb.Confirm) {
	sent := make(map[*appendStream]*kvpb.Confirm, len(msgs))
	r.mu.Lock()
	for node, m := range msgs {
		p, err := t.peerFor(raft.ServerAddress(node))
		if err != nil {
			continue
		}
		s := p.liveStream()
		if s == nil {
			continue
		}
		if _, dup := r.asked[s]; dup {
			continue
		}
		r.asked[s] = node
		r.waiting++
		sent[s] = m
	}
	r.mu.Unlock()
	for s, m := range sent {
		if !s.sendConfirm(m) {
			r.answered(s, nil) // not sent: nothing to wait for
		}
	}
}

// answered counts s's peer's answer to r: groups are those it confirmed
// (nil: none).
func (r *confirmRound) answered(s *appendStream, groups []uint32) {
	r.mu.Lock()
	defer r.mu.Unlock()
	node, ok := r.asked[s]
	if !ok || r.ended {
		return
	}
	delete(r.asked, s)
	r.waiting--
	for _, group := range groups {
		cg := r.groups[group]
		if cg == nil || cg.need == 0 || !cg.voters[node] {
			continue
		}
		delete(cg.voters, node)
		cg.need--
		if cg.need == 0 {
			cg.ok = true
			close(cg.done)
			r.open--
		}
	}
	r.checkFinished()
}

// checkFinished wakes the round once no asked peer is left to answer or
// no group is left open. r.mu is held.
func (r *confirmRound) checkFinished() {
	if r.waiting > 0 && r.open > 0 {
		return
	}
	select {
	case r.wake <- struct{}{}:
	default:
	}
}

// noteConfirmAck hands the answer a peer sent on s to the round in flight.
func (t *Transport) noteConfirmAck(s *appendStream, ack *kvpb.ConfirmAck) {
	c := &t.confirm
	c.mu.Lock()
	r := c.cur
	c.mu.Unlock()
	if r == nil || r.id != ack.GetId() {
		return // a round that ended
	}
	r.answered(s, ack.GetGroups())
}

// answerConfirm answers a peer's Confirm: the groups this node hosts
// whose current term is at most the term named, and which are not
// refilling after starting empty (their term may have been lost with
// their disk; guards.go).
func (t *Transport) answerConfirm(msg *kvpb.Confirm) *kvpb.ConfirmAck {
	ack := &kvpb.ConfirmAck{Id: msg.GetId()}
	t.mu.Lock()
	src := t.mu.liveness
	t.mu.Unlock()
	if src == nil {
		return ack
	}
	groups, terms := msg.GetGroups(), msg.GetTerms()
	for i := range min(len(groups), len(terms)) {
		g := t.group(groups[i])
		if g == nil || g.gate.withhold() {
			continue
		}
		if term, ok := src.Term(groups[i]); ok && term <= terms[i] {
			ack.Groups = append(ack.Groups, groups[i])
		}
	}
	t.m.confirmsAnswered.Inc()
	return ack
}

// liveStream returns p's stream if it is open and has not failed, else nil.
func (p *peer) liveStream() *appendStream {
	p.mu.Lock()
	s := p.mu.stream
	p.mu.Unlock()
	if s == nil || s.ctx.Err() != nil {
		return nil
	}
	return s
}

// sendConfirm queues msg for the writer unless the queue is full or the
// stream has failed; it reports whether it queued it.
func (s *appendStream) sendConfirm(msg *kvpb.Confirm) bool {
	return s.offer(&appendFuture{confirm: msg, done: make(chan struct{})})
}
