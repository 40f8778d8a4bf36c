package bench

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"math/rand/v2"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/ringkv/ringkv/ring"
)

// memDriver is an in-memory store; failEvery>0 fails every n-th call with
// a deadline error; stall, when set, blocks the first call for that long.
type memDriver struct {
	mu        sync.Mutex
	m         map[string][]byte
	ver       map[string]uint64 // each key's version: its writes so far
	txns      [][]string        // the key sets of committed transactions
	calls     atomic.Int64
	failEvery int64
	stall     time.Duration
}

func newMem() *memDriver { return &memDriver{m: map[string][]byte{}, ver: map[string]uint64{}} }

var errInjected = errors.New("injected")

func (d *memDriver) enter(ctx context.Context) error {
	n := d.calls.Add(1)
	if n == 1 && d.stall > 0 {
		t := time.NewTimer(d.stall)
		defer t.Stop()
		select {
		case <-t.C:
		case <-ctx.Done():
			return ctx.Err()
		}
	}
	if d.failEvery > 0 && n%d.failEvery == 0 {
		return errors.Join(errInjected, context.DeadlineExceeded)
	}
	return nil
}

func (d *memDriver) Name() string { return "mem" }

func (d *memDriver) Get(ctx context.Context, key, _ string) ([]byte, bool, error) {
	if err := d.enter(ctx); err != nil {
		return nil, false, err
	}
	d.mu.Lock()
	defer d.mu.Unlock()
	v, ok := d.m[key]
	return v, ok, nil
}

func (d *memDriver) Put(ctx context.Context, key string, value []byte, _ string) error {
	if err := d.enter(ctx); err != nil {
		return err
	}
	d.mu.Lock()
	defer d.mu.Unlock()
	d.m[key] = bytes.Clone(value)
	d.ver[key]++
	return nil
}

func (d *memDriver) CompareAndSet(ctx context.Context, key string, expected, value []byte, _ string) (bool, error) {
	if err := d.enter(ctx); err != nil {
		return false, err
	}
	d.mu.Lock()
	defer d.mu.Unlock()
	cur, ok := d.m[key]
	if (expected == nil && ok) || (expected != nil && (!ok || !bytes.Equal(cur, expected))) {
		return false, nil
	}
	d.m[key] = bytes.Clone(value)
	d.ver[key]++
	return true, nil
}

func (d *memDriver) ReadVersions(ctx context.Context, keys []string, _ string) ([]uint64, error) {
	if err := d.enter(ctx); err != nil {
		return nil, err
	}
	d.mu.Lock()
	defer d.mu.Unlock()
	out := make([]uint64, len(keys))
	for i, k := range keys {
		out[i] = d.ver[k]
	}
	return out, nil
}

func (d *memDriver) CommitIfVersions(ctx context.Context, keys []string, versions []uint64, value []byte) (bool, error) {
	if err := d.enter(ctx); err != nil {
		return false, err
	}
	d.mu.Lock()
	defer d.mu.Unlock()
	for i, k := range keys {
		if d.ver[k] != versions[i] {
			return false, nil
		}
	}
	for _, k := range keys {
		d.m[k] = bytes.Clone(value)
		d.ver[k]++
	}
	d.txns = append(d.txns, slices.Clone(keys))
	return true, nil
}

func (d *memDriver) List(ctx context.Context, prefix string, limit int, _ string) (int, error) {
	if err := d.enter(ctx); err != nil {
		return 0, err
	}
	d.mu.Lock()
	defer d.mu.Unlock()
	n := 0
	for k := range d.m {
		if strings.HasPrefix(k, prefix) && n < limit {
			n++
		}
	}
	return n, nil
}

func (d *memDriver) ErrorKind(err error) string { return ErrorKindOf(err) }

func spec(workload string, ops int64) Spec {
	s := DefaultSpec()
	s.Workload, s.Ops, s.Duration = workload, ops, 0
	s.Keys, s.Concurrency = 1000, 8
	return s
}

