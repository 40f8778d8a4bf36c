package testcluster

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"os"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// hintWrites is how many writes TestHintedHandoffAlone makes while a node
// is down: 2,000 by default, the 10,000 of issue 6 with RINGKV_LONG_TESTS=1.
func hintWrites() int {
	if os.Getenv("RINGKV_LONG_TESTS") == "1" {
		return 10000
	}
	return 2000
}

// TestHintedHandoffAlone: a node is down during QUORUM writes and comes
// back; hints alone (nothing else repairs here: anti-entropy exchanges and
// the scrubber are off, no reads touch the node until its hints have
// drained) bring it every write, so
// reads at ONE from it return all of them.
func TestHintedHandoffAlone(t *testing.T) {
	n := hintWrites()
	c := StartWith(t, 3, "--hint-replay-rate", "20000", "--ae-interval", "-1s", "--scrub-rate", "-1")
	n1, n2, n3 := c.Nodes[0], c.Nodes[1], c.Nodes[2]
	n3.Kill()

	start := time.Now()
	writeAll(t, []*Node{n1, n2}, n, "quorum")
	t.Logf("%d QUORUM writes with n3 down: %v", n, time.Since(start))
	c.WaitFor(60*time.Second, "a hint per write", func(ctx context.Context) error {
		stored, err := sumMetric(ctx, "ringkv_coordinator_hints_stored_total", n1, n2)
		if err != nil {
			return err
		}
		if stored != float64(n) {
			return fmt.Errorf("%v hints stored, want %d", stored, n)
		}
		return nil
	})

	n3.Start()
	restarted := time.Now()
	c.WaitFor(5*time.Minute, "hints to drain", func(ctx context.Context) error {
		pending, err := sumMetric(ctx, "ringkv_coordinator_hints_pending", n1, n2)
		if err != nil {
			return err
		}
		replayed, err := sumMetric(ctx, "ringkv_coordinator_hints_replayed_total", n1, n2)
		if err != nil {
			return err
		}
		if pending != 0 || replayed != float64(n) {
			return fmt.Errorf("%v hints pending, %v replayed, want 0 and %d", pending, replayed, n)
		}
		return nil
	})
	t.Logf("hints drained %v after n3 was restarted", time.Since(restarted))
	dropped, err := sumMetric(t.Context(), "ringkv_coordinator_hints_dropped_total", n1, n2)
	if err != nil || dropped != 0 {
		t.Fatalf("dropped hints: got %v (%v), want 0", dropped, err)
	}

	start = time.Now()
	if missing := readAllAtOne(t, n3, n); missing != 0 {
		t.Fatalf("reads at ONE from n3: %d of %d keys missing", missing, n)
	}
	t.Logf("%d reads at ONE from n3: %v", n, time.Since(start))
	// Every answer came from n3's own replica as the hints left it: it
	// repaired nothing and installed no Raft snapshot.
	for _, name := range []string{"ringkv_coordinator_read_repairs_total", "ringkv_consensus_snapshot_restores_total"} {
		v, err := n3.Metric(t.Context(), name)
		if err != nil || v != 0 {
			t.Fatalf("n3 %s: got %v (%v), want 0", name, v, err)
		}
	}
}

// TestWithoutHintsTheNodeMissesWrites is the control for
// TestHintedHandoffAlone: with --hints=false the same scenario leaves the
// restarted node without the writes it missed.
func TestWithoutHintsTheNodeMissesWrites(t *testing.T) {
	const n = 100
	c := StartWith(t, 3, "--hints=false", "--ae-interval", "-1s", "--scrub-rate", "-1")
	n1, n2, n3 := c.Nodes[0], c.Nodes[1], c.Nodes[2]
	n3.Kill()
	writeAll(t, []*Node{n1, n2}, n, "quorum")
	n3.Start()
	c.WaitConverged(60 * time.Second)
	if stored, err := sumMetric(t.Context(), "ringkv_coordinator_hints_stored_total", n1, n2); err != nil || stored != 0 {
		t.Fatalf("hints stored with --hints=false: got %v (%v), want 0", stored, err)
	}
	if missing := readAllAtOne(t, n3, n); missing != n {
		t.Fatalf("reads at ONE from n3 without hints: %d of %d missing, want all", missing, n)
	}
}

