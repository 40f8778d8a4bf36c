package testcluster

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"net/url"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/ringkv/ringkv/client"
)

// leads returns the groups nd leads, as it reports them.
func leads(ctx context.Context, nd *Node) ([]uint32, error) {
	s, err := nd.Stats(ctx)
	if err != nil {
		return nil, err
	}
	var out []uint32
	for _, g := range s.Groups {
		if g.Leader == nd.ID && g.State == "Leader" {
			out = append(out, g.Partition)
		}
	}
	return out, nil
}

// newLoadClient returns a client of every node of c.
func newLoadClient(t *testing.T, c *Cluster) *client.Client {
	t.Helper()
	var addrs []string
	for _, nd := range c.Nodes {
		addrs = append(addrs, nd.RPCAddr)
	}
	cl, err := client.New(addrs, client.WithRefreshInterval(500*time.Millisecond))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = cl.Close() })
	return cl
}

// TestSIGTERMDrainsUnderLoad stops one node of three with SIGTERM while
// a steady load of quorum and linearizable writes, linearizable reads
// and compare-and-sets runs through the client library: the node hands
// over the leadership of its groups before it exits, no request fails,
// and every acknowledged write is read back once it is running again.
func TestSIGTERMDrainsUnderLoad(t *testing.T) {
	if testing.Short() {
		t.Skip("starts a cluster")
	}
	c := StartOptions(t, Options{Nodes: 3, NoRace: true})
	c.WaitRaftReady(60*time.Second, 3)
	victim := c.Nodes[0]
	var led []uint32
	c.WaitFor(30*time.Second, "n1 to lead some group", func(ctx context.Context) error {
		var err error
		if led, err = leads(ctx, victim); err == nil && len(led) == 0 {
			err = fmt.Errorf("n1 leads no group")
		}
		return err
	})
	load := newSteadyLoad(newLoadClient(t, c), 4)
	stop := load.run()
	waitOps(t, load, 200)
	start := time.Now()
	victim.Stop()
	t.Logf("n1 (leading groups %v) stopped by SIGTERM in %s", led, time.Since(start).Round(time.Millisecond))
	waitOps(t, load, 400)
	stop()

	b, err := os.ReadFile(victim.LogPath)
	if err != nil {
		t.Fatal(err)
	}
	log := string(b)
	if !strings.Contains(log, `msg=drained`) || strings.Contains(log, "drain not finished") {
		t.Errorf("n1 did not finish its drain (leadership handed over, requests finished) before it stopped; log tail:\n%s", tail(log, 20))
	}
	victim.Start()
	c.WaitRaftReady(60*time.Second, 3)
	res := load.verify(t)
	t.Logf("load: %s", res)
	if res.failures() != 0 {
		t.Errorf("%d requests failed during the drain, want 0", res.failures())
	}
	if len(res.lost) != 0 {
		t.Errorf("%d acknowledged writes lost, want 0", len(res.lost))
	}
}

