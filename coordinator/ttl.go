package coordinator

import (
	"context"
	"fmt"
	"time"

	"github.com/ringkv/ringkv/auth"
	"github.com/ringkv/ringkv/consensus"
	"github.com/ringkv/ringkv/replica"
)

// Expiry (see docs/ARCHITECTURE.md, "Expiry"). A write may carry a TTL;
// the coordinator turns it into an absolute expiry, its HLC's wall time
// plus the TTL, stored in the record (replica.Record.ExpiresAt) and
// carried with it whole by every path that moves records. Reads treat a
// record that has expired by the reading node's clock as absent; at
// linearizable the partition's leader decides, by its clock.

// MaxTTL bounds a write's time to live: expiries are stored as Unix
// nanoseconds, which end in 2262.
const MaxTTL = 100 * 365 * 24 * time.Hour

// WriteOption changes one write (Set, CompareAndSet).
type WriteOption func(*writeOptions)

type writeOptions struct {
	ttl       time.Duration
	expiresAt time.Time
	err       error
}

// WithTTL makes the written record expire ttl after the coordinator's
// clock reads when it writes. ttl must be positive and at most MaxTTL;
// otherwise the write fails with ErrInvalidArgument.
func WithTTL(ttl time.Duration) WriteOption {
	return func(o *writeOptions) {
		if err := CheckTTL(ttl); err != nil {
			o.err = err
			return
		}
		o.ttl, o.expiresAt = ttl, time.Time{}
	}
}

// WithExpiresAt makes the written record expire at t (Redis's EXAT and
// PXAT). A t in the past writes a record that is already expired: the
// key reads as absent at once. The zero t means never, as without the
// option.
func WithExpiresAt(t time.Time) WriteOption {
	return func(o *writeOptions) {
		if !t.IsZero() && (t.UnixNano() <= 0 || t.After(time.Now().Add(MaxTTL))) {
			o.err = fmt.Errorf("%w: expiry %s outside 1970..now+%s", ErrInvalidArgument, t, MaxTTL)
			return
		}
		o.ttl, o.expiresAt = 0, t
	}
}

// CheckTTL returns an error wrapping ErrInvalidArgument unless ttl is
// positive and at most MaxTTL.
func CheckTTL(ttl time.Duration) error {
	if ttl <= 0 || ttl > MaxTTL {
		return fmt.Errorf("%w: ttl %s outside (0, %s]", ErrInvalidArgument, ttl, MaxTTL)
	}
	return nil
}

func applyWriteOptions(opts []WriteOption) (writeOptions, error) {
	var o writeOptions
	for _, opt := range opts {
		opt(&o)
	}
	return o, o.err
}

// expiry returns the absolute expiry of o for a record stamped at ts
// (zero: never).
func (o writeOptions) expiry(ts replica.Timestamp) time.Time {
	if o.ttl > 0 {
		return ts.WallTime().Add(o.ttl)
	}
	return o.expiresAt
}

// Item is a key's value and its expiry (zero: never), as GetItem returns
// them.
type Item struct {
	Value     []byte
	ExpiresAt time.Time
}

// TTL returns the time left before the item expires, as of now, at least
// one millisecond; 0 when it never expires.
func (it Item) TTL(now time.Time) time.Duration {
	if it.ExpiresAt.IsZero() {
		return 0
	}
	return max(it.ExpiresAt.Sub(now), time.Millisecond)
}

// GetItem is Get that also returns the key's expiry. Errors as for Get.
func (c *Coordinator) GetItem(ctx context.Context, key []byte, level Level) (Item, bool, error) {
	rec, found, err := c.get(ctx, key, level)
	if err != nil || !found {
		return Item{}, false, err
	}
	return Item{Value: rec.Value, ExpiresAt: rec.ExpiresAt}, true, nil
}

// Expire sets key's expiry to ttl from now (the coordinator's clock),
// keeping its value, and reports whether the key existed; an absent key
// is left absent. It is a read-modify-write: at Linearizable through
// compare-and-set on the partition's leader (retried while the value
// changes under it), so it never undoes a concurrent write; at the other
// levels a read and then a write at level, stamped anew, so a write to
// the key that lands between the two may be overwritten by the value
// read. Errors: ErrInvalidArgument (a ttl CheckTTL refuses), and those of
// Get and Set.
func (c *Coordinator) Expire(ctx context.Context, key []byte, ttl time.Duration, level Level) (bool, error) {
	if err := CheckTTL(ttl); err != nil {
		return false, err
	}
	return c.setExpiry(ctx, "expire", key, ttl, level)
}

// Persist removes key's expiry, keeping its value, and reports whether
// the key existed. A key without an expiry is not written. Otherwise as
// Expire.
func (c *Coordinator) Persist(ctx context.Context, key []byte, level Level) (bool, error) {
	return c.setExpiry(ctx, "persist", key, 0, level)
}

// setExpiry is Expire (ttl > 0) and Persist (ttl 0).
func (c *Coordinator) setExpiry(ctx context.Context, op string, key []byte, ttl time.Duration, level Level) (found bool, err error) {
	start := time.Now()
	defer func() { c.metrics.observe(op, level, start, err) }()
	if err := c.checkKey(ctx, key); err != nil {
		return false, err
	}
	if err := c.allow(ctx, auth.OpWrite, key); err != nil {
		return false, err
	}
	if err := c.permit(ctx, auth.OpRead, key); err != nil {
		return false, err
	}
	ctx, cancel := c.withTimeout(ctx)
	defer cancel()
	if level != Linearizable {
		rec, found, err := c.read(ctx, key, level)
		if err != nil || !found {
			return false, err
		}
		if ttl == 0 && rec.ExpiresAt.IsZero() {
			return true, nil
		}
		next := replica.Record{Value: rec.Value}
		if ttl > 0 {
			next.ExpiresAt = c.deps.Clock.Now().WallTime().Add(ttl)
		}
		return true, c.write(ctx, op, key, next, level)
	}
	for {
		rec, found, err := c.linGet(ctx, key)
		if err != nil || !found {
			return false, err
		}
		if ttl == 0 && rec.ExpiresAt.IsZero() {
			return true, nil
		}
		var expiresAt time.Time
		if ttl > 0 {
			expiresAt = c.deps.Clock.Now().WallTime().Add(ttl)
		}
		cur := rec.Value
		res, err := c.linCAS(ctx, key, &cur, rec.Value, expiresAt)
		switch {
		case err != nil:
			return false, err
		case res.Swapped:
			return true, nil
		case !res.Found:
			return false, nil
		case ctx.Err() != nil:
			return false, &UnavailableError{Op: op, Level: Linearizable, Required: 1, Cause: ctx.Err()}
		}
		// The value changed between the read and the swap: read again.
	}
}

// linCAS runs a compare-and-set on key's leader.
func (c *Coordinator) linCAS(ctx context.Context, key []byte, expected *[]byte, value []byte, expiresAt time.Time) (res CASResult, err error) {
	err = c.onLeader(ctx, "cas", key, func(ctx context.Context, node string, p uint32, g *consensus.Group) error {
		if g != nil {
			return c.writeThrough(ctx, func() error {
				swapped, cur, found, err := g.CompareAndSet(ctx, key, expected, value, expiresAt)
				res = CASResult{Swapped: swapped, Found: found, Current: cur}
				return err //nolint:wrapcheck // classified by onLeader
			})
		}
		r, err := c.deps.Lin.LinCAS(ctx, node, p, key, expected, value, expiresAt)
		res = r
		return err //nolint:wrapcheck // classified by onLeader
	})
	return res, err
}
