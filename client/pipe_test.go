package client

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/ringkv/ringkv/internal/rpcconn"
	"github.com/ringkv/ringkv/proto/kvpb"
)

// pipeNode is a Client service that serves Pipe as a node does (each
// operation answered when it finishes, in any order): it holds writes to
// the key "hold" until release is closed, refuses the key "bad", and
// drops its streams (closing the connection) when told to.
type pipeNode struct {
	kvpb.DRPCClientUnimplementedServer

	release chan struct{}

	mu      sync.Mutex
	streams int                  // Pipe streams opened
	msgs    []int                // operations per message received
	seen    map[string]int       // operations received, by key
	kill    []context.CancelFunc // one per live stream: ends it
	dos     int                  // Do calls
	// stalledUpTo: the streams numbered up to it (1-based, in order
	// opened) answer nothing more, as a connection stuck in TCP's
	// retransmission backoff; later streams answer.
	stalledUpTo int
}

// stall makes every stream open now answer nothing more.
func (n *pipeNode) stall() {
	n.mu.Lock()
	defer n.mu.Unlock()
	n.stalledUpTo = n.streams
}

func (n *pipeNode) Do(_ context.Context, req *kvpb.ClientRequest) (*kvpb.ClientResponse, error) {
	n.mu.Lock()
	n.dos++
	n.mu.Unlock()
	return &kvpb.ClientResponse{Header: &kvpb.ClientHeader{NodeId: "fake"}, Result: &kvpb.ClientResult{}}, nil
}

func (n *pipeNode) Pipe(stream kvpb.DRPCClient_PipeStream) error {
	ctx, cancel := context.WithCancel(stream.Context())
	defer cancel()
	n.mu.Lock()
	n.streams++
	num := n.streams
	n.kill = append(n.kill, cancel)
	n.mu.Unlock()
	var send sync.Mutex
	answer := func(id uint64, res *kvpb.ClientResult) {
		n.mu.Lock()
		stalled := num <= n.stalledUpTo
		n.mu.Unlock()
		if stalled {
			return
		}
		send.Lock()
		defer send.Unlock()
		resp := &kvpb.ClientPipeResponse{Header: &kvpb.ClientHeader{NodeId: "fake"}, Results: []*kvpb.ClientPipeResult{{Id: id, Result: res}}}
		if stream.Send(resp) == nil {
			_ = rpcconn.Flush(stream) // a failure shows in Recv
		}
	}
	recvd := make(chan error, 1)
	go func() {
		for {
			req, err := stream.Recv()
			if err != nil {
				recvd <- err
				return
			}
			n.mu.Lock()
			n.msgs = append(n.msgs, len(req.GetOps()))
			for _, op := range req.GetOps() {
				n.seen[string(op.GetOp().GetKey())]++
			}
			n.mu.Unlock()
			for _, op := range req.GetOps() {
				go func() {
					switch string(op.GetOp().GetKey()) {
					case "hold":
						select {
						case <-n.release:
						case <-ctx.Done():
							return
						}
					case "bad":
						answer(op.GetId(), &kvpb.ClientResult{Error: kvpb.ErrorCode_ERROR_CODE_INVALID_ARGUMENT, Message: "bad key"})
						return
					}
					answer(op.GetId(), &kvpb.ClientResult{})
				}()
			}
		}
	}()
	select {
	case err := <-recvd:
		return err
	case <-ctx.Done():
		return errors.New("pipeNode: stream killed")
	}
}

func (n *pipeNode) killStreams() {
	n.mu.Lock()
	defer n.mu.Unlock()
	for _, k := range n.kill {
		k()
	}
	n.kill = nil
}

func (n *pipeNode) count(key string) int {
	n.mu.Lock()
	defer n.mu.Unlock()
	return n.seen[key]
}

func startPipeNode(t *testing.T) (*pipeNode, string) {
	t.Helper()
	n := &pipeNode{release: make(chan struct{}), seen: map[string]int{}}
	return n, serveClient(t, n)
}

// setHeld starts a Set of "hold" and returns once the node holds it; the
// Set's error arrives on the channel.
func setHeld(ctx context.Context, t *testing.T, c *Client, node *pipeNode) <-chan error {
	t.Helper()
	held := make(chan error, 1)
	go func() { held <- c.Set(ctx, "hold", []byte("v")) }()
	poll(t, "the held write at the node", func() error {
		if node.count("hold") == 0 {
			return errors.New("not arrived")
		}
		return nil
	})
	return held
}

