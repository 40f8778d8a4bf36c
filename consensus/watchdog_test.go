package consensus

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/hashicorp/raft"
	"github.com/prometheus/client_golang/prometheus/testutil"
)

func TestRefusalStreak(t *testing.T) {
	t0 := time.Unix(1_000_000, 0)
	refused := fmt.Errorf("apply: %w", raft.ErrLeadershipTransferInProgress)
	var s refusalStreak
	for i, step := range []struct {
		at        time.Duration
		err       error
		wantSince time.Duration // -1: no streak
		wantCount int
	}{
		{0, raft.ErrLeadershipLost, -1, 0}, // neither accepted nor refused
		{1 * time.Second, refused, 1 * time.Second, 1},
		{2 * time.Second, raft.ErrEnqueueTimeout, 1 * time.Second, 1}, // leaves the streak
		{3 * time.Second, raft.ErrLeadershipTransferInProgress, 1 * time.Second, 2},
		{4 * time.Second, nil, -1, 0}, // accepted: the streak ends
		{5 * time.Second, refused, 5 * time.Second, 1},
	} {
		s.note(t0.Add(step.at), step.err)
		since, n := s.get()
		wantSince := time.Time{}
		if step.wantSince >= 0 {
			wantSince = t0.Add(step.wantSince)
		}
		if !since.Equal(wantSince) || n != step.wantCount {
			t.Fatalf("step %d: got streak since %v of %d, want since %v of %d", i, since, n, wantSince, step.wantCount)
		}
	}
	s.reset()
	if since, n := s.get(); !since.IsZero() || n != 0 {
		t.Fatalf("after reset: got since %v of %d, want none", since, n)
	}
}

func TestStuckWatch(t *testing.T) {
	const after = 10 * time.Second // back-off 1 min, doubling to 32 min
	t0 := time.Unix(1_000_000, 0)
	w := newStuckWatch(after)
	at := func(d time.Duration) time.Time { return t0.Add(d) }
	for i, step := range []struct {
		name        string
		now         time.Duration
		group       uint32
		streakStart time.Duration
		refusals    int
		want        stuckVerdict
		wantNext    time.Duration // group's next allowed restart after the step; -1: none
	}{
		{"too few refusals", 0, 1, -time.Hour, stuckMinRefusals - 1, notStuck, -1},
		{"too short", 0, 1, -after + time.Millisecond, 100, notStuck, -1},
		{"stuck", 0, 1, -after, stuckMinRefusals, restartNow, time.Minute},
		{"stuck again within the back-off: said once", 30 * time.Second, 1, 20 * time.Second, 5, heldOff, time.Minute},
		{"and not again", 40 * time.Second, 1, 20 * time.Second, 6, notStuck, time.Minute},
		{"another group is its own", 40 * time.Second, 2, 0, 6, restartNow, 40*time.Second + time.Minute},
		{"back-off over: restart, back-off doubles", time.Minute, 1, 20 * time.Second, 9, restartNow, 3 * time.Minute},
		{"held off before the doubled back-off ends", 3*time.Minute - time.Millisecond, 1, 0, 9, heldOff, 3 * time.Minute},
		{"doubles again", 3 * time.Minute, 1, 0, 9, restartNow, 7 * time.Minute},
		{"after a long quiet spell it starts over", 7*time.Minute + 32*time.Minute, 1, 7*time.Minute + 31*time.Minute, 9, restartNow, 7*time.Minute + 33*time.Minute},
	} {
		got := w.observe(at(step.now), step.group, at(step.streakStart), step.refusals)
		if got != step.want {
			t.Fatalf("step %d (%s): got verdict %d, want %d", i, step.name, got, step.want)
		}
		next, want := w.nextRestart(step.group), time.Time{}
		if step.wantNext >= 0 {
			want = at(step.wantNext)
		}
		if !next.Equal(want) {
			t.Fatalf("step %d (%s): got next restart %v, want %v", i, step.name, next.Sub(t0), want.Sub(t0))
		}
	}
	// The cap: restart after restart, the back-off stops at 32 minutes.
	w = newStuckWatch(after)
	now := t0
	var last time.Duration
	for range 10 {
		if got := w.observe(now, 1, now.Add(-after), stuckMinRefusals); got != restartNow {
			t.Fatalf("got verdict %d, want restartNow", got)
		}
		last = w.nextRestart(1).Sub(now)
		now = w.nextRestart(1)
	}
	if last != 32*time.Minute {
		t.Fatalf("got back-off %v after 10 restarts, want the 32m cap", last)
	}
}

