package coordinator

import (
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/ringkv/ringkv/consensus"
	"github.com/ringkv/ringkv/proto/kvpb"
	"github.com/ringkv/ringkv/replica"
)

// TestAdmissionBudgets takes requests from the budgets until they are
// full: the next is refused at once with ErrOverloaded and counted; a
// release makes room again; the client planes share one budget and the
// peer plane has its own.
func TestAdmissionBudgets(t *testing.T) {
	reg := prometheus.NewRegistry()
	cfg := DefaultConfig()
	cfg.MaxInflight, cfg.MaxInflightBytes = 2, 100
	cfg.MaxPeerInflight, cfg.MaxPeerInflightBytes = 1, 0
	a, err := newAdmission(cfg, reg)
	if err != nil {
		t.Fatal(err)
	}
	refused := func(p Plane, reason string) float64 {
		return testutil.ToFloat64(a.m.refused[p][map[string]int{reasonInflight: refusedInflight, reasonBytes: refusedBytes}[reason]])
	}
	r1, err := a.admit(PlaneHTTP, 10)
	if err != nil {
		t.Fatal(err)
	}
	r2, err := a.admit(PlaneRESP, 10)
	if err != nil {
		t.Fatal(err)
	}
	// The client budget is full for every client plane...
	for _, p := range []Plane{PlaneHTTP, PlaneDRPC, PlaneRESP} {
		if _, err := a.admit(p, 1); !errors.Is(err, ErrOverloaded) {
			t.Fatalf("%s beyond MaxInflight: got %v, want ErrOverloaded", p, err)
		}
		if got := refused(p, reasonInflight); got != 1 {
			t.Errorf("%s refused{inflight}: got %v, want 1", p, got)
		}
	}
	// ... and not for the peer plane.
	rp, err := a.admit(PlanePeer, 1<<30)
	if err != nil {
		t.Fatalf("peer call while clients are at their bound: %v", err)
	}
	if _, err := a.admit(PlanePeer, 0); !errors.Is(err, ErrOverloaded) {
		t.Fatalf("peer beyond MaxPeerInflight: got %v, want ErrOverloaded", err)
	}
	if got := testutil.ToFloat64(a.m.inflight[PlaneHTTP]); got != 1 {
		t.Errorf("inflight{http}: got %v, want 1", got)
	}
	rp()
	r1()
	// Bytes: 10 held by r2; 95 more do not fit in 100.
	if _, err := a.admit(PlaneDRPC, 95); !errors.Is(err, ErrOverloaded) {
		t.Fatalf("beyond MaxInflightBytes: got %v, want ErrOverloaded", err)
	}
	if got := refused(PlaneDRPC, reasonBytes); got != 1 {
		t.Errorf("drpc refused{bytes}: got %v, want 1", got)
	}
	// The refusal by bytes gave its request slot back: 90 fit.
	r3, err := a.admit(PlaneDRPC, 90)
	if err != nil {
		t.Fatalf("within the bounds: %v", err)
	}
	r2()
	r3()
	// A request larger than the whole bytes budget is admitted alone.
	r4, err := a.admit(PlaneHTTP, 1<<20)
	if err != nil {
		t.Fatalf("oversized request with nothing else in flight: %v", err)
	}
	r4()
	if got := testutil.ToFloat64(a.m.inflight[PlaneHTTP]); got != 0 {
		t.Errorf("inflight{http} after every release: got %v, want 0", got)
	}
}

// TestAdmissionUnbounded: zero bounds admit everything.
func TestAdmissionUnbounded(t *testing.T) {
	cfg := DefaultConfig()
	cfg.MaxInflight, cfg.MaxInflightBytes, cfg.MaxPeerInflight, cfg.MaxPeerInflightBytes = 0, 0, 0, 0
	a, err := newAdmission(cfg, nil)
	if err != nil {
		t.Fatal(err)
	}
	var releases []func()
	for i := range 10000 {
		r, err := a.admit(Plane(i%int(numPlanes)), 1<<20)
		if err != nil {
			t.Fatalf("request %d: %v", i, err)
		}
		releases = append(releases, r)
	}
	for _, r := range releases {
		r()
	}
}

func TestAdmissionConfigValidate(t *testing.T) {
	cfg := DefaultConfig()
	cfg.NodeID = "n1"
	cfg.MaxInflight, cfg.MaxPeerInflightBytes, cfg.RetryAfter = -1, -1, 0
	err := cfg.Validate()
	for _, want := range []string{"MaxInflight", "MaxPeerInflightBytes", "RetryAfter"} {
		if err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("Validate: got %v, want it to name %s", err, want)
		}
	}
}

// TestHTTPRefusesBeyondBudget: with the client budget taken, the HTTP
// API answers 429 with Retry-After and a JSON error, and serves again
// once the budget has room.
func TestHTTPRefusesBeyondBudget(t *testing.T) {
	tc := newTestCluster(t, func(c *Config) { c.MaxInflight, c.RetryAfter = 1, 1500*time.Millisecond })
	c := tc.coords["n1"]
	srv := httptest.NewServer(HTTPHandler(c))
	defer srv.Close()
	set := func() (*http.Response, map[string]string) {
		t.Helper()
		resp, b := httpDo(t, srv, http.MethodPost, "/api/set", `{"key":"k","value":"v"}`)
		var out map[string]string
		_ = json.Unmarshal(b, &out) // {"success":true} is not a map of strings: checked by status
		return resp, out
	}
	release, err := c.Admit(PlaneRESP, 1) // another plane holds the one slot
	if err != nil {
		t.Fatal(err)
	}
	resp, body := set()
	if resp.StatusCode != http.StatusTooManyRequests {
		t.Fatalf("status: got %d, want 429", resp.StatusCode)
	}
	if got := resp.Header.Get("Retry-After"); got != "2" { // 1.5s rounded up
		t.Errorf("Retry-After: got %q, want \"2\"", got)
	}
	if !strings.Contains(body["error"], "overloaded") {
		t.Errorf("error: got %q, want it to say overloaded", body["error"])
	}
	release()
	if resp, _ := set(); resp.StatusCode != http.StatusOK {
		t.Fatalf("status after release: got %d, want 200", resp.StatusCode)
	}
}

