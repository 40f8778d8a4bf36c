package coordinator

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/ringkv/ringkv/auth"
	"github.com/ringkv/ringkv/consensus"
	"github.com/ringkv/ringkv/replica"
)

// Multi-key reads and writes (docs/ARCHITECTURE.md, "Transactions":
// "Multi-key reads", "Multi-key writes at eventual levels: logged
// batches"). Both take at most consensus.MaxTxnKeys keys, each at most
// once (a duplicate is refused, not merged: a caller that names a key
// twice has a bug, and an MSet naming it twice with two values has no
// meaning), no reserved key, and are checked key by key against the
// caller's permissions before anything is read or written.

// MGetResult is one key's answer of MGet. Version is the key's version
// (its live record's HLC timestamp; 0 when not found), as a
// transaction's get reports it.
type MGetResult struct {
	Key     []byte
	Value   []byte
	Found   bool
	Version uint64
	// ExpiresAt is when the key expires (zero: never).
	ExpiresAt time.Time
}

// MSetPair is one key of MSet: its value and, when TTL is not 0, how long
// after the write it expires.
type MSetPair struct {
	Key   []byte
	Value []byte
	TTL   time.Duration
}

// mgetParallel bounds the keys one MGet reads at once.
const mgetParallel = 16

// MGet reads keys at level and answers one result per key, in the order
// given.
//
// At one, quorum and all every key is read at that level, up to 16 at
// once; no snapshot is promised: a write of several keys landing
// meanwhile may show for some keys and not others.
//
// At linearizable the answer is a snapshot: it is a read-only
// transaction of gets (Txn): over one partition one Raft command on its
// leader; over several the double read of xtxn_read.go (every key read
// linearizably and its version noted, then every key again, answered when
// no version changed), falling back to the locking protocol after three
// tries. Txn's errors apply.
//
// Errors: ErrInvalidArgument (no key, more than consensus.MaxTxnKeys, a
// duplicate, a reserved, empty or oversized key), auth errors,
// *UnavailableError, ErrCorrupt, and at linearizable those of Txn. The
// results do not alias keys; keys is not kept.
func (c *Coordinator) MGet(ctx context.Context, keys [][]byte, level Level) (res []MGetResult, err error) {
	start := time.Now()
	defer func() { c.metrics.observe("mget", level, start, err) }()
	if err := c.checkMulti(ctx, keys, auth.OpRead); err != nil {
		return nil, err
	}
	ctx, cancel := c.withTimeout(ctx)
	defer cancel()
	if level != Linearizable {
		recs, err := c.readAll(ctx, keys, level, func(ctx context.Context, key []byte) (replica.Record, bool, error) {
			return c.read(ctx, key, level)
		})
		if err != nil {
			return nil, err
		}
		return mgetResults(keys, recs), nil
	}
	return c.mgetTxn(ctx, keys)
}

// found is a read's answer: the key's record (a tombstone, or zero when
// absent) and whether it is live.
type found struct {
	rec  replica.Record
	live bool
}

// readAll reads every key with read, up to mgetParallel at once; the
// first error stops it.
func (c *Coordinator) readAll(ctx context.Context, keys [][]byte, level Level, read func(ctx context.Context, key []byte) (replica.Record, bool, error)) ([]found, error) {
	out := make([]found, len(keys))
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	errs := make(chan error, len(keys)) // one send per key, never blocks
	sem := make(chan struct{}, mgetParallel)
	started := 0
	for i, key := range keys {
		select {
		case sem <- struct{}{}:
		case <-ctx.Done():
		}
		if ctx.Err() != nil {
			break
		}
		started++
		if !c.bg.Go(func() {
			defer func() { <-sem }()
			rec, live, err := read(ctx, key)
			out[i] = found{rec: rec, live: live}
			errs <- err
		}) {
			<-sem
			errs <- ErrClosed
		}
	}
	var first error
	for range started {
		if err := <-errs; err != nil && first == nil {
			first = err
			cancel()
		}
	}
	if first == nil && started < len(keys) {
		first = &UnavailableError{Op: "mget", Level: level, Required: len(keys), Answered: started, Cause: ctx.Err()}
	}
	return out, first
}

func mgetResults(keys [][]byte, recs []found) []MGetResult {
	out := make([]MGetResult, len(keys))
	for i, f := range recs {
		out[i] = MGetResult{Key: bytes.Clone(keys[i])}
		if f.live {
			out[i].Found, out[i].Value, out[i].Version = true, f.rec.Value, Version(f.rec)
			out[i].ExpiresAt = f.rec.ExpiresAt
		}
	}
	return out
}

