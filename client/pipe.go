package client

import (
	"context"
	"errors"
	"fmt"
	"runtime"
	"sync"
	"sync/atomic"
	"time"

	"storj.io/drpc/drpcerr"

	"github.com/ringkv/ringkv/internal/rpcconn"
	"github.com/ringkv/ringkv/proto/kvpb"
)

// Writes (and, with Config.PipeReads, the default, Gets) on a stream.
// A drpc connection carries one call at a time, so a
// write sent as a Do takes a connection and a stream of its own: a write
// and a read of the socket on each end per operation, and a stream for
// the node to set up and tear down. Writes are not coalesced into Batch
// calls either (a Batch is answered when its slowest operation is, see
// coalesce.go). Instead each node has a pipe: one Pipe stream, on a
// connection of its own, that lives as long as the Client. A sender
// goroutine writes every write waiting for the node in one message (one
// write to the socket), the node runs each as it arrives and answers each
// as it finishes, in any order, and a receiver goroutine hands every
// answer to its caller. Each call keeps its own deadline, error and
// retries: the pipe is only how it travels.
//
// A node that does not serve Pipe (an older version, during a rolling
// upgrade) refuses the stream as unimplemented: its pipe is then marked
// and the writes go to that node as Do calls, those refused included
// (the node never ran them).
//
// A stream that answers nothing by the first unanswered write's budget
// plus pipeStallGrace (the node answers every write within its budget,
// with a timeout error if need be) is stuck: a watchdog ends it, as a
// failure, and the next write dials anew.
//
// When the stream fails, the writes it carried that were not answered
// fail as an RPC failing under a Do does (outcome unknown), the writes not
// yet sent fail as not sent (retried elsewhere), and the next write opens
// a new stream.
//
// A Client that logs in opens each stream with the token it holds then
// (the node reads it from the stream's metadata, for every operation the
// stream carries). Once the token has been renewed (auth.go), the sender,
// when it next has writes, sends nothing more on the stream: it closes
// its side, the node answers what the stream carried and ends it, and
// the writes waiting go on a new stream opened with the new token.

// maxPipeMessage is the most operations a node takes in one Pipe message
// (the coordinator's maxBatchOps).
const maxPipeMessage = 4096

// pipe carries the writes to one node.
type pipe struct {
	c    *Client
	addr string
	wake chan struct{} // buffered(1): queue was added to
	// unsupported: the node refused Pipe as unimplemented; writes go as
	// Do calls.
	unsupported atomic.Bool

	// stalls counts the streams the watchdog ended (session).
	stalls atomic.Int64

	mu struct {
		sync.Mutex
		queue   []*laneCall          // made, not yet sent
		pending map[uint64]*laneCall // sent on the stream, not yet answered
		nextID  uint64
		// answerBy is when the stream must have carried an answer: the
		// deadline (budget plus pipeStallGrace) of the first call sent
		// since the last message received; zero when every call sent
		// has been followed by a message.
		answerBy time.Time
	}
}

// pipeStallGrace is how long past a call's server budget the node's
// answer may take to arrive. A node answers every operation within its
// budget (with a timeout error if need be), so a stream that has carried
// nothing back by then is stuck: its connection is dead or waiting in
// TCP's retransmission backoff after a cut link came back, and would hold
// every later write to the node until it recovered (tens of seconds).
const pipeStallGrace = time.Second

// errPipeStalled ends a stream that answered nothing in time.
var errPipeStalled = errors.New("pipe stalled: no answer within the operations' budget")

// pipe returns addr's pipe, starting it; nil after Close.
func (c *Client) pipe(addr string) *pipe {
	return memo(c, c.mu.pipes, addr, func() *pipe {
		p := &pipe{c: c, addr: addr, wake: make(chan struct{}, 1)}
		p.mu.pending = make(map[uint64]*laneCall)
		// Under c.mu, checked open: Close has not begun, so Go runs it.
		c.wg.Go(p.run)
		return p
	})
}

// errPipeUnsupported answers the calls a node refused because it does
// not serve Pipe: they were not run.
var errPipeUnsupported = errors.New("node does not serve Pipe")

// attemptPipe makes one attempt of a write at addr, on addr's pipe (as a
// Do when the node does not serve Pipe).
func (c *Client) attemptPipe(ctx context.Context, addr string, op *kvpb.ClientOp) (outcome, *kvpb.ClientResult, error) {
	p := c.pipe(addr)
	if p == nil {
		return final, nil, ErrClosed
	}
	if p.unsupported.Load() {
		return c.attemptDo(ctx, addr, op)
	}
	// Log in or renew on the caller's time; the stream takes the token.
	if _, err := c.token(ctx); err != nil {
		return final, nil, err
	}
	call := &laneCall{ctx: ctx, op: op, budget: serverBudget(ctx), done: make(chan laneAnswer, 1)}
	p.mu.Lock()
	p.mu.queue = append(p.mu.queue, call)
	p.mu.Unlock()
	select {
	case p.wake <- struct{}{}:
	default:
	}
	a, answered := c.await(ctx, call)
	switch {
	case answered && errors.Is(a.err, errPipeUnsupported):
		return c.attemptDo(ctx, addr, op)
	case !answered && a.how == retryReads: // sent: its answer is not wanted
		p.mu.Lock()
		if p.mu.pending[call.id] == call {
			delete(p.mu.pending, call.id)
		}
		p.mu.Unlock()
	}
	return a.how, a.res, a.err
}