func TestRunCountsEveryOperation(t *testing.T) {
	for _, wl := range Workloads {
		t.Run(wl, func(t *testing.T) {
			d := newMem()
			s := spec(wl, 2000)
			if err := Preload(context.Background(), d, s); err != nil {
				t.Fatal(err)
			}
			if len(d.m) != s.Keys+s.HotKeys {
				t.Fatalf("preload stored %d keys, want %d", len(d.m), s.Keys)
			}
			res, err := Run(context.Background(), d, s, nil)
			if err != nil {
				t.Fatal(err)
			}
			if res.Ops+res.Conflicts != 2000 || res.Errors != 0 {
				t.Fatalf("ops %d conflicts %d errors %d, want 2000 in all and 0 errors", res.Ops, res.Conflicts, res.Errors)
			}
			if res.Throughput <= 0 || res.Latency.P50 < 1 || res.Latency.Max < res.Latency.P99 || len(res.Distribution) != len(DistributionQuantiles) {
				t.Fatalf("bad measurements: %+v", res)
			}
			if res.Target != "mem" || res.Spec.Workload != wl {
				t.Fatalf("labels: %+v", res)
			}
		})
	}
}

func TestReadWriteMix(t *testing.T) {
	d := newMem()
	s := spec(WorkloadB, 4000)
	s.Seed = 7
	if _, err := Run(context.Background(), d, s, nil); err != nil {
		t.Fatal(err)
	}
	// B is 95% reads: writes stored at most a few hundred keys (about 200
	// of 4,000 operations), never all 1,000.
	if n := len(d.m); n == 0 || n > 400 {
		t.Fatalf("workload B wrote %d distinct keys, want about 5%% of 4000 ops", n)
	}
	d = newMem()
	s.Workload = WorkloadC
	if _, err := Run(context.Background(), d, s, nil); err != nil {
		t.Fatal(err)
	}
	if len(d.m) != 0 {
		t.Fatalf("read-only workload C wrote %d keys", len(d.m))
	}
}

// Every increment that swapped is in the counters: none lost, none
// invented; misses are the rest.
func TestCASIncrementsAddUp(t *testing.T) {
	d := newMem()
	s := spec(WorkloadCAS, 3000)
	s.HotKeys, s.Concurrency = 5, 16
	if err := Preload(context.Background(), d, s); err != nil {
		t.Fatal(err)
	}
	res, err := Run(context.Background(), d, s, nil)
	if err != nil {
		t.Fatal(err)
	}
	sum := 0
	for i := range s.HotKeys {
		n, err := strconv.Atoi(string(d.m[CASKey(i)]))
		if err != nil {
			t.Fatal(err)
		}
		sum += n
	}
	if int64(sum) != res.Ops-res.CASMisses {
		t.Fatalf("counters sum to %d, want ops %d - misses %d", sum, res.Ops, res.CASMisses)
	}
	if res.CASMisses == 0 {
		t.Log("no CAS misses with 16 callers on 5 keys (possible, but unusual)")
	}
}

func TestErrorsCountedByKind(t *testing.T) {
	d := newMem()
	d.failEvery = 10
	s := spec(WorkloadW, 1000)
	res, err := Run(context.Background(), d, s, nil)
	if err != nil {
		t.Fatal(err)
	}
	if res.Ops+res.Errors != 1000 || res.Errors != 100 || res.ErrorsByKind["timeout"] != 100 {
		t.Fatalf("ops %d errors %d by kind %v, want 900/100 timeouts", res.Ops, res.Errors, res.ErrorsByKind)
	}
}

// Open loop: a stall of the first operation delays the operations
// scheduled behind it, and their latency shows it (no coordinated
// omission). Closed loop, the same stall is one slow operation.
func TestOpenLoopCountsFromScheduledStart(t *testing.T) {
	d := newMem()
	d.stall = 200 * time.Millisecond
	s := spec(WorkloadW, 100)
	s.Concurrency, s.Rate = 1, 1000
	res, err := Run(context.Background(), d, s, nil)
	if err != nil {
		t.Fatal(err)
	}
	if res.Latency.P50 < 50_000 {
		t.Fatalf("open-loop p50 %dµs: the stall behind the first op is hidden", res.Latency.P50)
	}
	d = newMem()
	d.stall = 200 * time.Millisecond
	s.Rate = 0
	res, err = Run(context.Background(), d, s, nil)
	if err != nil {
		t.Fatal(err)
	}
	if res.Latency.P50 >= 50_000 || res.Latency.Max < 200_000 {
		t.Fatalf("closed loop: p50 %dµs max %dµs, want a fast median and one 200ms op", res.Latency.P50, res.Latency.Max)
	}
}

