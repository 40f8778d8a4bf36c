package node

import (
	"context"
	"fmt"
	"strings"
	"sync/atomic"
	"testing"

	"github.com/ringkv/ringkv/coordinator"
)

// BenchmarkQuorumWriteReplicaDown is BenchmarkWrite/quorum with n3 closed:
// every write through n1 and n2 fails on n3 and stores a hint for it, so
// the difference between the two is what hinted handoff costs the write
// path (an extra durable raw write per write, plus the failed RPC).
func BenchmarkQuorumWriteReplicaDown(b *testing.B) {
	nodes := startCluster(b, 3)
	if err := nodes[2].Close(); err != nil {
		b.Fatal(err)
	}
	ctx := context.Background()
	value := []byte(strings.Repeat("v", 100))
	b.ReportAllocs()
	b.SetParallelism(16)
	var n atomic.Int64
	b.ResetTimer()
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			i := n.Add(1)
			if err := nodes[i%2].Coordinator().Set(ctx, fmt.Appendf(nil, "bench:%d", i), value, coordinator.Quorum); err != nil {
				b.Error(err)
				return
			}
		}
	})
	b.StopTimer()
	pending := nodes[0].Coordinator().HintsPending("n3") + nodes[1].Coordinator().HintsPending("n3")
	b.ReportMetric(float64(pending)/float64(b.N), "hints/op")
}
