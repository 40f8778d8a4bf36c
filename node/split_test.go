package node

import (
	"context"
	"fmt"
	"net/http"
	"sync"
	"testing"
	"time"

	"github.com/ringkv/ringkv/coordinator"
)

// TestClusterSplit splits a three-node cluster of 8 partitions through
// POST /api/cluster/split while writers keep writing at QUORUM and at the
// linearizable level through every node's coordinator: input errors are
// refused, a repeated split is a no-op, every node reaches 16 converged
// partitions, and every acknowledged write reads back at both levels.
func TestClusterSplit(t *testing.T) {
	nodes := startClusterWith(t, 3, func(c *Config) { c.Ring.Partitions = 8 })
	url := func(i int, q string) string { return "http://" + nodes[i].HTTPAddr() + "/api/cluster/split" + q }
	converged := func(p int) func() bool {
		return func() bool {
			for i := range nodes {
				var st ClusterStatus
				if code := getJSON(t, "http://"+nodes[i].HTTPAddr()+"/api/cluster/status", &st); code != http.StatusOK || !st.Converged || st.PartitionCount != p {
					return false
				}
			}
			return true
		}
	}
	waitUntil(t, 60*time.Second, "8 converged partitions", converged(8))

	for _, q := range []string{"", "?partitions=x", "?partitions=24", "?partitions=0"} {
		var out map[string]string
		if code := postJSON(t, url(0, q), &out); code != http.StatusBadRequest || out["error"] == "" {
			t.Fatalf("split%s: %d %v, want 400 with an error", q, code, out)
		}
	}
	var noop ChangeAnswer
	if code := postJSON(t, url(1, "?partitions=8"), &noop); code != http.StatusOK || !noop.Noop {
		t.Fatalf("split to the ring's own P: %d %+v, want a no-op", code, noop)
	}

	ctx, cancel := context.WithTimeout(t.Context(), 90*time.Second)
	defer cancel()
	type write struct{ key, value string }
	var mu sync.Mutex
	acked := map[coordinator.Level][]write{}
	stop := make(chan struct{})
	var wg sync.WaitGroup
	for w, level := range []coordinator.Level{coordinator.Quorum, coordinator.Linearizable, coordinator.Quorum, coordinator.Linearizable} {
		wg.Go(func() {
			for n := 0; ; n++ {
				select {
				case <-stop:
					return
				default:
				}
				key, value := fmt.Sprintf("w%d-%d", w, n), fmt.Sprint(n)
				err := nodes[w%len(nodes)].Coordinator().Set(ctx, []byte(key), []byte(value), level)
				if err != nil {
					t.Errorf("%s set %s: %v", level, key, err)
					return
				}
				mu.Lock()
				acked[level] = append(acked[level], write{key, value})
				mu.Unlock()
			}
		})
	}
	count := func() int {
		mu.Lock()
		defer mu.Unlock()
		return len(acked[coordinator.Quorum]) + len(acked[coordinator.Linearizable])
	}
	waitUntil(t, 30*time.Second, "writes before the split", func() bool { return count() >= 200 })
	var ans ChangeAnswer
	if code := postJSON(t, url(2, "?partitions=16"), &ans); code != http.StatusOK || ans.Noop || ans.Partitions != 16 {
		t.Fatalf("split: %d %+v", code, ans)
	}
	start := time.Now()
	waitUntil(t, 60*time.Second, "16 converged partitions on every node", converged(16))
	t.Logf("every node holds 16 converged partitions %v after the split", time.Since(start).Round(time.Millisecond))
	mark := count()
	waitUntil(t, 30*time.Second, "writes after the split", func() bool { return count() >= mark+200 })
	close(stop)
	wg.Wait()

	if code := postJSON(t, url(0, "?partitions=16"), &noop); code != http.StatusOK || !noop.Noop {
		t.Fatalf("the same split again: %d %+v, want a no-op", code, noop)
	}
	for level, ws := range acked {
		for i, w := range ws {
			got, found, err := nodes[i%len(nodes)].Coordinator().Get(ctx, []byte(w.key), level)
			if err != nil || !found || string(got) != w.value {
				t.Fatalf("%s get %s: %q %v %v, want %q", level, w.key, got, found, err, w.value)
			}
		}
	}
	t.Logf("%d QUORUM and %d linearizable writes across the split, every one read back", len(acked[coordinator.Quorum]), len(acked[coordinator.Linearizable]))
}
