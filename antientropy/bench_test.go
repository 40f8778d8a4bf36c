package antientropy

import (
	"context"
	"fmt"
	"net"
	"os"
	"strconv"
	"syscall"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus/testutil"
	"storj.io/drpc/drpcmux"
	"storj.io/drpc/drpcserver"

	"github.com/ringkv/ringkv/coordinator"
	"github.com/ringkv/ringkv/internal/rpcconn"
	"github.com/ringkv/ringkv/proto/kvpb"
	"github.com/ringkv/ringkv/replica"
)

func cpuTime() time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		return 0
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

// BenchmarkIdleCycle measures one anti-entropy cycle of n1 against n2
// when nothing differs: both hold the same BENCH_AE_KEYS keys (default
// 1,000,000) in on-disk stores, and n1 reaches n2 through Client and a drpc
// server on loopback. Reported per cycle: CPU time of the whole process
// (both sides), and bytes exchanged. Setup also logs how long building
// the trees from disk took.
func BenchmarkIdleCycle(b *testing.B) {
	keys := 1_000_000
	if s := os.Getenv("BENCH_AE_KEYS"); s != "" {
		var err error
		if keys, err = strconv.Atoi(s); err != nil {
			b.Fatal(err)
		}
	}
	cfg := manual()
	cfg.PageRecords = 256
	nodes := newCluster(b, cfg, "n1", "n2")
	n1, n2 := nodes["n1"], nodes["n2"]
	const batch = 5000
	for start := 0; start < keys; start += batch {
		var es []replica.Entry
		for i := start; i < min(start+batch, keys); i++ {
			k := fmt.Appendf(nil, "bench-key-%08d", i)
			es = append(es, replica.Entry{Partition: partitionOf(k), Key: k, Record: replica.Record{Value: fmt.Appendf(nil, "value-%d", i), Timestamp: 42, NodeID: "n1"}})
		}
		for _, n := range nodes {
			if err := n.store.Merge(context.Background(), es); err != nil {
				b.Fatal(err)
			}
		}
	}
	// Time a rebuild of every tree from disk (what a node does at start).
	start, cpu0 := time.Now(), cpuTime()
	for p := range uint32(testPartitions) {
		n1.svc.rebuild(context.Background(), p)
	}
	b.Logf("building the trees of %d keys from disk: %v wall, %v CPU", keys, time.Since(start), cpuTime()-cpu0)
	if err := rootsEqual(nodes); err != nil {
		b.Fatal(err)
	}

	mux := drpcmux.New()
	if err := kvpb.DRPCRegisterRepair(mux, n2.svc); err != nil {
		b.Fatal(err)
	}
	rs, err := coordinator.NewReplicaServer(n2.store, replica.NewClock(nil, 0), coordinator.ReplicaServerOptions{})
	if err != nil {
		b.Fatal(err)
	}
	if err := kvpb.DRPCRegisterReplica(mux, rs); err != nil {
		b.Fatal(err)
	}
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		b.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	served := make(chan error, 1)
	go func() { served <- drpcserver.New(mux).Serve(ctx, lis) }()
	defer func() { cancel(); <-served }()
	cli := NewClient(resolverFunc(func(string) (string, bool) { return lis.Addr().String(), true }), nil, rpcconn.Identity{})
	defer func() { _ = cli.Close() }()
	n1.svc.deps.Peers = cli

	bytes0 := testutil.ToFloat64(n1.svc.metrics.bytes)
	b.ReportAllocs()
	b.ResetTimer()
	cpu0 = cpuTime()
	for b.Loop() {
		rep := n1.svc.cycle(ctx, nil, true)
		if rep.Differing != 0 || len(rep.Failed) > 0 || rep.Exchanges != testPartitions {
			b.Fatalf("cycle: %+v", rep)
		}
	}
	b.StopTimer()
	b.ReportMetric(float64(cpuTime()-cpu0)/float64(b.N), "cpu-ns/op")
	b.ReportMetric((testutil.ToFloat64(n1.svc.metrics.bytes)-bytes0)/float64(b.N), "bytes/op")
}
