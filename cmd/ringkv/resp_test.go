package main

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"regexp"
	"testing"
	"time"

	"github.com/ringkv/ringkv/internal/testcluster"
)

// TestDevRedisCLI is issue 19's redis-cli script against `ringkv dev` as
// a user runs it: dev on its own ports and data directory, then, once
// every node is ready (/ready: joined, a leader for each of its raft
// groups), redis-cli driven by testcluster.RedisCLIScript against n1's
// Redis port, its output compared byte for byte with what Redis prints
// (testcluster.RedisCLIWant).
func TestDevRedisCLI(t *testing.T) {
	testcluster.RedisCLIBinary(t) // skip before starting anything
	start := time.Now()
	d := startDev(t)
	joined := time.Since(start)
	out := d.out.String()
	https := regexp.MustCompile(`http://(127\.0\.0\.1:\d+)`).FindAllStringSubmatch(out, -1)
	redis := regexp.MustCompile(`redis (127\.0\.0\.1:\d+)`).FindAllStringSubmatch(out, -1)
	if len(https) != 3 || len(redis) != 3 {
		t.Fatalf("dev printed %d HTTP and %d Redis addresses, want 3 of each:\n%s", len(https), len(redis), out)
	}
	// n1, which founded every raft group, is ready in seconds; n2 and n3
	// once the groups have taken them in, which under -race on a loaded
	// machine once took over a minute.
	deadline := time.Now().Add(2 * time.Minute)
	for i, h := range https {
		for {
			err := ready(t.Context(), h[1])
			if err == nil {
				t.Logf("n%d ready after %v", i+1, time.Since(start).Round(time.Millisecond))
				break
			}
			if time.Now().After(deadline) {
				t.Fatalf("dev's n%d (%s) never became ready: %v\n%s", i+1, h[1], err, d.errOut.String())
			}
			tick := time.NewTimer(50 * time.Millisecond)
			<-tick.C
		}
	}
	t.Logf("dev: nodes joined in %v, ready in %v", joined.Round(time.Millisecond), time.Since(start).Round(time.Millisecond))
	cli := time.Now()
	testcluster.RedisCLI(t.Context(), t, redis[0][1])
	t.Logf("redis-cli script: %v", time.Since(cli).Round(time.Millisecond))
}

// ready returns nil when GET /ready on the HTTP address addr answers 200.
func ready(ctx context.Context, addr string) error {
	ctx, cancel := context.WithTimeout(ctx, 2*time.Second)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, "http://"+addr+"/ready", nil)
	if err != nil {
		return fmt.Errorf("ready: %w", err)
	}
	res, err := http.DefaultClient.Do(req)
	if err != nil {
		return fmt.Errorf("ready: %w", err)
	}
	body, err := io.ReadAll(res.Body)
	_ = res.Body.Close() // read fully above
	if err != nil {
		return fmt.Errorf("ready: %w", err)
	}
	if res.StatusCode != http.StatusOK {
		return fmt.Errorf("ready: HTTP %d: %s", res.StatusCode, body)
	}
	return nil
}
