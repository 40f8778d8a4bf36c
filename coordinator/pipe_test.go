package coordinator

import (
	"context"
	"errors"
	"io"
	"net"
	"sync"
	"testing"
	"time"

	"storj.io/drpc/drpcerr"
	"storj.io/drpc/drpcmanager"
	"storj.io/drpc/drpcmux"
	"storj.io/drpc/drpcserver"
	"storj.io/drpc/drpcstream"

	"github.com/ringkv/ringkv/internal/rpcconn"
	"github.com/ringkv/ringkv/proto/kvpb"
)

// servePipe serves s's Client service on a loopback port, with the
// options a node's drpc server has, and returns a client of it.
func servePipe(t *testing.T, s *ClientServer) kvpb.DRPCClientClient {
	t.Helper()
	mux := drpcmux.New()
	if err := kvpb.DRPCRegisterClient(mux, s); err != nil {
		t.Fatal(err)
	}
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	srv := drpcserver.NewWithOptions(mux, drpcserver.Options{
		Manager: drpcmanager.Options{Stream: drpcstream.Options{ManualFlush: true}},
	})
	ctx, cancel := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		_ = srv.Serve(ctx, lis) // returns when ctx ends
	}()
	t.Cleanup(func() { cancel(); wg.Wait() })
	nc, err := net.Dial("tcp", lis.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	conn := rpcconn.New(nc)
	t.Cleanup(func() { _ = conn.Close() })
	return kvpb.NewDRPCClientClient(conn)
}

