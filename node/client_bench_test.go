package node

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strings"
	"sync/atomic"
	"testing"

	"github.com/ringkv/ringkv/client"
)

// BenchmarkClientVsHTTP runs the same workload, 32 concurrent QUORUM
// writes or reads of 100-byte values on an in-process cluster of 3 nodes
// (every node replicates every key, N = 3) and of 5 nodes (a node
// replicates 3/5 of the keys),
// through the Go client library (drpc, routed straight to a replica of the
// key, so the coordinator's own replica is one of the N) and through the
// HTTP API (JSON over keep-alive connections, spread over the three nodes
// in turn as by a client that does not know the ring).
func BenchmarkClientVsHTTP(b *testing.B) {
	for _, n := range []int{3, 5} {
		b.Run(fmt.Sprintf("nodes=%d", n), func(b *testing.B) { benchClientVsHTTP(b, n) })
	}
}

func benchClientVsHTTP(b *testing.B, size int) {
	nodes := startCluster(b, size)
	value := strings.Repeat("v", 100)
	addrs := make([]string, len(nodes))
	for i, nd := range nodes {
		addrs[i] = nd.RPCAddr()
	}
	c, err := client.New(addrs)
	if err != nil {
		b.Fatal(err)
	}
	defer func() { _ = c.Close() }()
	tr := &http.Transport{MaxIdleConnsPerHost: 64}
	defer tr.CloseIdleConnections()
	hc := &http.Client{Transport: tr}
	ctx := context.Background()

	const readKeys = 1000
	for i := range readKeys {
		if err := c.Set(ctx, fmt.Sprintf("read:%d", i), []byte(value), client.WithConsistency(client.All)); err != nil {
			b.Fatal(err)
		}
	}
	httpSet := func(n int64, key string) error {
		body, _ := json.Marshal(map[string]string{"key": key, "value": value}) //nolint:errchkjson // strings only
		req, err := http.NewRequestWithContext(ctx, http.MethodPost, "http://"+nodes[n%int64(size)].HTTPAddr()+"/api/set?consistency=quorum", bytes.NewReader(body))
		if err != nil {
			return err
		}
		return doHTTP(hc, req)
	}
	httpGet := func(n int64, key string) error {
		req, err := http.NewRequestWithContext(ctx, http.MethodGet, "http://"+nodes[n%int64(size)].HTTPAddr()+"/api/get?consistency=quorum&key="+url.QueryEscape(key), nil)
		if err != nil {
			return err
		}
		return doHTTP(hc, req)
	}
	run := func(b *testing.B, op func(n int64) error) {
		b.ReportAllocs()
		b.SetParallelism(16) // 32 workers on 2 cores
		var n atomic.Int64
		b.ResetTimer()
		b.RunParallel(func(pb *testing.PB) {
			for pb.Next() {
				if err := op(n.Add(1)); err != nil {
					b.Error(err)
					return
				}
			}
		})
	}
	b.Run("write/client", func(b *testing.B) {
		run(b, func(n int64) error { return c.Set(ctx, fmt.Sprintf("w:%d", n), []byte(value)) })
	})
	b.Run("write/http", func(b *testing.B) {
		run(b, func(n int64) error { return httpSet(n, fmt.Sprintf("w:%d", n)) })
	})
	b.Run("read/client", func(b *testing.B) {
		run(b, func(n int64) error {
			_, err := c.Get(ctx, fmt.Sprintf("read:%d", n%readKeys))
			return err
		})
	})
	b.Run("read/http", func(b *testing.B) {
		run(b, func(n int64) error { return httpGet(n, fmt.Sprintf("read:%d", n%readKeys)) })
	})
}

func doHTTP(hc *http.Client, req *http.Request) error {
	resp, err := hc.Do(req)
	if err != nil {
		return err
	}
	defer func() { _ = resp.Body.Close() }() // drained below
	if _, err := io.Copy(io.Discard, resp.Body); err != nil {
		return err
	}
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("HTTP %d", resp.StatusCode)
	}
	return nil
}
