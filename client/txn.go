package client

import (
	"context"
	"fmt"
	"time"

	"storj.io/drpc/drpcerr"

	"github.com/ringkv/ringkv/proto/kvpb"
)

// Cmp is one compare of a transaction. Build it with ValueEquals,
// Absent, VersionEquals or TTLAtLeast.
type Cmp struct {
	c   *kvpb.ClientTxnCompare
	err error
}

// The compare kinds of kvpb.ClientTxnCompare.
const (
	cmpValue   = 1
	cmpAbsent  = 2
	cmpVersion = 3
	cmpTTL     = 4
)

// ValueEquals holds when key is live with value.
func ValueEquals(key string, value []byte) Cmp {
	return Cmp{c: &kvpb.ClientTxnCompare{Kind: cmpValue, Key: []byte(key), Value: value}}
}

// Absent holds when key has no live value (never written, deleted or
// expired).
func Absent(key string) Cmp {
	return Cmp{c: &kvpb.ClientTxnCompare{Kind: cmpAbsent, Key: []byte(key)}}
}

// VersionEquals holds when key's version is version: the Version a
// transaction's get returned, which changes with every write of the key;
// 0 means absent. It makes an optimistic lock over reads done earlier.
func VersionEquals(key string, version uint64) Cmp {
	return Cmp{c: &kvpb.ClientTxnCompare{Kind: cmpVersion, Key: []byte(key), Version: version}}
}

// TTLAtLeast holds when key is live and never expires or expires no
// sooner than ttl from now, by the deciding leader's clock.
func TTLAtLeast(key string, ttl time.Duration) Cmp {
	cmp := Cmp{c: &kvpb.ClientTxnCompare{Kind: cmpTTL, Key: []byte(key)}}
	if ttl < 0 || ttl > maxTTL {
		cmp.err = fmt.Errorf("%w: TTLAtLeast %s outside [0, %s]", ErrInvalidArgument, ttl, maxTTL)
	} else {
		cmp.c.TtlMicros = int64(ttl / time.Microsecond)
	}
	return cmp
}

// Txn builds a transaction: c.Txn(ctx).If(cmps...).Then(ops...).Else(ops...).Commit().
// It is not safe for concurrent use; build one per transaction.
type Txn struct {
	c *Client
	// ctx is Commit's: the builder carries its call's context from Txn
	// to Commit, as etcd's clientv3.Txn does (STYLE.md's rule against a
	// ctx in a struct yields to the API issue 20 asks for).
	ctx       context.Context
	cmps      []Cmp
	then, els []Op
}

// Txn starts a transaction: atomic and strictly serializable with every
// other transaction and linearizable operation (docs/ARCHITECTURE.md,
// "Transactions"). Today its keys must all fall in one partition.
func (c *Client) Txn(ctx context.Context) *Txn { return &Txn{c: c, ctx: ctx} }

// If adds compares; they must all hold for Then's ops to run.
func (t *Txn) If(cmps ...Cmp) *Txn {
	t.cmps = append(t.cmps, cmps...)
	return t
}

// Then adds the ops that run when every compare holds: GetOp, SetOp (with
// WithTTL: expiring), DeleteOp. A key may appear once among them.
func (t *Txn) Then(ops ...Op) *Txn {
	t.then = append(t.then, ops...)
	return t
}

// Else adds the ops that run when some compare does not hold.
func (t *Txn) Else(ops ...Op) *Txn {
	t.els = append(t.els, ops...)
	return t
}

// TxnResponse is a committed transaction's answer.
type TxnResponse struct {
	// Succeeded says every compare held, so Then's ops ran; else Else's.
	Succeeded bool
	// Results has one entry per op of the branch that ran, in order.
	Results []TxnResult
}

// TxnResult is one op's result. For a get: Found, and when found the
// value, its Version (for VersionEquals) and the time left before it
// expires (0: never). Writes leave it zero.
type TxnResult struct {
	Found   bool
	Value   []byte
	Version uint64
	TTL     time.Duration
}

