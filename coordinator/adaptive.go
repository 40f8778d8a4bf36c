package coordinator

import (
	"context"
	"math"
	rtmetrics "runtime/metrics"
	"sync/atomic"
	"time"
)

// The client budget's request bound follows the Go scheduler
//
// A fixed bound cannot suit every machine: on a quarter of a core, a
// thousand admitted requests are a thousand goroutines the scheduler runs
// in turn with raft's heartbeats, which then arrive late enough to cause
// elections (docs/BENCHMARKS.md, "Overload at 10x"); on two free cores the
// same bound is needed for throughput. So the client budget's request
// bound moves between Config.MinInflight and Config.MaxInflight, by the
// time runnable goroutines wait for a CPU (runtime/metrics
// /sched/latencies:seconds, the whole process's): every adaptInterval,
// if the p99 of that wait over the interval exceeds
// Config.SchedLatencyTarget the bound shrinks (by half beyond twice the
// target, by a quarter otherwise); if it stayed under half the target
// and the bound refused a request, the bound grows by a sixty-fourth
// (at least one: near the floor it creeps back rather than overshoots);
// in between it holds. It starts
// at MaxInflight, so an unloaded node admits as much as a fixed bound
// would, and a flood shrinks it within a few intervals, before the
// heartbeats' timeouts. The peer budget stays fixed: its calls are
// bounded by the other nodes' client budgets.

const (
	// adaptInterval is how often the bound is adjusted.
	adaptInterval = 100 * time.Millisecond
	// adaptMinSamples: an interval with fewer scheduling events than this
	// says nothing about load and leaves the bound as it is.
	adaptMinSamples = 10
	schedLatencies  = "/sched/latencies:seconds"
)

// bound is a count of requests in flight against a limit (at least 1)
// that may move. Safe for concurrent use.
type bound struct {
	limit    atomic.Int64
	inflight atomic.Int64
	refused  atomic.Int64 // refusals since the controller last looked
}

func newBound(limit int) *bound {
	b := &bound{}
	b.limit.Store(int64(limit))
	return b
}

// tryAcquire takes a slot if one is free, without waiting.
func (b *bound) tryAcquire() bool {
	if b.inflight.Add(1) > b.limit.Load() {
		b.inflight.Add(-1)
		b.refused.Add(1)
		return false
	}
	return true
}

func (b *bound) release() { b.inflight.Add(-1) }

// nextLimit is the bound after one interval whose scheduling-latency p99
// was p99, within [lo, hi]; refused says whether the bound refused a
// request during it.
func nextLimit(cur, lo, hi int64, p99, target time.Duration, refused bool) int64 {
	switch {
	case p99 > 2*target:
		cur /= 2
	case p99 > target:
		cur -= cur / 4
	case refused && p99 <= target/2:
		cur += max(1, cur/64)
	}
	return min(max(cur, lo), hi)
}

// schedSampler reads the process's scheduling latencies, one interval at
// a time.
type schedSampler struct {
	sample      []rtmetrics.Sample
	prev, delta []uint64
}

func newSchedSampler() *schedSampler {
	s := &schedSampler{sample: []rtmetrics.Sample{{Name: schedLatencies}}}
	s.next() // the baseline
	return s
}

// next returns the p99 of the scheduling latencies since the last call
// (the upper edge of the bucket it falls in) and how many there were.
func (s *schedSampler) next() (time.Duration, uint64) {
	rtmetrics.Read(s.sample)
	if s.sample[0].Value.Kind() != rtmetrics.KindFloat64Histogram {
		return 0, 0 // not supported by this runtime: no signal
	}
	h := s.sample[0].Value.Float64Histogram()
	s.delta = s.delta[:0]
	var total uint64
	for i, c := range h.Counts {
		if i < len(s.prev) {
			c -= s.prev[i]
		}
		s.delta = append(s.delta, c)
		total += c
	}
	s.prev = append(s.prev[:0], h.Counts...)
	return histQuantile(s.delta, h.Buckets, total, 0.99), total
}

// histQuantile is the upper edge of the bucket holding quantile q of
// counts (buckets as runtime/metrics gives them: len(counts)+1 edges).
func histQuantile(counts []uint64, buckets []float64, total uint64, q float64) time.Duration {
	if total == 0 {
		return 0
	}
	want := uint64(float64(total)*q + 0.5)
	var seen uint64
	for i, c := range counts {
		seen += c
		if seen >= want && seen > 0 {
			edge := buckets[i+1]
			if math.IsInf(edge, 1) { // the last bucket: its lower edge
				edge = buckets[i]
			}
			return time.Duration(edge * float64(time.Second))
		}
	}
	return 0 // unreachable: the counts sum to total
}

// adapt moves b's limit by the scheduler's latency every adaptInterval
// until ctx ends. Goroutine: one per Coordinator whose client budget
// adapts (Config.SchedLatencyTarget > 0 and a MaxInflight bound).
func (a *admission) adapt(ctx context.Context) {
	s := newSchedSampler()
	tick := time.NewTicker(adaptInterval)
	defer tick.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-tick.C:
		}
		a.adaptStep(s.next())
	}
}

// adaptStep applies one interval's p99 and sample count to the client
// bound.
func (a *admission) adaptStep(p99 time.Duration, n uint64) {
	b := a.client.requests
	refused := b.refused.Swap(0) > 0
	if n < adaptMinSamples {
		return
	}
	a.m.schedP99.Set(p99.Seconds())
	cur := b.limit.Load()
	next := nextLimit(cur, a.minInflight, a.maxInflight, p99, a.target, refused)
	if next != cur {
		b.limit.Store(next)
		a.m.limit.Set(float64(next))
	}
}