// openPipe opens a Pipe stream that buffers until Flush, as the client
// library's does.
func openPipe(t *testing.T, cl kvpb.DRPCClientClient) kvpb.DRPCClient_PipeClient {
	t.Helper()
	stream, err := cl.Pipe(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	if !rpcconn.SetManualFlush(stream) {
		t.Fatal("a Pipe stream without ManualFlush")
	}
	return stream
}

func sendPipe(t *testing.T, stream kvpb.DRPCClient_PipeClient, ops ...*kvpb.ClientPipeOp) {
	t.Helper()
	if err := stream.Send(&kvpb.ClientPipeRequest{Ops: ops}); err != nil {
		t.Fatal(err)
	}
	if err := rpcconn.Flush(stream); err != nil {
		t.Fatal(err)
	}
}

// TestPipe: a Pipe stream runs the operations of a message concurrently
// and answers each as it finishes, so a write stuck on a stalled replica
// holds back nothing sent with it or after it; every operation is answered
// once, the last ones after the client closed its side, and then the
// stream ends.
func TestPipe(t *testing.T) {
	tc := newTestCluster(t, nil)
	s := NewClientServer(tc.coords["n1"], nil)
	stream := openPipe(t, servePipe(t, s))

	all := kvpb.Consistency_CONSISTENCY_ALL
	tc.trans.setStall("n2", true)
	sendPipe(t, stream,
		&kvpb.ClientPipeOp{Id: 1, Op: &kvpb.ClientOp{Kind: kvpb.ClientOp_KIND_SET, Key: []byte("slow"), Value: []byte("v"), Consistency: all}, TimeoutMicros: 2_000_000},
		&kvpb.ClientPipeOp{Id: 2, Op: &kvpb.ClientOp{Kind: kvpb.ClientOp_KIND_SET, Key: []byte("k"), Value: []byte("v"), Consistency: kvpb.Consistency_CONSISTENCY_QUORUM}},
		&kvpb.ClientPipeOp{Id: 3, Op: &kvpb.ClientOp{Kind: kvpb.ClientOp_KIND_GET}}, // empty key
	)
	results := map[uint64]*kvpb.ClientResult{}
	var order []uint64
	recv := func() {
		t.Helper()
		resp, err := stream.Recv()
		if err != nil {
			t.Fatalf("recv: %v", err)
		}
		if resp.GetHeader().GetNodeId() != "n1" {
			t.Fatalf("header %v", resp.GetHeader())
		}
		for _, r := range resp.GetResults() {
			if _, dup := results[r.GetId()]; dup {
				t.Fatalf("operation %d answered twice", r.GetId())
			}
			results[r.GetId()] = r.GetResult()
			order = append(order, r.GetId())
		}
	}
	for len(results) < 2 {
		recv()
	}
	if _, ok := results[1]; ok {
		t.Fatalf("the stalled write was answered first: order %v", order)
	}
	if r := results[2]; r.GetError() != 0 {
		t.Fatalf("set at quorum: %v", r)
	}
	if r := results[3]; r.GetError() != kvpb.ErrorCode_ERROR_CODE_INVALID_ARGUMENT {
		t.Fatalf("get of the empty key: %v", r)
	}

	// Sent after the stalled write, answered before it too. (Both at
	// QUORUM, which needs n1 and n3 only: a read at ONE need not see a
	// write at ONE.)
	sendPipe(t, stream, &kvpb.ClientPipeOp{Id: 4, Op: &kvpb.ClientOp{Kind: kvpb.ClientOp_KIND_GET, Key: []byte("k"), Consistency: kvpb.Consistency_CONSISTENCY_QUORUM}})
	for len(results) < 3 {
		recv()
	}
	if r, ok := results[4]; !ok || !r.GetFound() || string(r.GetValue()) != "v" {
		t.Fatalf("get after the stalled write: %v (order %v)", r, order)
	}

	// The client closes its side: the stalled write is still answered
	// (unavailable, when its budget runs out), then the stream ends.
	if err := stream.CloseSend(); err != nil {
		t.Fatal(err)
	}
	recv()
	if r := results[1]; r.GetError() != kvpb.ErrorCode_ERROR_CODE_UNAVAILABLE {
		t.Fatalf("write to all with a replica stalled: %v", r)
	}
	if _, err := stream.Recv(); !errors.Is(err, io.EOF) {
		t.Fatalf("after every answer: %v, want io.EOF", err)
	}
}

// TestPipeRefusesOversizedMessage: a message of more than maxBatchOps
// operations ends the stream with INVALID_ARGUMENT, after the answers to
// what came before it.
func TestPipeRefusesOversizedMessage(t *testing.T) {
	tc := newTestCluster(t, nil)
	stream := openPipe(t, servePipe(t, NewClientServer(tc.coords["n1"], nil)))
	sendPipe(t, stream, &kvpb.ClientPipeOp{Id: 1, Op: &kvpb.ClientOp{Kind: kvpb.ClientOp_KIND_GET, Key: []byte("k")}})
	big := make([]*kvpb.ClientPipeOp, maxBatchOps+1)
	for i := range big {
		big[i] = &kvpb.ClientPipeOp{Id: uint64(i) + 2}
	}
	sendPipe(t, stream, big...)
	answered := 0
	for {
		resp, err := stream.Recv()
		if err != nil {
			if code := drpcerr.Code(err); code != uint64(kvpb.ErrorCode_ERROR_CODE_INVALID_ARGUMENT) {
				t.Fatalf("stream ended with %v (code %d), want INVALID_ARGUMENT", err, code)
			}
			break
		}
		for _, r := range resp.GetResults() {
			if r.GetId() != 1 {
				t.Fatalf("an operation of the refused message ran: %v", r)
			}
			answered++
		}
	}
	if answered != 1 {
		t.Fatalf("%d answers before the refusal, want 1", answered)
	}
}

// TestPipeClientGone: when the connection drops with operations running,
// they are cancelled (a read waiting on a stalled replica lets go of it).
func TestPipeClientGone(t *testing.T) {
	tc := newTestCluster(t, nil)
	s := NewClientServer(tc.coords["n1"], nil)
	tc.trans.setStall("n2", true)
	ctx, cancel := context.WithCancel(t.Context())
	stream, err := servePipe(t, s).Pipe(ctx)
	if err != nil {
		t.Fatal(err)
	}
	sendPipe(t, stream, &kvpb.ClientPipeOp{Id: 1, Op: &kvpb.ClientOp{Kind: kvpb.ClientOp_KIND_GET, Key: []byte("slow"), Consistency: kvpb.Consistency_CONSISTENCY_ALL}, TimeoutMicros: 60_000_000})
	// The read reaches the stalled replica, then the client goes.
	deadline := time.Now().Add(5 * time.Second)
	for tc.trans.calls.Load() == 0 {
		if time.Now().After(deadline) {
			t.Fatal("the read never reached a replica")
		}
		<-time.After(time.Millisecond)
	}
	cancel()
	// The stalled read ends with its context, well before its budget.
	for tc.trans.unstalled.Load() == 0 {
		if time.Now().After(deadline) {
			t.Fatal("the read still runs after its client left")
		}
		<-time.After(time.Millisecond)
	}
}

// TestPipeRefusesDuplicateIDs: a message that repeats an id, within itself
// or of an operation still in flight, ends the stream with
// INVALID_ARGUMENT and none of its operations runs; the operation already
// in flight is still answered once; an id may be used again once
// answered.
func TestPipeRefusesDuplicateIDs(t *testing.T) {
	tc := newTestCluster(t, nil)
	cl := servePipe(t, NewClientServer(tc.coords["n1"], nil))
	set := func(id uint64, key, value string, level kvpb.Consistency) *kvpb.ClientPipeOp {
		return &kvpb.ClientPipeOp{Id: id, Op: &kvpb.ClientOp{Kind: kvpb.ClientOp_KIND_SET, Key: []byte(key), Value: []byte(value), Consistency: level}, TimeoutMicros: 1_000_000}
	}
	one, all := kvpb.Consistency_CONSISTENCY_ONE, kvpb.Consistency_CONSISTENCY_ALL
	// drain reads until the stream ends and returns the answers by id.
	drain := func(stream kvpb.DRPCClient_PipeClient) map[uint64]*kvpb.ClientResult {
		t.Helper()
		got := map[uint64]*kvpb.ClientResult{}
		for {
			resp, err := stream.Recv()
			if err != nil {
				if code := drpcerr.Code(err); code != uint64(kvpb.ErrorCode_ERROR_CODE_INVALID_ARGUMENT) {
					t.Fatalf("stream ended with %v (code %d), want INVALID_ARGUMENT", err, code)
				}
				return got
			}
			for _, r := range resp.GetResults() {
				if _, dup := got[r.GetId()]; dup {
					t.Fatalf("id %d answered twice", r.GetId())
				}
				got[r.GetId()] = r.GetResult()
			}
		}
	}
	absent := func(key string) {
		t.Helper()
		for id, s := range tc.stores {
			if _, err := s.Get(tc.coords["n1"].deps.Ring.Ring().PartitionOf([]byte(key)), []byte(key)); err == nil {
				t.Fatalf("%s stored %q of a refused message", id, key)
			}
		}
	}

	t.Run("within a message", func(t *testing.T) {
		stream := openPipe(t, cl)
		sendPipe(t, stream, set(5, "dup-a", "x", one), set(6, "dup-b", "x", one), set(5, "dup-a", "y", one))
		if got := drain(stream); len(got) != 0 {
			t.Fatalf("answers to a refused message: %v", got)
		}
		absent("dup-a")
		absent("dup-b")
	})

	t.Run("of an operation in flight", func(t *testing.T) {
		stream := openPipe(t, cl)
		sendPipe(t, stream, set(1, "reuse", "first", one))
		for {
			resp, err := stream.Recv()
			if err != nil {
				t.Fatal(err)
			}
			if len(resp.GetResults()) == 1 && resp.GetResults()[0].GetResult().GetError() == 0 {
				break
			}
		}
		// Answered: id 1 may be used again. Now keep it in flight.
		tc.trans.setStall("n2", true)
		defer tc.trans.setStall("n2", false)
		sendPipe(t, stream, set(1, "slow", "v", all))
		sendPipe(t, stream, set(2, "dup-c", "x", one), set(1, "dup-d", "other payload", one))
		got := drain(stream)
		if len(got) != 1 || got[1] == nil || got[1].GetError() != kvpb.ErrorCode_ERROR_CODE_UNAVAILABLE {
			t.Fatalf("answers: %v, want only the stalled write's (unavailable)", got)
		}
		absent("dup-c")
		absent("dup-d")
	})
}

// TestPipeFastOperationNeverWaitsBehindASlowOne: in message after
// message, a write stuck on a stalled replica (its budget far beyond the
// test's) and an operation that needs no replica: each quick one is
// answered while every stuck one is still running, so no operation was
// handed to a worker busy with another. (The reader once counted idle
// workers, and a worker counted idle that had just taken the previous
// operation left the next one queued behind it.)
func TestPipeFastOperationNeverWaitsBehindASlowOne(t *testing.T) {
	tc := newTestCluster(t, nil)
	stream := openPipe(t, servePipe(t, NewClientServer(tc.coords["n1"], nil)))
	tc.trans.setStall("n2", true)
	const rounds = 200
	for i := range uint64(rounds) {
		sendPipe(t, stream,
			&kvpb.ClientPipeOp{Id: 2 * i, Op: &kvpb.ClientOp{Kind: kvpb.ClientOp_KIND_SET, Key: []byte("slow"), Value: []byte("v"), Consistency: kvpb.Consistency_CONSISTENCY_ALL}, TimeoutMicros: 60_000_000},
			&kvpb.ClientPipeOp{Id: 2*i + 1, Op: &kvpb.ClientOp{Kind: kvpb.ClientOp_KIND_GET}}, // empty key: refused at once
		)
		for answered := false; !answered; {
			resp, err := stream.Recv()
			if err != nil {
				t.Fatalf("round %d: recv: %v", i, err)
			}
			for _, r := range resp.GetResults() {
				if r.GetId()%2 == 0 {
					t.Fatalf("round %d: the stuck write %d was answered (%v) before the quick operation sent with it", i, r.GetId(), r.GetResult())
				}
				if r.GetId() != 2*i+1 || r.GetResult().GetError() != kvpb.ErrorCode_ERROR_CODE_INVALID_ARGUMENT {
					t.Fatalf("round %d: answer %d: %v", i, r.GetId(), r.GetResult())
				}
				answered = true
			}
		}
	}
}

// TestPipeRefusesBeyondTheBound: with the node's client bound (2) held
// by two writes stuck on a stalled replica, each further operation of
// the stream is refused with OVERLOADED at once (by the reader, before
// any worker), and the stuck writes, admitted, are still answered when
// their budget ends and give their places back.
func TestPipeRefusesBeyondTheBound(t *testing.T) {
	tc := newTestCluster(t, func(c *Config) {
		c.MaxInflight, c.MinInflight, c.SchedLatencyTarget = 2, 2, 0
	})
	s := NewClientServer(tc.coords["n1"], nil)
	stream := openPipe(t, servePipe(t, s))
	tc.trans.setStall("n2", true)
	slow := func(id uint64) *kvpb.ClientPipeOp {
		return &kvpb.ClientPipeOp{Id: id, Op: &kvpb.ClientOp{Kind: kvpb.ClientOp_KIND_SET, Key: []byte("slow"), Value: []byte("v"), Consistency: kvpb.Consistency_CONSISTENCY_ALL}, TimeoutMicros: 1_000_000}
	}
	sendPipe(t, stream, slow(1), slow(2))
	const refused = 50
	for i := range uint64(refused) {
		sendPipe(t, stream, &kvpb.ClientPipeOp{Id: 100 + i, Op: &kvpb.ClientOp{Kind: kvpb.ClientOp_KIND_GET, Key: []byte("k"), Consistency: kvpb.Consistency_CONSISTENCY_ONE}})
	}
	got := map[uint64]kvpb.ErrorCode{}
	for len(got) < refused+2 {
		resp, err := stream.Recv()
		if err != nil {
			t.Fatalf("recv: %v", err)
		}
		for _, r := range resp.GetResults() {
			got[r.GetId()] = r.GetResult().GetError()
			if r.GetId() < 100 && len(got) < refused+1 {
				t.Fatalf("stuck write %d answered (%v) before the refusals", r.GetId(), r.GetResult())
			}
		}
	}
	for i := range uint64(refused) {
		if got[100+i] != kvpb.ErrorCode_ERROR_CODE_OVERLOADED {
			t.Errorf("operation %d beyond the bound: %v, want OVERLOADED", 100+i, got[100+i])
		}
	}
	for _, id := range []uint64{1, 2} {
		if got[id] != kvpb.ErrorCode_ERROR_CODE_UNAVAILABLE {
			t.Errorf("stuck write %d: %v, want UNAVAILABLE", id, got[id])
		}
	}
	// Their places are back: the next operation is admitted.
	tc.trans.setStall("n2", false)
	sendPipe(t, stream, &kvpb.ClientPipeOp{Id: 3, Op: &kvpb.ClientOp{Kind: kvpb.ClientOp_KIND_SET, Key: []byte("k"), Value: []byte("v"), Consistency: kvpb.Consistency_CONSISTENCY_QUORUM}})
	resp, err := stream.Recv()
	if err != nil {
		t.Fatalf("recv: %v", err)
	}
	if rs := resp.GetResults(); len(rs) != 1 || rs[0].GetId() != 3 || rs[0].GetResult().GetError() != 0 {
		t.Fatalf("after the stuck writes were answered: %v", rs)
	}
}
