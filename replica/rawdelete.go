package replica

import (
	"context"
	"fmt"
)

// DeleteRaw durably deletes each of keys (a key that is absent is not an
// error) in one committer round: the deletes share the group commit (and its
// fsync) with concurrent Merge and WriteRaw calls. It returns nil only once
// everything is committed and fsynced. Unlike a WriteRaw delete range, it
// deletes exactly the keys named, never a key written concurrently beside
// them, which is what a consumer of a queue-like namespace (hints) needs.
//
// Like WriteRaw, a call too large for one Badger transaction spans several,
// so after an error a prefix of the deletes may be applied.
//
// Errors: ErrInvalidEntry (wrapped; nothing is applied) if a key is empty, is
// in the record namespace or Badger's internal one, or is longer than
// MaxKeyBytes; ErrClosed if the store is closed before the committer took the
// call; ctx.Err() if ctx is done first (if it ends after the hand-off the
// deletes may still be applied); otherwise a Badger error.
//
// DeleteRaw copies keys: it does not retain them after it returns. Safe for
// concurrent use.
func (s *Store) DeleteRaw(ctx context.Context, keys [][]byte) error {
	if err := ctx.Err(); err != nil {
		return err //nolint:wrapcheck // documented: DeleteRaw returns ctx.Err() itself
	}
	select {
	case <-s.closing:
		return ErrClosed
	default:
	}
	if len(keys) == 0 {
		return nil
	}
	size := 0
	for i, k := range keys {
		if err := checkRawPrefix("key", k); err != nil {
			return fmt.Errorf("delete %d: %w", i, err)
		}
		if len(k) > MaxKeyBytes {
			return fmt.Errorf("%w: delete %d: key of %d bytes exceeds %d", ErrInvalidEntry, i, len(k), MaxKeyBytes)
		}
		size += len(k)
	}
	buf := make([]byte, 0, size)
	op := &rawDeleteOp{keys: make([][]byte, len(keys))}
	for i, k := range keys {
		start := len(buf)
		buf = append(buf, k...)
		op.keys[i] = buf[start:len(buf):len(buf)]
	}
	return s.submit(ctx, op)
}

// rawDeleteOp deletes raw keys by name. The keys are copied by the caller's
// goroutine into one private buffer.
type rawDeleteOp struct {
	keys [][]byte
}

func (o *rawDeleteOp) writes() int { return len(o.keys) }

func (o *rawDeleteOp) apply(w *batchWriter) error {
	for _, k := range o.keys {
		if err := w.delete(k); err != nil {
			return err
		}
	}
	return nil
}
