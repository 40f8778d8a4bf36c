package client

import (
	"context"
	"errors"
	"fmt"
	"net"
	"sync"
	"testing"
	"time"

	"storj.io/drpc/drpcmanager"
	"storj.io/drpc/drpcmux"
	"storj.io/drpc/drpcserver"
	"storj.io/drpc/drpcstream"

	"github.com/ringkv/ringkv/proto/kvpb"
)

// laneNode is a Client service that answers Gets with the key as value,
// refuses the key "bad" as invalid, records every RPC's operations, and
// holds Gets while hold is set.
type laneNode struct {
	kvpb.DRPCClientUnimplementedServer

	mu   sync.Mutex
	rpcs [][]string // the keys of each Do or Batch, in arrival order
	hold chan struct{}
	seen map[string]bool
}

func (n *laneNode) result(ctx context.Context, op *kvpb.ClientOp) *kvpb.ClientResult {
	n.mu.Lock()
	n.seen[string(op.GetKey())] = true
	hold := n.hold
	n.mu.Unlock()
	if op.GetKind() == kvpb.ClientOp_KIND_GET && hold != nil {
		select {
		case <-hold:
		case <-ctx.Done():
		}
	}
	if string(op.GetKey()) == "bad" {
		return &kvpb.ClientResult{Error: kvpb.ErrorCode_ERROR_CODE_INVALID_ARGUMENT, Message: "bad key"}
	}
	if op.GetKind() == kvpb.ClientOp_KIND_GET {
		return &kvpb.ClientResult{Found: true, Value: op.GetKey()}
	}
	return &kvpb.ClientResult{}
}

func (n *laneNode) record(ops ...*kvpb.ClientOp) {
	keys := make([]string, len(ops))
	for i, op := range ops {
		keys[i] = string(op.GetKey())
	}
	n.mu.Lock()
	n.rpcs = append(n.rpcs, keys)
	n.mu.Unlock()
}

func (n *laneNode) Do(ctx context.Context, req *kvpb.ClientRequest) (*kvpb.ClientResponse, error) {
	n.record(req.GetOp())
	return &kvpb.ClientResponse{Header: &kvpb.ClientHeader{NodeId: "fake"}, Result: n.result(ctx, req.GetOp())}, nil
}

func (n *laneNode) Batch(ctx context.Context, req *kvpb.ClientBatchRequest) (*kvpb.ClientBatchResponse, error) {
	n.record(req.GetOps()...)
	res := make([]*kvpb.ClientResult, len(req.GetOps()))
	var wg sync.WaitGroup
	for i, op := range req.GetOps() {
		wg.Add(1)
		go func() {
			defer wg.Done()
			res[i] = n.result(ctx, op)
		}()
	}
	wg.Wait()
	return &kvpb.ClientBatchResponse{Header: &kvpb.ClientHeader{NodeId: "fake"}, Results: res}, nil
}

func (n *laneNode) rpcCount() int {
	n.mu.Lock()
	defer n.mu.Unlock()
	return len(n.rpcs)
}

func startLaneNode(t *testing.T) (*laneNode, string) {
	t.Helper()
	n := &laneNode{seen: map[string]bool{}}
	return n, serveClient(t, n)
}

// serveClient serves srv as a node's Client service (ManualFlush, as a
// node runs it) on a loopback port until the test ends, and returns its
// address.
func serveClient(t *testing.T, srv kvpb.DRPCClientServer) string {
	t.Helper()
	mux := drpcmux.New()
	if err := kvpb.DRPCRegisterClient(mux, srv); err != nil {
		t.Fatal(err)
	}
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	server := drpcserver.NewWithOptions(mux, drpcserver.Options{
		Manager: drpcmanager.Options{Stream: drpcstream.Options{ManualFlush: true}},
	})
	ctx, cancel := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		_ = server.Serve(ctx, lis) // ends with ctx
	}()
	t.Cleanup(func() { cancel(); wg.Wait() })
	return lis.Addr().String()
}

// poll calls cond until it returns nil, failing t after 5 s.
func poll(t *testing.T, what string, cond func() error) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for {
		err := cond()
		if err == nil {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("waiting for %s: %v", what, err)
		}
		tick := time.NewTimer(time.Millisecond)
		<-tick.C
	}
}

