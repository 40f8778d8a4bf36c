package client

import (
	"math/rand/v2"
	"sync"
	"time"
)

// Client-side adaptive throttling
//
// A node at its admission bound refuses a call at once (ErrOverloaded),
// but reading, refusing and answering still costs it CPU: under an open
// loop of ten times its capacity, refusals took most of a small node's
// CPU and starved its raft heartbeats (docs/BENCHMARKS.md, "Overload at
// 10x"). So, as the Google SRE book's "Handling Overload" chapter
// describes, each client keeps, per node, how many calls it asked over
// the last throttleWindow and how many of them the node accepted (every
// answer but an overload refusal), and refuses a new call itself, without
// sending it, with probability
//
//	max(0, (requests - K*accepts) / (requests + 1))
//
// K = Config.ThrottleRatio (default 2): the node keeps seeing about K
// calls for each one it accepts, enough to notice at once when it accepts
// more, while the rest fail here at no cost to it. A node that accepts
// everything is never throttled. Only a call's first attempt is refused
// here; retries, spaced by the backoff, always go to a node (a burst that
// met a bound shrunk for a moment would otherwise see every retry refused
// by the memory of its own refusals). The window is short so that a client
// stops throttling within seconds of the overload's end.

const (
	// throttleWindow is the history the ratio is taken over, in
	// throttleBuckets slices.
	throttleWindow  = 5 * time.Second
	throttleBuckets = 10
	// throttleMinRefused: fewer overload refusals than this in the window
	// never throttle, so a node refusing a handful of calls in a burst
	// gets them retried as before.
	throttleMinRefused = 20
)

// throttle is one node's window of calls and acceptances. Safe for
// concurrent use.
type throttle struct {
	ratio float64
	now   func() time.Time // time.Now; tests replace it
	mu    sync.Mutex
	// Bucket i counts the calls of slice number slice[i] (time since the
	// epoch over the slice's length), one of the window's last
	// throttleBuckets slices, or an older one that is ignored.
	slice             [throttleBuckets]int64
	requests, accepts [throttleBuckets]int
}

func newThrottle(ratio float64) *throttle {
	return &throttle{ratio: ratio, now: time.Now}
}

// bucket returns the index of now's bucket, emptied if it held an older
// slice, and now's slice number. It holds t.mu.
func (t *throttle) bucket() (int, int64) {
	n := t.now().UnixNano() / int64(throttleWindow/throttleBuckets)
	i := int(n % throttleBuckets)
	if t.slice[i] != n {
		t.slice[i], t.requests[i], t.accepts[i] = n, 0, 0
	}
	return i, n
}

// allow reports whether to send a call: false refuses it here, with the
// probability above. Calls are counted when they end (done), so calls in
// flight never count as refused.
func (t *throttle) allow() bool {
	t.mu.Lock()
	defer t.mu.Unlock()
	_, n := t.bucket()
	var req, acc int
	for i := range throttleBuckets {
		if t.slice[i] > n-throttleBuckets {
			req += t.requests[i]
			acc += t.accepts[i]
		}
	}
	if req-acc < throttleMinRefused {
		return true
	}
	p := (float64(req) - t.ratio*float64(acc)) / float64(req+1)
	return p <= 0 || rand.Float64() >= p
}

// done counts a call that ended: accepted unless the node refused it as
// overloaded or allow refused it here.
func (t *throttle) done(accepted bool) {
	t.mu.Lock()
	defer t.mu.Unlock()
	cur, _ := t.bucket()
	t.requests[cur]++
	if accepted {
		t.accepts[cur]++
	}
}