// run opens a stream whenever writes wait and none is open, until the
// Client closes.
func (p *pipe) run() {
	for p.waitWork() {
		if p.unsupported.Load() {
			p.failQueued(retry, fmt.Errorf("%s: %w", p.addr, errPipeUnsupported))
			continue
		}
		p.session()
	}
	p.failQueued(final, ErrClosed)
}

// waitWork waits until a write is queued (true) or the Client closes.
func (p *pipe) waitWork() bool {
	for {
		p.mu.Lock()
		p.mu.queue = dropAbandoned(p.mu.queue)
		n := len(p.mu.queue)
		p.mu.Unlock()
		if n > 0 {
			return true
		}
		select {
		case <-p.wake:
		case <-p.c.lifetime.Done():
			return false
		}
	}
}

// dropAbandoned removes the calls whose callers left from queue.
func dropAbandoned(queue []*laneCall) []*laneCall {
	kept := queue[:0]
	for _, call := range queue {
		if call.state.Load() == callQueued {
			kept = append(kept, call)
		}
	}
	clear(queue[len(kept):])
	return kept
}

// errTokenRenewed ends a stream's sender when the Client's token was
// renewed since the stream opened.
var errTokenRenewed = errors.New("token renewed")

// session connects, opens a stream and carries writes on it until it
// fails, its token is renewed or the Client closes; then it fails the
// writes left unanswered.
func (p *pipe) session() {
	ctx, cancel := context.WithCancel(p.c.lifetime)
	defer cancel()
	tok, err := p.c.token(ctx)
	if err != nil {
		p.failQueued(final, err)
		return
	}
	conn, err := dial(ctx, p.addr, p.c.cfg.DialTimeout, p.c.cfg.Dialer, p.c.tlsFor())
	if err != nil {
		if p.c.lifetime.Err() == nil {
			p.c.markDown(p.addr)
		}
		p.failQueued(retry, fmt.Errorf("%w: %w", ErrUnavailable, err))
		return
	}
	defer func() { _ = conn.Close() }() // the stream is over; nothing to report
	stream, err := kvpb.NewDRPCClientClient(conn).Pipe(withToken(ctx, tok))
	if err != nil {
		p.failQueued(retry, fmt.Errorf("%w: open pipe to %s: %w", ErrUnavailable, p.addr, err))
		return
	}
	rpcconn.SetManualFlush(stream)
	p.mu.Lock()
	p.mu.answerBy = time.Time{}
	p.mu.Unlock()
	var stalled atomic.Bool
	watchdog := make(chan struct{})
	go func() {
		defer close(watchdog)
		p.watch(ctx, func() { stalled.Store(true); cancel() })
	}()
	defer func() { <-watchdog }() // cancel (below) ends it
	var recvErr error
	received := make(chan struct{})
	go func() {
		defer close(received)
		recvErr = p.receive(stream, tok)
		cancel()
	}()
	sendErr := p.send(ctx, stream, tok)
	if errors.Is(sendErr, errTokenRenewed) {
		// The node answers what the stream carries, then ends it. Wait
		// for that, as long as an operation may take.
		t := time.NewTimer(p.c.cfg.RequestTimeout)
		select {
		case <-received:
		case <-t.C:
		case <-ctx.Done():
		}
		t.Stop()
	}
	cancel()
	_ = conn.Close() // ends the receiver's Recv
	<-received
	// The cause: the node's verdict if the receiver got one (a drpc code,
	// such as Unimplemented: the sender then only saw the stream end);
	// else the sender's failure if it failed first (the receiver then saw
	// its connection closed); else the receiver's.
	err = recvErr
	if drpcerr.Code(recvErr) == 0 && sendErr != nil && !errors.Is(sendErr, context.Canceled) {
		err = sendErr
	}
	if stalled.Load() {
		err = errPipeStalled
	}
	p.failPending(err)
}

// watch ends the stream (stall) when it has answered nothing by
// answerBy, until ctx ends.
func (p *pipe) watch(ctx context.Context, stall func()) {
	tick := time.NewTicker(pipeStallGrace / 4)
	defer tick.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case now := <-tick.C:
			p.mu.Lock()
			by := p.mu.answerBy
			p.mu.Unlock()
			if !by.IsZero() && now.After(by) {
				p.stalls.Add(1)
				p.c.log.Debug("pipe stalled, reconnecting", "addr", p.addr)
				stall()
				return
			}
		}
	}
}

