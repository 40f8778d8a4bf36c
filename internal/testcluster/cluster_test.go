package testcluster

import (
	"context"
	"fmt"
	"net/http"
	"os"
	"strings"
	"sync"
	"testing"
	"time"
)

func TestMain(m *testing.M) {
	code := m.Run()
	Cleanup()
	os.Exit(code)
}

// parallel runs fn(i) for i in [0,n) on 16 workers and returns the first error.
func parallel(n int, fn func(i int) error) error {
	var (
		wg    sync.WaitGroup
		mu    sync.Mutex
		first error
	)
	next := make(chan int)
	for range 16 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range next {
				if err := fn(i); err != nil {
					mu.Lock()
					if first == nil {
						first = err
					}
					mu.Unlock()
				}
			}
		}()
	}
	for i := range n {
		next <- i
	}
	close(next)
	wg.Wait()
	return first
}

func key(i int) string   { return fmt.Sprintf("key:%04d", i) }
func value(i int) string { return fmt.Sprintf("value-%d", i) }

// TestReplicatedRing is issue 2's end-to-end check on three real processes.
func TestReplicatedRing(t *testing.T) {
	if testing.Short() {
		t.Skip("starts real processes")
	}
	// Hints and anti-entropy off: the restarted node must get its missed
	// writes through read repair alone, which the test checks.
	c := StartWith(t, 3, "--hints=false", "--ae-interval", "-1s", "--scrub-rate", "-1")
	ctx := t.Context()
	n1, n2, n3 := c.Nodes[0], c.Nodes[1], c.Nodes[2]

	// 1,000 QUORUM writes through different nodes...
	const writes = 1000
	if err := parallel(writes, func(i int) error {
		code, err := c.Nodes[i%3].Set(ctx, key(i), value(i), "quorum")
		if err != nil || code != http.StatusOK {
			return fmt.Errorf("set %s via %s: code %d err %w", key(i), c.Nodes[i%3].ID, code, err)
		}
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	// ...are readable at QUORUM from every node.
	for _, nd := range c.Nodes {
		if err := parallel(writes, func(i int) error {
			got, code, err := nd.Get(ctx, key(i), "quorum")
			if err != nil || code != http.StatusOK || got != value(i) {
				return fmt.Errorf("get %s via %s: got %q code %d err %w, want %q", key(i), nd.ID, got, code, err, value(i))
			}
			return nil
		}); err != nil {
			t.Fatal(err)
		}
	}

	// n3 SIGKILLed: QUORUM still works, ALL answers 503.
	n3.Kill()
	const more = 200
	if err := parallel(more, func(i int) error {
		nd := c.Nodes[i%2]
		code, err := nd.Set(ctx, key(writes+i), value(writes+i), "quorum")
		if err != nil || code != http.StatusOK {
			return fmt.Errorf("set %s via %s with n3 down: code %d err %w", key(writes+i), nd.ID, code, err)
		}
		// overwrite an old key too, so n3 holds a stale value when it returns
		code, err = nd.Set(ctx, key(i), value(i)+"-v2", "quorum")
		if err != nil || code != http.StatusOK {
			return fmt.Errorf("overwrite %s via %s with n3 down: code %d err %w", key(i), nd.ID, code, err)
		}
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	if got, code, err := n1.Get(ctx, key(writes), "quorum"); err != nil || code != http.StatusOK || got != value(writes) {
		t.Fatalf("quorum get with n3 down: got %q code %d err %v", got, code, err)
	}
	if code, err := n1.Set(ctx, "all-level", "x", "all"); err != nil || code != http.StatusServiceUnavailable {
		t.Fatalf("set at ALL with n3 down: code %d err %v, want 503", code, err)
	}
	if _, code, err := n2.Get(ctx, key(1), "all"); err != nil || code != http.StatusServiceUnavailable {
		t.Fatalf("get at ALL with n3 down: code %d err %v, want 503", code, err)
	}

	// n3 restarted: it rejoins and QUORUM reads through it return every
	// acknowledged write, repairing its stale copies as they go.
	n3.Start()
	c.WaitConverged(30 * time.Second)
	want := func(i int) string {
		if i < more {
			return value(i) + "-v2"
		}
		return value(i)
	}
	if err := parallel(writes+more, func(i int) error {
		got, code, err := n3.Get(ctx, key(i), "quorum")
		if err != nil || code != http.StatusOK || got != want(i) {
			return fmt.Errorf("get %s via restarted n3: got %q code %d err %w, want %q", key(i), got, code, err, want(i))
		}
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	// Read repair: n3's own copy is now current, so ONE through n3 (which
	// reads its local replica first) returns the new values.
	if err := parallel(writes+more, func(i int) error {
		got, code, err := n3.Get(ctx, key(i), "one")
		if err != nil || code != http.StatusOK || got != want(i) {
			return fmt.Errorf("get %s at ONE via n3 after repair: got %q code %d err %w, want %q", key(i), got, code, err, want(i))
		}
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	metrics := scrape(t, n3)
	t.Logf("n3 read repairs: %s", metrics)

	// The whole cluster restarted: all data survives.
	for _, nd := range c.Nodes {
		nd.Stop()
	}
	for _, nd := range c.Nodes {
		nd.Start()
	}
	c.WaitConverged(30 * time.Second)
	for _, nd := range c.Nodes {
		if err := parallel(writes+more, func(i int) error {
			got, code, err := nd.Get(ctx, key(i), "all")
			if err != nil || code != http.StatusOK || got != want(i) {
				return fmt.Errorf("get %s at ALL via %s after full restart: got %q code %d err %w, want %q", key(i), nd.ID, got, code, err, want(i))
			}
			return nil
		}); err != nil {
			t.Fatal(err)
		}
	}
}

// scrape returns the read-repair counter line of the node's /metrics.
func scrape(t *testing.T, nd *Node) string {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	code, body, err := nd.Do(ctx, http.MethodGet, "/metrics", nil, nil)
	if err != nil || code != http.StatusOK {
		t.Fatalf("metrics: code %d err %v", code, err)
	}
	var lines []string
	for _, l := range splitLines(string(body)) {
		if len(l) > 0 && l[0] != '#' && contains(l, "read_repairs_total") {
			lines = append(lines, l)
		}
	}
	if len(lines) == 0 {
		t.Fatalf("no read repair was counted on %s", nd.ID)
	}
	return fmt.Sprint(lines)
}

func splitLines(s string) []string { return strings.Split(s, "\n") }
func contains(s, sub string) bool  { return strings.Contains(s, sub) }