func TestDurationAndContextStopTheRun(t *testing.T) {
	d := newMem()
	s := spec(WorkloadA, 0)
	s.Duration = 300 * time.Millisecond
	start := time.Now()
	res, err := Run(context.Background(), d, s, func(p Progress) {
		if p.Elapsed <= 0 || p.Target != "mem" {
			t.Errorf("bad progress: %+v", p)
		}
	})
	if err != nil {
		t.Fatal(err)
	}
	if res.Ops == 0 || time.Since(start) > 30*time.Second {
		t.Fatalf("duration-bound run: %d ops in %v", res.Ops, time.Since(start))
	}
	// The context ends a run whose duration has not: an open-loop list
	// workload, cancelled after 300ms of an hour.
	ctx, cancel := context.WithTimeout(context.Background(), 300*time.Millisecond)
	defer cancel()
	s.Duration, s.Workload, s.Rate = time.Hour, WorkloadL, 100
	start = time.Now()
	res, err = Run(ctx, d, s, nil)
	if err != nil {
		t.Fatal(err)
	}
	if time.Since(start) > 30*time.Second || res.Ops == 0 {
		t.Fatalf("cancelled run: %d ops in %v", res.Ops, time.Since(start))
	}
}

func TestValidate(t *testing.T) {
	bad := []func(*Spec){
		func(s *Spec) { s.Workload = "Z" },
		func(s *Spec) { s.Keys = 0 },
		func(s *Spec) { s.HotKeys = 0 },
		func(s *Spec) { s.ValueSize = 0 },
		func(s *Spec) { s.Distribution = "pareto" },
		func(s *Spec) { s.Concurrency = 0 },
		func(s *Spec) { s.Duration, s.Ops = 0, 0 },
		func(s *Spec) { s.Rate = -1 },
		func(s *Spec) { s.Workload, s.ListLimit = WorkloadL, 0 },
		func(s *Spec) { s.OpTimeout = 0 },
		func(s *Spec) { s.Workload, s.TxnKeys = WorkloadT, 0 },
		func(s *Spec) { s.Workload, s.TxnKeys = WorkloadT, MaxTxnKeys+1 },
		func(s *Spec) { s.Workload, s.Partitions = WorkloadT, 48 },
		func(s *Spec) { s.Workload, s.TxnKeys, s.Partitions = WorkloadT, 8, 4 },
	}
	for i, mutate := range bad {
		s := DefaultSpec()
		mutate(&s)
		err := s.Validate()
		if !errors.Is(err, ErrInvalidSpec) {
			t.Errorf("case %d: %v, want ErrInvalidSpec", i, err)
		}
		if _, err := Run(context.Background(), newMem(), s, nil); !errors.Is(err, ErrInvalidSpec) {
			t.Errorf("case %d: Run accepted a bad spec", i)
		}
		if err := Preload(context.Background(), newMem(), s); !errors.Is(err, ErrInvalidSpec) {
			t.Errorf("case %d: Preload accepted a bad spec", i)
		}
	}
	if err := DefaultSpec().Validate(); err != nil {
		t.Fatal(err)
	}
}

func TestZipfianPrefersLowKeys(t *testing.T) {
	rng := rand.New(rand.NewPCG(1, 2))
	for _, dist := range []string{Uniform, Zipfian} {
		c := newChooser(rng, dist, 1000)
		counts := make([]int, 1000)
		for range 100_000 {
			counts[c.next()]++
		}
		// 100 draws per key on average: zipfian gives key 0 many times
		// that, uniform about that.
		switch {
		case dist == Zipfian && counts[0] < 1000:
			t.Fatalf("zipfian: key 0 drawn %d times of 100,000", counts[0])
		case dist == Uniform && counts[0] > 200:
			t.Fatalf("uniform: key 0 drawn %d times of 100,000", counts[0])
		}
	}
}

