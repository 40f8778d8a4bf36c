package node

import (
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// sumSeries adds up every series of a metric family on a node's /metrics.
func sumSeries(t *testing.T, httpAddr, name string) float64 {
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
	var sum float64
	for line := range strings.Lines(string(b)) {
		if !strings.HasPrefix(line, name+"{") && !strings.HasPrefix(line, name+" ") {
			continue
		}
		f := strings.Fields(line)
		v, err := strconv.ParseFloat(f[len(f)-1], 64)
		if err != nil {
			t.Fatal(err)
		}
		sum += v
	}
	return sum
}

// TestHTTPFloodIsRefusedAtOnce floods one node of a real cluster over
// HTTP with far more concurrent writes than its client budget: the
// excess is answered 429 with Retry-After and a JSON error, everything
// else succeeds, no raft group holds an election, and the node serves
// normally afterwards.
func TestHTTPFloodIsRefusedAtOnce(t *testing.T) {
	const (
		bound   = 4
		workers = 12
		each    = 60
	)
	nodes := startClusterWith(t, 3, func(c *Config) {
		c.Coordinator.MaxInflight = bound
		c.Ring.Partitions = 8 // fewer groups to settle on a shared machine
	})
	target := nodes[0].HTTPAddr()
	// Elections show as raft terms: the sum of every group's term on
	// every node moves with each one (a leader's lost heartbeat may
	// also blank the leader a follower knows for a moment, which
	// ringkv_consensus_leader_changes_total counts as a change).
	raftTerms := func() float64 {
		var sum float64
		for _, n := range nodes {
			sum += sumSeries(t, n.HTTPAddr(), "ringkv_consensus_term")
		}
		return sum
	}
	// Let the cluster settle first: every group has its three voters and
	// is led by its partition's primary (where reconcile moves it after
	// forming), and no term moved for a second. On a machine too loaded
	// for raft to keep its leaders (heartbeats late without any flood),
	// and under the race detector, the election check is left out; the
	// rest still runs.
	var before float64
	changed := time.Now()
	settled := !raceEnabled && pollUntil(30*time.Second, func() bool {
		if now := raftTerms(); now != before {
			before, changed = now, time.Now()
		}
		r := nodes[0].Gossip().Ring()
		for _, g := range nodes[0].groups.Groups() {
			f := g.Raft().GetConfiguration()
			if f.Error() != nil || len(f.Configuration().Servers) != 3 || g.Leader() != r.Replicas(g.ID())[0] {
				changed = time.Now()
				return false
			}
		}
		return time.Since(changed) > time.Second
	})
	if !settled && !raceEnabled {
		t.Log("the groups did not settle in 30s (a loaded machine): elections are not checked")
	}

	tr := &http.Transport{MaxIdleConnsPerHost: workers}
	defer tr.CloseIdleConnections()
	hc := &http.Client{Transport: tr, Timeout: 10 * time.Second}
	type answer struct {
		status     int
		retryAfter string
		errMsg     string
		took       time.Duration
	}
	perWorker := each
	if raceEnabled {
		perWorker = each / 3 // CI's budget: the race detector slows each request several times
	}
	answers := make([][]answer, workers)
	var wg sync.WaitGroup
	for w := range workers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range perWorker {
				body := fmt.Sprintf(`{"key":"flood:%d:%d","value":"v"}`, w, i)
				req, err := http.NewRequestWithContext(t.Context(), http.MethodPost, "http://"+target+"/api/set", strings.NewReader(body))
				if err != nil {
					t.Error(err)
					return
				}
				start := time.Now()
				resp, err := hc.Do(req)
				if err != nil {
					t.Error(err)
					return
				}
				b, err := io.ReadAll(resp.Body)
				_ = resp.Body.Close() // read fully
				if err != nil {
					t.Error(err)
					return
				}
				a := answer{status: resp.StatusCode, retryAfter: resp.Header.Get("Retry-After"), took: time.Since(start)}
				var e struct {
					Error string `json:"error"`
				}
				if resp.StatusCode != http.StatusOK {
					if err := json.Unmarshal(b, &e); err != nil {
						t.Errorf("status %d: body %q is not JSON: %v", resp.StatusCode, b, err)
					}
					a.errMsg = e.Error
				}
				answers[w] = append(answers[w], a)
			}
		}()
	}
	wg.Wait()
	var ok, refused []time.Duration
	late := 0
	for _, as := range answers {
		for _, a := range as {
			switch a.status {
			case http.StatusOK:
				ok = append(ok, a.took)
			case http.StatusTooManyRequests:
				refused = append(refused, a.took)
				if a.retryAfter != "1" || !strings.Contains(a.errMsg, "overloaded") {
					t.Errorf("429 with Retry-After %q and error %q; want 1 and overloaded", a.retryAfter, a.errMsg)
				}
			case http.StatusServiceUnavailable:
				// Admitted, then too slow for its deadline: only on a
				// machine loaded far beyond this test.
				late++
			default:
				t.Errorf("status %d: %s", a.status, a.errMsg)
			}
		}
	}
	if len(refused) == 0 {
		t.Fatalf("%d concurrent writers against a bound of %d: nothing refused", workers, bound)
	}
	if len(ok) == 0 {
		t.Fatal("nothing admitted")
	}
	slices.Sort(ok)
	slices.Sort(refused)
	t.Logf("admitted %d (p50 %v, max %v; %d more past their deadline), refused %d (p50 %v, max %v)",
		len(ok), ok[len(ok)/2], ok[len(ok)-1], late, len(refused), refused[len(refused)/2], refused[len(refused)-1])
	if got := sumSeries(t, target, "ringkv_coordinator_admission_refused_total"); got != float64(len(refused)) {
		t.Errorf("refusals counted: got %v, want %d", got, len(refused))
	}
	switch after := raftTerms(); {
	case after == before:
	case !settled || raceEnabled:
		// Under the race detector raft misses heartbeats on a shared
		// machine without any flood: not a verdict on admission.
		t.Logf("raft terms moved during the flood: sum %v -> %v (not checked: settled %v, race detector %v)", before, after, settled, raceEnabled)
	default:
		t.Errorf("raft terms moved during the flood (an election): sum %v -> %v", before, after)
	}
	// The node is healthy and serves at once.
	var health map[string]any
	if code := getJSON(t, "http://"+target+"/health", &health); code != http.StatusOK {
		t.Fatalf("/health: %d %v", code, health)
	}
	waitUntil(t, 10*time.Second, "a write after the flood", func() bool {
		req, err := http.NewRequestWithContext(t.Context(), http.MethodPost, "http://"+target+"/api/set", strings.NewReader(`{"key":"after","value":"v"}`))
		if err != nil {
			t.Fatal(err)
		}
		resp, err := hc.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		_ = resp.Body.Close() // status only
		return resp.StatusCode == http.StatusOK
	})
}

// pollUntil polls cond every 20ms until it holds (true) or timeout
// passes (false).
func pollUntil(timeout time.Duration, cond func() bool) bool {
	deadline := time.Now().Add(timeout)
	for !cond() {
		if time.Now().After(deadline) {
			return false
		}
		tick := time.NewTimer(20 * time.Millisecond)
		<-tick.C
	}
	return true
}

// TestBusyOnAdmit: every request the node admits calls Deps.Busy (the
// idle-procs controller of `ringkv serve` wakes on it).
func TestBusyOnAdmit(t *testing.T) {
	var calls atomic.Int64
	nd, err := Open(soloConfig(t), Deps{Busy: func() { calls.Add(1) }})
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = nd.Close() }() // the test's verdict is above
	waitUntil(t, 10*time.Second, "a write", func() bool {
		return postBody(t, "http://"+nd.HTTPAddr()+"/api/set", strings.NewReader(`{"key":"k","value":"v"}`)) == http.StatusOK
	})
	if calls.Load() == 0 {
		t.Fatal("Deps.Busy never called for an admitted write")
	}
}
