package coordinator

import (
	"context"
	"errors"
	"net/http"
	"net/http/httptest"
	"slices"
	"testing"
	"time"

	"github.com/ringkv/ringkv/proto/kvpb"
)

// The drain gate: a request that entered before StartDrain runs to the
// end and WaitIdle waits for it; requests after it are refused on every
// entry point (Do, Batch, List, HTTP) with CLOSED / 503 before anything
// is done; Undrain takes requests again.
func TestDrainGate(t *testing.T) {
	tc := newTestCluster(t, nil)
	c := tc.coords["n1"]
	s := NewClientServer(c, fixedMembers{{ID: "n1", RPCAddr: "a:1", Alive: true, Status: "joined", Draining: true}})
	ctx := t.Context()
	if err := c.WaitIdle(ctx); !errors.Is(err, ErrNotDraining) {
		t.Fatalf("WaitIdle before a drain: got %v, want ErrNotDraining", err)
	}
	if !c.gate.enter() { // a request in flight
		t.Fatal("gate refused before draining")
	}
	c.StartDrain()
	c.StartDrain() // a second call changes nothing
	if !c.Draining() || c.InFlight() != 1 {
		t.Fatalf("draining %v, in flight %d; want true, 1", c.Draining(), c.InFlight())
	}
	short, cancel := context.WithTimeout(ctx, 20*time.Millisecond)
	err := c.WaitIdle(short)
	cancel()
	if !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("WaitIdle with a request in flight: got %v, want a deadline error", err)
	}
	idle := make(chan error, 1)
	go func() { idle <- c.WaitIdle(ctx) }()
	c.gate.exit()
	if err := <-idle; err != nil {
		t.Fatalf("WaitIdle once the request ended: %v", err)
	}

	set := &kvpb.ClientOp{Kind: kvpb.ClientOp_KIND_SET, Key: []byte("k"), Value: []byte("v")}
	resp, err := s.Do(ctx, &kvpb.ClientRequest{Op: set})
	if err != nil || resp.GetResult().GetError() != kvpb.ErrorCode_ERROR_CODE_CLOSED {
		t.Fatalf("Do while draining: got %v, %v; want CLOSED", resp, err)
	}
	batch, err := s.Batch(ctx, &kvpb.ClientBatchRequest{Ops: []*kvpb.ClientOp{set, set}})
	if err != nil || len(batch.GetResults()) != 2 || batch.GetResults()[1].GetError() != kvpb.ErrorCode_ERROR_CODE_CLOSED {
		t.Fatalf("Batch while draining: got %v, %v; want CLOSED twice", batch, err)
	}
	list, err := s.List(ctx, &kvpb.ClientListRequest{Prefix: []byte("k")})
	if err != nil || list.GetError() != kvpb.ErrorCode_ERROR_CODE_CLOSED {
		t.Fatalf("List while draining: got %v, %v; want CLOSED", list, err)
	}
	rec := httptest.NewRecorder()
	HTTPHandler(c).ServeHTTP(rec, httptest.NewRequest(http.MethodGet, "/api/get?key=k", nil))
	if rec.Code != http.StatusServiceUnavailable {
		t.Errorf("HTTP get while draining: got %d, want 503", rec.Code)
	}
	if time.Since(c.LastRefused()) > time.Minute {
		t.Errorf("LastRefused %v: want just now", c.LastRefused())
	}
	if _, found, err := tc.coords["n2"].Get(ctx, []byte("k"), All); err != nil || found {
		t.Errorf("a refused write was applied: found %v, %v", found, err)
	}
	top, err := s.Topology(ctx, &kvpb.TopologyRequest{})
	if err != nil || !top.GetMembers()[0].GetDraining() {
		t.Errorf("Topology: got %v, %v; want n1 draining", top.GetMembers(), err)
	}

	c.Undrain()
	if err := c.WaitIdle(ctx); !errors.Is(err, ErrNotDraining) {
		t.Errorf("WaitIdle after Undrain: got %v, want ErrNotDraining", err)
	}
	resp, err = s.Do(ctx, &kvpb.ClientRequest{Op: set})
	if err != nil || resp.GetResult().GetError() != kvpb.ErrorCode_ERROR_CODE_UNSPECIFIED {
		t.Fatalf("Do after Undrain: got %v, %v; want success", resp, err)
	}
}

// drainingLiveness is alive for everyone but dead, draining for drains.
type drainingLiveness struct{ dead, drains string }

func (d drainingLiveness) Alive(id string) bool    { return id != d.dead }
func (d drainingLiveness) Draining(id string) bool { return id == d.drains }

func TestReadOrderAsksDrainingLast(t *testing.T) {
	c := &Coordinator{cfg: Config{NodeID: "n1"}}
	c.deps.Liveness = drainingLiveness{dead: "n4", drains: "n2"}
	got := c.readOrder([]string{"n4", "n2", "n1", "n3"})
	if want := []string{"n1", "n3", "n2", "n4"}; !slices.Equal(got, want) {
		t.Errorf("readOrder: got %v, want %v", got, want)
	}
}

// FlushHints replays the hints of a member that came back at once, and
// gives up at its deadline on those of a member still down.
func TestFlushHints(t *testing.T) {
	hc := newHintCluster(t, func(c *Config) { c.HintReplayInterval = time.Hour })
	ctx := t.Context()
	hc.down("n3", true)
	for _, k := range []string{"a", "b", "c", "d"} {
		if err := hc.coords["n1"].Set(ctx, []byte(k), []byte("v"), Quorum); err != nil {
			t.Fatal(err)
		}
	}
	waitFor(t, "hints stored", func() bool { return hc.coords["n1"].HintsPending("n3") > 0 })
	if err := hc.coords["n1"].FlushHints(ctx); err != nil {
		t.Fatalf("FlushHints with n3 down: %v, want nil (nothing to do for a dead member)", err)
	}
	hc.trans.setDown("n3", false) // reachable, but gossip has not noticed
	hc.live.set("n3", true)
	short, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	if err := hc.coords["n1"].FlushHints(short); err != nil {
		t.Fatalf("FlushHints: %v", err)
	}
	if n := hc.coords["n1"].HintsPending("n3"); n != 0 {
		t.Errorf("hints left for n3: %d, want 0", n)
	}
	if err := (&Coordinator{}).FlushHints(ctx); err != nil {
		t.Errorf("FlushHints without hinted handoff: %v", err)
	}
}
