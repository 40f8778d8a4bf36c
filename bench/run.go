package bench

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/HdrHistogram/hdrhistogram-go"
)

// Latency is a set of percentiles, in microseconds.
type Latency struct {
	P50  int64 `json:"p50_us"`
	P90  int64 `json:"p90_us"`
	P99  int64 `json:"p99_us"`
	P999 int64 `json:"p999_us"`
	Max  int64 `json:"max_us"`
}

// Result is one workload's run against one driver.
type Result struct {
	Target string `json:"target"`
	Spec   Spec   `json:"spec"`
	// Ops counts operations that succeeded (a CAS that lost its race
	// succeeded: it is also counted in CASMisses; a workload-T
	// transaction whose compare failed did not: it is counted in
	// Conflicts only, and its latency is not recorded, so that Ops and
	// Throughput count committed transactions); Errors those that
	// failed, also by kind.
	Ops          int64            `json:"ops"`
	Errors       int64            `json:"errors"`
	ErrorsByKind map[string]int64 `json:"errors_by_kind,omitempty"`
	CASMisses    int64            `json:"cas_misses,omitempty"`
	Conflicts    int64            `json:"txn_conflicts,omitempty"`
	// Elapsed is the wall time from the first operation's start to the
	// last one's end; Throughput is Ops/Elapsed.
	ElapsedSeconds float64 `json:"elapsed_s"`
	Throughput     float64 `json:"ops_per_s"`
	Latency        Latency `json:"latency"`
	// Distribution is the latency at each of DistributionQuantiles, for
	// charts.
	Distribution []int64 `json:"distribution_us"`
}

// DistributionQuantiles are the percentiles Result.Distribution holds.
var DistributionQuantiles = []float64{1, 10, 25, 50, 75, 90, 95, 99, 99.9, 99.99, 100}

// Progress is a snapshot of a running workload, given to Run's progress
// callback about once a second.
type Progress struct {
	Target   string
	Spec     Spec
	Ops      int64
	Errors   int64
	Elapsed  time.Duration
	Interval float64 // ops/s over the last interval
}

// Preload writes every key of the spec's key space once (values of
// ValueSize bytes) and sets every CAS counter to "0", so that reads find
// values and increments start from a number. It uses Spec.Concurrency
// callers. One Preload serves every workload of the same key space.
func Preload(ctx context.Context, d Driver, s Spec) error {
	if err := s.Validate(); err != nil {
		return err
	}
	value := makeValue(s.ValueSize, s.Seed)
	var (
		next atomic.Int64
		wg   sync.WaitGroup
		mu   sync.Mutex
		errs []error
	)
	for range s.Concurrency {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				i := int(next.Add(1) - 1)
				if i >= s.Keys+s.HotKeys || ctx.Err() != nil {
					return
				}
				k, v := Key(i), value
				if i >= s.Keys {
					k, v = CASKey(i-s.Keys), []byte("0")
				}
				octx, cancel := context.WithTimeout(ctx, s.OpTimeout)
				err := d.Put(octx, k, v, s.Level)
				cancel()
				if err != nil {
					mu.Lock()
					errs = append(errs, fmt.Errorf("bench: preload %s: %w", k, err))
					mu.Unlock()
					return
				}
			}
		}()
	}
	wg.Wait()
	if len(errs) > 0 {
		return errors.Join(errs...)
	}
	if err := ctx.Err(); err != nil {
		return fmt.Errorf("bench: preload: %w", err)
	}
	return nil
}

// Run runs s against d until s.Ops operations have started or s.Duration
// has passed (or ctx ends), then waits for the operations in flight and
// returns the result. progress, if not nil, is called about once a
// second from another goroutine.
func Run(ctx context.Context, d Driver, s Spec, progress func(Progress)) (Result, error) {
	if err := s.Validate(); err != nil {
		return Result{}, err
	}
	r := &runner{d: d, s: s, value: makeValue(s.ValueSize, s.Seed), stop: make(chan struct{}), byKind: map[string]int64{}}
	if s.Workload == WorkloadT {
		td, ok := d.(TxnDriver)
		if !ok {
			return Result{}, fmt.Errorf("%w: workload T needs a TxnDriver; %s is not one", ErrInvalidSpec, d.Name())
		}
		plan, err := newTxnPlan(s)
		if err != nil {
			return Result{}, err
		}
		r.td, r.plan = td, plan
	}
	return r.run(ctx, progress), nil
}

