package idleprocs

import (
	"context"
	"errors"
	"runtime"
	"sync"
	"testing"
	"time"
)

// fakeProcs stands for the process's CPU clock and GOMAXPROCS.
type fakeProcs struct {
	mu    sync.Mutex
	used  time.Duration
	procs []int // every value set, in order
	fail  bool
}

func (f *fakeProcs) cpu() (time.Duration, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.fail {
		return 0, errors.New("no rusage")
	}
	return f.used, nil
}

func (f *fakeProcs) set(n int) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.procs = append(f.procs, n)
}

func (f *fakeProcs) burn(d time.Duration) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.used += d
}

func (f *fakeProcs) history() []int {
	f.mu.Lock()
	defer f.mu.Unlock()
	return append([]int(nil), f.procs...)
}

func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		tick := time.NewTimer(2 * time.Millisecond)
		<-tick.C
	}
}

func start(t *testing.T, envSet bool) (*Controller, *fakeProcs, context.CancelFunc, <-chan struct{}) {
	t.Helper()
	return startAfter(t, envSet, 30*time.Millisecond)
}

func startAfter(t *testing.T, envSet bool, after time.Duration) (*Controller, *fakeProcs, context.CancelFunc, <-chan struct{}) {
	t.Helper()
	f := &fakeProcs{}
	c := newController(Config{After: after, Threshold: DefaultThreshold, Interval: 10 * time.Millisecond}, 4, envSet, f.cpu, f.set)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { defer close(done); c.Run(ctx) }()
	t.Cleanup(func() { cancel(); <-done })
	return c, f, cancel, done
}

// TestIdleThenBusy: quiet intervals take the process to one P; an
// admitted request (Busy) brings the normal GOMAXPROCS back at once, the
// runtime's default when it was not set from the environment.
func TestIdleThenBusy(t *testing.T) {
	c, f, _, _ := start(t, false)
	waitFor(t, "one P", c.Idle)
	if got := f.history(); len(got) != 1 || got[0] != 1 {
		t.Fatalf("GOMAXPROCS set to %v, want [1]", got)
	}
	c.Busy()
	waitFor(t, "the default back", func() bool { return !c.Idle() })
	if got := f.history(); len(got) != 2 || got[1] != 0 {
		t.Fatalf("GOMAXPROCS set to %v, want [1 0] (0: the runtime's default)", got)
	}
	c.Busy() // not idle: nothing to do
	if got := c.Switches(); got != 2 {
		t.Errorf("switches: got %d, want 2", got)
	}
}

// TestRequestsKeepItBusy: a process that admits requests, however light
// its CPU use, does not go to one P.
func TestRequestsKeepItBusy(t *testing.T) {
	c, f, _, _ := startAfter(t, false, 250*time.Millisecond)
	deadline := time.Now().Add(600 * time.Millisecond) // idle well before, without the requests
	for time.Now().Before(deadline) {
		c.Busy()
		if c.Idle() {
			t.Fatalf("went to one P while admitting requests: %v", f.history())
		}
		tick := time.NewTimer(time.Millisecond) // a light stream of requests
		<-tick.C
	}
	waitFor(t, "one P once the requests stop", c.Idle)
}

// TestBusySecondWakes: on one P, an interval that used more than the
// threshold of a core restores GOMAXPROCS (as a number when it came from
// the environment), and the idle clock starts over.
func TestBusySecondWakes(t *testing.T) {
	c, f, _, _ := start(t, true)
	waitFor(t, "one P", c.Idle)
	f.burn(time.Second) // far more than a tenth of any interval
	waitFor(t, "GOMAXPROCS back", func() bool { return !c.Idle() })
	if got := f.history(); len(got) < 2 || got[1] != 4 {
		t.Fatalf("GOMAXPROCS set to %v, want [1 4 ...]", got)
	}
	waitFor(t, "one P again", c.Idle)
}

// TestStopRestores: a Controller stopped while idle gives the process its
// GOMAXPROCS back; one whose CPU clock fails stays on the normal value.
func TestStopRestores(t *testing.T) {
	c, f, cancel, done := start(t, true)
	waitFor(t, "one P", c.Idle)
	cancel()
	<-done
	if c.Idle() {
		t.Fatal("still idle after Run returned")
	}
	if got := f.history(); got[len(got)-1] != 4 {
		t.Fatalf("GOMAXPROCS set to %v, want 4 last", got)
	}

	f2 := &fakeProcs{fail: true}
	c2 := newController(Config{After: 30 * time.Millisecond, Threshold: DefaultThreshold, Interval: 10 * time.Millisecond}, 4, false, f2.cpu, f2.set)
	c2.Run(context.Background()) // returns at once: no CPU time to judge by
	if c2.Idle() || len(f2.history()) != 0 {
		t.Fatalf("a controller without a CPU clock changed GOMAXPROCS: %v", f2.history())
	}
}

func TestNew(t *testing.T) {
	if c, err := New(Config{}); c != nil || err != nil {
		t.Fatalf("New(zero config) = %v, %v; want nil, nil", c, err)
	}
	var nilc *Controller
	nilc.Busy() // safe
	if nilc.Idle() || nilc.Switches() != 0 {
		t.Fatal("a nil controller reports state")
	}
	for _, cfg := range []Config{
		{After: time.Second, Threshold: 1.5},
		{After: time.Second, Threshold: -0.1},
		{After: time.Millisecond, Interval: time.Second},
		{After: time.Second, Procs: -1},
	} {
		if _, err := New(cfg); err == nil {
			t.Errorf("New(%+v): no error", cfg)
		}
	}
	prev := runtime.GOMAXPROCS(2)
	defer runtime.GOMAXPROCS(prev)
	c, err := New(Config{After: time.Second})
	if err != nil || c == nil {
		t.Fatalf("New: %v, %v", c, err)
	}
	if c.full != 2 || c.cfg.Interval != time.Second || c.cfg.Threshold != DefaultThreshold {
		t.Errorf("filled config: full %d, %+v", c.full, c.cfg)
	}
	if _, err := c.cpu(); err != nil {
		t.Errorf("process CPU: %v", err)
	}
	runtime.GOMAXPROCS(6) // as ringkv dev sets it for three nodes
	c, err = New(Config{After: time.Second, Procs: 6})
	if err != nil || c == nil || c.full != 6 || !c.fixed {
		t.Fatalf("New with Procs 6: %+v, %v; want the normal value 6, restored as a number", c, err)
	}
	runtime.GOMAXPROCS(1)
	if c, err := New(Config{After: time.Second}); c != nil || err != nil {
		t.Errorf("New on one P = %v, %v; want nil, nil", c, err)
	}
}