// TestClusterDrainEndpoint drains a node over HTTP without stopping it:
// it answers 200 once it leads no group, /ready answers 503 with
// "draining": true, the other nodes see it draining, and undrain makes it
// ready again.
func TestClusterDrainEndpoint(t *testing.T) {
	if testing.Short() {
		t.Skip("starts a cluster")
	}
	c := StartOptions(t, Options{Nodes: 3, NoRace: true})
	c.WaitRaftReady(60*time.Second, 3)
	n2 := c.Nodes[1]
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	if code, body, err := c.Nodes[0].Do(ctx, http.MethodPost, "/api/cluster/drain", url.Values{"id": {"n2"}}, nil); err != nil || code != http.StatusConflict {
		t.Fatalf("drain of n2 sent to n1: got %d %s (%v), want 409", code, body, err)
	}
	code, body, err := n2.Do(ctx, http.MethodPost, "/api/cluster/drain", url.Values{"id": {"n2"}, "timeout": {"30s"}}, nil)
	if err != nil || code != http.StatusOK {
		t.Fatalf("drain: got %d %s (%v), want 200", code, body, err)
	}
	var rep struct {
		Done    bool     `json:"done"`
		Leading []uint32 `json:"leading"`
	}
	if err := json.Unmarshal(body, &rep); err != nil || !rep.Done || len(rep.Leading) != 0 {
		t.Fatalf("drain answer %s (%v): want done, leading nothing", body, err)
	}
	code, body, err = n2.Do(ctx, http.MethodGet, "/ready", nil, nil)
	if err != nil || code != http.StatusServiceUnavailable || !strings.Contains(string(body), `"draining":true`) {
		t.Errorf("/ready while draining: got %d %s (%v), want 503 with draining true", code, body, err)
	}
	c.WaitFor(20*time.Second, "n1 to see n2 draining", func(ctx context.Context) error {
		_, body, err := c.Nodes[0].Do(ctx, http.MethodGet, "/api/cluster/status", nil, nil)
		if err != nil {
			return err
		}
		var st struct {
			Members []struct {
				ID       string `json:"id"`
				Draining bool   `json:"draining"`
			} `json:"members"`
		}
		if err := json.Unmarshal(body, &st); err != nil {
			return err
		}
		for _, m := range st.Members {
			if m.ID == "n2" && m.Draining {
				return nil
			}
		}
		return fmt.Errorf("n1's status: %s", body)
	})
	// Leadership stays away while draining. A leader that has not yet
	// heard of the drain may still hand n2 a group whose primary it is
	// (a CI run saw it, 2026-12-06), and n2 hands it back at its next
	// reconcile tick; so n2 must come to lead nothing and keep leading
	// nothing for several reconcile rounds (3 s).
	var quiet time.Time
	c.WaitFor(30*time.Second, "n2 to lead nothing for 3 s while draining", func(ctx context.Context) error {
		l, err := leads(ctx, n2)
		switch {
		case err != nil:
			return err
		case len(l) > 0:
			quiet = time.Time{}
			return fmt.Errorf("n2 leads %v while draining", l)
		case quiet.IsZero():
			quiet = time.Now()
		}
		if d := time.Since(quiet); d < 3*time.Second {
			return fmt.Errorf("n2 has led nothing for %v", d.Round(time.Millisecond))
		}
		return nil
	})
	// A client request to n2 is refused with CLOSED, which the client
	// library retries elsewhere: the call succeeds.
	cl, err := client.New([]string{n2.RPCAddr})
	if err != nil {
		t.Fatal(err)
	}
	defer cl.Close() //nolint:errcheck // test cleanup
	if err := cl.Set(ctx, "through-n2", []byte("v"), client.WithConsistency(client.Linearizable)); err != nil {
		t.Errorf("set through a draining seed: %v", err)
	}
	if code, body, err := n2.Do(ctx, http.MethodPost, "/api/cluster/undrain", url.Values{"id": {"n2"}}, nil); err != nil || code != http.StatusOK {
		t.Fatalf("undrain: got %d %s (%v), want 200", code, body, err)
	}
	c.WaitRaftReady(30*time.Second, 3)
}

// waitOps waits until the load has made n more successful operations.
func waitOps(t *testing.T, l *steadyLoad, n int) {
	t.Helper()
	count := func() int {
		l.mu.Lock()
		defer l.mu.Unlock()
		total := 0
		for _, c := range l.mu.ops {
			total += c
		}
		return total
	}
	target := count() + n
	deadline := time.Now().Add(60 * time.Second)
	tick := time.NewTicker(20 * time.Millisecond)
	defer tick.Stop()
	for count() < target {
		if time.Now().After(deadline) {
			t.Fatalf("the load made fewer than %d operations in a minute", n)
		}
		<-tick.C
	}
}

// tail returns the last n lines of s.
func tail(s string, n int) string {
	lines := strings.Split(strings.TrimRight(s, "\n"), "\n")
	return strings.Join(lines[max(0, len(lines)-n):], "\n")
}
