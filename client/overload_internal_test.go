package client

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/ringkv/ringkv/proto/kvpb"
)

// busyNode answers OVERLOADED to every operation of its first refuse
// Batch calls, then runs them; it counts Batch and Do calls.
type busyNode struct {
	kvpb.DRPCClientUnimplementedServer

	mu             sync.Mutex
	refuse         int
	batches, singl int
	ops            int // operations of the Batch calls
}

func (n *busyNode) Batch(_ context.Context, req *kvpb.ClientBatchRequest) (*kvpb.ClientBatchResponse, error) {
	n.mu.Lock()
	defer n.mu.Unlock()
	n.batches++
	n.ops += len(req.GetOps())
	resp := &kvpb.ClientBatchResponse{Header: hdr}
	for range req.GetOps() {
		r := &kvpb.ClientResult{}
		if n.batches <= n.refuse {
			r = &kvpb.ClientResult{Error: kvpb.ErrorCode_ERROR_CODE_OVERLOADED, Message: "fake: overloaded"}
		}
		resp.Results = append(resp.Results, r)
	}
	return resp, nil
}

func (n *busyNode) Do(_ context.Context, _ *kvpb.ClientRequest) (*kvpb.ClientResponse, error) {
	n.mu.Lock()
	defer n.mu.Unlock()
	n.singl++
	return &kvpb.ClientResponse{Header: hdr, Result: &kvpb.ClientResult{}}, nil
}

// TestBatchRefusedGoesAgainAsABatch: operations a node refuses as
// overloaded go again as one Batch after a backoff, not one call each,
// until the attempts run out (ErrOverloaded within ErrUnavailable).
func TestBatchRefusedGoesAgainAsABatch(t *testing.T) {
	ops := make([]Op, 50)
	for i := range ops {
		ops[i] = SetOp(fmt.Sprintf("k%d", i), []byte("v"))
	}
	n := &busyNode{refuse: 3}
	c, err := newClient([]string{serveClient(t, n)}, []Option{WithRetry(8, time.Millisecond, 5*time.Millisecond)})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = c.Close() })
	for i, r := range c.Batch(t.Context(), ops) {
		if r.Err != nil {
			t.Fatalf("op %d: %v", i, r.Err)
		}
	}
	n.mu.Lock()
	batches, singles, sent := n.batches, n.singl, n.ops
	n.mu.Unlock()
	if batches != 4 || singles != 0 || sent != 4*len(ops) {
		t.Fatalf("%d Batch calls of %d operations and %d single calls; want 4 of %d and none", batches, sent, singles, 4*len(ops))
	}

	// Refused more times than the attempts allow.
	n2 := &busyNode{refuse: 100}
	c2, err := newClient([]string{serveClient(t, n2)}, []Option{WithRetry(3, time.Millisecond, 5*time.Millisecond)})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = c2.Close() })
	for i, r := range c2.Batch(t.Context(), ops[:5]) {
		if !errors.Is(r.Err, ErrOverloaded) || !errors.Is(r.Err, ErrUnavailable) {
			t.Fatalf("op %d: got %v, want ErrOverloaded within ErrUnavailable", i, r.Err)
		}
	}
	n2.mu.Lock()
	defer n2.mu.Unlock()
	if n2.batches != 3 || n2.singl != 0 {
		t.Fatalf("%d Batch calls, %d single calls; want 3 and none", n2.batches, n2.singl)
	}
}
