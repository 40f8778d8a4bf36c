package testcluster

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/ringkv/ringkv/client"
)

// steadyLoad drives a cluster through the Go client library while nodes
// are stopped and started under it, and remembers what it needs to check
// afterwards: every acknowledged write, every failure, and the longest
// time without a successful write.
//
// Each writer w loops over: a quorum Set of a fresh key, a linearizable
// Set of a fresh key, a Get of a key it wrote before at the level it was
// written at (its value must be the one acknowledged), and a
// compare-and-set that moves
// its own counter from n to n+1 (it must never find another value than the
// last one it set, unless an earlier attempt's outcome was unknown).
type steadyLoad struct {
	cl      *client.Client
	writers int
	pace    time.Duration
	timeout time.Duration

	mu struct {
		sync.Mutex
		acked    map[string]string // key -> acknowledged value (keys written once)
		counters map[string]int    // counter key -> last value acknowledged
		ops      map[string]int    // "quorum-set", "lin-set", "lin-get", "cas" -> successes
		failed   map[string]int    // "op: kind" -> count
		samples  []string          // the first failures, verbatim
		// lastWrite is when a write last succeeded; stall the longest
		// gap between two (or from start), ending at stallEnd.
		lastWrite time.Time
		stall     time.Duration
		stallEnd  time.Time
		// slowest is the longest successful write.
		slowest time.Duration
	}
}

func newSteadyLoad(cl *client.Client, writers int) *steadyLoad {
	l := &steadyLoad{cl: cl, writers: writers, pace: 10 * time.Millisecond, timeout: 10 * time.Second}
	l.mu.acked = map[string]string{}
	l.mu.counters = map[string]int{}
	l.mu.ops = map[string]int{}
	l.mu.failed = map[string]int{}
	return l
}

// run starts the writers; the returned function stops them and waits.
func (l *steadyLoad) run() (stop func()) {
	ctx, cancel := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	l.mu.Lock()
	l.mu.lastWrite = time.Now()
	l.mu.Unlock()
	for w := range l.writers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			l.writer(ctx, w)
		}()
	}
	return func() {
		cancel()
		wg.Wait()
	}
}

func (l *steadyLoad) writer(ctx context.Context, w int) {
	tick := time.NewTicker(l.pace)
	defer tick.Stop()
	counter := fmt.Sprintf("ctr-%d", w)
	ctrVal, ctrUnknown := 0, false
	var mine []string
	for i := 0; ; i++ {
		select {
		case <-ctx.Done():
			return
		case <-tick.C:
		}
		switch i % 4 {
		case 0, 1:
			op, level := "quorum-set", client.Quorum
			if i%4 == 1 {
				op, level = "lin-set", client.Linearizable
			}
			key := fmt.Sprintf("w%d-%s-%d", w, op[:1], i)
			val := key + "@" + strconv.Itoa(i)
			_ = l.write(op, func(cctx context.Context) error { // write counts failures
				return l.cl.Set(cctx, key, []byte(val), client.WithConsistency(level))
			}, func() { l.mu.acked[key] = val })
			l.mu.Lock()
			if _, ok := l.mu.acked[key]; ok {
				mine = append(mine, key)
			}
			l.mu.Unlock()
		case 2:
			if len(mine) == 0 {
				continue
			}
			key := mine[(i/4)%len(mine)]
			op, level := "lin-get", levelOf(key)
			if level == client.Quorum {
				op = "quorum-get"
			}
			cctx, cancel := context.WithTimeout(context.Background(), l.timeout)
			got, err := l.cl.Get(cctx, key, client.WithConsistency(level))
			cancel()
			l.mu.Lock()
			want := l.mu.acked[key]
			switch {
			case err != nil:
				l.failLocked(op, err)
			case string(got) != want:
				l.failLocked(op, fmt.Errorf("stale read of %s: got %q, want %q", key, got, want))
			default:
				l.mu.ops[op]++
			}
			l.mu.Unlock()
		case 3:
			next := ctrVal + 1
			var expected []byte
			if ctrVal > 0 {
				expected = []byte(strconv.Itoa(ctrVal))
			}
			err := l.write("cas", func(cctx context.Context) error {
				if expected == nil {
					return l.cl.PutIfAbsent(cctx, counter, []byte(strconv.Itoa(next)))
				}
				return l.cl.CompareAndSet(cctx, counter, expected, []byte(strconv.Itoa(next)))
			}, func() { l.mu.counters[counter] = next })
			var mm *client.MismatchError
			switch {
			case err == nil:
				ctrVal, ctrUnknown = next, false
			case errors.As(err, &mm) && ctrUnknown && mm.Found:
				// An attempt whose outcome was unknown did swap: go on
				// from the value found.
				if v, perr := strconv.Atoi(string(mm.Current)); perr == nil {
					ctrVal, ctrUnknown = v, false
				}
			case errors.As(err, &mm):
				l.mu.Lock()
				l.failLocked("cas", fmt.Errorf("counter %s moved behind its writer's back: %w", counter, err))
				l.mu.Unlock()
			case errors.Is(err, client.ErrOutcomeUnknown):
				ctrUnknown = true
			}
		}
	}
}

