package coordinator

import (
	"context"
	"errors"
	"runtime"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
)

func TestNextLimit(t *testing.T) {
	const target = 40 * time.Millisecond
	for _, tc := range []struct {
		name    string
		cur     int64
		p99     time.Duration
		refused bool
		want    int64
	}{
		{"far beyond the target: halved", 1024, 150 * time.Millisecond, false, 512},
		{"beyond the target: a quarter off", 1024, 60 * time.Millisecond, true, 768},
		{"halving stops at the floor", 20, time.Second, false, 16},
		{"under half the target, refusing: a sixty-fourth more", 512, 10 * time.Millisecond, true, 520},
		{"at half the target, refusing: grows", 512, target / 2, true, 520},
		{"growth is at least one", 16, time.Millisecond, true, 17},
		{"growth stops at the ceiling", 1020, time.Millisecond, true, 1024},
		{"under the target, not refusing: unchanged", 300, time.Millisecond, false, 300},
		{"between half the target and the target: holds", 300, 30 * time.Millisecond, true, 300},
		{"at the target exactly: not late, holds", 300, target, true, 300},
	} {
		if got := nextLimit(tc.cur, 16, 1024, tc.p99, target, tc.refused); got != tc.want {
			t.Errorf("%s: nextLimit(%d, p99 %s, refused %v) = %d, want %d", tc.name, tc.cur, tc.p99, tc.refused, got, tc.want)
		}
	}
}

func TestHistQuantile(t *testing.T) {
	buckets := []float64{0, 0.001, 0.01, 0.1, 1} // four buckets
	for _, tc := range []struct {
		counts []uint64
		want   time.Duration
	}{
		{[]uint64{0, 0, 0, 0}, 0},
		{[]uint64{100, 0, 0, 0}, time.Millisecond},
		{[]uint64{98, 1, 1, 0}, 10 * time.Millisecond},    // the 99th of 100 is in the second bucket
		{[]uint64{90, 5, 4, 1}, 100 * time.Millisecond},   // ... the third
		{[]uint64{50, 0, 0, 50}, 1000 * time.Millisecond}, // ... the last
	} {
		var total uint64
		for _, c := range tc.counts {
			total += c
		}
		if got := histQuantile(tc.counts, buckets, total, 0.99); got != tc.want {
			t.Errorf("p99 of %v: got %s, want %s", tc.counts, got, tc.want)
		}
	}
	// runtime/metrics' last edge is +Inf: the bucket's lower edge stands.
	inf := []float64{0, 0.5, posInf()}
	if got := histQuantile([]uint64{0, 3}, inf, 3, 0.99); got != 500*time.Millisecond {
		t.Errorf("p99 in the unbounded bucket: got %s, want 500ms", got)
	}
}

func posInf() float64 { var z float64; return 1 / z }