// hintKey and hintValue name the test's writes.
func hintKey(i int) string   { return fmt.Sprintf("hint-%05d", i) }
func hintValue(i int) string { return fmt.Sprintf("value-%d", i) }

// testClient keeps enough idle connections for the test's workers.
var testClient = &http.Client{Transport: &http.Transport{MaxIdleConnsPerHost: 64}, Timeout: 30 * time.Second}

const hintWorkers = 32

// writeAll writes keys 0..n-1 at level through coords in turn, with
// hintWorkers concurrent writers, and fails the test on any error.
func writeAll(t *testing.T, coords []*Node, n int, level string) {
	t.Helper()
	var next atomic.Int64
	var wg sync.WaitGroup
	for range hintWorkers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				i := int(next.Add(1) - 1)
				if i >= n || t.Failed() {
					return
				}
				nd := coords[i%len(coords)]
				body := fmt.Sprintf(`{"key":%q,"value":%q}`, hintKey(i), hintValue(i))
				code, out, err := call(t.Context(), http.MethodPost, nd, "/api/set", url.Values{"consistency": {level}}, body)
				if err != nil || code != http.StatusOK {
					t.Errorf("set %s via %s: HTTP %d %s %v", hintKey(i), nd.ID, code, out, err)
					return
				}
			}
		}()
	}
	wg.Wait()
	if t.Failed() {
		t.FailNow()
	}
}

// readAllAtOne reads keys 0..n-1 at ONE through nd and returns how many
// were not found; a wrong value or an error fails the test.
func readAllAtOne(t *testing.T, nd *Node, n int) int {
	t.Helper()
	var next, missing atomic.Int64
	var wg sync.WaitGroup
	for range hintWorkers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				i := int(next.Add(1) - 1)
				if i >= n || t.Failed() {
					return
				}
				code, out, err := call(t.Context(), http.MethodGet, nd, "/api/get", url.Values{"key": {hintKey(i)}, "consistency": {"one"}}, "")
				switch {
				case err != nil:
					t.Errorf("get %s: %v", hintKey(i), err)
					return
				case code == http.StatusNotFound:
					missing.Add(1)
				case code != http.StatusOK:
					t.Errorf("get %s: HTTP %d %s", hintKey(i), code, out)
					return
				default:
					var got struct{ Value string }
					if err := json.Unmarshal(out, &got); err != nil || got.Value != hintValue(i) {
						t.Errorf("get %s: got %s (%v), want %q", hintKey(i), out, err, hintValue(i))
						return
					}
				}
			}
		}()
	}
	wg.Wait()
	if t.Failed() {
		t.FailNow()
	}
	return int(missing.Load())
}

func call(ctx context.Context, method string, nd *Node, path string, query url.Values, body string) (int, []byte, error) {
	u := "http://" + nd.HTTPAddr + path + "?" + query.Encode()
	req, err := http.NewRequestWithContext(ctx, method, u, strings.NewReader(body))
	if err != nil {
		return 0, nil, fmt.Errorf("request: %w", err)
	}
	resp, err := testClient.Do(req)
	if err != nil {
		return 0, nil, fmt.Errorf("%s %s on %s: %w", method, path, nd.ID, err)
	}
	defer func() { _ = resp.Body.Close() }() // read fully below
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		return resp.StatusCode, nil, fmt.Errorf("read body: %w", err)
	}
	return resp.StatusCode, b, nil
}

// sumMetric adds up the named metric over nodes.
func sumMetric(ctx context.Context, name string, nodes ...*Node) (float64, error) {
	sum := 0.0
	for _, nd := range nodes {
		v, err := nd.Metric(ctx, name)
		if err != nil {
			return 0, err
		}
		sum += v
	}
	return sum, nil
}