// queued polls until addr's lane at quorum holds want Gets.
func queued(t *testing.T, c *Client, addr string, want int) {
	t.Helper()
	l := c.lane(laneKey{addr: addr, level: kvpb.Consistency_CONSISTENCY_QUORUM})
	poll(t, "queued gets", func() error {
		l.mu.Lock()
		defer l.mu.Unlock()
		if len(l.queue) != want {
			return fmt.Errorf("lane holds %d calls, want %d", len(l.queue), want)
		}
		return nil
	})
}

// TestCoalesce: while a lane's one RPC is in flight, the Gets made
// meanwhile wait and then travel together in one Batch RPC; each gets its
// own outcome; a write is never held behind them; a Get whose context ends
// while it waits is never sent.
func TestCoalesce(t *testing.T) {
	node, addr := startLaneNode(t)
	c, err := newClient([]string{addr}, []Option{WithCoalesceConns(1), WithPipeReads(false)})
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = c.Close() }()
	ctx := t.Context()

	release := make(chan struct{})
	node.mu.Lock()
	node.hold = release
	node.mu.Unlock()

	// The first Get takes the lane's one RPC slot and is held.
	type answer struct {
		v   []byte
		err error
	}
	first := make(chan answer, 1)
	go func() {
		v, err := c.Get(ctx, "first")
		first <- answer{v, err}
	}()
	poll(t, "the first get at the node", func() error {
		if node.rpcCount() < 1 {
			return errors.New("not arrived")
		}
		return nil
	})

	// Writes travel alone: answered while the Gets are held.
	if err := c.Set(ctx, "w", []byte("v")); err != nil {
		t.Fatalf("set while gets are held: %v", err)
	}

	// A Get whose deadline passes while it waits is never sent.
	short, cancel := context.WithTimeout(ctx, 50*time.Millisecond)
	defer cancel()
	if _, err := c.Get(short, "gone"); !errors.Is(err, ErrTimeout) {
		t.Fatalf("get that expired while queued: %v, want a timeout", err)
	}

	const waiting = 20
	got := make([]answer, waiting+1)
	var wg sync.WaitGroup
	for i := range waiting + 1 {
		key := fmt.Sprintf("k%02d", i)
		if i == waiting {
			key = "bad"
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			v, err := c.Get(ctx, key)
			got[i] = answer{v, err}
		}()
	}
	queued(t, c, addr, waiting+2) // the 21 and the expired one, not yet taken out
	close(release)
	wg.Wait()
	if a := <-first; a.err != nil || string(a.v) != "first" {
		t.Fatalf("first get: %q, %v", a.v, a.err)
	}
	for i, a := range got[:waiting] {
		if want := fmt.Sprintf("k%02d", i); a.err != nil || string(a.v) != want {
			t.Errorf("get %d: %q, %v, want %q", i, a.v, a.err, want)
		}
	}
	if !errors.Is(got[waiting].err, ErrInvalidArgument) {
		t.Errorf("the refused get: %v, want ErrInvalidArgument", got[waiting].err)
	}

	node.mu.Lock()
	defer node.mu.Unlock()
	if node.seen["gone"] {
		t.Error("a get whose caller gave up while it waited was sent")
	}
	// first (Do), w (Do), then the 21 waiting Gets in one Batch.
	if len(node.rpcs) != 3 || len(node.rpcs[2]) != waiting+1 {
		t.Fatalf("RPCs: %v, want the first get, the write, and one batch of %d", node.rpcs, waiting+1)
	}
}

// TestCoalesceOff: with CoalesceConns 0 every Get is an RPC of its own.
func TestCoalesceOff(t *testing.T) {
	node, addr := startLaneNode(t)
	c, err := newClient([]string{addr}, []Option{WithCoalesceConns(0), WithPipeReads(false)})
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = c.Close() }()
	var wg sync.WaitGroup
	for i := range 10 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			if _, err := c.Get(t.Context(), fmt.Sprintf("k%d", i)); err != nil {
				t.Error(err)
			}
		}()
	}
	wg.Wait()
	if n := node.rpcCount(); n != 10 {
		t.Fatalf("%d RPCs for 10 calls without coalescing", n)
	}
	if _, err := New([]string{addr}, WithCoalesceConns(-1)); !errors.Is(err, ErrInvalidArgument) {
		t.Fatalf("negative CoalesceConns: %v", err)
	}
}