// TestPipeWrites: writes to a node share one stream; a write the node
// holds back holds back no other; concurrent writes share messages; each
// write gets its own outcome.
func TestPipeWrites(t *testing.T) {
	node, addr := startPipeNode(t)
	c, err := newClient([]string{addr}, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = c.Close() }()
	ctx := t.Context()

	held := setHeld(ctx, t, c, node)

	const writers = 50
	errs := make([]error, writers)
	var wg sync.WaitGroup
	for i := range writers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			switch {
			case i == 0:
				errs[i] = c.Set(ctx, "bad", []byte("v"))
			case i%2 == 0:
				errs[i] = c.Delete(ctx, fmt.Sprintf("k%d", i))
			default:
				errs[i] = c.Set(ctx, fmt.Sprintf("k%d", i), []byte("v"))
			}
		}()
	}
	wg.Wait() // all answered while "hold" is held
	if !errors.Is(errs[0], ErrInvalidArgument) {
		t.Errorf("write of the refused key: %v, want ErrInvalidArgument", errs[0])
	}
	for i, err := range errs[1:] {
		if err != nil {
			t.Errorf("write %d: %v", i+1, err)
		}
	}
	select {
	case err := <-held:
		t.Fatalf("the held write returned before its release: %v", err)
	default:
	}
	close(node.release)
	if err := <-held; err != nil {
		t.Fatalf("held write: %v", err)
	}

	node.mu.Lock()
	defer node.mu.Unlock()
	if node.streams != 1 || node.dos != 0 {
		t.Fatalf("%d streams and %d Do calls for %d writes, want one stream", node.streams, node.dos, writers+1)
	}
	ops := 0
	for _, m := range node.msgs {
		ops += m
	}
	if ops != writers+1 {
		t.Fatalf("%d operations in %v, want %d", ops, node.msgs, writers+1)
	}
	t.Logf("%d writes in %d messages", ops, len(node.msgs))
}

// TestPipeStreamFails: the writes a stream carried when it failed have an
// unknown outcome; the next write opens a new stream; a write whose
// caller gave up after it was sent reports an unknown outcome too and is
// forgotten.
func TestPipeStreamFails(t *testing.T) {
	node, addr := startPipeNode(t)
	c, err := newClient([]string{addr}, []Option{WithRetry(1, time.Millisecond, time.Millisecond)})
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = c.Close() }()
	ctx := t.Context()

	held := setHeld(ctx, t, c, node)
	node.killStreams()
	if err := <-held; !errors.Is(err, ErrOutcomeUnknown) {
		t.Fatalf("write on a failed stream: %v, want ErrOutcomeUnknown", err)
	}
	if err := c.Set(ctx, "after", []byte("v")); err != nil {
		t.Fatalf("write after the stream failed: %v", err)
	}
	node.mu.Lock()
	streams := node.streams
	node.mu.Unlock()
	if streams != 2 {
		t.Fatalf("%d streams, want a second one after the first failed", streams)
	}

	short, cancel := context.WithTimeout(ctx, 100*time.Millisecond)
	defer cancel()
	if err := c.Set(short, "hold", []byte("v")); !errors.Is(err, ErrOutcomeUnknown) || !errors.Is(err, ErrTimeout) {
		t.Fatalf("write that timed out after it was sent: %v, want ErrOutcomeUnknown and ErrTimeout", err)
	}
	p := c.pipe(addr)
	p.mu.Lock()
	pending := len(p.mu.pending)
	p.mu.Unlock()
	if pending != 0 {
		t.Fatalf("%d calls still pending after their callers left", pending)
	}
}

// TestPipeUnsupported: a node that does not serve Pipe gets writes as Do
// calls, the first one included.
func TestPipeUnsupported(t *testing.T) {
	node, addr := startLaneNode(t) // serves Do and Batch only
	c, err := newClient([]string{addr}, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = c.Close() }()
	for i := range 3 {
		if err := c.Set(t.Context(), fmt.Sprintf("k%d", i), []byte("v")); err != nil {
			t.Fatalf("write %d to a node without Pipe: %v", i, err)
		}
	}
	if n := node.rpcCount(); n != 3 {
		t.Fatalf("%d Do calls for 3 writes", n)
	}
	if !c.pipe(addr).unsupported.Load() {
		t.Fatal("pipe not marked unsupported")
	}
}

