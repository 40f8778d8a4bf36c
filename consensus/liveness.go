package consensus

// Node liveness: one small message per peer, about every LivenessInterval,
// stands for the periodic heartbeats of every group the two nodes share.

import (
	"context"
	"time"

	"github.com/hashicorp/raft"

	"github.com/ringkv/ringkv/proto/kvpb"
)

// GroupTerm is a group and a raft term.
type GroupTerm struct {
	Group uint32
	Term  uint64
	// Commit is, for a group in LivenessReport.Led, its commit index read
	// while the node led it at Term (raft.CommitIndex); zero elsewhere.
	Commit uint64
	// CommitTerm is the term of the leader's log entry at Commit, when
	// the transport reports it (risenCommits).
	CommitTerm uint64
}

// LivenessReport is what a node tells its peers in one liveness round:
// the groups it leads, and per peer the groups in which it follows that
// peer.
type LivenessReport struct {
	// Led lists the groups this node leads, at their terms.
	Led []GroupTerm
	// Followed lists, by leader node id, the groups this node follows at
	// their terms (those whose leader it knows).
	Followed map[string][]GroupTerm
}

// LivenessSource tells the Transport the state of the node's groups; the
// Manager implements it. Both methods are called from the transport's
// goroutines and must be safe for concurrent use and cheap (no raft
// round trip).
type LivenessSource interface {
	// LivenessReport returns the state of every group on this node.
	LivenessReport() LivenessReport
	// Following returns the leader this node's group knows and its current
	// term; ok is false when the node hosts no such group or it is not a
	// follower.
	Following(group uint32) (leader string, term uint64, ok bool)
	// Indexes returns the commit index and the last log index of this
	// node's group; ok is false when the node hosts no such group.
	Indexes(group uint32) (commit, last uint64, ok bool)
	// EntryTerm returns the term of the entry at index in this node's log
	// of group; ok is false when the node hosts no such group or its log
	// no longer (or does not yet) hold that entry.
	EntryTerm(group uint32, index uint64) (term uint64, ok bool)
	// Term returns the current raft term of this node's group; ok is
	// false when the node hosts no such group.
	Term(group uint32) (term uint64, ok bool)
}

// commitRounds is how many liveness rounds a leader repeats a group's
// commit index after it changed, so that a follower whose copy of the entry
// arrived late, or whose raft was busy, still learns it; raft's own idle
// append (CommitTimeout) is the backstop.
const commitRounds = 3

// commitMark is what the liveness loop last saw of a group it leads.
type commitMark struct {
	term, commit uint64
	// entryTerm is the term of the leader's entry at commit.
	entryTerm uint64
	// changed is the liveness round in which commit (or term) last
	// changed; led the last round in which the node led the group.
	changed, led uint64
}

// peerLiveness is the last liveness message from one peer node, as
// received; replaced whole by the next, never changed.
type peerLiveness struct {
	at time.Time
	// followed: the groups in which the peer follows this node, by group,
	// at the term the peer named.
	followed map[uint32]uint64
}

// SetLiveness makes t exchange liveness messages with its peers, every
// LivenessInterval, reporting src's groups: from then on a periodic
// heartbeat of a group this node leads is answered by t itself while the
// follower's node is live and follows this node in that group at the
// heartbeat's term, and the heartbeats a live leader's message stands for
// are handed to the local followers (see the Transport doc). Call it once;
// later calls are ignored, as are calls when LivenessInterval is negative.
// The sending goroutine stops with Close.
func (t *Transport) SetLiveness(src LivenessSource) {
	if t.cfg.LivenessInterval < 0 || src == nil {
		return
	}
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.mu.closed || t.mu.liveness != nil {
		return
	}
	t.mu.liveness = src
	t.wg.Add(1)
	go t.livenessLoop(src)
}

// livenessLoop sends a liveness message to every peer t has talked to,
// every LivenessInterval, until t closes.
func (t *Transport) livenessLoop(src LivenessSource) {
	defer t.wg.Done()
	tick := time.NewTicker(t.cfg.LivenessInterval)
	defer tick.Stop()
	marks := make(map[uint32]commitMark)
	for round := uint64(1); ; round++ {
		select {
		case <-t.lifetime.Done():
			return
		case <-tick.C:
		}
		rep := src.LivenessReport()
		t.sendLiveness(rep, risenCommits(marks, rep.Led, round, src.EntryTerm))
	}
}

