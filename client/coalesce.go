package client

import (
	"context"
	"fmt"
	"sync"
	"sync/atomic"
	"time"

	"github.com/ringkv/ringkv/proto/kvpb"
)

// Coalescing reads, when Config.PipeReads is off (by default Gets travel
// on the node's pipe, pipe.go). A drpc connection carries one call at a time, so
// concurrent Gets to a node would each take a connection and a round trip
// of their own: a write and a read of the socket on both ends, and a
// stream for the node to set up, per operation. Instead each node has one
// lane per read level. At most CoalesceConns RPCs of a lane are in flight;
// the Gets that arrive meanwhile wait, and when an RPC returns the next
// takes every Get waiting (up to BatchChunk) as one Batch RPC. A Get that
// finds its lane idle is sent at once, as a plain Do on the caller's
// goroutine: coalescing costs nothing until calls contend. Each Get keeps
// its own result, error, retries and deadline: a lane is only how it
// travels.
//
// Writes are not coalesced. A Batch is answered when its last operation
// is, so a write would wait for the slowest write of its batch (each waits
// for its replicas' fsyncs); measured on `ringkv bench`'s local cluster,
// coalescing writes cost QUORUM writes 17% of their throughput
// (docs/bench/HISTORY.md), while reads, answered from memory, gained.

// laneKey names a lane: a node and a read level.
type laneKey struct {
	addr  string
	level kvpb.Consistency
}

// lane coalesces the Gets at one level to one node.
type lane struct {
	c   *Client
	key laneKey

	mu       sync.Mutex
	queue    []*laneCall
	inflight int // RPCs of this lane in flight
}

// laneCall is one operation waiting in, or sent by, a lane.
type laneCall struct {
	ctx    context.Context
	op     *kvpb.ClientOp
	budget uint64
	// state moves once from callQueued to callTaken (an RPC carries it) or
	// to callAbandoned (its caller left first: never sent).
	state atomic.Int32
	done  chan laneAnswer // buffered 1: the sender never blocks
	// id names the call on a pipe's stream (pipe.go); set under the pipe's
	// lock when it is sent.
	id uint64
}

const (
	callQueued int32 = iota
	callTaken
	callAbandoned
)

// laneAnswer is what attempt would have returned for the call, and the
// node's result on success.
type laneAnswer struct {
	how outcome
	res *kvpb.ClientResult
	err error
}

// lane returns the lane of key, creating it; nil after Close.
func (c *Client) lane(key laneKey) *lane {
	return memo(c, c.mu.lanes, key, func() *lane { return &lane{c: c, key: key} })
}

// attemptOp makes one attempt of a single keyed operation at addr: a
// write on the node's pipe (unless PipeWrites is off; then in an RPC of
// its own), a Get on the pipe too (unless PipeReads is off; then through
// the node's lane for its level, or in an RPC of its own when coalescing
// is off).
func (c *Client) attemptOp(ctx context.Context, addr string, op *kvpb.ClientOp, write bool) (outcome, *kvpb.ClientResult, error) {
	if (write && c.cfg.PipeWrites) || (!write && c.cfg.PipeReads) {
		return c.attemptPipe(ctx, addr, op)
	}
	if c.cfg.CoalesceConns <= 0 || write {
		return c.attemptDo(ctx, addr, op)
	}
	l := c.lane(laneKey{addr: addr, level: op.GetConsistency()})
	if l == nil {
		return final, nil, ErrClosed
	}
	call := &laneCall{ctx: ctx, op: op, budget: serverBudget(ctx), done: make(chan laneAnswer, 1)}
	if l.submit(call) {
		// The lane was idle: send it here, at once.
		l.run([]*laneCall{call}, true)
	}
	a, _ := c.await(ctx, call)
	return a.how, a.res, a.err
}

// await returns call's answer, or, when ctx ends first, the attempt's
// outcome: not sent (retry) if the call was still queued, which it then
// never will be, else sent (retryReads). answered says which.
func (c *Client) await(ctx context.Context, call *laneCall) (a laneAnswer, answered bool) {
	select {
	case a := <-call.done:
		return a, true
	case <-ctx.Done():
	}
	if call.state.CompareAndSwap(callQueued, callAbandoned) {
		return laneAnswer{how: retry, err: timeoutError(ctx, c.isClosed(), nil)}, false // never sent
	}
	return laneAnswer{how: retryReads, err: timeoutError(ctx, c.isClosed(), nil)}, false // sent
}

// attemptDo makes one attempt of op at addr in an RPC of its own.
func (c *Client) attemptDo(ctx context.Context, addr string, op *kvpb.ClientOp) (outcome, *kvpb.ClientResult, error) {
	var res *kvpb.ClientResult
	how, err := c.attempt(ctx, addr, string(op.GetKey()), func(ctx context.Context, cl kvpb.DRPCClientClient, budget uint64) (*kvpb.ClientHeader, kvpb.ErrorCode, string, string, error) {
		resp, err := cl.Do(ctx, &kvpb.ClientRequest{Op: op, TimeoutMicros: budget})
		if err != nil {
			return nil, 0, "", "", err //nolint:wrapcheck // classified by attempt
		}
		res = resp.GetResult()
		return resp.GetHeader(), res.GetError(), res.GetMessage(), res.GetLeader(), nil
	})
	return how, res, err
}

// submit queues call. It returns true when the lane had a free RPC slot:
// the caller must then send the call itself with run (the slot is taken).
func (l *lane) submit(call *laneCall) bool {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.inflight < l.c.cfg.CoalesceConns && len(l.queue) == 0 {
		l.inflight++
		call.state.Store(callTaken)
		return true
	}
	l.queue = append(l.queue, call)
	return false
}