// TestAdaptStepMovesTheClientBound: a late scheduler shrinks the client
// bound, requests beyond the new bound are refused until enough in
// flight are answered, and a bound that refuses while the scheduler
// keeps up grows back; the peer bound never moves.
func TestAdaptStepMovesTheClientBound(t *testing.T) {
	cfg := DefaultConfig()
	cfg.MaxInflight, cfg.MinInflight, cfg.MaxPeerInflight = 64, 4, 8
	a, err := newAdmission(cfg, prometheus.NewRegistry())
	if err != nil {
		t.Fatal(err)
	}
	if !a.adaptive() {
		t.Fatal("the default config does not adapt")
	}
	var held []func()
	for range 64 {
		r, err := a.admit(PlaneHTTP, 1)
		if err != nil {
			t.Fatal(err)
		}
		held = append(held, r)
	}
	if _, err := a.admit(PlaneDRPC, 1); !errors.Is(err, ErrOverloaded) {
		t.Fatalf("beyond 64: %v", err)
	}
	a.adaptStep(10*time.Millisecond, adaptMinSamples-1) // too few events: no signal
	if got := a.client.requests.limit.Load(); got != 64 {
		t.Fatalf("limit after an interval without signal: %d, want 64", got)
	}
	a.adaptStep(200*time.Millisecond, 1000)
	if got := a.client.requests.limit.Load(); got != 32 {
		t.Fatalf("limit after a late interval: %d, want 32", got)
	}
	if got := testutil.ToFloat64(a.m.limit); got != 32 {
		t.Errorf("limit gauge: %v, want 32", got)
	}
	if got := testutil.ToFloat64(a.m.schedP99); got != 0.2 {
		t.Errorf("sched p99 gauge: %v, want 0.2", got)
	}
	// 64 in flight against a bound of 32: refused until 33 are answered.
	for i := range 32 {
		held[i]()
		if _, err := a.admit(PlaneRESP, 1); !errors.Is(err, ErrOverloaded) {
			t.Fatalf("with %d in flight against 32: %v", 63-i, err)
		}
	}
	held[32]()
	r, err := a.admit(PlaneRESP, 1)
	if err != nil {
		t.Fatalf("with 31 in flight against 32: %v", err)
	}
	if _, err := a.admit(PlaneRESP, 1); !errors.Is(err, ErrOverloaded) {
		t.Fatalf("with 32 in flight against 32: %v", err)
	}
	// Refused while the scheduler keeps up: grows by one (a sixty-fourth,
	// at least one).
	a.adaptStep(time.Millisecond, 1000)
	if got := a.client.requests.limit.Load(); got != 33 {
		t.Fatalf("limit after a refusing interval on time: %d, want 33", got)
	}
	// Nothing refused since: stays.
	a.adaptStep(time.Millisecond, 1000)
	if got := a.client.requests.limit.Load(); got != 33 {
		t.Fatalf("limit after a quiet interval: %d, want 33", got)
	}
	for range 10 {
		a.adaptStep(time.Second, 1000)
	}
	if got := a.client.requests.limit.Load(); got != 4 {
		t.Fatalf("limit after ten late intervals: %d, want the floor 4", got)
	}
	if got := a.peer.requests.limit.Load(); got != 8 {
		t.Errorf("peer limit moved: %d, want 8", got)
	}
	r()
	for _, r := range held[33:] {
		r()
	}
	if got := a.client.requests.inflight.Load(); got != 0 {
		t.Errorf("in flight after every release: %d", got)
	}
}

func TestAdmissionFixedBoundDoesNotAdapt(t *testing.T) {
	cfg := DefaultConfig()
	cfg.SchedLatencyTarget = 0
	a, err := newAdmission(cfg, prometheus.NewRegistry())
	if err != nil {
		t.Fatal(err)
	}
	if a.adaptive() {
		t.Fatal("SchedLatencyTarget 0 adapts")
	}
	cfg = DefaultConfig()
	cfg.MaxInflight = 0
	if a, err = newAdmission(cfg, prometheus.NewRegistry()); err != nil {
		t.Fatal(err)
	}
	if a.adaptive() {
		t.Fatal("no client bound (MaxInflight 0) adapts")
	}
	cfg = DefaultConfig()
	cfg.MinInflight = 0
	if err := cfg.Validate(); err == nil {
		t.Fatal("MinInflight 0 with an adaptive bound: valid")
	}
	cfg.SchedLatencyTarget = -time.Second
	if err := cfg.Validate(); err == nil {
		t.Fatal("a negative SchedLatencyTarget: valid")
	}
}

// TestSchedulerLoadShrinksTheBound runs a Coordinator's controller for
// real: goroutines that keep both CPUs busy make runnable goroutines
// wait far beyond the target, and the client bound shrinks from
// MaxInflight within a few intervals.
func TestSchedulerLoadShrinksTheBound(t *testing.T) {
	tc := newTestCluster(t, func(c *Config) { c.MaxInflight, c.MinInflight = 1024, 16 })
	c := tc.coords["n1"]
	if got := c.adm.client.requests.limit.Load(); got != 1024 {
		t.Fatalf("limit before load: %d, want 1024", got)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	var stop atomic.Bool
	var wg sync.WaitGroup
	for range 32 * runtime.GOMAXPROCS(0) {
		wg.Go(func() {
			for !stop.Load() && ctx.Err() == nil {
				for i := 0; i < 1e5; i++ { // spin: keep the CPU busy
				}
			}
		})
	}
	defer func() { stop.Store(true); wg.Wait() }()
	pollUntil(t, 20*time.Second, "shrunk client bound under busy goroutines", func() bool {
		return c.adm.client.requests.limit.Load() < 1024
	})
}