// risenCommits returns the led groups whose commit index changed in the
// last commitRounds rounds (or that are newly led), with that index and
// the term of the leader's entry there (from entryTerm, read once per
// change; a group whose entry is not found is left out), and updates
// marks (one per led group; others are dropped). A follower holding the
// entry at that index and term holds the leader's log up to it (raft's
// log matching), so it may commit that far: the index is committed on the
// leader.
func risenCommits(marks map[uint32]commitMark, led []GroupTerm, round uint64, entryTerm func(group uint32, index uint64) (uint64, bool)) []GroupTerm {
	var risen []GroupTerm
	for _, gt := range led {
		m, ok := marks[gt.Group]
		if !ok || m.term != gt.Term || m.commit != gt.Commit {
			m = commitMark{term: gt.Term, commit: gt.Commit, changed: round}
			if gt.Commit > 0 {
				m.entryTerm, _ = entryTerm(gt.Group, gt.Commit)
			}
		}
		m.led = round
		marks[gt.Group] = m
		if m.entryTerm != 0 && round-m.changed < commitRounds {
			risen = append(risen, GroupTerm{Group: gt.Group, Term: gt.Term, Commit: m.commit, CommitTerm: m.entryTerm})
		}
	}
	for g, m := range marks {
		if m.led != round {
			delete(marks, g)
		}
	}
	return risen
}

// sendLiveness sends rep to each known peer and to every leader rep
// follows, over its stream (opened if needed), with the commit indexes of
// risen (led groups, see risenCommits) but those of groups that sent
// entries within the last LivenessInterval (their appends carry it). A
// full stream queue drops the message: the next one follows.
func (t *Transport) sendLiveness(rep LivenessReport, risen []GroupTerm) {
	// Every node this one follows must hear from it, even one it never
	// sent anything to (a node leading no group dials nobody): its
	// leader elides heartbeats only on the follower's word.
	for leader := range rep.Followed {
		_, _ = t.peerFor(raft.ServerAddress(leader)) // an unknown node: nothing to send to
	}
	t.mu.Lock()
	peers := make([]*peer, 0, len(t.mu.peers))
	for _, p := range t.mu.peers {
		peers = append(peers, p)
	}
	t.mu.Unlock()
	if len(rep.Led) == 0 && len(rep.Followed) == 0 {
		return // nothing to stand for
	}
	led, ledTerms := splitGroupTerms(rep.Led)
	var commitGroups []uint32
	var commits, commitTerms []uint64
	now := time.Now().UnixNano()
	for _, gt := range risen {
		if g := t.group(gt.Group); g != nil && now-g.sentEntries.Load() < int64(t.cfg.LivenessInterval) {
			continue // its appends carry the commit index
		}
		commitGroups = append(commitGroups, gt.Group)
		commits = append(commits, gt.Commit)
		commitTerms = append(commitTerms, gt.CommitTerm)
	}
	for _, p := range peers {
		s, err := t.stream(p)
		if err != nil {
			continue // unreachable: its groups time out as they would
		}
		msg := &kvpb.Liveness{Node: t.cfg.NodeID, LedGroups: led, LedTerms: ledTerms, CommitGroups: commitGroups, CommitIndexes: commits, CommitTerms: commitTerms}
		msg.FollowedGroups, msg.FollowedTerms = splitGroupTerms(rep.Followed[p.node])
		if s.sendLiveness(msg) {
			t.m.livenessSent.Inc()
		}
	}
}

func splitGroupTerms(gts []GroupTerm) ([]uint32, []uint64) {
	if len(gts) == 0 {
		return nil, nil
	}
	groups := make([]uint32, len(gts))
	terms := make([]uint64, len(gts))
	for i, gt := range gts {
		groups[i], terms[i] = gt.Group, gt.Term
	}
	return groups, terms
}

// noteLiveness records a peer's liveness message and hands the local
// followers of the groups it leads a heartbeat each: the one the peer's
// raft would have sent. A group gets it only if it is a follower that
// already knows the sender as its leader at that term (learned from a
// real AppendEntries), so a liveness message never makes a leader known.
func (t *Transport) noteLiveness(msg *kvpb.Liveness, now time.Time) {
	node := msg.GetNode()
	if node == "" || node == t.cfg.NodeID {
		return
	}
	fg, ft := msg.GetFollowedGroups(), msg.GetFollowedTerms()
	view := &peerLiveness{at: now, followed: make(map[uint32]uint64, len(fg))}
	for i := range min(len(fg), len(ft)) {
		view.followed[fg[i]] = ft[i]
	}
	t.mu.Lock()
	t.mu.live[node] = view
	src := t.mu.liveness
	t.mu.Unlock()
	if src == nil {
		return
	}
	lg, lt := msg.GetLedGroups(), msg.GetLedTerms()
	led := make(map[uint32]uint64, len(lg))
	for i := range min(len(lg), len(lt)) {
		led[lg[i]] = lt[i]
		leader, term, ok := src.Following(lg[i])
		if !ok || leader != node || term != lt[i] {
			continue
		}
		g := t.group(lg[i])
		if g == nil {
			continue
		}
		fn := g.heartbeat.Load()
		if fn == nil {
			continue
		}
		resp := make(chan raft.RPCResponse, 1) // raft answers once; nobody reads it
		(*fn)(raft.RPC{Command: &raft.AppendEntriesRequest{
			RPCHeader: raft.RPCHeader{ProtocolVersion: raft.ProtocolVersionMax, ID: []byte(node), Addr: []byte(node)},
			Term:      term,
			Leader:    []byte(node),
		}, RespChan: resp})
		t.m.heartbeatsInjected.Inc()
	}
	t.noteCommits(src, node, msg, led)
}

