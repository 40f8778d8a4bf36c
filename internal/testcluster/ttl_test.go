package testcluster

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"net/url"
	"testing"
	"time"
)

// getTTL reads key through nd at level: the HTTP status and ttl_ms (0
// when the key never expires).
func getTTL(ctx context.Context, nd *Node, key, level string) (int, int64, error) {
	code, body, err := nd.Do(ctx, http.MethodGet, "/api/get", url.Values{"key": {key}, "consistency": {level}}, nil)
	if err != nil || code != http.StatusOK {
		return code, 0, err
	}
	var out struct {
		TTLMs int64 `json:"ttl_ms"`
	}
	if err := json.Unmarshal(body, &out); err != nil {
		return code, 0, fmt.Errorf("decode get: %w", err)
	}
	return code, out.TTLMs, nil
}

// setTTL writes key=value with ttl through nd at level.
func setTTL(ctx context.Context, t *testing.T, nd *Node, key, value, ttl, level string) {
	t.Helper()
	code, body, err := nd.Do(ctx, http.MethodPost, "/api/set", url.Values{"consistency": {level}}, map[string]string{"key": key, "value": value, "ttl": ttl})
	if err != nil || code != http.StatusOK {
		t.Fatalf("set %s with ttl %s at %s via %s: %d %s %v", key, ttl, level, nd.ID, code, body, err)
	}
}

// TestTTLOnCluster writes keys with TTLs of 1-2 s through every node at
// every level and sees each vanish, at every level through every node,
// once it expires, and stay gone; a linearizable put-if-absent takes an
// expired lock; an expiry survives a restart, and reaches a replica that
// was down through anti-entropy.
func TestTTLOnCluster(t *testing.T) {
	if testing.Short() {
		t.Skip("starts real processes")
	}
	t.Parallel() // waits more than it computes (see doc.go)
	// No hinted handoff: a replica that was down gets what it missed from
	// anti-entropy alone.
	c := StartWith(t, 3, "--ae-interval", "1s", "--scrub-rate", "-1", "--hints=false")
	c.WaitRaftReady(120*time.Second, 0)
	ctx := t.Context()
	levels := []string{"one", "quorum", "all", "linearizable"}
	n1, n2, n3 := c.Nodes[0], c.Nodes[1], c.Nodes[2]

	// A long-lived key, to check after n3's restart.
	setTTL(ctx, t, n1, "survivor", "s", "60s", "all")

	// Keys with 1-2 s TTLs at every level, each through another node.
	written := time.Now()
	for i, level := range levels {
		setTTL(ctx, t, c.Nodes[i%3], "short-"+level, "v", fmt.Sprintf("%dms", 1000+300*i), level)
	}
	for i, level := range levels {
		code, ttl, err := getTTL(ctx, c.Nodes[(i+1)%3], "short-"+level, level)
		if err != nil || code != http.StatusOK || ttl <= 0 || ttl > int64(1000+300*i) {
			if time.Since(written) < time.Second { // not yet expired: it must read back
				t.Fatalf("short-%s right after the write: %d ttl_ms %d %v", level, code, ttl, err)
			}
		}
	}
	// A lock that times out.
	if ok, _, code, err := n1.CASWithTTL(ctx, "lock", nil, "a", "1s"); err != nil || !ok {
		t.Fatalf("take lock: %v %d %v", ok, code, err)
	}
	if ok, cur, _, err := n2.CASWithTTL(ctx, "lock", nil, "b", "10s"); err != nil || ok || cur != "a" {
		t.Fatalf("lock taken twice: %v %q %v", ok, cur, err)
	}
	vanished := func(keys ...string) func(ctx context.Context) error {
		return func(ctx context.Context) error {
			for _, nd := range c.Nodes {
				for _, level := range levels {
					for _, k := range keys {
						code, _, err := getTTL(ctx, nd, k, level)
						if err != nil {
							return err
						}
						if code != http.StatusNotFound {
							return fmt.Errorf("%s at %s via %s: %d", k, level, nd.ID, code)
						}
					}
				}
			}
			return nil
		}
	}
	var short []string
	for _, level := range levels {
		short = append(short, "short-"+level)
	}
	c.WaitFor(15*time.Second, "every short key to vanish everywhere", vanished(short...))
	if took := time.Since(written); took < time.Second {
		t.Fatalf("keys vanished after %s, before their TTLs", took)
	}
	t.Logf("short keys gone everywhere %s after their writes", time.Since(written).Round(time.Millisecond))
	c.WaitFor(10*time.Second, "the lock to be taken again", func(ctx context.Context) error {
		ok, cur, code, err := n3.CASWithTTL(ctx, "lock", nil, "c", "30s")
		switch {
		case err != nil:
			return err
		case !ok:
			return fmt.Errorf("put-if-absent: not swapped, %q, status %d", cur, code)
		}
		return nil
	})

	// n3 is down while a key with a TTL is written at quorum: it gets the
	// record (and its expiry) from anti-entropy after it returns,
	// the survivor key keeps its expiry across the restart, and once
	// expired the key never comes back.
	n3.Stop()
	setTTL(ctx, t, n1, "while-down", "v", "15s", "quorum") // long enough for n3 to restart and converge on a loaded machine
	downWrite := time.Now()
	n3.Start()
	c.WaitConverged(60 * time.Second)
	t.Logf("n3 back %s after the write", time.Since(downWrite).Round(time.Millisecond))
	c.WaitFor(20*time.Second, "n3's own replica to hold while-down", func(ctx context.Context) error {
		code, ttl, err := getTTL(ctx, n3, "while-down", "one")
		switch {
		case err != nil:
			return err
		case time.Since(downWrite) > 15*time.Second:
			t.Fatalf("while-down expired before it reached n3 (%d)", code)
		case code != http.StatusOK || ttl <= 0 || ttl > 15000:
			return fmt.Errorf("n3: %d ttl_ms %d", code, ttl)
		}
		return nil
	})
	t.Logf("n3 holds while-down %s after the write", time.Since(downWrite).Round(time.Millisecond))
	code, ttl, err := getTTL(ctx, n3, "survivor", "one")
	if err != nil || code != http.StatusOK || ttl <= 0 || ttl > 60_000 {
		t.Fatalf("survivor after n3's restart: %d ttl_ms %d %v", code, ttl, err)
	}
	c.WaitFor(30*time.Second, "while-down to vanish everywhere", vanished("while-down"))
	// Anti-entropy cycles later (1 s each): still gone everywhere.
	settled := time.Now()
	c.WaitFor(15*time.Second, "a few anti-entropy cycles", func(ctx context.Context) error {
		if err := vanished(append(short, "while-down")...)(ctx); err != nil {
			t.Fatalf("an expired key came back: %v", err)
		}
		if time.Since(settled) < 3*time.Second {
			return fmt.Errorf("%s since expiry", time.Since(settled))
		}
		return nil
	})
}
