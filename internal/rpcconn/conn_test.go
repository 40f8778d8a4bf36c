package rpcconn

import (
	"context"
	"errors"
	"net"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"google.golang.org/protobuf/proto"
	"storj.io/drpc"
	"storj.io/drpc/drpcerr"
	"storj.io/drpc/drpcmanager"
	"storj.io/drpc/drpcmetadata"
	"storj.io/drpc/drpcserver"
	"storj.io/drpc/drpcstream"

	"github.com/ringkv/ringkv/proto/kvpb"
)

// protoEnc is the protobuf encoding drpc's generated code uses.
type protoEnc struct{}

var errNotProto = errors.New("not a protobuf message")

func (protoEnc) Marshal(m drpc.Message) ([]byte, error) {
	pm, ok := m.(proto.Message)
	if !ok {
		return nil, errNotProto
	}
	return proto.Marshal(pm) //nolint:wrapcheck // test encoding
}

func (protoEnc) Unmarshal(b []byte, m drpc.Message) error {
	pm, ok := m.(proto.Message)
	if !ok {
		return errNotProto
	}
	return proto.Unmarshal(b, pm) //nolint:wrapcheck // test encoding
}

// handler answers "/echo" with the request's first key as a ReadKey,
// "/fail" with a coded error, "/twice" with two messages and "/block" not
// until the stream ends; it counts the packets it receives after a call
// ended (a Close the client should not have sent shows as an extra read).
type handler struct {
	calls atomic.Int64
}

func (h *handler) HandleRPC(stream drpc.Stream, rpc string) error {
	h.calls.Add(1)
	var in kvpb.ReadRequest
	if err := stream.MsgRecv(&in, protoEnc{}); err != nil {
		return err //nolint:wrapcheck // test server
	}
	switch rpc {
	case "/md":
		md, _ := drpcmetadata.Get(stream.Context())
		return stream.MsgSend(&kvpb.ReadKey{Key: []byte(md[MetaNode] + "|" + md[MetaCluster] + "|" + md["other"])}, protoEnc{}) //nolint:wrapcheck // test server
	case "/fail":
		return drpcerr.WithCode(errors.New("no such thing"), 42)
	case "/block":
		<-stream.Context().Done()
		return stream.Context().Err() //nolint:wrapcheck // test server
	case "/twice":
		if err := stream.MsgSend(&kvpb.ReadKey{Key: []byte("a")}, protoEnc{}); err != nil {
			return err //nolint:wrapcheck // test server
		}
	}
	var key []byte
	if len(in.GetKeys()) > 0 {
		key = in.GetKeys()[0].GetKey()
	}
	return stream.MsgSend(&kvpb.ReadKey{Key: key}, protoEnc{}) //nolint:wrapcheck // test server
}

// countingConn counts the writes made to a net.Conn.
type countingConn struct {
	net.Conn
	writes *atomic.Int64
}

func (c countingConn) Write(p []byte) (int, error) {
	c.writes.Add(1)
	return c.Conn.Write(p) //nolint:wrapcheck // pass-through
}

// serve starts a drpc server of h on a loopback port (with ManualFlush as
// ringkv's nodes run, or drpc's default) and returns its address.
func serve(t *testing.T, h *handler, manualFlush bool) string {
	t.Helper()
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	srv := drpcserver.NewWithOptions(h, drpcserver.Options{
		Manager: drpcmanager.Options{Stream: drpcstream.Options{ManualFlush: manualFlush}},
	})
	ctx, cancel := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		_ = srv.Serve(ctx, lis) // ends with ctx
	}()
	t.Cleanup(func() { cancel(); wg.Wait() })
	return lis.Addr().String()
}

func dial(t *testing.T, addr string) (*Conn, *atomic.Int64) {
	t.Helper()
	nc, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	writes := new(atomic.Int64)
	c := New(countingConn{Conn: nc, writes: writes})
	t.Cleanup(func() { _ = c.Close() })
	return c, writes
}

func echo(ctx context.Context, c *Conn, key string) (string, error) {
	var out kvpb.ReadKey
	err := c.Invoke(ctx, "/echo", protoEnc{}, &kvpb.ReadRequest{Keys: []*kvpb.ReadKey{{Key: []byte(key)}}}, &out)
	return string(out.GetKey()), err
}