// takeLocked removes up to BatchChunk waiting calls that are still wanted.
// Caller holds l.mu.
func (l *lane) takeLocked() []*laneCall {
	return takeQueued(&l.queue, l.c.cfg.BatchChunk)
}

// takeQueued removes the first n calls of *queue that are still wanted
// (moving each from callQueued to callTaken) and returns them; calls whose
// callers left are dropped on the way.
func takeQueued(queue *[]*laneCall, n int) []*laneCall {
	q := *queue
	batch := make([]*laneCall, 0, min(len(q), n))
	i := 0
	for ; i < len(q) && len(batch) < n; i++ {
		if q[i].state.CompareAndSwap(callQueued, callTaken) {
			batch = append(batch, q[i])
		}
	}
	rest := copy(q, q[i:])
	clear(q[rest:])
	*queue = q[:rest]
	return batch
}

// run sends batch (whose slot is taken), then keeps the slot busy with the
// calls that queued meanwhile. inline says run is on a caller's goroutine:
// it sends only that caller's call and hands the rest to a new goroutine,
// so that no caller waits on other calls' RPCs past its own deadline.
func (l *lane) run(batch []*laneCall, inline bool) {
	for {
		if len(batch) > 0 {
			l.send(batch)
		}
		l.mu.Lock()
		if len(l.queue) == 0 {
			l.inflight--
			l.mu.Unlock()
			return
		}
		batch = l.takeLocked()
		l.mu.Unlock()
		if inline {
			if !l.c.wg.Go(func() { l.run(batch, false) }) {
				// Closed: its sends fail at once, so the caller may
				// answer them itself.
				l.run(batch, false)
			}
			return
		}
	}
}

// send carries batch to the lane's node in one RPC (a Do when it holds one
// call) and answers every call.
func (l *lane) send(batch []*laneCall) {
	ctx := batch[0].ctx // a lone call's RPC ends with its caller
	if len(batch) > 1 {
		var cancel context.CancelFunc
		ctx, cancel = batchContext(l.c.lifetime, batch)
		defer cancel()
	}
	answerAll := func(how outcome, err error) {
		for _, call := range batch {
			call.done <- laneAnswer{how: how, err: err}
		}
	}
	p := l.c.pool(l.key.addr)
	if p == nil {
		answerAll(final, ErrClosed)
		return
	}
	tok, err := l.c.token(ctx)
	if err != nil {
		answerAll(final, err)
		return
	}
	conn, how, err := l.c.conn(ctx, p)
	if err != nil {
		answerAll(how, err)
		return
	}
	cl := kvpb.NewDRPCClientClient(conn)
	rpcCtx := withToken(ctx, tok)
	var budget uint64
	for _, call := range batch {
		budget = max(budget, call.budget)
	}
	var hdr *kvpb.ClientHeader
	var results []*kvpb.ClientResult
	if len(batch) == 1 {
		var resp *kvpb.ClientResponse
		resp, err = cl.Do(rpcCtx, &kvpb.ClientRequest{Op: batch[0].op, TimeoutMicros: budget})
		hdr, results = resp.GetHeader(), []*kvpb.ClientResult{resp.GetResult()}
	} else {
		req := &kvpb.ClientBatchRequest{Ops: make([]*kvpb.ClientOp, len(batch)), TimeoutMicros: budget}
		for i, call := range batch {
			req.Ops[i] = call.op
		}
		var resp *kvpb.ClientBatchResponse
		resp, err = cl.Batch(rpcCtx, req)
		hdr, results = resp.GetHeader(), resp.GetResults()
		if err == nil && len(results) != len(batch) {
			p.put(conn, true)
			answerAll(codeError(kvpb.ErrorCode_ERROR_CODE_INTERNAL,
				fmt.Sprintf("%s: batch answered %d results for %d operations", l.key.addr, len(results), len(batch))))
			return
		}
	}
	if err != nil {
		how, err := l.c.rpcFailed(l.key.addr, p, conn, err)
		answerAll(how, l.c.refusedWith(tok, err))
		return
	}
	p.put(conn, true)
	for i, call := range batch {
		call.done <- l.c.answerOf(hdr, string(call.op.GetKey()), results[i], tok)
	}
}

// answerOf notes what a node's answer for key tells about the cluster and
// returns the call's answer; tok is the token the call was sent with.
func (c *Client) answerOf(hdr *kvpb.ClientHeader, key string, res *kvpb.ClientResult, tok *token) laneAnswer {
	c.observe(hdr, key, res.GetLeader())
	a := laneAnswer{how: final, res: res}
	if code := res.GetError(); code != kvpb.ErrorCode_ERROR_CODE_UNSPECIFIED {
		a.how, a.err = codeError(code, fmt.Sprintf("%s (node %s)", res.GetMessage(), hdr.GetNodeId()))
		a.err = c.refusedWith(tok, a.err)
	}
	return a
}

// batchContext returns a context for an RPC carrying calls: it ends at the
// latest of their deadlines (every call has one), or with the Client.
func batchContext(lifetime context.Context, calls []*laneCall) (context.Context, context.CancelFunc) {
	var latest time.Time
	for _, call := range calls {
		d, ok := call.ctx.Deadline()
		if !ok {
			return context.WithCancel(lifetime)
		}
		if d.After(latest) {
			latest = d
		}
	}
	return context.WithDeadline(lifetime, latest)
}
