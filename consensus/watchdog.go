package consensus

import (
	"errors"
	"sync"
	"time"

	"github.com/hashicorp/raft"
)

// Stuck leaders
//
// hashicorp/raft v1.8.0 can leave a node's raft instance of a group
// refusing every Apply, Barrier, configuration change and restore with
// ErrLeadershipTransferInProgress whenever it leads the group
// (hashicorp/raft#696, fix proposed in #708, unreleased): a leadership
// transfer that blocks handing work to its target's replication worker,
// which then exits (the leader stepped down), never ends, and the
// instance's "transfer in progress" flag stays set for its lifetime,
// across later terms. Heartbeats still flow, so the group never elects
// another leader: the partition takes no linearizable write or read until
// the instance is replaced. The watchdog replaces it:
//
//   - Every raft call on a group that raft may refuse so reports its
//     outcome (Group.raftOutcome) to the group's refusalStreak: a refusal
//     starts or extends the streak, an accepted call ends it, any other
//     failure (leadership lost, enqueue timeout, shutdown) leaves it.
//   - Each reconcile tick, for every group this node leads with a streak,
//     the Manager probes raft with a Barrier, so that the streak grows (or
//     ends) even when no client writes; a group it does not lead loses its
//     streak. A group that has refused nothing costs nothing.
//   - stuckWatch (deterministic) decides: a group whose streak is older
//     than Config.StuckLeaderTimeout, holds at least stuckMinRefusals
//     refusals and whose probe was refused just now is stuck, and is
//     restarted unless it was restarted less than its back-off ago (the
//     back-off starts at stuckBackoffMin timeouts and doubles up to
//     stuckBackoffMax while restarts follow each other).
//   - Manager.restartGroup shuts the instance down and starts a new one
//     over the same log, stable and snapshot stores, as Start does: it
//     comes back as a follower with everything it had stored, the group
//     elects a leader whose instance accepts writes.
//
// Why the timeout: a transfer raft runs legitimately refuses requests
// until it ends, within about two ElectionTimeouts plus one transport RPC
// it may wait for (the TimeoutNow call, or the target's replication worker
// finishing a slow append; Transport bounds each by its Timeout, 5s): 7s
// with the defaults. Config.StuckLeaderTimeout (10s) is longer; Validate
// insists on more than two ElectionTimeouts.

// Restart reasons, the values of ringkv_consensus_group_restarts_total's
// reason label.
const (
	// restartTransferStuck: the group refused every request with
	// ErrLeadershipTransferInProgress for longer than StuckLeaderTimeout.
	restartTransferStuck = "leadership_transfer_stuck"
)

// The watchdog's fixed parameters (see the comment above).
const (
	// stuckMinRefusals: a streak of fewer refusals is not judged, so one
	// stale refusal on an idle group restarts nothing.
	stuckMinRefusals = 3
	// stuckBackoffMin and stuckBackoffMax bound the wait, in
	// StuckLeaderTimeouts, between two restarts of the same group (1 min
	// and 32 min by default).
	stuckBackoffMin = 6
	stuckBackoffMax = 192
)

// refusalStreak records since when, and how many times, raft has refused
// requests to this node's instance of a group with
// ErrLeadershipTransferInProgress with nothing accepted in between. Safe
// for concurrent use.
type refusalStreak struct {
	mu struct {
		sync.Mutex
		since time.Time // the streak's first refusal; zero when none
		count int
	}
}

// note adds err, the outcome of a raft call made at now, to the streak.
func (s *refusalStreak) note(now time.Time, err error) {
	refused := errors.Is(err, raft.ErrLeadershipTransferInProgress)
	if err != nil && !refused {
		return // neither accepted nor refused by the flag
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if !refused {
		s.mu.since, s.mu.count = time.Time{}, 0
		return
	}
	if s.mu.count == 0 {
		s.mu.since = now
	}
	s.mu.count++
}

// get returns the streak: its first refusal and its length (0: none).
func (s *refusalStreak) get() (since time.Time, count int) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.mu.since, s.mu.count
}

// reset ends the streak.
func (s *refusalStreak) reset() { s.note(time.Time{}, nil) }

// raftOutcome notes err, the outcome of a raft call the group's instance
// may refuse while a leadership transfer runs, in the group's refusal
// streak, and returns err unchanged.
func (g *Group) raftOutcome(err error) error {
	g.refusals.note(time.Now(), err)
	return err
}

// stuckVerdict is what stuckWatch says of a group.
type stuckVerdict int

