package client

import (
	"context"
	"fmt"
	"time"

	"storj.io/drpc/drpcerr"

	"github.com/ringkv/ringkv/proto/kvpb"
)

// Pair is one key of MSet: its value and, when TTL is not 0, how long
// after the write it expires.
type Pair struct {
	Key   string
	Value []byte
	TTL   time.Duration
}

// MGetResult is one key's answer of MGet: Found, and when found the value,
// its Version (as a transaction's get reports it, for VersionEquals) and
// the time left before it expires (0: never).
type MGetResult struct {
	Key     string
	Found   bool
	Value   []byte
	Version uint64
	TTL     time.Duration
}

// MGet reads keys (at most 128, each once) at the call's consistency
// level (WithConsistency) and answers one result per key, in order. At
// Linearizable the answer is one snapshot; at the other levels each key
// is read on its own (no snapshot). Errors: ErrInvalidArgument (no key,
// more than 128, a duplicate, a bad key), ErrNotImplemented (a node of an
// older release), ErrConflict, ErrUnavailable, ErrTimeout, ErrCorrupt,
// ErrClosed, ErrUnauthenticated, ErrPermissionDenied.
func (c *Client) MGet(ctx context.Context, keys []string, opts ...CallOption) ([]MGetResult, error) {
	cc := c.callConfig(opts)
	level, err := cc.level.wire()
	if err != nil {
		return nil, fmt.Errorf("mget: %w", err)
	}
	if len(keys) == 0 {
		return nil, fmt.Errorf("%w: mget: no keys", ErrInvalidArgument)
	}
	req := &kvpb.ClientMGetRequest{Keys: make([][]byte, len(keys)), Consistency: level}
	for i, k := range keys {
		req.Keys[i] = []byte(k)
	}
	var resp *kvpb.ClientMGetResponse
	err = c.call(ctx, keys[0], cc.level, false, func(ctx context.Context, addr string) (outcome, error) {
		return c.attempt(ctx, addr, keys[0], func(ctx context.Context, cl kvpb.DRPCClientClient, budget uint64) (*kvpb.ClientHeader, kvpb.ErrorCode, string, string, error) {
			req.TimeoutMicros = budget
			r, err := cl.MGet(ctx, req)
			if drpcerr.Code(err) == drpcerr.Unimplemented {
				return nil, kvpb.ErrorCode_ERROR_CODE_NOT_IMPLEMENTED, "the node does not serve mget (an older release)", "", nil
			}
			if err != nil {
				return nil, 0, "", "", err //nolint:wrapcheck // classified by attempt
			}
			resp = r
			return r.GetHeader(), r.GetError(), r.GetMessage(), "", nil
		})
	})
	if err != nil {
		return nil, fmt.Errorf("mget: %w", err)
	}
	if len(resp.GetResults()) != len(keys) {
		return nil, fmt.Errorf("%w: mget: %d results for %d keys", errInternal, len(resp.GetResults()), len(keys))
	}
	out := make([]MGetResult, len(keys))
	for i, r := range resp.GetResults() {
		out[i] = MGetResult{Key: keys[i], Found: r.GetFound(), Value: r.GetValue(), Version: r.GetVersion(),
			TTL: time.Duration(r.GetTtlMicros()) * time.Microsecond}
	}
	return out, nil
}

// MSet writes pairs (at most 128 keys, each once, 2 MiB in all) at the
// call's consistency level. At Linearizable it is one transaction: atomic.
// At the other levels it is a logged batch: once MSet returns nil every
// pair is eventually applied on every replica, even if the node that
// coordinated it dies; no isolation (a reader may see some pairs before
// others). An ErrUnavailable at those levels may still be applied (the
// batch may have been logged). Errors: ErrInvalidArgument,
// ErrNotImplemented, ErrConflict (Linearizable across partitions: nothing
// applied, may be retried), ErrUnavailable, ErrOutcomeUnknown, ErrTimeout,
// ErrClosed, ErrUnauthenticated, ErrPermissionDenied.
func (c *Client) MSet(ctx context.Context, pairs []Pair, opts ...CallOption) error {
	cc := c.callConfig(opts)
	level, err := cc.level.wire()
	if err != nil {
		return fmt.Errorf("mset: %w", err)
	}
	if len(pairs) == 0 {
		return fmt.Errorf("%w: mset: no pairs", ErrInvalidArgument)
	}
	req := &kvpb.ClientMSetRequest{Pairs: make([]*kvpb.ClientMSetPair, len(pairs)), Consistency: level}
	for i, p := range pairs {
		req.Pairs[i] = &kvpb.ClientMSetPair{Key: []byte(p.Key), Value: p.Value}
		if p.TTL != 0 {
			if req.Pairs[i].TtlMicros, err = ttlToMicros(p.TTL); err != nil {
				return fmt.Errorf("mset: pair %d: %w", i, err)
			}
		}
	}
	first := pairs[0].Key
	err = c.call(ctx, first, cc.level, true, func(ctx context.Context, addr string) (outcome, error) {
		return c.attempt(ctx, addr, first, func(ctx context.Context, cl kvpb.DRPCClientClient, budget uint64) (*kvpb.ClientHeader, kvpb.ErrorCode, string, string, error) {
			req.TimeoutMicros = budget
			r, err := cl.MSet(ctx, req)
			if drpcerr.Code(err) == drpcerr.Unimplemented {
				return nil, kvpb.ErrorCode_ERROR_CODE_NOT_IMPLEMENTED, "the node does not serve mset (an older release)", "", nil
			}
			if err != nil {
				return nil, 0, "", "", err //nolint:wrapcheck // classified by attempt
			}
			return r.GetHeader(), r.GetError(), r.GetMessage(), "", nil
		})
	})
	if err != nil {
		return fmt.Errorf("mset: %w", err)
	}
	return nil
}