type runner struct {
	d     Driver
	s     Spec
	value []byte
	td    TxnDriver // workload T only
	plan  *txnPlan  // workload T only

	start    time.Time
	stop     chan struct{} // closed when no more operations may start
	stopOnce sync.Once
	issued   atomic.Int64
	ops      atomic.Int64
	errs     atomic.Int64
	misses   atomic.Int64
	conflict atomic.Int64

	mu     sync.Mutex
	byKind map[string]int64
	hist   *hdrhistogram.Histogram
}

func newHistogram() *hdrhistogram.Histogram {
	return hdrhistogram.New(1, int64(10*time.Minute/time.Microsecond), 3)
}

func (r *runner) halt() { r.stopOnce.Do(func() { close(r.stop) }) }

func (r *runner) run(ctx context.Context, progress func(Progress)) Result {
	r.hist = newHistogram()
	r.start = time.Now()
	if r.s.Duration > 0 {
		t := time.AfterFunc(r.s.Duration, r.halt)
		defer t.Stop()
	}
	done := make(chan struct{})
	var bg sync.WaitGroup
	defer func() {
		close(done)
		bg.Wait() // no progress call may run after Run returns
	}()
	bg.Add(1)
	go func() {
		defer bg.Done()
		select {
		case <-ctx.Done():
			r.halt()
		case <-done:
		}
	}()
	if progress != nil {
		bg.Add(1)
		go func() {
			defer bg.Done()
			r.report(progress, done)
		}()
	}
	var wg sync.WaitGroup
	for w := range r.s.Concurrency {
		wg.Add(1)
		go func() {
			defer wg.Done()
			r.worker(ctx, w)
		}()
	}
	wg.Wait()
	elapsed := time.Since(r.start)
	res := Result{
		Target:         r.d.Name(),
		Spec:           r.s,
		Ops:            r.ops.Load(),
		Errors:         r.errs.Load(),
		CASMisses:      r.misses.Load(),
		Conflicts:      r.conflict.Load(),
		ElapsedSeconds: elapsed.Seconds(),
		Latency: Latency{
			P50: r.hist.ValueAtQuantile(50), P90: r.hist.ValueAtQuantile(90), P99: r.hist.ValueAtQuantile(99),
			P999: r.hist.ValueAtQuantile(99.9), Max: r.hist.Max(),
		},
	}
	if len(r.byKind) > 0 {
		res.ErrorsByKind = r.byKind
	}
	if elapsed > 0 {
		res.Throughput = float64(res.Ops) / elapsed.Seconds()
	}
	for _, q := range DistributionQuantiles {
		res.Distribution = append(res.Distribution, r.hist.ValueAtQuantile(q))
	}
	return res
}

func (r *runner) report(progress func(Progress), done <-chan struct{}) {
	tick := time.NewTicker(time.Second)
	defer tick.Stop()
	last, lastAt := int64(0), r.start
	for {
		select {
		case <-done:
			return
		case now := <-tick.C:
			ops := r.ops.Load()
			progress(Progress{
				Target: r.d.Name(), Spec: r.s, Ops: ops, Errors: r.errs.Load(), Elapsed: now.Sub(r.start),
				Interval: float64(ops-last) / now.Sub(lastAt).Seconds(),
			})
			last, lastAt = ops, now
		}
	}
}

// claim reserves the next operation's sequence number, or reports that
// the run is over.
func (r *runner) claim() (int64, bool) {
	select {
	case <-r.stop:
		return 0, false
	default:
	}
	i := r.issued.Add(1) - 1
	if r.s.Ops > 0 && i >= r.s.Ops {
		r.halt()
		return 0, false
	}
	return i, true
}