// noteCommits hands each local follower of a group whose commit index the
// peer node reports (Liveness.commit_groups) the empty AppendEntries its
// leader's raft would send on its idle tick: previous entry the reported
// index and its term in the leader's log, commit index the reported
// index, at the leader's term. Raft checks it as it checks any append:
// only a follower holding that entry at that term takes the commit index.
// A group gets it only if it follows node at the term led names for the
// group, has not committed that far, and holds an entry at that index;
// it goes through raft's main loop (not the heartbeat fast path, which
// must not apply entries), on a goroutine of its own so that this
// stream's reader never waits for a busy raft.
func (t *Transport) noteCommits(src LivenessSource, node string, msg *kvpb.Liveness, led map[uint32]uint64) {
	cg, ci, ct := msg.GetCommitGroups(), msg.GetCommitIndexes(), msg.GetCommitTerms()
	for i := range min(len(cg), len(ci), len(ct)) {
		group, index, entryTerm := cg[i], ci[i], ct[i]
		term, ok := led[group]
		if !ok || index == 0 || entryTerm == 0 || entryTerm > term {
			continue
		}
		leader, ft, ok := src.Following(group)
		if !ok || leader != node || ft != term {
			continue
		}
		if commit, last, ok := src.Indexes(group); !ok || commit >= index || last < index {
			continue
		}
		g := t.group(group)
		if g == nil {
			continue
		}
		req := &raft.AppendEntriesRequest{
			RPCHeader:         raft.RPCHeader{ProtocolVersion: raft.ProtocolVersionMax, ID: []byte(node), Addr: []byte(node)},
			Term:              term,
			Leader:            []byte(node),
			PrevLogEntry:      index,
			PrevLogTerm:       entryTerm,
			LeaderCommitIndex: index,
		}
		t.mu.Lock()
		if t.mu.closed {
			t.mu.Unlock()
			return
		}
		t.wg.Add(1)
		t.mu.Unlock()
		t.m.commitsInjected.Inc()
		go func() {
			defer t.wg.Done()
			ctx, cancel := context.WithTimeout(t.lifetime, t.cfg.Timeout)
			defer cancel()
			_, _ = g.serve(ctx, raft.RPC{Command: req}, false) // the answer is the leader's to have, and it has it
		}()
	}
}

// standsFor reports whether the liveness of target's node stands for a
// periodic heartbeat of group at term: target's last liveness message is
// younger than LivenessTimeout and says it follows this node in group at
// term.
func (t *Transport) standsFor(target raft.ServerAddress, group uint32, term uint64, now time.Time) bool {
	t.mu.Lock()
	view := t.mu.live[string(target)]
	t.mu.Unlock()
	if view == nil || now.Sub(view.at) >= t.cfg.LivenessTimeout {
		return false
	}
	ft, ok := view.followed[group]
	return ok && ft == term
}

// elideHeartbeat answers a periodic heartbeat of g to target in place of
// its follower, if target's liveness stands for it: the answer a follower
// at args.Term gives. It never answers while g is confirming its
// leadership (BeginUrgent): those heartbeats travel, so that a read's
// confirmation comes from the followers after the read began.
func (t *Transport) elideHeartbeat(g *groupTransport, target raft.ServerAddress, args *raft.AppendEntriesRequest, resp *raft.AppendEntriesResponse) bool {
	if g.urgent.Load() > 0 || !t.standsFor(target, g.group, args.Term, time.Now()) || g.urgent.Load() > 0 {
		return false
	}
	*resp = raft.AppendEntriesResponse{
		RPCHeader: raft.RPCHeader{ProtocolVersion: raft.ProtocolVersionMax, ID: []byte(target), Addr: []byte(target)},
		Term:      args.Term,
		Success:   true,
	}
	t.m.heartbeatsElided.Inc()
	return true
}

