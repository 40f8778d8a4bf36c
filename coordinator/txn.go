package coordinator

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/ringkv/ringkv/auth"
	"github.com/ringkv/ringkv/consensus"
	"github.com/ringkv/ringkv/replica"
	"github.com/ringkv/ringkv/ring"
)

// TxnRequest is a transaction as a client sends it (docs/ARCHITECTURE.md,
// "Transactions"): if every compare holds, Success runs, else Failure.
type TxnRequest struct {
	Compares []consensus.Compare
	Success  []TxnOp
	Failure  []TxnOp
}

// TxnOp is one op of a branch: a get, a set (expiring TTL after the
// coordinator takes the transaction; 0: never) or a delete.
type TxnOp struct {
	Kind  consensus.OpKind
	Key   []byte
	Value []byte
	TTL   time.Duration
}

// TxnResult is a transaction's answer: which branch ran and one result per
// op of it, in order.
type TxnResult = consensus.TxnResult

// Txn runs a transaction at the linearizable level: atomically, strictly
// serializable with every other transaction and linearizable operation.
// Keys of one partition run as one command on its leader
// (consensus.Group.Txn); keys of several partitions run the protocol of
// xtxn.go. Errors:
// ErrInvalidArgument (malformed, over the limits, reserved keys, an
// answer too large: nothing done), ErrConflict (across partitions: every
// attempt lost to conflicting transactions; nothing done), ErrNotUpgraded
// (wraps consensus.ErrNotUpgraded: some member is older; nothing done),
// *UnavailableError (no leader in time: not applied), auth errors, and
// consensus.ErrAmbiguous (the outcome is unknown).
func (c *Coordinator) Txn(ctx context.Context, req *TxnRequest) (res TxnResult, err error) {
	start := time.Now()
	partitions := 0
	defer func() { c.metrics.observeTxn(partitions, res.Succeeded, start, err) }()
	t, err := c.checkTxn(ctx, req)
	if err != nil {
		return res, err
	}
	ctx, cancel := c.withTimeout(ctx)
	defer cancel()
	for {
		r := c.deps.Ring.Ring()
		res, partitions, err = c.txnOnce(ctx, r, t)
		if !errors.Is(err, consensus.ErrSplit) {
			return res, err
		}
		// A partition split under the transaction, which applied nothing
		// there: again under the ring that split it.
		if err = c.awaitSplitRing(ctx, "txn", r, err); err != nil {
			return res, err
		}
	}
}

// txnOnce runs t once under r: Txn but for the retry after a split. It
// returns the partitions t touches.
func (c *Coordinator) txnOnce(ctx context.Context, r *ring.Ring, t *consensus.Txn) (res TxnResult, partitions int, err error) {
	if r == nil || r.ActiveCount() == 0 {
		return res, 0, &UnavailableError{Op: "txn", Level: Linearizable, Required: 1, Cause: errors.New("node has not joined a ring yet")}
	}
	keys := t.Keys()
	p := r.IDOf(keys[0])
	parts := map[uint32]struct{}{p: {}}
	for _, k := range keys[1:] {
		parts[r.IDOf(k)] = struct{}{}
	}
	partitions = len(parts)
	if c.deps.Groups == nil {
		return res, partitions, &UnavailableError{Op: "txn", Level: Linearizable, Required: 1, Cause: errors.New("this node runs no raft groups")}
	}
	if partitions > 1 {
		res, err = c.xtxn(ctx, r, t)
		return res, partitions, err
	}
	var refused error // the leader's answer that retrying cannot change
	err = c.onPartitionLeader(ctx, "txn", p, r.ReplicasOf(p), func(ctx context.Context, node string, p uint32, g *consensus.Group) error {
		var err error
		if g != nil {
			err = c.writeThrough(ctx, func() error {
				var err error
				res, err = g.Txn(ctx, t)
				return err //nolint:wrapcheck // classified below
			})
		} else {
			res, err = c.deps.Lin.LinTxn(ctx, node, p, t)
		}
		if err = txnError(err); errors.Is(err, ErrInvalidArgument) || errors.Is(err, ErrNotUpgraded) {
			refused = err
			return nil
		}
		return err
	})
	if err == nil {
		err = refused
	}
	if err != nil {
		res = TxnResult{}
	}
	return res, partitions, err
}

