package linger

import (
	"testing"
	"time"
)

// TestLimit: a linger lasts Max, but no longer than the syncs take on
// average; before the first sync, and with Gap fixed by a test, the
// whole Max.
func TestLimit(t *testing.T) {
	const most = 4 * time.Millisecond
	for _, tc := range []struct {
		name string
		avg  time.Duration
		gap  time.Duration
		want time.Duration
	}{
		{"no sync yet", 0, 0, most},
		{"fast disk", 300 * time.Microsecond, 0, 300 * time.Microsecond},
		{"slow disk", 12 * time.Millisecond, 0, most},
		{"gap fixed by a test", 300 * time.Microsecond, time.Second, most},
	} {
		t.Run(tc.name, func(t *testing.T) {
			p := Policy{Max: most, Gap: tc.gap}
			if tc.avg > 0 {
				p.Synced(tc.avg)
			}
			if got := p.Limit(); got != tc.want {
				t.Errorf("Limit() = %v, want %v", got, tc.want)
			}
		})
	}
}

// TestMovingAvg: the first sample is the average; it then follows the
// samples over about the last eight.
func TestMovingAvg(t *testing.T) {
	var p Policy
	p.Synced(8 * time.Millisecond)
	if p.Average() != 8*time.Millisecond {
		t.Fatalf("first sample: %v, want 8ms", p.Average())
	}
	for range 40 {
		p.Synced(time.Millisecond)
	}
	if avg := p.Average(); avg < time.Millisecond || avg > 1100*time.Microsecond {
		t.Errorf("after 40 syncs of 1ms from 8ms: average %v, want about 1ms", avg)
	}
}

// TestWaitAtOnce: no linger when it is off, when the batch is already
// large enough, or when the store is idle (one request, and the previous
// sync answered one): take is never called.
func TestWaitAtOnce(t *testing.T) {
	for _, tc := range []struct {
		name             string
		max              time.Duration
		writes, requests int
		last             int
	}{
		{"off", -1, 1, 2, 2},
		{"zero value", 0, 1, 2, 2},
		{"large enough", time.Hour, 16, 16, 2},
		{"idle", time.Hour, 1, 1, 1},
	} {
		t.Run(tc.name, func(t *testing.T) {
			p := Policy{Max: tc.max, Below: 16}
			p.Batched(tc.last)
			wake := make(chan struct{}, 1)
			wake <- struct{}{}
			stop := p.Wait(tc.writes, tc.requests, wake, func() (int, int, bool) {
				t.Error("take called")
				return 0, 0, false
			})
			if stop {
				t.Error("stop reported")
			}
		})
	}
}

// TestWaitUntilBelow: under load the linger takes what each wake-up
// brings, ignores wake-ups that bring nothing, and ends once the batch
// holds Below writes; the previous batch's size alone makes a lone
// request linger.
func TestWaitUntilBelow(t *testing.T) {
	p := Policy{Max: time.Hour, Below: 10, Gap: time.Hour}
	p.Batched(3)
	wake := make(chan struct{}, 1)
	brings := []int{0, 4, 0, 5} // writes (and requests) of each wake-up
	calls := 0
	wake <- struct{}{}
	stop := p.Wait(1, 1, wake, func() (int, int, bool) {
		n := brings[calls]
		calls++
		if calls < len(brings) {
			wake <- struct{}{}
		}
		return n, n, false
	})
	if stop || calls != len(brings) {
		t.Fatalf("stop %v after %d takes, want false after %d", stop, calls, len(brings))
	}
}

// TestWaitQuiet: a linger with nothing coming ends after its quiet gap;
// one whose wake-ups keep coming ends at its limit.
func TestWaitQuiet(t *testing.T) {
	p := Policy{Max: time.Hour, Below: 1000, Gap: time.Millisecond}
	if p.Wait(1, 2, make(chan struct{}), nil) {
		t.Fatal("stop reported")
	}
	p = Policy{Max: 5 * time.Millisecond, Below: 1000}
	wake := make(chan struct{}, 1)
	wake <- struct{}{}
	takes := 0
	if p.Wait(1, 2, wake, func() (int, int, bool) {
		takes++
		wake <- struct{}{} // always more
		return 1, 1, false
	}) {
		t.Fatal("stop reported")
	}
	if takes == 0 {
		t.Fatal("the wake-ups were not taken")
	}
}

// TestWaitStop: a take that reports the syncer stopping ends the linger
// with stop, also on a closed wake channel.
func TestWaitStop(t *testing.T) {
	p := Policy{Max: time.Hour, Below: 1000, Gap: time.Hour}
	wake := make(chan struct{})
	close(wake)
	if !p.Wait(1, 2, wake, func() (int, int, bool) { return 0, 0, true }) {
		t.Fatal("stop not reported")
	}
}