// TestClientServiceRefusesBeyondBudget: the Client service answers
// ERROR_CODE_OVERLOADED, in the result, before doing anything.
func TestClientServiceRefusesBeyondBudget(t *testing.T) {
	tc := newTestCluster(t, func(c *Config) { c.MaxInflight = 1 })
	c := tc.coords["n1"]
	s := NewClientServer(c, nil)
	release, err := c.Admit(PlaneHTTP, 1)
	if err != nil {
		t.Fatal(err)
	}
	op := &kvpb.ClientOp{Kind: kvpb.ClientOp_KIND_SET, Key: []byte("k"), Value: []byte("v")}
	resp, err := s.Do(t.Context(), &kvpb.ClientRequest{Op: op})
	if err != nil {
		t.Fatal(err)
	}
	if got := resp.GetResult().GetError(); got != kvpb.ErrorCode_ERROR_CODE_OVERLOADED {
		t.Fatalf("code: got %v, want OVERLOADED", got)
	}
	if _, found, err := c.Get(t.Context(), []byte("k"), One); err != nil || found {
		t.Fatalf("refused set stored something: found %v, err %v", found, err)
	}
	lresp, err := s.List(t.Context(), &kvpb.ClientListRequest{})
	if err != nil || lresp.GetError() != kvpb.ErrorCode_ERROR_CODE_OVERLOADED {
		t.Fatalf("list: got %v %v, want OVERLOADED", lresp.GetError(), err)
	}
	release()
	resp, err = s.Do(t.Context(), &kvpb.ClientRequest{Op: op})
	if err != nil || resp.GetResult().GetError() != kvpb.ErrorCode_ERROR_CODE_UNSPECIFIED {
		t.Fatalf("after release: got %v %v, want OK", resp.GetResult().GetError(), err)
	}
}

// TestOverloadedAcrossTheWire: the codes of every boundary keep the
// class, the coordinator's and consensus's alike.
func TestOverloadedAcrossTheWire(t *testing.T) {
	for _, err := range []error{
		fmt.Errorf("x: %w", ErrOverloaded),
		fmt.Errorf("group 3: %w", consensus.ErrOverloaded),
	} {
		if got := StatusFor(err); got != http.StatusTooManyRequests {
			t.Errorf("StatusFor(%v): got %d, want 429", err, got)
		}
		if got := clientCode(err, Quorum, true); got != kvpb.ErrorCode_ERROR_CODE_OVERLOADED {
			t.Errorf("clientCode(%v): got %v, want OVERLOADED", err, got)
		}
		if back := errorFor(rpcError(err)); !errors.Is(back, ErrOverloaded) {
			t.Errorf("errorFor(rpcError(%v)): got %v, want ErrOverloaded", err, back)
		}
	}
}

// TestReplicaServerPeerBudget: other coordinators' calls take the peer
// budget; beyond it the Replica service refuses them, coded so that the
// caller sees ErrOverloaded, and merges nothing.
func TestReplicaServerPeerBudget(t *testing.T) {
	tc := newTestCluster(t, func(c *Config) { c.MaxPeerInflight = 1 })
	c := tc.coords["n1"]
	rs, err := NewReplicaServer(tc.stores["n1"], replica.NewClock(nil, 0), ReplicaServerOptions{})
	if err != nil {
		t.Fatal(err)
	}
	rs.SetAdmission(c)
	release, err := c.Admit(PlanePeer, 1)
	if err != nil {
		t.Fatal(err)
	}
	rec := recordToWire(replica.Record{Value: []byte("v"), Timestamp: 1, NodeID: "n2"})
	req := &kvpb.MergeRequest{Records: []*kvpb.KeyedRecord{{Partition: 0, Key: []byte("k"), Record: rec}}}
	_, err = rs.Merge(t.Context(), req)
	if back := errorFor(err); !errors.Is(back, ErrOverloaded) {
		t.Fatalf("merge beyond the peer budget: got %v, want ErrOverloaded", back)
	}
	if _, err := rs.Read(t.Context(), &kvpb.ReadRequest{}); !errors.Is(errorFor(err), ErrOverloaded) {
		t.Fatalf("read beyond the peer budget: got %v, want ErrOverloaded", err)
	}
	if _, err := tc.stores["n1"].Get(0, []byte("k")); !errors.Is(err, replica.ErrNotFound) {
		t.Fatalf("refused merge stored something: %v", err)
	}
	// Client requests do not touch the peer budget.
	if err := c.Set(t.Context(), []byte("k2"), []byte("v"), Quorum); err != nil {
		t.Fatalf("client write while peers are at their bound: %v", err)
	}
	release()
	if _, err := rs.Merge(t.Context(), req); err != nil {
		t.Fatalf("merge after release: %v", err)
	}
}
