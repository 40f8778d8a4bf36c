package client

import (
	"testing"
	"time"
)

func TestThrottle(t *testing.T) {
	now := time.Unix(1_000_000, 0)
	th := newThrottle(2)
	th.now = func() time.Time { return now }
	// A node that accepts everything is never throttled.
	for range 1000 {
		if !th.allow() {
			t.Fatal("throttled a node that accepted every call")
		}
		th.done(true)
	}
	// It refuses everything from here: after the window has moved past
	// the acceptances, the client sends a small fraction.
	now = now.Add(throttleWindow)
	sent := 0
	for range 1000 {
		ok := th.allow()
		if ok {
			sent++
		}
		th.done(false)
	}
	if sent < throttleMinRefused || sent > 100 {
		t.Errorf("a node refusing every call: %d of 1000 sent, want about %d plus a few", sent, throttleMinRefused)
	}
	// A node accepting a third of its calls: about K times the accepted
	// are sent, from a window of such history.
	now = now.Add(throttleWindow)
	sent = 0
	for i := range 30000 {
		if i%100 == 0 {
			now = now.Add(throttleWindow / 200) // the window holds the last 200 steps
		}
		if !th.allow() {
			th.done(false)
			continue
		}
		sent++
		th.done(sent%3 == 0)
	}
	if frac := float64(sent) / 30000; frac > 0.5 {
		t.Errorf("a node accepting a third of what it gets: %.2f of calls sent, want well under half", frac)
	}
	// The window forgets: once it has passed, every call goes again.
	now = now.Add(throttleWindow + time.Second)
	for range throttleMinRefused {
		if !th.allow() {
			t.Fatal("throttled after the window passed")
		}
		th.done(false)
	}
	// Calls in flight are not refusals: many begun at once all go.
	now = now.Add(throttleWindow + time.Second)
	for range 100 {
		if !th.allow() {
			t.Fatal("throttled calls that had not ended")
		}
	}
}