// livenessTransport is a Transports that can exchange liveness messages
// (Transport can): the Manager hands it itself as the source at Start.
type livenessTransport interface{ SetLiveness(LivenessSource) }

var _ LivenessSource = (*Manager)(nil)

// LivenessReport implements LivenessSource: the groups this node leads
// and, by leader, those it follows, each with its current term. A group
// whose state changed while it was read (term before and after differ) is
// left out of this round.
func (mg *Manager) LivenessReport() LivenessReport {
	mg.mu.Lock()
	groups := make([]*Group, 0, len(mg.mu.groups))
	for _, g := range mg.mu.groups {
		groups = append(groups, g)
	}
	mg.mu.Unlock()
	rep := LivenessReport{Followed: make(map[string][]GroupTerm)}
	for _, g := range groups {
		term := g.raft.CurrentTerm()
		state := g.raft.State()
		var leader raft.ServerID
		var commit uint64
		switch state {
		case raft.Follower:
			_, leader = g.raft.LeaderWithID()
		case raft.Leader:
			commit = g.raft.CommitIndex()
		}
		if g.raft.CurrentTerm() != term {
			continue
		}
		switch {
		case state == raft.Leader:
			rep.Led = append(rep.Led, GroupTerm{Group: g.id, Term: term, Commit: commit})
		case state == raft.Follower && leader != "":
			rep.Followed[string(leader)] = append(rep.Followed[string(leader)], GroupTerm{Group: g.id, Term: term})
		}
	}
	return rep
}

// Following implements LivenessSource: the leader and term of this
// node's group, if it hosts group and follows in it.
func (mg *Manager) Following(group uint32) (leader string, term uint64, ok bool) {
	g, found := mg.Group(group)
	if !found {
		return "", 0, false
	}
	term = g.raft.CurrentTerm()
	if g.raft.State() != raft.Follower {
		return "", 0, false
	}
	_, id := g.raft.LeaderWithID()
	if id == "" || g.raft.CurrentTerm() != term {
		return "", 0, false
	}
	return string(id), term, true
}

// Indexes implements LivenessSource: the commit index and the last log
// index of this node's group.
func (mg *Manager) Indexes(group uint32) (commit, last uint64, ok bool) {
	g, found := mg.Group(group)
	if !found {
		return 0, 0, false
	}
	return g.raft.CommitIndex(), g.raft.LastIndex(), true
}

// Term implements LivenessSource: the current term of this node's group.
func (mg *Manager) Term(group uint32) (uint64, bool) {
	g, found := mg.Group(group)
	if !found {
		return 0, false
	}
	return g.raft.CurrentTerm(), true
}

// EntryTerm implements LivenessSource: the term of the entry at index in
// this node's log of group (the newest entries from raft's log cache).
func (mg *Manager) EntryTerm(group uint32, index uint64) (uint64, bool) {
	g, found := mg.Group(group)
	if !found {
		return 0, false
	}
	var l raft.Log
	if err := g.cachedLogs.GetLog(index, &l); err != nil {
		return 0, false
	}
	return l.Term, true
}

// groupTimeouts are a group's normal raft timeouts.
type groupTimeouts struct{ heartbeat, election time.Duration }

// quiet gives g the quiet leader's timeouts while this node leads it and
// the normal ones otherwise (Config.QuietHeartbeatTimeout). Raft applies
// a change at once: a shorter HeartbeatTimeout wakes a follower's timer.
func (mg *Manager) quiet(g *Group) {
	if g.timeouts == nil {
		return
	}
	hb, el := g.timeouts.heartbeat, g.timeouts.election
	if g.raft.State() == raft.Leader {
		hb, el = mg.cfg.QuietHeartbeatTimeout, max(el, mg.cfg.QuietHeartbeatTimeout)
	}
	g.setTimeouts(hb, el)
}

// setTimeouts sets g's raft HeartbeatTimeout and ElectionTimeout, if they
// differ.
func (g *Group) setTimeouts(heartbeat, election time.Duration) {
	rc := g.raft.ReloadableConfig()
	if rc.HeartbeatTimeout == heartbeat && rc.ElectionTimeout == election {
		return
	}
	rc.HeartbeatTimeout, rc.ElectionTimeout = heartbeat, election
	if err := g.raft.ReloadConfig(rc); err != nil {
		g.log.Warn("set raft timeouts", "group_id", g.id, "heartbeat_timeout", heartbeat, "election_timeout", election, "err", err)
	}
}