func TestPreloadReportsFailures(t *testing.T) {
	d := newMem()
	d.failEvery = 3
	if err := Preload(context.Background(), d, spec(WorkloadA, 10)); !errors.Is(err, errInjected) {
		t.Fatalf("preload error %v, want the driver's", err)
	}
}

func TestReports(t *testing.T) {
	mk := func(target, wl, level string, tput float64, p99 int64) Result {
		s := DefaultSpec()
		s.Workload, s.Level = wl, level
		return Result{Target: target, Spec: s, Ops: 100, Throughput: tput, ElapsedSeconds: 1,
			Latency: Latency{P50: 100, P90: 200, P99: p99, P999: 4000, Max: 2_000_000}, ErrorsByKind: map[string]int64{"timeout": 1}, Errors: 1,
			Distribution: make([]int64, len(DistributionQuantiles))}
	}
	r := Report{
		Command: "ringkv bench <x>", Machine: "test", Started: time.Unix(0, 0).UTC(),
		Results: []Result{mk("ringkv", WorkloadW, "quorum", 2000, 500), mk("ringkv", WorkloadC, "one", 100, 1500)},
		Peer:    []Result{mk("etcd", WorkloadW, "default", 1000, 1000)},
	}
	var table bytes.Buffer
	if err := r.WriteTable(&table); err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{"2.00x", "0.50x", "timeout:1", "1.50ms", "2.00s", "etcd"} {
		if !strings.Contains(table.String(), want) {
			t.Errorf("table lacks %q:\n%s", want, table.String())
		}
	}
	var page bytes.Buffer
	if err := r.WriteHTML(&page); err != nil {
		t.Fatal(err)
	}
	html := page.String()
	if strings.Count(html, "<svg") != 4 || strings.Contains(html, "<script") || !strings.Contains(html, "&lt;x&gt;") {
		t.Fatalf("page: %d charts, scripts %v, command escaped %v", strings.Count(html, "<svg"), strings.Contains(html, "<script"), strings.Contains(html, "&lt;x&gt;"))
	}
	var js bytes.Buffer
	if err := r.WriteJSON(&js); err != nil {
		t.Fatal(err)
	}
	var back Report
	if err := json.Unmarshal(js.Bytes(), &back); err != nil {
		t.Fatal(err)
	}
	if len(back.Results) != 2 || back.Peer[0].Throughput != 1000 || back.Results[0].Latency.P99 != 500 {
		t.Fatalf("json round trip: %+v", back)
	}
}

// Workload T: every committed transaction wrote K keys in K different
// partitions (or K keys of one partition with TxnSamePartition), every
// key's version counts the transactions that wrote it (none lost,
// none invented), and the commits plus the conflicts are the operations.
func TestTxnWorkload(t *testing.T) {
	for _, tc := range []struct {
		k    int
		same bool
		dist string
	}{{2, false, Uniform}, {4, false, Uniform}, {4, false, Zipfian}, {4, true, Uniform}, {3, true, Zipfian}} {
		t.Run(fmt.Sprintf("k%d-same%v-%s", tc.k, tc.same, tc.dist), func(t *testing.T) {
			d := newMem()
			s := spec(WorkloadT, 3000)
			s.TxnKeys, s.TxnSamePartition, s.Distribution, s.Concurrency = tc.k, tc.same, tc.dist, 16
			s.Keys = 200 // few keys per partition: some conflicts, some zipfian draws that miss
			res, err := Run(context.Background(), d, s, nil)
			if err != nil {
				t.Fatal(err)
			}
			if res.Ops+res.Conflicts != 3000 || res.Errors != 0 || int64(len(d.txns)) != res.Ops {
				t.Fatalf("ops %d conflicts %d errors %d, %d commits stored", res.Ops, res.Conflicts, res.Errors, len(d.txns))
			}
			writes := map[string]uint64{}
			for _, keys := range d.txns {
				parts := map[int]bool{}
				for _, k := range keys {
					parts[PartitionOf(k, s.Partitions)] = true
					writes[k]++
				}
				if len(keys) != tc.k || len(parts) != map[bool]int{false: tc.k, true: 1}[tc.same] {
					t.Fatalf("transaction over %v: %d partitions", keys, len(parts))
				}
			}
			for k, n := range writes {
				if d.ver[k] != n {
					t.Fatalf("%s at version %d after %d transactions wrote it", k, d.ver[k], n)
				}
			}
		})
	}
}

