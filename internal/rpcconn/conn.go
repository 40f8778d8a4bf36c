// Package rpcconn is the drpc client connection every ringkv client of a
// drpc service uses: a drpcconn.Conn whose unary calls cost one write to
// the socket each way and nothing more.
//
// drpcconn.Conn.Invoke sends the request and its close in one write, reads
// the answer, and then closes the stream. The server's own close (which
// ringkv's servers send in the same write as the answer, see node.go)
// usually has not been processed by then, so that Close goes out as a
// packet of its own: a second write per call on the client, and a wake-up
// and a read on the server for a packet it ignores. On this project's
// 2-core machine that packet was a fifth of the bench client's CPU and a
// share of every node's. Conn.Invoke instead waits for the server's close,
// already in the read buffer, so the stream ends on both sides without it.
package rpcconn

import (
	"context"
	"errors"
	"fmt"

	"storj.io/drpc"
	"storj.io/drpc/drpcconn"
)

// ErrExtraMessage is returned by Invoke when the server answered a unary
// call with more than one message.
var ErrExtraMessage = errors.New("rpcconn: unary call answered with more than one message")

// Conn is a drpc client connection. Like drpcconn.Conn it carries one call
// at a time; streams (NewStream) behave as drpcconn's.
type Conn struct {
	*drpcconn.Conn
	id Identity // sent with every call (SetIdentity)
}

// New returns a Conn over tr.
func New(tr drpc.Transport) *Conn {
	return &Conn{Conn: drpcconn.New(tr)}
}

// flusher is the part of *drpcstream.Stream that Invoke needs beyond
// drpc.Stream.
type flusher interface {
	SetManualFlush(bool)
}

// Invoke issues the unary rpc with in and unmarshals the answer into out.
// The request and its close go out in one write; the call returns after
// the server's close, so the stream is finished and no Close packet
// follows.
func (c *Conn) Invoke(ctx context.Context, rpc string, enc drpc.Encoding, in, out drpc.Message) error {
	stream, err := c.NewStream(ctx, rpc, enc)
	if err != nil {
		return fmt.Errorf("open %s: %w", rpc, err)
	}
	// A no-op once both sides closed; otherwise (an error on the way) it
	// tells the server the call is over. Its own failure changes nothing
	// for this call: the answer is in hand or the error already set, and a
	// broken connection shows in Closed for the next one.
	defer func() { _ = stream.Close() }()
	SetManualFlush(stream) // the message waits for CloseSend's flush
	if err := stream.MsgSend(in, enc); err != nil {
		return err //nolint:wrapcheck // drpc's error carries the remote code
	}
	if err := stream.CloseSend(); err != nil {
		return err //nolint:wrapcheck // as above
	}
	if err := stream.MsgRecv(out, enc); err != nil {
		return err //nolint:wrapcheck // the server's error, with its code
	}
	// Wait for the server's close (io.EOF). The answer is in hand: should
	// the stream end otherwise (ctx cancelled just now, the connection
	// lost), the call still succeeded; only a second message is wrong.
	var extra drainMessage
	if err := stream.MsgRecv(&extra, drainEncoding{}); err == nil {
		return fmt.Errorf("%s: %w", rpc, ErrExtraMessage)
	}
	return nil
}

// drainMessage and drainEncoding receive whatever follows a unary answer
// without decoding it: a well-behaved server sends nothing.
type drainMessage struct{}

type drainEncoding struct{}

func (drainEncoding) Marshal(drpc.Message) ([]byte, error) { return nil, nil }
func (drainEncoding) Unmarshal([]byte, drpc.Message) error { return nil }

// Flush writes out what a stream's Send buffered. ringkv's drpc servers
// run with ManualFlush (a unary answer and its close then leave in one
// write), and Invoke and the client's streams set it too, so a side that
// sends on a stream and goes on must flush each message, or each batch of
// messages, itself. stream is a drpc.Stream or a generated stream type
// (GetStream); on a stream without ManualFlush this is a no-op.
func Flush(stream any) error {
	f, ok := unwrap(stream).(interface{ RawFlush() error })
	if !ok {
		return nil
	}
	if err := f.RawFlush(); err != nil {
		return fmt.Errorf("flush: %w", err)
	}
	return nil
}

// SetManualFlush makes stream (a drpc.Stream or a generated stream type)
// buffer what Send writes until Flush. It reports whether the stream
// supports it.
func SetManualFlush(stream any) bool {
	f, ok := unwrap(stream).(flusher)
	if ok {
		f.SetManualFlush(true)
	}
	return ok
}

// unwrap returns the drpc.Stream inside a generated stream type, or
// stream itself.
func unwrap(stream any) any {
	if gs, ok := stream.(interface{ GetStream() drpc.Stream }); ok {
		return gs.GetStream()
	}
	return stream
}