func TestStuckLeaderTimeoutValidate(t *testing.T) {
	cfg := testConfig(t, "n1")
	cfg.StuckLeaderTimeout = 2 * cfg.ElectionTimeout
	if err := cfg.Validate(); err == nil || !strings.Contains(err.Error(), "StuckLeaderTimeout") {
		t.Fatalf("got %v, want StuckLeaderTimeout refused at 2 election timeouts", err)
	}
	cfg.StuckLeaderTimeout = 0
	if err := cfg.Validate(); err == nil || !strings.Contains(err.Error(), "StuckLeaderTimeout") {
		t.Fatalf("got %v, want StuckLeaderTimeout refused at 0", err)
	}
}

// stallLink is a fault seam on one node's transport of one group. Armed
// for a peer, it holds the first append carrying entries that the node
// sends to that peer until released: the leader's replication worker for
// that follower sits in one slow RPC, as behind a follower whose disk
// stalls. Released, the append goes through as sent. While cut, every
// other RPC the node sends fails, as if its links were down (RPCs to it
// still arrive).
type stallLink struct {
	mu struct {
		sync.Mutex
		peer     raft.ServerAddress
		release  chan struct{} // closed by release
		held     chan struct{} // closed when an append is held
		holding  bool
		released bool
		cut      bool
	}
}

// arm holds appends with entries to peer from now on, until release. The
// channel it returns is closed once one is held.
func (l *stallLink) arm(peer raft.ServerAddress) <-chan struct{} {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.mu.peer, l.mu.release, l.mu.held = peer, make(chan struct{}), make(chan struct{})
	return l.mu.held
}

// hold returns the channel a call to target must wait on, nil if none.
func (l *stallLink) hold(target raft.ServerAddress) <-chan struct{} {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.mu.release == nil || l.mu.released || target != l.mu.peer {
		return nil
	}
	if !l.mu.holding {
		l.mu.holding = true
		close(l.mu.held)
	}
	return l.mu.release
}

// release lets held appends through and holds no more. Idempotent.
func (l *stallLink) release() {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.mu.release != nil && !l.mu.released {
		l.mu.released = true
		close(l.mu.release)
	}
}

func (l *stallLink) setCut(on bool) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.mu.cut = on
}

var errLinkCut = errors.New("test: link cut")

func (l *stallLink) sendErr() error {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.mu.cut {
		return errLinkCut
	}
	return nil
}

// faultTransport is a group transport behind a stallLink. It does not
// pipeline, so raft's replication workers send plain AppendEntries calls,
// one at a time, as they do after a pipeline fails: the state in which one
// slow follower RPC holds a worker.
type faultTransport struct {
	raft.Transport
	link *stallLink
}

func (t faultTransport) AppendEntriesPipeline(raft.ServerID, raft.ServerAddress) (raft.AppendPipeline, error) {
	return nil, raft.ErrPipelineReplicationNotSupported
}

func (t faultTransport) AppendEntries(id raft.ServerID, target raft.ServerAddress, args *raft.AppendEntriesRequest, resp *raft.AppendEntriesResponse) error {
	if len(args.Entries) > 0 {
		if release := t.link.hold(target); release != nil {
			<-release
			return t.Transport.AppendEntries(id, target, args, resp) //nolint:wrapcheck // a test seam passes errors through
		}
	}
	if err := t.link.sendErr(); err != nil {
		return err
	}
	return t.Transport.AppendEntries(id, target, args, resp) //nolint:wrapcheck // a test seam passes errors through
}