func TestInvokeOneWritePerCall(t *testing.T) {
	for _, mf := range []bool{true, false} {
		h := &handler{}
		c, writes := dial(t, serve(t, h, mf))
		const calls = 50
		for i := range calls {
			want := string(rune('a' + i%26))
			got, err := echo(context.Background(), c, want)
			if err != nil {
				t.Fatalf("manual flush %v: call %d: %v", mf, i, err)
			}
			if got != want {
				t.Fatalf("manual flush %v: call %d answered %q, want %q", mf, i, got, want)
			}
		}
		// drpcconn.Conn.Invoke writes twice per call (the request, then a
		// Close once the answer is in); Conn.Invoke once.
		if n := writes.Load(); n != calls {
			t.Fatalf("manual flush %v: %d writes for %d calls, want one each", mf, n, calls)
		}
		if n := h.calls.Load(); n != calls {
			t.Fatalf("server saw %d calls, want %d", n, calls)
		}
	}
}

func TestInvokeErrors(t *testing.T) {
	h := &handler{}
	c, _ := dial(t, serve(t, h, true))
	var out kvpb.ReadKey
	err := c.Invoke(context.Background(), "/fail", protoEnc{}, &kvpb.ReadRequest{}, &out)
	if code := drpcerr.Code(err); code != 42 {
		t.Fatalf("error %v has code %d, want the server's 42", err, code)
	}
	err = c.Invoke(context.Background(), "/twice", protoEnc{}, &kvpb.ReadRequest{}, &out)
	if !errors.Is(err, ErrExtraMessage) {
		t.Fatalf("two answers: %v, want ErrExtraMessage", err)
	}
	// The connection stays usable after both.
	if got, err := echo(context.Background(), c, "k"); err != nil || got != "k" {
		t.Fatalf("after errors: %q, %v", got, err)
	}
}

func TestInvokeHonoursContext(t *testing.T) {
	h := &handler{}
	c, _ := dial(t, serve(t, h, true))
	ctx, cancel := context.WithTimeout(context.Background(), 50*time.Millisecond)
	defer cancel()
	var out kvpb.ReadKey
	start := time.Now()
	err := c.Invoke(ctx, "/block", protoEnc{}, &kvpb.ReadRequest{}, &out)
	if err == nil {
		t.Fatal("a call the server never answers returned no error")
	}
	if d := time.Since(start); d > 10*time.Second {
		t.Fatalf("returned after %v, long past its deadline", d)
	}
}

func TestInvokeOnClosedConn(t *testing.T) {
	h := &handler{}
	c, _ := dial(t, serve(t, h, true))
	if err := c.Close(); err != nil {
		t.Fatal(err)
	}
	if _, err := echo(context.Background(), c, "k"); err == nil {
		t.Fatal("a call on a closed connection succeeded")
	}
}

// generated stands for a generated stream type: it wraps a drpc.Stream.
type generated struct{ s drpc.Stream }

func (g generated) GetStream() drpc.Stream { return g.s }

// TestStreamManualFlush: after SetManualFlush a stream's messages stay in
// its buffer until Flush, which writes them in one write; both accept a
// generated stream type, and are no-ops on anything else.
func TestStreamManualFlush(t *testing.T) {
	h := &handler{}
	c, writes := dial(t, serve(t, h, true))
	stream, err := c.NewStream(context.Background(), "/echo", protoEnc{})
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = stream.Close() }()
	if !SetManualFlush(generated{stream}) {
		t.Fatal("SetManualFlush refused a drpc stream")
	}
	if err := stream.MsgSend(&kvpb.ReadRequest{Keys: []*kvpb.ReadKey{{Key: []byte("k")}}}, protoEnc{}); err != nil {
		t.Fatal(err)
	}
	if n := writes.Load(); n != 0 {
		t.Fatalf("%d writes before Flush", n)
	}
	if err := Flush(generated{stream}); err != nil {
		t.Fatal(err)
	}
	if n := writes.Load(); n != 1 {
		t.Fatalf("%d writes after Flush, want 1", n)
	}
	var out kvpb.ReadKey
	if err := stream.MsgRecv(&out, protoEnc{}); err != nil || string(out.GetKey()) != "k" {
		t.Fatalf("answer: %q, %v", out.GetKey(), err)
	}
	if SetManualFlush(struct{}{}) {
		t.Fatal("SetManualFlush accepted a non-stream")
	}
	if err := Flush(struct{}{}); err != nil {
		t.Fatalf("Flush of a non-stream: %v", err)
	}
}
