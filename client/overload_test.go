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

	many, err := client.New([]string{nd.RPCAddr()}, client.WithRetry(1000, 5*time.Millisecond, 20*time.Millisecond))
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