func TestTxnWorkloadRefusals(t *testing.T) {
	s := spec(WorkloadT, 10)
	if _, err := Run(context.Background(), plainDriver{newMem()}, s, nil); !errors.Is(err, ErrInvalidSpec) {
		t.Fatalf("a driver without transactions: %v, want ErrInvalidSpec", err)
	}
	s.Keys, s.TxnKeys = 3, 4
	if _, err := Run(context.Background(), newMem(), s, nil); !errors.Is(err, ErrInvalidSpec) {
		t.Fatalf("4 keys of 3 partitions: %v, want ErrInvalidSpec", err)
	}
	s.TxnSamePartition = true
	if _, err := Run(context.Background(), newMem(), s, nil); !errors.Is(err, ErrInvalidSpec) {
		t.Fatalf("4 keys of one partition out of 3 keys: %v, want ErrInvalidSpec", err)
	}
	if l := s.Label(); l != "T4-1p" {
		t.Fatalf("label %q", l)
	}
}

// PartitionOf is the ring's partitioning.
func TestPartitionOfMatchesRing(t *testing.T) {
	r, err := ring.New(ring.Config{Partitions: 64, ReplicationFactor: 3})
	if err != nil {
		t.Fatal(err)
	}
	for i := range 1000 {
		if got, want := PartitionOf(Key(i), 64), int(r.PartitionOf([]byte(Key(i)))); got != want {
			t.Fatalf("%s: partition %d, the ring says %d", Key(i), got, want)
		}
	}
}

// plainDriver hides memDriver's transactions: it has Driver's methods only.
type plainDriver struct{ Driver }

// PutBatch makes memDriver a BatchPutter: every pair through Put.
func (d *memDriver) PutBatch(ctx context.Context, keys []string, values [][]byte, level string) error {
	for i, k := range keys {
		if err := d.Put(ctx, k, values[i], level); err != nil {
			return err
		}
	}
	return nil
}

func TestPreloadBatchedWritesEveryKeyItsOwnValue(t *testing.T) {
	s := DefaultSpec()
	s.Keys, s.ValueSize, s.Concurrency = 1001, 16, 4
	d := newMem()
	var last atomic.Int64
	if err := PreloadBatched(t.Context(), d, s, 64, func(n int64) {
		for old := last.Load(); n > old && !last.CompareAndSwap(old, n); old = last.Load() {
		}
	}); err != nil {
		t.Fatalf("PreloadBatched: got %v, want nil", err)
	}
	if len(d.m) != s.Keys || last.Load() != int64(s.Keys) {
		t.Fatalf("PreloadBatched: stored %d keys, reported %d; want %d", len(d.m), last.Load(), s.Keys)
	}
	seen := map[string]bool{}
	for i := range s.Keys {
		v, ok := d.m[Key(i)]
		if !ok || len(v) != s.ValueSize {
			t.Fatalf("key %d: got %q, want a value of %d bytes", i, v, s.ValueSize)
		}
		seen[string(v)] = true
	}
	if len(seen) < s.Keys/2 {
		t.Errorf("distinct values: got %d of %d keys, want each key its own", len(seen), s.Keys)
	}
	if err := PreloadBatched(t.Context(), d, s, 0, nil); !errors.Is(err, ErrInvalidSpec) {
		t.Errorf("batch 0: got %v, want ErrInvalidSpec", err)
	}
	d.failEvery = 3
	if err := PreloadBatched(t.Context(), d, s, 16, nil); !errors.Is(err, errInjected) {
		t.Errorf("failing driver: got %v, want the injected failure", err)
	}
}
