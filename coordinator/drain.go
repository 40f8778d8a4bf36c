package coordinator

import (
	"context"
	"fmt"
	"net/http"
	"sync"
	"time"
)

// Draining
//
// A node that drains (before it stops, or on an operator's request) keeps
// serving its peers (replica, raft and linearizable RPCs) but takes no new
// client requests: the Client service answers each operation with
// ERROR_CODE_CLOSED and the HTTP data API with 503, both before anything
// is proposed or written, so clients retry them on another node (the Go
// client library does, at every level, and avoids the node meanwhile).
// Requests that entered before the drain began run to the end; WaitIdle
// waits for them.
//
//	serving --StartDrain--> draining --Undrain--> serving
//	             (refuse new; WaitIdle: in-flight == 0)

// drainGate counts client requests in flight and refuses new ones while
// draining. Safe for concurrent use.
type drainGate struct {
	mu struct {
		sync.Mutex
		draining bool
		active   int
		// refused is when a request was last refused.
		refused time.Time
		// idle is closed when active drops to 0 while draining; a fresh
		// one is made by StartDrain. Never nil while draining.
		idle chan struct{}
	}
}

// enter admits one client request unless the gate is draining; the caller
// calls exit once it has answered.
func (g *drainGate) enter() bool {
	g.mu.Lock()
	defer g.mu.Unlock()
	if g.mu.draining {
		g.mu.refused = time.Now()
		return false
	}
	g.mu.active++
	return true
}

func (g *drainGate) exit() {
	g.mu.Lock()
	defer g.mu.Unlock()
	g.mu.active--
	if g.mu.active == 0 && g.mu.draining && g.mu.idle != nil {
		close(g.mu.idle)
		g.mu.idle = nil
	}
}

// StartDrain makes the coordinator refuse new client requests (the Client
// service and the HTTP data API) with ErrDraining; requests already running
// go on. Internal users of the Coordinator (ring changes, auth) are not
// affected. Safe for concurrent use; a second call changes nothing.
func (c *Coordinator) StartDrain() {
	g := &c.gate
	g.mu.Lock()
	defer g.mu.Unlock()
	if g.mu.draining {
		return
	}
	g.mu.draining = true
	if g.mu.active > 0 {
		g.mu.idle = make(chan struct{})
	}
}

// Undrain ends a drain: client requests are taken again.
func (c *Coordinator) Undrain() {
	g := &c.gate
	g.mu.Lock()
	defer g.mu.Unlock()
	g.mu.draining = false
	if g.mu.idle != nil {
		close(g.mu.idle) // nobody waits for a drain that ended
		g.mu.idle = nil
	}
}

// Draining reports whether StartDrain was called and Undrain was not.
func (c *Coordinator) Draining() bool {
	c.gate.mu.Lock()
	defer c.gate.mu.Unlock()
	return c.gate.mu.draining
}

// LastRefused returns when a client request was last refused because the
// coordinator drains (zero if never).
func (c *Coordinator) LastRefused() time.Time {
	c.gate.mu.Lock()
	defer c.gate.mu.Unlock()
	return c.gate.mu.refused
}

// InFlight returns how many client requests are running.
func (c *Coordinator) InFlight() int {
	c.gate.mu.Lock()
	defer c.gate.mu.Unlock()
	return c.gate.mu.active
}

// WaitIdle waits, while draining, until no client request is running. It
// returns nil at once when none is, an error wrapping ErrNotDraining when
// the coordinator is not draining, and one wrapping ctx's error (with the
// number still running) when ctx ends first.
func (c *Coordinator) WaitIdle(ctx context.Context) error {
	g := &c.gate
	g.mu.Lock()
	draining, idle, active := g.mu.draining, g.mu.idle, g.mu.active
	g.mu.Unlock()
	switch {
	case !draining:
		return ErrNotDraining
	case active == 0 || idle == nil:
		return nil
	}
	select {
	case <-idle:
		return nil
	case <-ctx.Done():
		return fmt.Errorf("coordinator: %d client requests still running: %w", c.InFlight(), ctx.Err())
	}
}

// admitHTTP refuses the HTTP data API's requests with 503 while draining
// and with 429 beyond the client budget (both with Retry-After), and
// counts the others in flight. A request's bytes are its body's declared
// length and its query (a chunked body counts as its query only; the
// handlers bound what they read).
func admitHTTP(c *Coordinator, next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		release, err := c.enter(PlaneHTTP, max(r.ContentLength, 0)+int64(len(r.URL.RawQuery)))
		if err != nil {
			wait := time.Second
			if overloaded(err) {
				wait = c.RetryAfter()
			}
			setRetryAfter(w, wait)
			writeError(w, err)
			return
		}
		defer release()
		next.ServeHTTP(w, r)
	})
}

// FlushHints replays, now, the hints this node holds for members that are
// alive, and drops those the ring or the hint window no longer wants (as
// the handoff loop would). It returns once no live member has hints left,
// or when ctx ends, with an error saying how many are left; hints for
// members that are down stay stored (they are replayed when this node runs
// again). Without hinted handoff it returns nil at once.
func (c *Coordinator) FlushHints(ctx context.Context) error {
	if c.hints == nil {
		return nil
	}
	return c.hints.flush(ctx)
}

// flush runs sessions for every target with hints until the live ones
// have none; sessions the handoff loop runs meanwhile are waited for.
func (h *handoff) flush(ctx context.Context) error {
	tick := time.NewTicker(min(h.cfg.HintReplayInterval, 100*time.Millisecond))
	defer tick.Stop()
	for {
		for target, mode := range h.plan() {
			h.session(ctx, target, mode)
		}
		left := h.liveLeft()
		if left == 0 {
			return nil
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("coordinator: %d hints for live members left: %w", left, ctx.Err())
		case <-tick.C:
		}
	}
}

// liveLeft counts the hints held for members that are alive.
func (h *handoff) liveLeft() int64 {
	h.mu.Lock()
	pending := make(map[string]int64, len(h.mu.targets))
	for target, t := range h.mu.targets {
		if t.pending > 0 {
			pending[target] = t.pending
		}
	}
	h.mu.Unlock()
	var left int64
	for target, n := range pending { // outside the lock: Liveness may take gossip's locks
		if target == h.self || h.live == nil || h.live.Alive(target) {
			left += n
		}
	}
	return left
}
