package node

import (
	"context"
	"fmt"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/HdrHistogram/hdrhistogram-go"

	"github.com/ringkv/ringkv/coordinator"
)

// The benchmarks below run one in-process 3-node cluster per top-level
// benchmark and 32 concurrent callers (b.SetParallelism(16) on 2 cores),
// spreading calls over the three coordinators. Besides ns/op (the inverse
// of throughput) they report each call's latency percentiles from an HDR
// histogram: p50-µs, p99-µs.

// benchCluster starts the cluster and waits until every group has its
// three voters and a leader, so linearizable calls measure the steady
// state rather than reconfiguration.
func benchCluster(b *testing.B) []*Node {
	b.Helper()
	nodes := startCluster(b, 3)
	deadline := time.Now().Add(60 * time.Second)
	for {
		full := 0
		for _, g := range nodes[0].groups.Groups() {
			if f := g.Raft().GetConfiguration(); f.Error() == nil && len(f.Configuration().Servers) == 3 && g.Leader() != "" {
				full++
			}
		}
		if full == nodes[0].cfg.Ring.Partitions {
			return nodes
		}
		if time.Now().After(deadline) {
			b.Fatal("groups never got 3 voters")
		}
		tick := time.NewTimer(20 * time.Millisecond)
		<-tick.C
	}
}

// runOps runs op b.N times from 32 goroutines and reports latency
// percentiles. op gets the coordinator to call and a sequence number.
func runOps(b *testing.B, nodes []*Node, op func(c *coordinator.Coordinator, i int64) error) {
	b.Helper()
	var (
		n      atomic.Int64
		mu     sync.Mutex
		merged = hdrhistogram.New(1, int64(time.Minute/time.Microsecond), 3)
	)
	b.ReportAllocs()
	b.SetParallelism(16)
	b.ResetTimer()
	b.RunParallel(func(pb *testing.PB) {
		h := hdrhistogram.New(1, int64(time.Minute/time.Microsecond), 3)
		defer func() {
			mu.Lock()
			merged.Merge(h)
			mu.Unlock()
		}()
		for pb.Next() {
			i := n.Add(1)
			start := time.Now()
			if err := op(nodes[i%int64(len(nodes))].Coordinator(), i); err != nil {
				b.Error(err)
				return
			}
			_ = h.RecordValue(time.Since(start).Microseconds()) // values over a minute are clamped by the error path above
		}
	})
	b.StopTimer()
	b.ReportMetric(float64(merged.ValueAtQuantile(50)), "p50-µs")
	b.ReportMetric(float64(merged.ValueAtQuantile(99)), "p99-µs")
}

var benchValue = []byte(strings.Repeat("v", 100))

// benchKey spreads keys over 10,000 names, so reads find what writes
// stored and linearizable writes contend a little on hot keys.
func benchKey(i int64) []byte { return fmt.Appendf(nil, "bench:%d", i%10000) }

// preload writes every benchmark key once at QUORUM, so reads find values.
func preload(b *testing.B, nodes []*Node) {
	b.Helper()
	ctx := context.Background()
	var wg sync.WaitGroup
	errs := make(chan error, 32)
	for w := range 32 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := int64(w); i < 10000; i += 32 {
				if err := nodes[i%3].Coordinator().Set(ctx, benchKey(i), benchValue, coordinator.Quorum); err != nil {
					errs <- err
					return
				}
			}
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		b.Fatal(err)
	}
}

var benchLevels = []coordinator.Level{coordinator.One, coordinator.Quorum, coordinator.All, coordinator.Linearizable}

// BenchmarkWrite: Set at every consistency level.
func BenchmarkWrite(b *testing.B) {
	nodes := benchCluster(b)
	for _, level := range benchLevels {
		b.Run(level.String(), func(b *testing.B) {
			runOps(b, nodes, func(c *coordinator.Coordinator, i int64) error {
				return c.Set(context.Background(), benchKey(i), benchValue, level)
			})
		})
	}
}

// BenchmarkRead: Get at every consistency level, of keys that exist.
func BenchmarkRead(b *testing.B) {
	nodes := benchCluster(b)
	preload(b, nodes)
	for _, level := range benchLevels {
		b.Run(level.String(), func(b *testing.B) {
			runOps(b, nodes, func(c *coordinator.Coordinator, i int64) error {
				_, found, err := c.Get(context.Background(), benchKey(i), level)
				if err == nil && !found {
					return fmt.Errorf("key %s not found", benchKey(i))
				}
				return err
			})
		})
	}
}

// BenchmarkCAS: linearizable compare-and-set that swaps the value each
// caller read (a read-modify-write, as an increment would be). A lost
// race is a normal outcome, not an error.
func BenchmarkCAS(b *testing.B) {
	nodes := benchCluster(b)
	preload(b, nodes)
	b.Run("linearizable", func(b *testing.B) {
		runOps(b, nodes, func(c *coordinator.Coordinator, i int64) error {
			ctx := context.Background()
			cur, _, err := c.Get(ctx, benchKey(i), coordinator.Linearizable)
			if err != nil {
				return err
			}
			_, err = c.CompareAndSet(ctx, benchKey(i), &cur, fmt.Appendf(nil, "v%d", i))
			return err
		})
	})
}