// Commit runs the transaction. Errors: ErrInvalidArgument (malformed,
// over the limits: 128 keys, 2 MiB, a key twice among one branch's ops;
// nothing done), ErrNotImplemented (a node that does not serve
// transactions), ErrConflict (a transaction across partitions lost to
// conflicting ones on every retry the node made: nothing applied, may be
// retried), ErrUnavailable (no leader in
// time: not applied), ErrOutcomeUnknown (a transaction that writes was
// sent and its answer lost: it may have applied), ErrTimeout, ErrClosed,
// ErrUnauthenticated, ErrPermissionDenied.
func (t *Txn) Commit() (*TxnResponse, error) {
	req := &kvpb.ClientTxnRequest{}
	first := ""
	write := false
	see := func(k []byte) {
		if first == "" || string(k) < first {
			first = string(k)
		}
	}
	for _, cmp := range t.cmps {
		if cmp.err != nil {
			return nil, fmt.Errorf("txn: %w", cmp.err)
		}
		req.Compares = append(req.Compares, cmp.c)
		see(cmp.c.GetKey())
	}
	for _, b := range []struct {
		ops []Op
		out *[]*kvpb.ClientTxnOp
	}{{t.then, &req.Success}, {t.els, &req.Failure}} {
		for i, op := range b.ops {
			if op.err != nil {
				return nil, fmt.Errorf("txn: op %d: %w", i, op.err)
			}
			w := &kvpb.ClientTxnOp{Key: op.op.GetKey(), Value: op.op.GetValue(), TtlMicros: op.op.GetTtlMicros()}
			switch op.op.GetKind() {
			case kvpb.ClientOp_KIND_GET:
				w.Kind = 1
			case kvpb.ClientOp_KIND_SET:
				w.Kind, write = 2, true
			case kvpb.ClientOp_KIND_DELETE:
				w.Kind, write = 3, true
			default:
				return nil, fmt.Errorf("%w: txn: op %d: a transaction takes GetOp, SetOp and DeleteOp only", ErrInvalidArgument, i)
			}
			*b.out = append(*b.out, w)
			see(w.GetKey())
		}
	}
	if first == "" {
		return nil, fmt.Errorf("%w: txn: a transaction needs at least one compare or op with a key", ErrInvalidArgument)
	}
	var resp *kvpb.ClientTxnResponse
	err := t.c.call(t.ctx, first, Linearizable, write, func(ctx context.Context, addr string) (outcome, error) {
		return t.c.attempt(ctx, addr, first, func(ctx context.Context, cl kvpb.DRPCClientClient, budget uint64) (*kvpb.ClientHeader, kvpb.ErrorCode, string, string, error) {
			req.TimeoutMicros = budget
			r, err := cl.Txn(ctx, req)
			if drpcerr.Code(err) == drpcerr.Unimplemented {
				// An older node: nothing was done there.
				return nil, kvpb.ErrorCode_ERROR_CODE_NOT_IMPLEMENTED, "the node does not serve transactions (an older release)", "", nil
			}
			if err != nil {
				return nil, 0, "", "", err //nolint:wrapcheck // classified by attempt
			}
			resp = r
			return r.GetHeader(), r.GetError(), r.GetMessage(), r.GetLeader(), nil
		})
	})
	if err != nil {
		return nil, fmt.Errorf("txn: %w", err)
	}
	out := &TxnResponse{Succeeded: resp.GetSucceeded(), Results: make([]TxnResult, len(resp.GetResults()))}
	for i, r := range resp.GetResults() {
		out.Results[i] = TxnResult{Found: r.GetFound(), Value: r.GetValue(), Version: r.GetVersion(),
			TTL: time.Duration(r.GetTtlMicros()) * time.Microsecond}
	}
	return out, nil
}
