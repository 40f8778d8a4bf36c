package testcluster

import (
	"context"
	"fmt"
	"net/http"
	"os/exec"
	"strings"
	"testing"
	"time"
)

// TestDeletedKeyStaysDeleted deletes a key while one replica is frozen
// (SIGSTOP: partitioned away, still holding the old value), waits past the
// tombstone grace period, heals, and checks that the key never comes back:
// the tombstone is not collected while a replica that may hold the old
// value is away, and is collected everywhere once anti-entropy has spread
// it. It also runs `ringkv cluster repair`.
func TestDeletedKeyStaysDeleted(t *testing.T) {
	if testing.Short() {
		t.Skip("starts real processes")
	}
	t.Parallel() // waits more than it computes (see doc.go)
	const grace = 3 * time.Second
	c := StartWith(t, 3, "--ae-interval", "1s", "--tombstone-grace", grace.String(), "--gc-interval", "500ms", "--scrub-rate", "-1")
	c.WaitRaftReady(120*time.Second, 0)
	ctx := t.Context()
	n1, n3 := c.Nodes[0], c.Nodes[2]
	const key = "doomed"
	if code, err := n1.Set(ctx, key, "alive", "all"); err != nil || code != http.StatusOK {
		t.Fatalf("set: %d %v", code, err)
	}
	n3.Pause()
	code, _, err := n1.Do(ctx, http.MethodDelete, "/api/delete", map[string][]string{"key": {key}, "consistency": {"quorum"}}, nil)
	if err != nil || code != http.StatusOK {
		t.Fatalf("delete with n3 away: %d %v", code, err)
	}
	deleted := time.Now()
	// Past the grace period with n3 away, long enough for collector passes
	// that see n3 dead and passes whose reads of n3 time out (10 s):
	// nothing may be collected.
	c.WaitFor(2*time.Minute, "the grace period to pass with n3 away", func(ctx context.Context) error {
		if time.Since(deleted) < grace+15*time.Second {
			return fmt.Errorf("%v since the delete", time.Since(deleted))
		}
		s, err := n1.Stats(ctx)
		if err != nil {
			return err
		}
		for _, m := range s.Members {
			if m.ID == n3.ID && m.Liveness == "alive" {
				return fmt.Errorf("n1 still sees %s alive", n3.ID)
			}
		}
		return nil
	})
	for _, nd := range c.Nodes[:2] {
		n, err := nd.Metric(ctx, "ringkv_antientropy_tombstones_collected_total")
		if err != nil {
			t.Fatal(err)
		}
		if n != 0 {
			t.Fatalf("%s collected %v tombstones while a replica was away", nd.ID, n)
		}
	}
	n3.Resume()
	c.WaitConverged(60 * time.Second)

	out, err := exec.CommandContext(ctx, Binary(t), "cluster", "repair", "--http-addr", n1.HTTPAddr).CombinedOutput()
	if err != nil {
		t.Fatalf("ringkv cluster repair: %v\n%s", err, out)
	}
	t.Logf("ringkv cluster repair:\n%s", out)
	if !strings.Contains(string(out), "n3") {
		t.Fatalf("repair output names no n3:\n%s", out)
	}

	// The key never reads back, at any level through any node, until the
	// tombstone is collected on every replica, nor after.
	check := func(ctx context.Context) error {
		for _, nd := range c.Nodes {
			for _, level := range []string{"one", "quorum", "all"} {
				got, code, err := nd.Get(ctx, key, level)
				if err != nil {
					return err
				}
				if code == http.StatusOK {
					t.Fatalf("deleted key came back: %q at %s via %s", got, level, nd.ID)
				}
			}
		}
		return nil
	}
	c.WaitFor(2*time.Minute, "the tombstone to be collected on every replica", func(ctx context.Context) error {
		if err := check(ctx); err != nil {
			return err
		}
		for _, nd := range c.Nodes {
			n, err := nd.Metric(ctx, "ringkv_antientropy_tombstones_collected_total")
			if err != nil {
				return err
			}
			if n < 1 {
				return fmt.Errorf("%s has collected nothing yet", nd.ID)
			}
		}
		return nil
	})
	// A few more exchange cycles after collection: still gone, trees equal.
	c.WaitFor(time.Minute, "trees equal after collection", c.rootsEqual)
	if err := check(ctx); err != nil {
		t.Fatal(err)
	}
}
