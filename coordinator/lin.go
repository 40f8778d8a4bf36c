package coordinator

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/ringkv/ringkv/consensus"
	"github.com/ringkv/ringkv/replica"
)

// LinTransport forwards linearizable operations to the node that leads a
// partition's group. A receiver that is not the leader answers with a
// *consensus.NotLeaderError naming the leader it knows; an outcome that is
// unknown comes back as consensus.ErrAmbiguous.
type LinTransport interface {
	LinGet(ctx context.Context, node string, partition uint32, key []byte) (replica.Record, bool, error)
	LinPut(ctx context.Context, node string, partition uint32, key, value []byte, tombstone bool) error
	LinCAS(ctx context.Context, node string, partition uint32, key []byte, expected *[]byte, value []byte) (CASResult, error)
}

// CASResult is the outcome of a compare-and-set that did not fail: whether
// it swapped, and, when it did not, the current value (Found false: the key
// is absent).
type CASResult struct {
	Swapped bool
	Found   bool
	Current []byte
}

// CompareAndSet sets key to value at the linearizable level if the key's
// current value equals *expected, or, with expected nil, if the key is
// absent (put-if-absent). Errors: ErrInvalidArgument, *UnavailableError
// (no leader reachable in time: not applied), consensus.ErrAmbiguous (the
// outcome is unknown: it may have applied; do not retry blindly).
func (c *Coordinator) CompareAndSet(ctx context.Context, key []byte, expected *[]byte, value []byte) (res CASResult, err error) {
	start := time.Now()
	defer func() { c.metrics.observe("cas", Linearizable, start, err) }()
	if err := c.checkKey(key); err != nil {
		return res, err
	}
	if len(value) > c.cfg.MaxValueBytes {
		return res, fmt.Errorf("%w: value is %d bytes, limit %d", ErrInvalidArgument, len(value), c.cfg.MaxValueBytes)
	}
	err = c.onLeader(ctx, "cas", key, func(ctx context.Context, node string, p uint32, g *consensus.Group) error {
		if g != nil {
			swapped, cur, found, err := g.CompareAndSet(ctx, key, expected, value)
			res = CASResult{Swapped: swapped, Found: found, Current: cur}
			return err //nolint:wrapcheck // classified by onLeader
		}
		r, err := c.deps.Lin.LinCAS(ctx, node, p, key, expected, value)
		res = r
		return err //nolint:wrapcheck // classified by onLeader
	})
	return res, err
}

func (c *Coordinator) linPut(ctx context.Context, key, value []byte, tombstone bool) error {
	return c.onLeader(ctx, "set", key, func(ctx context.Context, node string, p uint32, g *consensus.Group) error {
		if g != nil {
			return g.Put(ctx, key, value, tombstone) //nolint:wrapcheck // classified by onLeader
		}
		return c.deps.Lin.LinPut(ctx, node, p, key, value, tombstone) //nolint:wrapcheck // classified by onLeader
	})
}

func (c *Coordinator) linGet(ctx context.Context, key []byte) (replica.Record, bool, error) {
	var rec replica.Record
	var found bool
	err := c.onLeader(ctx, "get", key, func(ctx context.Context, node string, p uint32, g *consensus.Group) error {
		if g != nil {
			r, err := g.Get(ctx, key)
			if errors.Is(err, replica.ErrNotFound) {
				found = false
				return nil
			}
			rec, found = r, err == nil
			return err //nolint:wrapcheck // classified by onLeader
		}
		r, f, err := c.deps.Lin.LinGet(ctx, node, p, key)
		rec, found = r, f
		return err //nolint:wrapcheck // classified by onLeader
	})
	if err != nil {
		return rec, false, err
	}
	return rec, found && rec.Live(time.Now()), nil
}

// onLeader runs op on the leader of key's partition: locally when this
// node leads, else through Lin. It follows NotLeader redirects, and waits
// (backing off) while an election leaves the leader unknown, until ctx
// ends; then it reports the partition unavailable. Ambiguous outcomes are
// returned as they are: never retried.
func (c *Coordinator) onLeader(ctx context.Context, op string, key []byte, run func(ctx context.Context, node string, p uint32, g *consensus.Group) error) error {
	if c.deps.Groups == nil {
		return &UnavailableError{Op: op, Level: Linearizable, Required: 1, Cause: errors.New("this node runs no raft groups")}
	}
	p, replicas, err := c.placement(op, key, Linearizable)
	if err != nil {
		return err
	}
	ctx, cancel := c.withTimeout(ctx)
	defer cancel()
	target := ""
	if g, ok := c.deps.Groups.Group(p); ok {
		target = g.Leader()
	}
	backoff := 10 * time.Millisecond
	tried := 0
	var last error
	for {
		if target == "" {
			// Leader unknown: ask the replicas in turn; they redirect.
			target = replicas[tried%len(replicas)]
		}
		tried++
		var g *consensus.Group
		if target == c.cfg.NodeID {
			if lg, ok := c.deps.Groups.Group(p); ok {
				g = lg
			}
		}
		if target == c.cfg.NodeID && g == nil {
			err = &consensus.NotLeaderError{Group: p}
		} else {
			err = run(ctx, target, p, g)
		}
		var nle *consensus.NotLeaderError
		switch {
		case err == nil:
			return nil
		case errors.Is(err, consensus.ErrAmbiguous):
			return err
		case errors.As(err, &nle) && nle.Leader != "" && nle.Leader != target:
			target = nle.Leader // follow the redirect at once
			last = err
			continue
		case ctx.Err() != nil:
			return &UnavailableError{Op: op, Level: Linearizable, Required: 1, Replicas: len(replicas), Cause: errors.Join(last, err)}
		}
		last = err
		target = ""
		timer := time.NewTimer(backoff)
		select {
		case <-timer.C:
		case <-ctx.Done():
			timer.Stop()
			return &UnavailableError{Op: op, Level: Linearizable, Required: 1, Replicas: len(replicas), Cause: errors.Join(last, ctx.Err())}
		}
		backoff = min(2*backoff, 500*time.Millisecond)
	}
}
