package client

import (
	"context"
	"fmt"
	"time"

	"github.com/ringkv/ringkv/proto/kvpb"
)

// KV is one key and its value, as List returns them.
type KV struct {
	Key   string
	Value []byte
}

// do runs one keyed operation with retries and returns the node's result.
func (c *Client) do(ctx context.Context, op *kvpb.ClientOp, level Consistency) (*kvpb.ClientResult, error) {
	if len(op.GetKey()) == 0 {
		return nil, fmt.Errorf("%w: key is empty", ErrInvalidArgument)
	}
	if op.GetKind() == kvpb.ClientOp_KIND_CAS {
		level = Linearizable
	}
	w, err := level.wire()
	if err != nil {
		return nil, err
	}
	op.Consistency = w
	var res *kvpb.ClientResult
	write := op.GetKind() != kvpb.ClientOp_KIND_GET
	err = c.call(ctx, string(op.GetKey()), level, write, func(ctx context.Context, addr string) (outcome, error) {
		how, r, err := c.attemptOp(ctx, addr, op, write)
		res = r
		return how, err
	})
	if err != nil {
		return nil, fmt.Errorf("%s %q: %w", opName(op.GetKind()), op.GetKey(), err)
	}
	return res, nil
}

func opName(k kvpb.ClientOp_Kind) string {
	switch k {
	case kvpb.ClientOp_KIND_GET:
		return "get"
	case kvpb.ClientOp_KIND_SET:
		return "set"
	case kvpb.ClientOp_KIND_DELETE:
		return "delete"
	case kvpb.ClientOp_KIND_CAS:
		return "cas"
	case kvpb.ClientOp_KIND_EXPIRE:
		return "expire"
	case kvpb.ClientOp_KIND_PERSIST:
		return "persist"
	default:
		return "op"
	}
}

// Get returns key's value at the call's level. Errors: ErrNotFound,
// ErrInvalidArgument, ErrUnavailable, ErrTimeout, ErrCorrupt, ErrClosed.
// The returned slice is the caller's.
func (c *Client) Get(ctx context.Context, key string, opts ...CallOption) ([]byte, error) {
	cc := c.callConfig(opts)
	res, err := c.do(ctx, &kvpb.ClientOp{Kind: kvpb.ClientOp_KIND_GET, Key: []byte(key)}, cc.level)
	if err != nil {
		return nil, err
	}
	if !res.GetFound() {
		return nil, fmt.Errorf("get %q: %w", key, ErrNotFound)
	}
	return res.GetValue(), nil
}

// Set stores value under key at the call's level; WithTTL makes it
// expire. Errors: ErrInvalidArgument (a bad TTL included),
// ErrUnavailable (for one/quorum/all the write may have reached some
// replicas), ErrOutcomeUnknown, ErrTimeout (not applied), ErrClosed.
// value is not retained after Set returns.
func (c *Client) Set(ctx context.Context, key string, value []byte, opts ...CallOption) error {
	cc := c.callConfig(opts)
	ttl, err := cc.ttlMicros()
	if err != nil {
		return fmt.Errorf("set %q: %w", key, err)
	}
	if value == nil {
		value = []byte{}
	}
	_, err = c.do(ctx, &kvpb.ClientOp{Kind: kvpb.ClientOp_KIND_SET, Key: []byte(key), Value: value, TtlMicros: ttl}, cc.level)
	return err
}

// TTL returns the time key has left before it expires, by the clock of
// the node that serves the read (at least a millisecond), or 0 when it
// never expires, read at the call's level. Errors as for Get
// (ErrNotFound for an absent or expired key).
func (c *Client) TTL(ctx context.Context, key string, opts ...CallOption) (time.Duration, error) {
	cc := c.callConfig(opts)
	res, err := c.do(ctx, &kvpb.ClientOp{Kind: kvpb.ClientOp_KIND_GET, Key: []byte(key)}, cc.level)
	if err != nil {
		return 0, err
	}
	if !res.GetFound() {
		return 0, fmt.Errorf("ttl %q: %w", key, ErrNotFound)
	}
	return time.Duration(res.GetTtlMicros()) * time.Microsecond, nil
}

// Expire makes key expire ttl from now (the coordinating node's clock),
// keeping its value. It is a read-modify-write at the call's level: at
// Linearizable a compare-and-set on the partition's leader, so it never
// undoes a concurrent write; at one, quorum and all a read and then a
// write, so a write landing between the two may be overwritten with the
// value read. Errors: ErrNotFound (the key is absent or expired:
// nothing written), ErrInvalidArgument (ttl not positive), and those of
// Set.
func (c *Client) Expire(ctx context.Context, key string, ttl time.Duration, opts ...CallOption) error {
	cc := c.callConfig(opts)
	micros, err := ttlToMicros(ttl)
	if err != nil {
		return fmt.Errorf("expire %q: %w", key, err)
	}
	return c.setExpiry(ctx, &kvpb.ClientOp{Kind: kvpb.ClientOp_KIND_EXPIRE, Key: []byte(key), TtlMicros: micros}, cc.level)
}