// TestPipeWritesOff: with PipeWrites false every write is a Do.
func TestPipeWritesOff(t *testing.T) {
	node, addr := startPipeNode(t)
	c, err := newClient([]string{addr}, []Option{WithPipeWrites(false)})
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = c.Close() }()
	if err := c.Set(t.Context(), "k", []byte("v")); err != nil {
		t.Fatal(err)
	}
	node.mu.Lock()
	defer node.mu.Unlock()
	if node.dos != 1 || node.streams != 0 {
		t.Fatalf("%d Do calls, %d streams, want one Do", node.dos, node.streams)
	}
}

// TestPipeReads: by default a Get travels on the node's pipe, as writes
// do; with PipeReads false it goes as an RPC of its own (an idle lane's).
func TestPipeReads(t *testing.T) {
	for _, on := range []bool{true, false} {
		t.Run(fmt.Sprintf("PipeReads=%v", on), func(t *testing.T) {
			node, addr := startPipeNode(t)
			c, err := newClient([]string{addr}, []Option{WithPipeReads(on)})
			if err != nil {
				t.Fatal(err)
			}
			defer func() { _ = c.Close() }()
			if _, err := c.Get(t.Context(), "k"); err != nil && !errors.Is(err, ErrNotFound) {
				t.Fatal(err)
			}
			node.mu.Lock()
			defer node.mu.Unlock()
			wantStreams, wantDos := 1, 0
			if !on {
				wantStreams, wantDos = 0, 1
			}
			if node.streams != wantStreams || node.dos != wantDos || node.seen["k"] != wantStreams {
				t.Fatalf("%d streams, %d Do calls, %d gets on streams; want %d, %d, %d", node.streams, node.dos, node.seen["k"], wantStreams, wantDos, wantStreams)
			}
		})
	}
}

// TestPipeClose: Close answers a write in flight on a pipe with
// ErrClosed, and the pipe's goroutines end (Close waits for them).
func TestPipeClose(t *testing.T) {
	node, addr := startPipeNode(t)
	c, err := newClient([]string{addr}, nil)
	if err != nil {
		t.Fatal(err)
	}
	held := setHeld(t.Context(), t, c, node)
	if err := c.Close(); err != nil {
		t.Fatal(err)
	}
	if err := <-held; !errors.Is(err, ErrClosed) {
		t.Fatalf("write in flight at Close: %v, want ErrClosed", err)
	}
	if err := c.Set(t.Context(), "k", []byte("v")); !errors.Is(err, ErrClosed) {
		t.Fatalf("write after Close: %v", err)
	}
}

// TestPipeStallReconnects: a stream that answers nothing by a write's
// budget plus pipeStallGrace is ended, and the next write goes on a new
// stream. Before, the stream stayed in use, and after a cut link came
// back (its connection waiting in TCP's retransmission backoff) every
// write to that node waited for its deadline for tens of seconds.
func TestPipeStallReconnects(t *testing.T) {
	node, addr := startPipeNode(t)
	c, err := newClient([]string{addr}, []Option{WithRetry(1, time.Millisecond, time.Millisecond)})
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = c.Close() }()
	ctx := t.Context()
	if err := c.Set(ctx, "a", []byte("v")); err != nil {
		t.Fatal(err)
	}
	node.stall()
	short, cancel := context.WithTimeout(ctx, 200*time.Millisecond)
	defer cancel()
	if err := c.Set(short, "b", []byte("v")); !errors.Is(err, ErrTimeout) {
		t.Fatalf("write on the stalled stream: %v, want ErrTimeout", err)
	}
	p := c.pipe(addr)
	poll(t, "the watchdog to end the stalled stream", func() error {
		if p.stalls.Load() == 0 {
			return errors.New("stream still in use")
		}
		return nil
	})
	if err := c.Set(ctx, "c", []byte("v")); err != nil {
		t.Fatalf("write after the stall: %v", err)
	}
	node.mu.Lock()
	streams := node.streams
	node.mu.Unlock()
	if streams != 2 {
		t.Fatalf("%d streams, want a second one after the stall", streams)
	}
}
