package client_test

import (
	"errors"
	"fmt"
	"io"
	"net/http"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/ringkv/ringkv/client"
	"github.com/ringkv/ringkv/coordinator"
	"github.com/ringkv/ringkv/node"
)

// metricValue scrapes one series (name with its labels, as exposed) from
// a node's /metrics.
func metricValue(t *testing.T, httpAddr, series string) float64 {
	t.Helper()
	req, err := http.NewRequestWithContext(t.Context(), http.MethodGet, "http://"+httpAddr+"/metrics", nil)
	if err != nil {
		t.Fatal(err)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = resp.Body.Close() }() // read fully below
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	for line := range strings.Lines(string(b)) {
		if rest, ok := strings.CutPrefix(line, series+" "); ok {
			v, err := strconv.ParseFloat(strings.TrimSpace(rest), 64)
			if err != nil {
				t.Fatal(err)
			}
			return v
		}
	}
	t.Fatalf("series %s not exposed", series)
	return 0
}

// TestOverloadedIsRetried: a node at its admission bound answers
// OVERLOADED; the client backs off and retries, and returns
// ErrOverloaded (within ErrUnavailable) only when its attempts run out.
// A call refused at first succeeds once the node has room again.
func TestOverloadedIsRetried(t *testing.T) {
	nodes := startClusterWith(t, 1, func(c *node.Config) { c.Coordinator.MaxInflight = 1 })
	nd := nodes[0]
	refused := func() float64 {
		return metricValue(t, nd.HTTPAddr(), `ringkv_coordinator_admission_refused_total{plane="drpc",reason="inflight"}`)
	}
	ctx := t.Context()
	hold, err := nd.Coordinator().Admit(coordinator.PlaneHTTP, 1) // another client holds the one slot
	if err != nil {
		t.Fatal(err)
	}
	few, err := client.New([]string{nd.RPCAddr()}, client.WithRetry(3, time.Millisecond, 5*time.Millisecond))
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = few.Close() }()
	err = few.Set(ctx, "k", []byte("v"))
	if !errors.Is(err, client.ErrOverloaded) || !errors.Is(err, client.ErrUnavailable) {
		t.Fatalf("set at the bound: got %v, want ErrOverloaded within ErrUnavailable", err)
	}
	if got := refused(); got != 3 {
		t.Fatalf("refusals: got %v, want 3 (one per attempt)", got)
	}

	// Without client-side throttling, which would refuse most of these
	// retries itself (TestClientThrottlesANodeThatRefuses).
	many, err := client.New([]string{nd.RPCAddr()}, client.WithRetry(1000, 5*time.Millisecond, 20*time.Millisecond), client.WithThrottleRatio(0))
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = many.Close() }()
	done := make(chan error, 1) // buffered: read below
	go func() { done <- many.Set(ctx, "k", []byte("v")) }()
	waitFor(t, 10*time.Second, "the retried call to be refused", func() error {
		if got := refused(); got < 5 {
			return fmt.Errorf("%v refusals", got)
		}
		return nil
	})
	hold()
	if err := <-done; err != nil {
		t.Fatalf("set retried after the node had room: %v", err)
	}
	v, err := many.Get(ctx, "k")
	if err != nil || string(v) != "v" {
		t.Fatalf("get: %q, %v", v, err)
	}
}

// TestClientThrottlesANodeThatRefuses: once a node has refused many calls
// as overloaded, the client refuses most further calls to it itself
// (ErrOverloaded, never sent), so the node reads a fraction of them; once
// the node has room again the client's calls succeed within its window.
func TestClientThrottlesANodeThatRefuses(t *testing.T) {
	nodes := startClusterWith(t, 1, func(c *node.Config) { c.Coordinator.MaxInflight = 1 })
	nd := nodes[0]
	refused := func() float64 {
		return metricValue(t, nd.HTTPAddr(), `ringkv_coordinator_admission_refused_total{plane="drpc",reason="inflight"}`)
	}
	hold, err := nd.Coordinator().Admit(coordinator.PlaneHTTP, 1)
	if err != nil {
		t.Fatal(err)
	}
	c, err := client.New([]string{nd.RPCAddr()}, client.WithRetry(1, time.Millisecond, time.Millisecond))
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = c.Close() }()
	const calls = 400
	before := refused()
	local := 0
	for i := range calls {
		err := c.Set(t.Context(), fmt.Sprintf("k%d", i), []byte("v"))
		if !errors.Is(err, client.ErrOverloaded) {
			t.Fatalf("call %d at the bound: got %v, want ErrOverloaded", i, err)
		}
		if strings.Contains(err.Error(), "not sent") {
			local++
		}
	}
	sent := refused() - before
	t.Logf("%d calls: %v reached the node, %d refused by the client", calls, sent, local)
	if sent+float64(local) != calls {
		t.Errorf("node refusals %v + client refusals %d != %d calls", sent, local, calls)
	}
	if sent > calls/4 {
		t.Errorf("the node refused %v of %d calls: the client did not throttle", sent, calls)
	}
	hold()
	// While its window holds refusals the client still sends about one
	// call per window (throttleWindow, 5 s: its own refusals count as
	// requests, as in the SRE rule), so a caller polling every 20 ms
	// waits a few seconds, exponentially distributed: 15 s went by
	// without a send in one CI run (about 1 in 20); 45 s, about 1 in
	// 8,000.
	waitFor(t, 45*time.Second, "a call to succeed once the node has room", func() error {
		return c.Set(t.Context(), "after", []byte("v"))
	})
}
