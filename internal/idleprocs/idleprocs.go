// Package idleprocs runs the Go scheduler on one P while the process is
// idle, and on its normal GOMAXPROCS as soon as it has work.
//
// An idle ringkv node still wakes a few hundred goroutines a second
// (hashicorp/raft's per-group timers, Badger's compactor tickers, the
// liveness messages; docs/BENCHMARKS.md, "Idle cost"). With several Ps,
// each wake-up also wakes an idle P's thread to look for work (a futex
// wake, a spinning search, an epoll wait): half of an idle node's CPU
// profile. On one P the thread that ran the timer runs the goroutine it
// woke, and nothing else wakes. A node is idle when it admitted no
// request and its process used less than a tenth of one core, second
// after second, for a while (Config.After); it leaves one P at once when
// a request is admitted (Busy) or when a second's CPU use crosses that
// tenth.
package idleprocs

import (
	"context"
	"fmt"
	"os"
	"runtime"
	"sync/atomic"
	"syscall"
	"time"
)

// DefaultThreshold is the share of one core under which a second counts
// as idle: an idle node of 64 raft groups uses 2-4% of one core, one
// serving a few hundred requests a second more than a tenth.
const DefaultThreshold = 0.10

// Config tunes a Controller.
type Config struct {
	// After is how long the process stays under Threshold, second after
	// second, before it goes to one P. Zero or negative: never (New
	// returns nil).
	After time.Duration
	// Threshold is the share of one core under which a second counts as
	// idle, and over which a second on one P ends the idle state. Zero
	// means DefaultThreshold.
	Threshold float64
	// Interval is how often the process's CPU time is read. Zero means
	// one second.
	Interval time.Duration
	// Procs is the normal GOMAXPROCS when the process set one of its own
	// (ringkv dev: the runtime's value times its nodes): restored as
	// this number after an idle spell. Zero: the value at New, restored
	// as the runtime's default unless it came from the environment.
	Procs int
}

// Controller switches GOMAXPROCS between one and its normal value (at
// New, or Config.Procs). Its methods are safe for concurrent use; Run is
// its one goroutine.
type Controller struct {
	cfg  Config
	full int
	// fixed: GOMAXPROCS came from the environment or Config.Procs, so
	// the normal value is restored as a number; otherwise
	// runtime.SetDefaultGOMAXPROCS restores the runtime's own default and
	// its updates (a changed cgroup quota).
	fixed bool
	idle  atomic.Bool
	// active: Busy was called since Run last looked (while not idle).
	active atomic.Bool
	kick   chan struct{}
	// switches counts changes of GOMAXPROCS, both ways (tests, metrics).
	switches atomic.Uint64

	// cpu returns the process's CPU time so far; setProcs sets GOMAXPROCS
	// (0: the runtime's default). Replaced in tests.
	cpu      func() (time.Duration, error)
	setProcs func(n int)
}

// New returns a Controller for cfg, or nil when cfg.After is not positive
// or the process already runs on one P (nothing to save).
func New(cfg Config) (*Controller, error) {
	if cfg.After <= 0 {
		return nil, nil
	}
	if cfg.Threshold == 0 {
		cfg.Threshold = DefaultThreshold
	}
	if cfg.Interval == 0 {
		cfg.Interval = time.Second
	}
	if cfg.Threshold < 0 || cfg.Threshold >= 1 || cfg.Interval < 0 || cfg.After < cfg.Interval || cfg.Procs < 0 {
		return nil, fmt.Errorf("idleprocs: Threshold %v must be in (0, 1), Interval %v positive, After %v at least Interval and Procs %d not negative", cfg.Threshold, cfg.Interval, cfg.After, cfg.Procs)
	}
	full := runtime.GOMAXPROCS(0)
	_, fixed := os.LookupEnv("GOMAXPROCS")
	if cfg.Procs > 0 {
		full, fixed = cfg.Procs, true
	}
	if full <= 1 {
		return nil, nil
	}
	return newController(cfg, full, fixed, processCPU, setProcs), nil
}

func newController(cfg Config, full int, fixed bool, cpu func() (time.Duration, error), set func(int)) *Controller {
	return &Controller{cfg: cfg, full: full, fixed: fixed, kick: make(chan struct{}, 1), cpu: cpu, setProcs: set}
}

// processCPU returns the CPU time (user and system) the process used.
func processCPU() (time.Duration, error) {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		return 0, fmt.Errorf("idleprocs: getrusage: %w", err)
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano()), nil
}

func setProcs(n int) {
	if n == 0 {
		runtime.SetDefaultGOMAXPROCS()
		return
	}
	runtime.GOMAXPROCS(n)
}

// Idle reports whether the process runs on one P now.
func (c *Controller) Idle() bool { return c != nil && c.idle.Load() }

// Switches returns how many times GOMAXPROCS was changed.
func (c *Controller) Switches() uint64 {
	if c == nil {
		return 0
	}
	return c.switches.Load()
}

// Busy tells c that work arrived: if the process is on one P, Run
// restores the normal GOMAXPROCS at once; otherwise the interval does not
// count as idle. Cheap (atomic loads; a store only on the first call of
// an interval); safe on a nil Controller.
func (c *Controller) Busy() {
	if c == nil {
		return
	}
	if !c.idle.Load() {
		if !c.active.Load() {
			c.active.Store(true)
		}
		return
	}
	select {
	case c.kick <- struct{}{}:
	default: // a kick is pending already
	}
}

// Run reads the process's CPU time every Interval until ctx ends, going
// to one P after After of idle intervals and back on Busy or a busy
// interval. It restores the normal GOMAXPROCS before it returns.
func (c *Controller) Run(ctx context.Context) {
	tick := time.NewTicker(c.cfg.Interval)
	defer tick.Stop()
	defer c.wake()
	quietFor := time.Duration(0)
	last, err := c.cpu()
	if err != nil {
		return // no CPU time to judge by: stay on the normal GOMAXPROCS
	}
	prev := time.Now()
	limit := func(elapsed time.Duration) time.Duration {
		return time.Duration(c.cfg.Threshold * float64(elapsed))
	}
	for {
		select {
		case <-ctx.Done():
			return
		case <-c.kick:
			c.wake()
			quietFor = 0
			continue
		case <-tick.C:
		}
		now := time.Now()
		used, err := c.cpu()
		if err != nil {
			c.wake()
			return
		}
		elapsed := now.Sub(prev)
		busy := used-last > limit(elapsed)
		active := c.active.Swap(false)
		last, prev = used, now
		switch {
		case busy:
			quietFor = 0
			c.wake()
		case active:
			quietFor = 0 // requests, however light: not idle
		case !c.idle.Load():
			quietFor += elapsed
			if quietFor >= c.cfg.After {
				c.idle.Store(true)
				c.setProcs(1)
				c.switches.Add(1)
			}
		}
	}
}

// wake restores the normal GOMAXPROCS if the process is on one P.
func (c *Controller) wake() {
	if !c.idle.Load() {
		return
	}
	if c.fixed {
		c.setProcs(c.full)
	} else {
		c.setProcs(0)
	}
	c.idle.Store(false)
	c.switches.Add(1)
}
