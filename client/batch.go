package client

import (
	"context"
	"errors"
	"fmt"
	"sync"

	"github.com/ringkv/ringkv/proto/kvpb"
)

// Op is one operation of a Batch. Build it with GetOp, SetOp, DeleteOp,
// CompareAndSetOp or PutIfAbsentOp.
type Op struct {
	op    *kvpb.ClientOp
	level Consistency
	err   error // a bad option (WithTTL)
}

func newOp(kind kvpb.ClientOp_Kind, key string, opts []CallOption) Op {
	cc := callConfig{}
	for _, o := range opts {
		o(&cc)
	}
	o := Op{op: &kvpb.ClientOp{Kind: kind, Key: []byte(key)}, level: cc.level}
	if kind != kvpb.ClientOp_KIND_GET && kind != kvpb.ClientOp_KIND_DELETE {
		o.op.TtlMicros, o.err = cc.ttlMicros()
	}
	return o
}

// GetOp reads key; its Result holds the value, or ErrNotFound.
func GetOp(key string, opts ...CallOption) Op { return newOp(kvpb.ClientOp_KIND_GET, key, opts) }

// SetOp writes value under key (WithTTL: expiring).
func SetOp(key string, value []byte, opts ...CallOption) Op {
	o := newOp(kvpb.ClientOp_KIND_SET, key, opts)
	o.op.Value = value
	return o
}

// DeleteOp deletes key.
func DeleteOp(key string, opts ...CallOption) Op { return newOp(kvpb.ClientOp_KIND_DELETE, key, opts) }

// CompareAndSetOp is CompareAndSet as a batch operation; of opts only
// WithTTL counts.
func CompareAndSetOp(key string, expected, value []byte, opts ...CallOption) Op {
	o := newOp(kvpb.ClientOp_KIND_CAS, key, opts)
	if expected == nil {
		expected = []byte{}
	}
	o.op.HasExpected, o.op.Expected, o.op.Value = true, expected, value
	return o
}

// PutIfAbsentOp is PutIfAbsent as a batch operation; of opts only
// WithTTL counts.
func PutIfAbsentOp(key string, value []byte, opts ...CallOption) Op {
	o := newOp(kvpb.ClientOp_KIND_CAS, key, opts)
	o.op.Value = value
	return o
}

// Result is the outcome of one batch operation: Value for a GetOp, and
// the error the operation alone would have returned.
type Result struct {
	Value []byte
	Err   error
}

// Batch runs ops, pipelined: the operations bound for the same node (by
// the same routing as single calls) travel in one RPC per BatchChunk
// operations, every node's RPCs in parallel, and the node runs them
// concurrently. It returns one Result per op, in order; the operations are
// not atomic together and may apply in any order. Each operation follows
// the rules of its single form: one that fails in a way that proves it was
// not applied is retried on its own, except that the operations a node
// refused as overloaded go again together, in Batch RPCs, after the
// backoff (at most MaxAttempts in all, then ErrOverloaded within
// ErrUnavailable); a write whose RPC broke after it was sent gets
// ErrOutcomeUnknown.
func (c *Client) Batch(ctx context.Context, ops []Op) []Result {
	results := make([]Result, len(ops))
	if c.isClosed() {
		for i := range results {
			results[i].Err = ErrClosed
		}
		return results
	}
	ctx, cancel := c.callContext(ctx)
	defer cancel()

	// sent holds each operation as sent (the caller's Ops are not
	// modified); valid, the operations to send.
	sent := make([]*kvpb.ClientOp, len(ops))
	levels := make([]Consistency, len(ops))
	var valid []int
	for i, o := range ops {
		if o.op == nil {
			results[i].Err = fmt.Errorf("%w: zero Op", ErrInvalidArgument)
			continue
		}
		if o.err != nil {
			results[i].Err = fmt.Errorf("%s %q: %w", opName(o.op.GetKind()), o.op.GetKey(), o.err)
			continue
		}
		level := o.level
		if level == Default {
			level = c.cfg.Consistency
		}
		if o.op.GetKind() == kvpb.ClientOp_KIND_CAS {
			level = Linearizable
		}
		w, err := level.wire()
		switch {
		case len(o.op.GetKey()) == 0:
			results[i].Err = fmt.Errorf("%w: key is empty", ErrInvalidArgument)
			continue
		case err != nil:
			results[i].Err = err
			continue
		}
		sent[i] = &kvpb.ClientOp{
			Kind: o.op.GetKind(), Key: o.op.GetKey(), Value: o.op.GetValue(), Consistency: w,
			HasExpected: o.op.GetHasExpected(), Expected: o.op.GetExpected(), TtlMicros: o.op.GetTtlMicros(),
		}
		if sent[i].GetKind() != kvpb.ClientOp_KIND_GET && sent[i].Value == nil {
			sent[i].Value = []byte{}
		}
		levels[i] = level
		valid = append(valid, i)
	}
	// retryOps holds operations to run again through the single-op path;
	// refused, those a node refused as overloaded, which go again in
	// batches after a backoff: retried one by one, a batch's refused
	// operations were as many calls to a node already at its bound.
	var retryOps, refused []int
	var lastRefusal error
	// send routes the operations idx by their first target, as single
	// calls are, and sends each node's in chunks, every chunk at once.
	send := func(idx []int) {
		groups := make(map[string][]int)
		var order []string
		for _, i := range idx {
			addr := c.targets(string(sent[i].GetKey()), levels[i])[0]
			if _, ok := groups[addr]; !ok {
				order = append(order, addr)
			}
			groups[addr] = append(groups[addr], i)
		}
		var mu sync.Mutex
		var wg sync.WaitGroup
		for _, addr := range order {
			idx := groups[addr]
			for start := 0; start < len(idx); start += c.cfg.BatchChunk {
				chunk := idx[start:min(start+c.cfg.BatchChunk, len(idx))]
				wg.Add(1)
				go func() {
					defer wg.Done()
					again, over, err := c.sendBatch(ctx, addr, sent, chunk, results)
					mu.Lock()
					retryOps = append(retryOps, again...)
					refused = append(refused, over...)
					if err != nil {
						lastRefusal = err
					}
					mu.Unlock()
				}()
			}
		}
		wg.Wait()
	}
	send(valid)
	for attempt := 2; len(refused) > 0; attempt++ {
		if attempt > c.cfg.MaxAttempts || !c.backoff(ctx, attempt-1) {
			err := fmt.Errorf("%w after %d attempts: %w", ErrUnavailable, attempt-1, lastRefusal)
			if ctx.Err() != nil {
				err = timeoutError(ctx, c.isClosed(), lastRefusal)
			}
			for _, i := range refused {
				results[i] = batchResult(sent[i], nil, err)
			}
			break
		}
		again := refused
		refused = nil
		send(again)
	}
	var wg sync.WaitGroup
	for _, i := range retryOps {
		wg.Add(1)
		go func() {
			defer wg.Done()
			res, err := c.do(ctx, sent[i], levels[i])
			results[i] = batchResult(sent[i], res, err)
		}()
	}
	wg.Wait()
	return results
}