// mgetTxn is MGet at linearizable: one read-only transaction over keys.
func (c *Coordinator) mgetTxn(ctx context.Context, keys [][]byte) ([]MGetResult, error) {
	req := &TxnRequest{Success: make([]TxnOp, len(keys))}
	for i, k := range keys {
		req.Success[i] = TxnOp{Kind: consensus.OpGet, Key: k}
	}
	res, err := c.Txn(ctx, req)
	if err != nil {
		return nil, err
	}
	if len(res.Results) != len(keys) {
		return nil, fmt.Errorf("mget: transaction answered %d results for %d keys", len(res.Results), len(keys))
	}
	recs := make([]found, len(keys))
	for i, r := range res.Results {
		recs[i] = found{rec: r.Record, live: r.Found}
	}
	return mgetResults(keys, recs), nil
}

// MSet writes every pair at level.
//
// At linearizable it is one transaction of sets (atomic and strictly
// serializable; Txn's errors apply).
//
// At one, quorum and all it is a logged batch (batchlog.go): every record
// is stamped with one HLC timestamp, the batch is written at quorum under
// a reserved key, then each record at level, then the batch entry is
// cleared. Once MSet returns nil, every pair is eventually applied on
// every replica even if this coordinator dies; no isolation: a reader can
// see some pairs before others. An error after the batch was logged
// (*UnavailableError) leaves the batch to the replayer: every pair is
// still applied, later.
//
// Errors: ErrInvalidArgument (no pair, more than consensus.MaxTxnKeys, a
// duplicate key, more than consensus.MaxTxnBytes of keys and values, a
// bad key, value or TTL), auth errors, *UnavailableError. pairs is not
// kept.
func (c *Coordinator) MSet(ctx context.Context, pairs []MSetPair, level Level) (err error) {
	start := time.Now()
	defer func() { c.metrics.observe("mset", level, start, err) }()
	keys := make([][]byte, len(pairs))
	size := 0
	for i, p := range pairs {
		keys[i] = p.Key
		size += len(p.Key) + len(p.Value)
		if len(p.Value) > c.cfg.MaxValueBytes {
			return fmt.Errorf("%w: value %d is %d bytes, limit %d", ErrInvalidArgument, i, len(p.Value), c.cfg.MaxValueBytes)
		}
		if p.TTL != 0 {
			if err := CheckTTL(p.TTL); err != nil {
				return fmt.Errorf("pair %d: %w", i, err)
			}
		}
	}
	if size > consensus.MaxTxnBytes {
		return fmt.Errorf("%w: %d bytes of keys and values, limit %d", ErrInvalidArgument, size, consensus.MaxTxnBytes)
	}
	if err := c.checkMulti(ctx, keys, auth.OpWrite); err != nil {
		return err
	}
	if level == Linearizable {
		req := &TxnRequest{Success: make([]TxnOp, len(pairs))}
		for i, p := range pairs {
			req.Success[i] = TxnOp{Kind: consensus.OpSet, Key: p.Key, Value: p.Value, TTL: p.TTL}
		}
		_, err := c.Txn(ctx, req)
		return err
	}
	return c.loggedBatch(ctx, pairs, level)
}

// checkMulti checks keys as MGet and MSet take them, and that the caller
// may run op on each.
func (c *Coordinator) checkMulti(ctx context.Context, keys [][]byte, op auth.Op) error {
	switch {
	case c.closed.Load():
		return ErrClosed
	case len(keys) == 0:
		return fmt.Errorf("%w: no keys", ErrInvalidArgument)
	case len(keys) > consensus.MaxTxnKeys:
		return fmt.Errorf("%w: %d keys, limit %d", ErrInvalidArgument, len(keys), consensus.MaxTxnKeys)
	}
	seen := make(map[string]struct{}, len(keys))
	for i, k := range keys {
		if err := c.checkKey(ctx, k); err != nil {
			return fmt.Errorf("key %d: %w", i, err)
		}
		if _, dup := seen[string(k)]; dup {
			return fmt.Errorf("%w: key %d appears twice", ErrInvalidArgument, i)
		}
		seen[string(k)] = struct{}{}
		if err := c.allow(ctx, op, k); err != nil {
			return err
		}
	}
	return nil
}

// errBatchStopped is returned by a logged batch that batchHooks stopped
// midway: the test's stand-in for a coordinator that died.
var errBatchStopped = errors.New("coordinator: logged batch stopped by a test hook")