const (
	notStuck   stuckVerdict = iota
	restartNow              // stuck: restart it now
	heldOff                 // stuck, but restarted less than its back-off ago; said once per back-off
)

// stuckWatch decides which of the groups this node leads are stuck and
// whether to restart them, remembering each group's last restart for the
// back-off. Deterministic: the Manager's loop feeds it the time and each
// group's refusal streak. Not safe for concurrent use (the loop owns it).
type stuckWatch struct {
	after                  time.Duration // Config.StuckLeaderTimeout
	minRefusals            int
	backoffMin, backoffMax time.Duration
	restarts               map[uint32]*restartRecord
}

// restartRecord is a group's last restart.
type restartRecord struct {
	at      time.Time
	backoff time.Duration // no restart before at+backoff
	told    bool          // heldOff was said for this back-off
}

func newStuckWatch(after time.Duration) *stuckWatch {
	return &stuckWatch{
		after: after, minRefusals: stuckMinRefusals,
		backoffMin: stuckBackoffMin * after, backoffMax: stuckBackoffMax * after,
		restarts: map[uint32]*restartRecord{},
	}
}

// observe judges group id, which this node leads and whose raft instance
// refused it just now, with a streak of count refusals since since. On
// restartNow it records the restart: the next one waits for the back-off,
// which doubles (up to backoffMax) when that restart comes less than
// backoffMax after the back-off ended, and starts again at backoffMin
// otherwise.
func (w *stuckWatch) observe(now time.Time, id uint32, since time.Time, count int) stuckVerdict {
	if count < w.minRefusals || since.IsZero() || now.Sub(since) < w.after {
		return notStuck
	}
	last := w.restarts[id]
	if last != nil && now.Before(last.at.Add(last.backoff)) {
		if last.told {
			return notStuck
		}
		last.told = true
		return heldOff
	}
	backoff := w.backoffMin
	if last != nil && now.Sub(last.at.Add(last.backoff)) < w.backoffMax {
		backoff = min(2*last.backoff, w.backoffMax)
	}
	w.restarts[id] = &restartRecord{at: now, backoff: backoff}
	return restartNow
}

// nextRestart returns when group id may be restarted again (zero: now).
func (w *stuckWatch) nextRestart(id uint32) time.Time {
	if last := w.restarts[id]; last != nil {
		return last.at.Add(last.backoff)
	}
	return time.Time{}
}

// checkStuck runs the watchdog on g for one reconcile tick: it forgets the
// streak of a group this node does not lead, probes one with a streak,
// and restarts it when w says so. It reports whether it restarted g (the
// caller then leaves the old *Group alone).
func (mg *Manager) checkStuck(w *stuckWatch, g *Group) bool {
	if g.raft.State() != raft.Leader {
		g.refusals.reset()
		return false
	}
	if _, n := g.refusals.get(); n == 0 {
		return false
	}
	// The probe: a refusal is immediate; an accepted barrier commits like
	// any write and ends the streak.
	err := g.raftOutcome(g.raft.Barrier(mg.cfg.ElectionTimeout).Error())
	if !errors.Is(err, raft.ErrLeadershipTransferInProgress) {
		return false
	}
	since, n := g.refusals.get()
	now := time.Now()
	switch w.observe(now, g.id, since, n) {
	case restartNow:
		mg.log.Warn("restarting raft group whose leader refuses every write", "group_id", g.id,
			"stuck_for", now.Sub(since).Round(time.Millisecond), "refusals", n, "reason", restartTransferStuck)
		if err := mg.restartGroup(g, restartTransferStuck); err != nil {
			mg.log.Error("restart raft group", "group_id", g.id, "err", err)
		}
		return true
	case heldOff:
		mg.log.Warn("raft group's leader refuses every write; restarted recently, next restart held off", "group_id", g.id,
			"stuck_for", now.Sub(since).Round(time.Millisecond), "refusals", n, "restart_at", w.nextRestart(g.id))
	}
	return false
}

// restartGroup shuts g's raft instance down and starts a new one for the
// same group over the same log and stable stores and snapshot directory,
// as Start does (never bootstrapping: the group has state). The new
// instance starts as a follower; committed entries are in its log or
// snapshot and are applied again (merges: idempotent). Errors: the new
// instance's (ErrClosed once Close began); the old one is shut down
// either way.
func (mg *Manager) restartGroup(g *Group, reason string) error {
	if err := g.shutdown(); err != nil {
		return err
	}
	if err := mg.startGroup(g.id, false, g.logs, g.stable); err != nil {
		return err
	}
	mg.m.groupRestarts.WithLabelValues(reason).Inc()
	return nil
}