// send writes the queued calls, every call waiting in one message, until
// the stream fails or ctx ends, or, when the Client's token is no longer
// tok, closes its side of the stream and returns errTokenRenewed.
func (p *pipe) send(ctx context.Context, stream kvpb.DRPCClient_PipeClient, tok *token) error {
	for {
		if p.c.creds != nil && p.c.creds.cur.Load() != tok {
			if err := stream.CloseSend(); err != nil {
				return fmt.Errorf("pipe to %s: %w", p.addr, err)
			}
			return errTokenRenewed
		}
		sent := false
		for {
			batch := p.take(min(p.c.cfg.BatchChunk, maxPipeMessage))
			if len(batch) == 0 {
				break
			}
			req := &kvpb.ClientPipeRequest{Ops: make([]*kvpb.ClientPipeOp, len(batch))}
			for i, call := range batch {
				req.Ops[i] = &kvpb.ClientPipeOp{Id: call.id, Op: call.op, TimeoutMicros: call.budget}
			}
			if err := stream.Send(req); err != nil {
				return fmt.Errorf("pipe to %s: %w", p.addr, err)
			}
			sent = true
		}
		if sent {
			if err := rpcconn.Flush(stream); err != nil {
				return fmt.Errorf("pipe to %s: %w", p.addr, err)
			}
		}
		select {
		case <-p.wake:
			// Callers about to queue a write join this message.
			runtime.Gosched()
		case <-ctx.Done():
			return ctx.Err() //nolint:wrapcheck // the receiver failed or the Client closed
		}
	}
}

// take moves up to n queued calls that are still wanted to pending, with
// their ids.
func (p *pipe) take(n int) []*laneCall {
	p.mu.Lock()
	defer p.mu.Unlock()
	batch := takeQueued(&p.mu.queue, n)
	now := time.Now()
	for _, call := range batch {
		p.mu.nextID++
		call.id = p.mu.nextID
		p.mu.pending[call.id] = call
		budget := time.Duration(call.budget) * time.Microsecond //nolint:gosec // budgets are small
		if call.budget == 0 {
			budget = p.c.cfg.RequestTimeout
		}
		if by := now.Add(budget + pipeStallGrace); p.mu.answerBy.IsZero() || by.Before(p.mu.answerBy) {
			p.mu.answerBy = by
		}
	}
	return batch
}

// receive hands every answer to its caller until the stream fails; tok
// is the token the stream was opened with.
func (p *pipe) receive(stream kvpb.DRPCClient_PipeClient, tok *token) error {
	for {
		resp, err := stream.Recv()
		if err != nil {
			return fmt.Errorf("pipe from %s: %w", p.addr, err)
		}
		p.mu.Lock()
		p.mu.answerBy = time.Time{} // the stream carries answers
		p.mu.Unlock()
		hdr := resp.GetHeader()
		for _, r := range resp.GetResults() {
			p.mu.Lock()
			call := p.mu.pending[r.GetId()]
			delete(p.mu.pending, r.GetId())
			p.mu.Unlock()
			if call != nil { // nil: its caller left
				call.done <- p.c.answerOf(hdr, string(call.op.GetKey()), r.GetResult(), tok)
			}
		}
	}
}

// failPending answers the calls sent on a stream that ended with err: a
// node's refusal (a drpc code) as that code says, anything else as an RPC
// that failed on the way (writes: outcome unknown).
func (p *pipe) failPending(err error) {
	p.mu.Lock()
	pending := p.mu.pending
	p.mu.pending = make(map[uint64]*laneCall)
	p.mu.Unlock()
	if len(pending) == 0 {
		return
	}
	a := laneAnswer{how: retryReads, err: fmt.Errorf("call to %s failed: %w", p.addr, err)}
	if code := drpcerr.Code(err); code == drpcerr.Unimplemented {
		p.unsupported.Store(true)
		a.how, a.err = retry, fmt.Errorf("%s: %w: %w", p.addr, errPipeUnsupported, err)
	} else if code != 0 {
		a.how, a.err = codeError(kvpb.ErrorCode(code), fmt.Sprintf("%s: %v", p.addr, err)) //nolint:gosec // codes are small
	} else {
		p.c.requestRefresh()
	}
	for _, call := range pending {
		call.done <- a
	}
}

// failQueued answers every queued call, none of them sent.
func (p *pipe) failQueued(how outcome, err error) {
	p.mu.Lock()
	queue := takeQueued(&p.mu.queue, len(p.mu.queue))
	p.mu.Unlock()
	for _, call := range queue {
		call.done <- laneAnswer{how: how, err: err}
	}
}