// Persist removes key's expiry, keeping its value; a key that never
// expires is left as it is. Otherwise as Expire.
func (c *Client) Persist(ctx context.Context, key string, opts ...CallOption) error {
	cc := c.callConfig(opts)
	return c.setExpiry(ctx, &kvpb.ClientOp{Kind: kvpb.ClientOp_KIND_PERSIST, Key: []byte(key)}, cc.level)
}

func (c *Client) setExpiry(ctx context.Context, op *kvpb.ClientOp, level Consistency) error {
	res, err := c.do(ctx, op, level)
	if err != nil {
		return err
	}
	if !res.GetFound() {
		return fmt.Errorf("%s %q: %w", opName(op.GetKind()), op.GetKey(), ErrNotFound)
	}
	return nil
}

// Delete removes key at the call's level; deleting an absent key succeeds.
// Errors are as for Set.
func (c *Client) Delete(ctx context.Context, key string, opts ...CallOption) error {
	cc := c.callConfig(opts)
	_, err := c.do(ctx, &kvpb.ClientOp{Kind: kvpb.ClientOp_KIND_DELETE, Key: []byte(key)}, cc.level)
	return err
}

// CompareAndSet sets key to value if its current value equals expected
// (nil expected matches the empty value, not an absent key: use
// PutIfAbsent for that). It is always linearizable; the call's level is
// ignored. Errors: a *MismatchError (matches ErrCASMismatch) carrying the
// current value when the key held something else or was absent,
// ErrOutcomeUnknown (it may have swapped: read before trying again),
// ErrUnavailable (not applied), ErrInvalidArgument, ErrTimeout, ErrClosed.
//
// Of opts only WithTTL counts: the new value expires.
func (c *Client) CompareAndSet(ctx context.Context, key string, expected, value []byte, opts ...CallOption) error {
	if expected == nil {
		expected = []byte{}
	}
	return c.cas(ctx, &kvpb.ClientOp{Kind: kvpb.ClientOp_KIND_CAS, Key: []byte(key), HasExpected: true, Expected: expected, Value: value}, opts)
}

// PutIfAbsent sets key to value if the key is absent (a linearizable
// compare-and-set); an expired key is absent, so with WithTTL it is a
// lease that times out: once it has expired, the next PutIfAbsent takes
// it. Errors are as for CompareAndSet; a *MismatchError carries the value
// that is present.
func (c *Client) PutIfAbsent(ctx context.Context, key string, value []byte, opts ...CallOption) error {
	return c.cas(ctx, &kvpb.ClientOp{Kind: kvpb.ClientOp_KIND_CAS, Key: []byte(key), Value: value}, opts)
}

func (c *Client) cas(ctx context.Context, op *kvpb.ClientOp, opts []CallOption) error {
	cc := callConfig{}
	for _, o := range opts {
		o(&cc)
	}
	var err error
	if op.TtlMicros, err = cc.ttlMicros(); err != nil {
		return fmt.Errorf("cas %q: %w", op.GetKey(), err)
	}
	if op.Value == nil {
		op.Value = []byte{}
	}
	res, err := c.do(ctx, op, Linearizable)
	if err != nil {
		return err
	}
	return casError(res)
}

func casError(res *kvpb.ClientResult) error {
	if res.GetSwapped() {
		return nil
	}
	return &MismatchError{Found: res.GetFound(), Current: res.GetValue()}
}

// List returns the live pairs whose keys start with prefix, sorted by key,
// at most WithLimit of them (default: the node's, 1000). Levels one,
// quorum and all are supported; linearizable is refused with
// ErrInvalidArgument. Errors: ErrInvalidArgument, ErrUnavailable,
// ErrTimeout, ErrClosed.
func (c *Client) List(ctx context.Context, prefix string, opts ...CallOption) ([]KV, error) {
	cc := c.callConfig(opts)
	w, err := cc.level.wire()
	if err != nil {
		return nil, err
	}
	if cc.limit < 0 {
		return nil, fmt.Errorf("%w: negative limit %d", ErrInvalidArgument, cc.limit)
	}
	var pairs []*kvpb.ClientPair
	list := func(ctx context.Context, cl kvpb.DRPCClientClient, budget uint64) (*kvpb.ClientHeader, kvpb.ErrorCode, string, string, error) {
		resp, err := cl.List(ctx, &kvpb.ClientListRequest{Prefix: []byte(prefix), Limit: uint32(cc.limit), Consistency: w, TimeoutMicros: budget}) //nolint:gosec // checked non-negative
		if err != nil {
			return nil, 0, "", "", err //nolint:wrapcheck // classified by call
		}
		pairs = resp.GetPairs()
		return resp.GetHeader(), resp.GetError(), resp.GetMessage(), "", nil
	}
	err = c.call(ctx, "", cc.level, false, func(ctx context.Context, addr string) (outcome, error) {
		return c.attempt(ctx, addr, "", list)
	})
	if err != nil {
		return nil, fmt.Errorf("list %q: %w", prefix, err)
	}
	out := make([]KV, len(pairs))
	for i, p := range pairs {
		out[i] = KV{Key: string(p.GetKey()), Value: p.GetValue()}
	}
	return out, nil
}