// txnError gives the leader's refusals their coordinator class.
func txnError(err error) error {
	switch {
	case err == nil:
		return nil
	case errors.Is(err, consensus.ErrInvalidTxn), errors.Is(err, consensus.ErrTxnTooLarge):
		if !errors.Is(err, ErrInvalidArgument) {
			return fmt.Errorf("%w: %w", ErrInvalidArgument, err)
		}
	case errors.Is(err, consensus.ErrNotUpgraded):
		if !errors.Is(err, ErrNotUpgraded) {
			return fmt.Errorf("%w: %w", ErrNotUpgraded, err)
		}
	}
	return err
}

// checkTxn validates req (shape, limits, keys, values, TTLs, permissions)
// and turns it into the leader's form, TTLs made expiries by this node's
// clock now.
func (c *Coordinator) checkTxn(ctx context.Context, req *TxnRequest) (*consensus.Txn, error) {
	if c.closed.Load() {
		return nil, ErrClosed
	}
	// TTLs count from the HLC's wall time now, as Set's do (WithTTL).
	now := c.deps.Clock.Now().WallTime()
	t := &consensus.Txn{Compares: req.Compares}
	// A key pays the rate limits once, however many compares and ops
	// name it.
	paid := make(map[string]bool)
	allowKey := func(op auth.Op, key []byte) error {
		if paid[string(key)] {
			return c.permit(ctx, op, key)
		}
		paid[string(key)] = true
		return c.allow(ctx, op, key)
	}
	for _, cmp := range req.Compares {
		if err := c.checkKey(ctx, cmp.Key); err != nil {
			return nil, fmt.Errorf("compare: %w", err)
		}
		if len(cmp.Value) > c.cfg.MaxValueBytes {
			return nil, fmt.Errorf("%w: compare value is %d bytes, limit %d", ErrInvalidArgument, len(cmp.Value), c.cfg.MaxValueBytes)
		}
		if err := allowKey(auth.OpRead, cmp.Key); err != nil {
			return nil, err
		}
	}
	var err error
	if t.Success, err = c.txnOps(ctx, "success", req.Success, now, allowKey); err != nil {
		return nil, err
	}
	if t.Failure, err = c.txnOps(ctx, "failure", req.Failure, now, allowKey); err != nil {
		return nil, err
	}
	if err := consensus.ValidateTxn(t); err != nil {
		return nil, fmt.Errorf("%w: %w", ErrInvalidArgument, err)
	}
	return t, nil
}

func (c *Coordinator) txnOps(ctx context.Context, branch string, ops []TxnOp, now time.Time, allowKey func(auth.Op, []byte) error) ([]consensus.Op, error) {
	out := make([]consensus.Op, len(ops))
	for i, op := range ops {
		if err := c.checkKey(ctx, op.Key); err != nil {
			return nil, fmt.Errorf("%s op %d: %w", branch, i, err)
		}
		out[i] = consensus.Op{Kind: op.Kind, Key: op.Key}
		switch op.Kind {
		case consensus.OpGet:
			if err := allowKey(auth.OpRead, op.Key); err != nil {
				return nil, err
			}
		case consensus.OpSet, consensus.OpDelete:
			if err := allowKey(auth.OpWrite, op.Key); err != nil {
				return nil, err
			}
		default:
			return nil, fmt.Errorf("%w: %s op %d: unknown kind %d", ErrInvalidArgument, branch, i, op.Kind)
		}
		if op.Kind != consensus.OpSet {
			if len(op.Value) > 0 || op.TTL != 0 {
				return nil, fmt.Errorf("%w: %s op %d: a %s takes no value or ttl", ErrInvalidArgument, branch, i, op.Kind)
			}
			continue
		}
		if len(op.Value) > c.cfg.MaxValueBytes {
			return nil, fmt.Errorf("%w: %s op %d: value is %d bytes, limit %d", ErrInvalidArgument, branch, i, len(op.Value), c.cfg.MaxValueBytes)
		}
		out[i].Value = op.Value
		if op.TTL != 0 {
			if err := CheckTTL(op.TTL); err != nil {
				return nil, fmt.Errorf("%s op %d: %w", branch, i, err)
			}
			out[i].ExpiresAt = now.Add(op.TTL)
		}
	}
	return out, nil
}

// Version returns the version a get of a transaction reports for r: its
// HLC timestamp (0 for none).
func Version(r replica.Record) uint64 { return uint64(r.Timestamp) }