// write runs one write with the load's timeout; on success it calls
// record with l.mu held and measures the gap since the last success.
func (l *steadyLoad) write(op string, call func(ctx context.Context) error, record func()) error {
	ctx, cancel := context.WithTimeout(context.Background(), l.timeout)
	defer cancel()
	start := time.Now()
	err := call(ctx)
	end := time.Now()
	l.mu.Lock()
	defer l.mu.Unlock()
	if err != nil {
		if !errors.Is(err, client.ErrCASMismatch) { // the caller judges a mismatch
			l.failLocked(op, err)
		}
		return err
	}
	record()
	l.mu.ops[op]++
	if gap := end.Sub(l.mu.lastWrite); gap > l.mu.stall {
		l.mu.stall, l.mu.stallEnd = gap, end
	}
	if end.After(l.mu.lastWrite) {
		l.mu.lastWrite = end
	}
	l.mu.slowest = max(l.mu.slowest, end.Sub(start))
	return nil
}

func (l *steadyLoad) failLocked(op string, err error) {
	kind := "other"
	for name, e := range map[string]error{"outcome-unknown": client.ErrOutcomeUnknown, "timeout": client.ErrTimeout,
		"unavailable": client.ErrUnavailable, "not-found": client.ErrNotFound, "mismatch": client.ErrCASMismatch} {
		if errors.Is(err, e) {
			kind = name
		}
	}
	l.mu.failed[op+": "+kind]++
	if len(l.mu.samples) < 10 {
		l.mu.samples = append(l.mu.samples, fmt.Sprintf("%s %s: %v", time.Now().Format("15:04:05.000"), op, err))
	}
}

// loadResult is what a run of steadyLoad did.
type loadResult struct {
	ops      map[string]int
	failed   map[string]int
	samples  []string
	stall    time.Duration
	stallEnd time.Time
	slowest  time.Duration
	acked    int
	// lost lists acknowledged writes not read back (or read back with
	// another value), and counters found below their last acknowledged
	// value.
	lost []string
}

func (r loadResult) failures() int {
	n := 0
	for _, c := range r.failed {
		n += c
	}
	return n
}

func (r loadResult) String() string {
	var b strings.Builder
	fmt.Fprintf(&b, "ops %v, acknowledged writes %d, failures %d %v, lost %d, longest write stall %s (ended %s), slowest write %s",
		r.ops, r.acked, r.failures(), r.failed, len(r.lost), r.stall.Round(time.Millisecond), r.stallEnd.Format("15:04:05.000"), r.slowest.Round(time.Millisecond))
	for _, s := range r.samples {
		b.WriteString("\n  failure: " + s)
	}
	for _, s := range r.lost[:min(len(r.lost), 10)] {
		b.WriteString("\n  lost: " + s)
	}
	return b.String()
}

// verify reads every acknowledged write back at the level it was written
// at (several readers at once) and reports the run.
func (l *steadyLoad) verify(t testing.TB) loadResult {
	t.Helper()
	l.mu.Lock()
	acked := maps.Clone(l.mu.acked)
	counters := maps.Clone(l.mu.counters)
	res := loadResult{ops: maps.Clone(l.mu.ops), failed: maps.Clone(l.mu.failed), samples: slices.Clone(l.mu.samples),
		stall: l.mu.stall, stallEnd: l.mu.stallEnd, slowest: l.mu.slowest, acked: len(acked) + len(counters)}
	l.mu.Unlock()
	keys := slices.Sorted(maps.Keys(acked))
	var mu sync.Mutex
	var wg sync.WaitGroup
	work := make(chan string)
	for range 8 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for key := range work {
				got, err := l.readBack(key, levelOf(key))
				if err != nil || got != acked[key] {
					mu.Lock()
					res.lost = append(res.lost, fmt.Sprintf("%s: got %q (%v), want %q", key, got, err, acked[key]))
					mu.Unlock()
				}
			}
		}()
	}
	for _, k := range keys {
		work <- k
	}
	close(work)
	wg.Wait()
	for key, want := range counters {
		got, err := l.readBack(key, client.Linearizable)
		v, perr := strconv.Atoi(got)
		if err != nil || perr != nil || v < want {
			res.lost = append(res.lost, fmt.Sprintf("counter %s: got %q (%v), want >= %d", key, got, err, want))
		}
	}
	slices.Sort(res.lost)
	return res
}

// levelOf returns the level a key of the load was written at, which is
// the level it is read back at: mixing levels on one key promises only
// last-writer-wins (a linearizable read is served by the partition's
// leader, which may not hold a quorum write yet).
func levelOf(key string) client.Consistency {
	if strings.Contains(key, "-q-") {
		return client.Quorum
	}
	return client.Linearizable
}

// readBack reads key at level, retrying errors that are not an answer
// (the cluster may still be settling) for up to a minute.
func (l *steadyLoad) readBack(key string, level client.Consistency) (string, error) {
	deadline := time.Now().Add(time.Minute)
	tick := time.NewTicker(100 * time.Millisecond)
	defer tick.Stop()
	for {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		v, err := l.cl.Get(ctx, key, client.WithConsistency(level))
		cancel()
		if err == nil || errors.Is(err, client.ErrNotFound) || time.Now().After(deadline) {
			return string(v), err
		}
		<-tick.C
	}
}