func (t faultTransport) RequestVote(id raft.ServerID, target raft.ServerAddress, args *raft.RequestVoteRequest, resp *raft.RequestVoteResponse) error {
	if err := t.link.sendErr(); err != nil {
		return err
	}
	return t.Transport.RequestVote(id, target, args, resp) //nolint:wrapcheck // a test seam passes errors through
}

func (t faultTransport) RequestPreVote(id raft.ServerID, target raft.ServerAddress, args *raft.RequestPreVoteRequest, resp *raft.RequestPreVoteResponse) error {
	if err := t.link.sendErr(); err != nil {
		return err
	}
	pv, ok := t.Transport.(raft.WithPreVote)
	if !ok {
		return errors.New("test: wrapped transport does not pre-vote")
	}
	return pv.RequestPreVote(id, target, args, resp) //nolint:wrapcheck // a test seam passes errors through
}

func (t faultTransport) TimeoutNow(id raft.ServerID, target raft.ServerAddress, args *raft.TimeoutNowRequest, resp *raft.TimeoutNowResponse) error {
	if err := t.link.sendErr(); err != nil {
		return err
	}
	return t.Transport.TimeoutNow(id, target, args, resp) //nolint:wrapcheck // a test seam passes errors through
}

// TestWatchdogHealsGroupStuckByTransferBug provokes hashicorp/raft#696 in
// a group of three Managers and checks that the watchdog heals it:
//
//  1. The group's leader L (the partition's primary, where reconcile
//     keeps it) commits writes. Then its replication worker for follower
//     F sits in a slow append (stallLink); G keeps committing.
//  2. Two leadership transfers to F (the path drains and removals take).
//     The first times out leaving its hand-off to F's worker unconsumed
//     in raft's one-slot channel; the second blocks sending its own: raft
//     refuses every write while it "runs".
//  3. L's links go down; F and G elect a leader of a later term; L steps
//     down. The slow append completes, F answers it with the newer term,
//     and the worker exits without taking the hand-off: the second
//     transfer now waits forever, and L's instance keeps its flag.
//  4. L's links come back. The new leader's reconcile hands leadership
//     back to the primary, L, whose instance refuses every write with
//     ErrLeadershipTransferInProgress while heartbeating: no node takes a
//     write.
//  5. The watchdog restarts L's group: a leader takes writes again and
//     every committed write is there.
func TestWatchdogHealsGroupStuckByTransferBug(t *testing.T) {
	var linksMu sync.Mutex
	links := map[string]*stallLink{}
	linkOf := func(node string, group uint32) *stallLink {
		linksMu.Lock()
		defer linksMu.Unlock()
		k := fmt.Sprintf("%s/%d", node, group)
		if links[k] == nil {
			links[k] = &stallLink{}
		}
		return links[k]
	}
	f := newFabric()
	f.wrap = func(node string, group uint32, tr raft.Transport) raft.Transport {
		return faultTransport{Transport: tr, link: linkOf(node, group)}
	}
	// The scenario needs its leader to keep leading between steps: timers
	// long enough that a loaded machine's pauses start no election.
	const election = time.Second
	warnings := &warnLog{}
	f.tune = func(cfg *Config) {
		cfg.HeartbeatTimeout, cfg.ElectionTimeout, cfg.LeaderLeaseTimeout = election, election, election/2
		cfg.QuietHeartbeatTimeout = 0 // the transfers' timing as designed
		cfg.StuckLeaderTimeout = 3 * election
		cfg.Logger = slog.New(warnings)
	}
	c, mgrs := newClusterOn(t, f, 2)
	ctx, cancel := context.WithTimeout(t.Context(), 90*time.Second)
	defer cancel()
	r := c.ring.Ring()
	p := r.PartitionOf([]byte("stuck"))
	replicas := r.Replicas(p)
	lead, follower := replicas[0], replicas[1]
	link := linkOf(lead, p)
	t.Cleanup(link.release) // before the Managers close: raft waits for its workers

	var keys []string
	for i := 0; len(keys) < 12; i++ {
		if k := fmt.Sprintf("stuck-%d", i); r.PartitionOf([]byte(k)) == p {
			keys = append(keys, k)
		}
	}
	put := func(g *Group, k string) error {
		pctx, cancel := context.WithTimeout(ctx, 2*time.Second)
		defer cancel()
		return g.Put(pctx, []byte(k), []byte("v-"+k), false, time.Time{})
	}
	restarts := func(node string) float64 {
		return testutil.ToFloat64(mgrs[node].m.groupRestarts.WithLabelValues(restartTransferStuck))
	}

	// 1.
	waitFor(t, 20*time.Second, "the primary to lead", func() error {
		if g := leaderOf(mgrs, p); g == nil || g.nodeID != lead {
			return errors.New("not yet")
		}
		return nil
	})
	gL, _ := mgrs[lead].Group(p)
	for _, k := range keys[:10] {
		if err := put(gL, k); err != nil {
			t.Fatalf("write %s: %v", k, err)
		}
	}
	held := link.arm(raft.ServerAddress(follower))
	if err := put(gL, keys[10]); err != nil {
		t.Fatalf("write while %s is slow: %v", follower, err)
	}
	select {
	case <-held:
	case <-ctx.Done():
		t.Fatal("no append to the slow follower held")
	}

	// 2. Transfer until raft keeps refusing writes for longer than a
	// transfer lasts (one that just timed out refuses for a moment more,
	// until its flag clears).
	refusing := func() error {
		for range 4 {
			err := gL.raft.Barrier(time.Second).Error()
			if err == nil {
				return errors.New("raft accepted a barrier")
			}
			if !errors.Is(err, raft.ErrLeadershipTransferInProgress) {
				return fmt.Errorf("barrier: %w", err)
			}
			rt := time.NewTimer(election / 2)
			<-rt.C
		}
		return nil
	}
	for i := 1; ; i++ {
		if i > 4 {
			t.Fatal("transfers to the slow follower did not leave raft refusing writes")
		}
		if err := gL.transferLeadership(raft.ServerID(follower)); err == nil {
			t.Fatalf("transfer %d to a follower that cannot catch up succeeded", i)
		}
		if gL.raft.State() != raft.Leader {
			t.Fatalf("%s lost leadership during transfer %d", lead, i)
		}
		err := refusing()
		if err == nil {
			t.Logf("raft refuses writes after %d transfers", i)
			break
		}
		t.Logf("after transfer %d: %v", i, err)
	}

	// 3.
	term := gL.raft.CurrentTerm()
	link.setCut(true)
	waitFor(t, 20*time.Second, "F and G to elect a leader in a later term", func() error {
		if gL.raft.State() == raft.Leader {
			return errors.New("L still leads")
		}
		gF, _ := mgrs[follower].Group(p)
		if gF.raft.CurrentTerm() <= term {
			return fmt.Errorf("%s still in term %d", follower, gF.raft.CurrentTerm())
		}
		if g := leaderOf(mgrs, p); g == nil {
			return errors.New("no leader")
		}
		return nil
	})
	link.release()
	link.setCut(false)

	// 4.
	waitFor(t, 30*time.Second, "the primary to lead again", func() error {
		if gL.raft.State() != raft.Leader {
			return errors.New("not yet")
		}
		return nil
	})
	if err := gL.raft.Barrier(time.Second).Error(); !errors.Is(err, raft.ErrLeadershipTransferInProgress) {
		t.Fatalf("re-elected %s's raft answers a barrier with %v, want %v: the bug was not provoked", lead, err, raft.ErrLeadershipTransferInProgress)
	}
	stuckAt := time.Now()
	err := put(gL, keys[11])
	var nle *NotLeaderError
	if !errors.As(err, &nle) || nle.Leader != lead {
		t.Fatalf("write on the stuck leader: got %v, want not-the-leader naming %s itself", err, lead)
	}
	if n := restarts(lead); n != 0 {
		t.Fatalf("got %v restarts before the write failed, want 0", n)
	}
	for id, m := range mgrs {
		if id == lead {
			continue
		}
		g, _ := m.Group(p)
		if err := put(g, keys[11]); !errors.As(err, &nle) || (nle.Leader != lead && nle.Leader != "") {
			t.Fatalf("write on %s: got %v, want not-the-leader naming %s (or none yet)", id, err, lead)
		}
	}

	// 5.
	var healer string
	waitFor(t, 30*time.Second, "a leader that takes writes", func() error {
		for id, m := range mgrs {
			g, ok := m.Group(p)
			if !ok || g.raft.State() != raft.Leader {
				continue
			}
			if err := put(g, keys[11]); err != nil {
				return fmt.Errorf("write on %s: %w", id, err)
			}
			healer = id
			return nil
		}
		return errors.New("no leader")
	})
	t.Logf("%s took a write %v after the stuck leader refused one", healer, time.Since(stuckAt).Round(time.Millisecond))
	if cur, _ := mgrs[lead].Group(p); cur == gL || gL.raft.State() != raft.Shutdown {
		t.Fatalf("%s's group was not restarted (state of the old instance: %v)", lead, gL.raft.State())
	}
	// Every committed write is there, on the leader and on every replica.
	waitFor(t, 20*time.Second, "every write read back through a leader", func() error {
		for _, m := range mgrs {
			g, ok := m.Group(p)
			if !ok || g.raft.State() != raft.Leader {
				continue
			}
			for _, k := range keys {
				rec, err := g.Get(ctx, []byte(k))
				if err != nil {
					return fmt.Errorf("get %s: %w", k, err)
				}
				if string(rec.Value) != "v-"+k {
					t.Fatalf("%s: got %q, want %q", k, rec.Value, "v-"+k)
				}
			}
			return nil
		}
		return errors.New("no leader")
	})
	waitFor(t, 20*time.Second, "every replica to hold every write", func() error {
		for id, s := range c.stores {
			for _, k := range keys {
				if rec, err := s.Get(p, []byte(k)); err != nil || string(rec.Value) != "v-"+k {
					return fmt.Errorf("%s: %s: %q %w", id, k, rec.Value, err)
				}
			}
		}
		return nil
	})
	// One restart, on the stuck node only, and none after: the group
	// keeps taking writes.
	for range 10 {
		waitFor(t, 20*time.Second, "a write through the leader", func() error {
			g := leaderOf(mgrs, p)
			if g == nil {
				return errors.New("no leader")
			}
			return put(g, keys[0])
		})
	}
	for id := range mgrs {
		want := 0.0
		if id == lead {
			want = 1
		}
		if got := restarts(id); got != want {
			t.Fatalf("%s: got %v group restarts, want %v", id, got, want)
		}
	}
	// One warning, naming the group and how long it was stuck.
	restartsLogged := warnings.find("restarting raft group whose leader refuses every write")
	if len(restartsLogged) != 1 {
		t.Fatalf("got %d restart warnings, want 1", len(restartsLogged))
	}
	attrs := map[string]slog.Value{}
	restartsLogged[0].Attrs(func(a slog.Attr) bool { attrs[a.Key] = a.Value; return true })
	if got := attrs["group_id"].Uint64(); got != uint64(p) {
		t.Errorf("warning names group %d, want %d", got, p)
	}
	if got := attrs["stuck_for"].Duration(); got < 3*election {
		t.Errorf("warning says stuck for %v, want at least StuckLeaderTimeout %v", got, 3*election)
	}
}

// warnLog keeps the records at Warn and above.
type warnLog struct {
	mu   sync.Mutex
	recs []slog.Record
}

func (h *warnLog) Enabled(_ context.Context, l slog.Level) bool { return l >= slog.LevelWarn }

func (h *warnLog) Handle(_ context.Context, r slog.Record) error {
	h.mu.Lock()
	defer h.mu.Unlock()
	h.recs = append(h.recs, r.Clone())
	return nil
}

func (h *warnLog) WithAttrs([]slog.Attr) slog.Handler { return h }
func (h *warnLog) WithGroup(string) slog.Handler      { return h }

func (h *warnLog) find(msg string) []slog.Record {
	h.mu.Lock()
	defer h.mu.Unlock()
	var out []slog.Record
	for _, r := range h.recs {
		if r.Message == msg {
			out = append(out, r)
		}
	}
	return out
}
