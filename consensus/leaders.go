package consensus

import (
	"slices"
	"time"
)

// leaderWatch follows, tick by tick, which of a node's groups know a
// leader, and says what is worth a log line: every group having one for
// the first time (ready); a group without one for longer than stuckAfter
// (raft's own messages about elections are at Debug, so a group that
// cannot elect is visible only through this), repeated every repeat while
// some remain so; none being so any more (recovered).
// Deterministic: the Manager's loop feeds it the time and the groups.
type leaderWatch struct {
	stuckAfter, repeat time.Duration

	since    map[uint32]time.Time // groups without a known leader, since when
	ready    bool                 // every group had a leader once
	warnedAt time.Time            // last stuck report; zero when none is outstanding
}

// leaderReport is what one observation found worth saying.
type leaderReport struct {
	ready bool // every group has a leader, for the first time
	// leaderless, when set, says to warn: some group has had no leader
	// for longer than stuckAfter; these are all the groups without one
	// now, and longest is the longest any has been so.
	leaderless []uint32
	longest    time.Duration
	recovered  bool // no group is without a leader for longer than stuckAfter any more
}

func newLeaderWatch(stuckAfter, repeat time.Duration) *leaderWatch {
	return &leaderWatch{stuckAfter: stuckAfter, repeat: repeat, since: map[uint32]time.Time{}}
}

// observe takes, for every group the node should host, whether it knows a
// leader now. Groups missing from led are forgotten.
func (w *leaderWatch) observe(now time.Time, led map[uint32]bool) leaderReport {
	for g := range w.since {
		if _, ok := led[g]; !ok {
			delete(w.since, g)
		}
	}
	var rep leaderReport
	allLed := len(led) > 0
	var stuck, leaderless []uint32
	var longest time.Duration
	for g, ok := range led {
		if ok {
			delete(w.since, g)
			continue
		}
		allLed = false
		leaderless = append(leaderless, g)
		t0, seen := w.since[g]
		if !seen {
			w.since[g] = now
			continue
		}
		if d := now.Sub(t0); d > w.stuckAfter {
			stuck = append(stuck, g)
			longest = max(longest, d)
		}
	}
	if allLed && !w.ready {
		w.ready = true
		rep.ready = true
	}
	switch {
	case len(stuck) > 0:
		if w.warnedAt.IsZero() || now.Sub(w.warnedAt) >= w.repeat {
			slices.Sort(leaderless)
			rep.leaderless, rep.longest = leaderless, longest
			w.warnedAt = now
		}
	case !w.warnedAt.IsZero():
		rep.recovered = true
		w.warnedAt = time.Time{}
	}
	return rep
}