func (r *runner) worker(ctx context.Context, w int) {
	rng := rand.New(rand.NewPCG(r.s.Seed, uint64(w)+1))
	keys := newChooser(rng, r.s.Distribution, r.s.Keys)
	hot := newChooser(rng, r.s.Distribution, max(r.s.HotKeys, 1))
	hist := newHistogram()
	kinds := map[string]int64{}
	defer func() {
		r.mu.Lock()
		r.hist.Merge(hist)
		for k, n := range kinds {
			r.byKind[k] += n
		}
		r.mu.Unlock()
	}()
	var interval time.Duration
	if r.s.Rate > 0 {
		interval = time.Duration(float64(time.Second) / r.s.Rate)
	}
	timer := time.NewTimer(time.Hour)
	timer.Stop()
	for {
		i, ok := r.claim()
		if !ok {
			return
		}
		start := time.Now()
		if interval > 0 {
			// Open loop: operation i is due at start+i*interval; its
			// latency counts from then, even if every caller was busy.
			due := r.start.Add(time.Duration(i) * interval)
			if wait := time.Until(due); wait > 0 {
				timer.Reset(wait)
				select {
				case <-timer.C:
				case <-r.stop:
					timer.Stop()
					return
				}
			}
			start = due
		}
		octx, cancel := context.WithTimeout(ctx, r.s.OpTimeout)
		err := r.op(octx, rng, keys, hot)
		cancel()
		if errors.Is(err, errConflict) {
			r.conflict.Add(1)
			continue
		}
		if err != nil {
			r.errs.Add(1)
			kinds[r.d.ErrorKind(err)]++
			continue
		}
		r.ops.Add(1)
		_ = hist.RecordValue(max(time.Since(start).Microseconds(), 1)) // beyond the histogram's 10 min range is impossible under OpTimeout
	}
}

// op runs one operation of the workload.
func (r *runner) op(ctx context.Context, rng *rand.Rand, keys, hot chooser) error {
	switch r.s.Workload {
	case WorkloadCAS:
		k := CASKey(hot.next())
		cur, found, err := r.d.Get(ctx, k, r.s.Level)
		if err != nil {
			return err
		}
		var expected []byte
		n := 0
		if found {
			expected = cur
			if n, err = strconv.Atoi(string(cur)); err != nil {
				return fmt.Errorf("bench: %s holds %q, not a counter: %w", k, cur, err)
			}
		}
		swapped, err := r.d.CompareAndSet(ctx, k, expected, strconv.AppendInt(nil, int64(n+1), 10), r.s.Level)
		if err == nil && !swapped {
			r.misses.Add(1)
		}
		return err
	case WorkloadT:
		ks := r.plan.pick(rng, keys, nil)
		versions, err := r.td.ReadVersions(ctx, ks, r.s.Level)
		if err != nil {
			return err
		}
		committed, err := r.td.CommitIfVersions(ctx, ks, versions, r.value)
		if err == nil && !committed {
			return errConflict
		}
		return err
	case WorkloadL:
		prefix := fmt.Sprintf("bench:%06d", rng.IntN((r.s.Keys+99)/100))
		_, err := r.d.List(ctx, prefix, r.s.ListLimit, r.s.Level)
		return err
	default:
		k := Key(keys.next())
		if rng.Float64() < readFraction[r.s.Workload] {
			_, _, err := r.d.Get(ctx, k, r.s.Level)
			return err
		}
		return r.d.Put(ctx, k, r.value, r.s.Level)
	}
}

// chooser picks key indexes in [0, n).
type chooser interface{ next() int }

type uniformChooser struct {
	rng *rand.Rand
	n   int
}

func (u uniformChooser) next() int { return u.rng.IntN(u.n) }

type zipfChooser struct{ z *rand.Zipf }

func (z zipfChooser) next() int { return int(z.z.Uint64()) }

func newChooser(rng *rand.Rand, dist string, n int) chooser {
	if dist == Zipfian && n > 1 {
		return zipfChooser{rand.NewZipf(rng, 1.01, 1, uint64(n-1))}
	}
	return uniformChooser{rng, n}
}

// makeValue returns size printable bytes.
// alphabet is what values are made of: printable, so that reports and
// logs can show them.
const alphabet = "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789"

func makeValue(size int, seed uint64) []byte {
	rng := rand.New(rand.NewPCG(seed, 0))
	v := make([]byte, size)
	for i := range v {
		v[i] = alphabet[rng.IntN(len(alphabet))]
	}
	return v
}