// sendBatch sends the operations chunk (indexes into ops) to addr as one
// Batch RPC, fills their results, and returns the operations to retry on
// their own (again) and those refused as overloaded (over, with the last
// such refusal), whose results it leaves unset.
func (c *Client) sendBatch(ctx context.Context, addr string, ops []*kvpb.ClientOp, chunk []int, results []Result) (again, over []int, overErr error) {
	req := &kvpb.ClientBatchRequest{Ops: make([]*kvpb.ClientOp, len(chunk))}
	for j, i := range chunk {
		req.Ops[j] = ops[i]
	}
	var resp *kvpb.ClientBatchResponse
	tok, err := c.token(ctx)
	how := final
	if err == nil {
		how, err = c.attemptWith(ctx, addr, "", tok, func(ctx context.Context, cl kvpb.DRPCClientClient, budget uint64) (*kvpb.ClientHeader, kvpb.ErrorCode, string, string, error) {
			req.TimeoutMicros = budget
			var err error
			resp, err = cl.Batch(ctx, req)
			if err != nil {
				return nil, 0, "", "", err //nolint:wrapcheck // classified by attempt
			}
			if len(resp.GetResults()) != len(chunk) {
				return resp.GetHeader(), kvpb.ErrorCode_ERROR_CODE_INTERNAL, fmt.Sprintf("batch answered %d results for %d operations", len(resp.GetResults()), len(chunk)), "", nil
			}
			return resp.GetHeader(), 0, "", "", nil
		})
	}
	if err != nil {
		if how == retry && ctx.Err() == nil && errors.Is(err, ErrOverloaded) {
			// Refused as a whole: the batch goes again as one.
			return nil, chunk, err
		}
		for _, i := range chunk {
			write := ops[i].GetKind() != kvpb.ClientOp_KIND_GET
			switch {
			case how == retry && ctx.Err() == nil, how == retryReads && !write && ctx.Err() == nil:
				again = append(again, i)
			case how == retryReads && write:
				results[i].Err = fmt.Errorf("%w: %w", ErrOutcomeUnknown, err)
			default:
				results[i].Err = err
			}
		}
		return again, nil, nil
	}
	var refused []int // answered UNAUTHENTICATED, with the token the Client logs in with
	for j, i := range chunk {
		r := resp.GetResults()[j]
		c.observe(resp.GetHeader(), string(ops[i].GetKey()), r.GetLeader())
		if code := r.GetError(); code != kvpb.ErrorCode_ERROR_CODE_UNSPECIFIED {
			how, err := codeError(code, r.GetMessage())
			switch {
			case how == retry && ctx.Err() == nil && errors.Is(err, ErrOverloaded):
				over, overErr = append(over, i), err
				continue
			case how == retry && ctx.Err() == nil:
				again = append(again, i)
				continue
			case tok != nil && errors.Is(err, ErrUnauthenticated) && ctx.Err() == nil:
				refused = append(refused, i)
			}
			results[i] = batchResult(ops[i], nil, err)
			continue
		}
		results[i] = batchResult(ops[i], r, nil)
	}
	// Refused operations were not applied: renew the token once for them
	// all, and run them again on their own.
	if len(refused) > 0 {
		if _, err := c.renewToken(ctx, tok); err == nil {
			again = append(again, refused...)
		}
	}
	return again, over, overErr
}

func batchResult(op *kvpb.ClientOp, r *kvpb.ClientResult, err error) Result {
	if err != nil {
		return Result{Err: fmt.Errorf("%s %q: %w", opName(op.GetKind()), op.GetKey(), err)}
	}
	switch op.GetKind() {
	case kvpb.ClientOp_KIND_GET:
		if !r.GetFound() {
			return Result{Err: fmt.Errorf("get %q: %w", op.GetKey(), ErrNotFound)}
		}
		return Result{Value: r.GetValue()}
	case kvpb.ClientOp_KIND_CAS:
		return Result{Err: casError(r)}
	}
	return Result{}
}

// BatchAsync is Batch returning at once.
func (c *Client) BatchAsync(ctx context.Context, ops []Op) *Future[[]Result] {
	return async(c, func() ([]Result, error) { return c.Batch(ctx, ops), nil })
}
