package bench

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"sync"
	"sync/atomic"
	"time"

	"github.com/ringkv/ringkv/client"
)

// BatchPutter is the optional ability of a Driver to write many keys in
// one pipelined call; PreloadBatched needs it.
type BatchPutter interface {
	// PutBatch writes values[i] under keys[i] at level; the writes are
	// not atomic together. It returns the first failure.
	PutBatch(ctx context.Context, keys []string, values [][]byte, level string) error
}

// PutBatch writes the pairs through client.Batch: the writes bound for
// one node travel in one RPC.
func (d *ClientDriver) PutBatch(ctx context.Context, keys []string, values [][]byte, lvl string) error {
	opt, err := level(lvl)
	if err != nil {
		return err
	}
	ops := make([]client.Op, len(keys))
	for i, k := range keys {
		ops[i] = client.SetOp(k, values[i], opt)
	}
	for i, r := range d.c.Batch(ctx, ops) {
		if r.Err != nil {
			return fmt.Errorf("bench: batch set %s: %w", keys[i], r.Err)
		}
	}
	return nil
}

// preloadAttempts is how many times PreloadBatched tries a batch: a
// batch that fails (a replica write timed out on a loaded machine) is
// written again whole, which is harmless since every write of it sets
// the same value. A batch the node refused as overloaded (nothing of it
// done: client.ErrOverloaded) is tried up to preloadOverloadAttempts
// times, each after a wait of up to preloadBackoffMax: a bulk load meets
// the node's bound by design (16 loaders of 256-key batches against a
// bound shrunk to 16 by the load), and gave up on a batch after five
// quick tries while the others held the bound (2026-12-06, 1,000,000
// keys of 1 KiB).
const (
	preloadAttempts         = 5
	preloadOverloadAttempts = 60
	preloadBackoffMax       = 2 * time.Second
)

// putBatchRetrying writes one batch, each attempt within s.OpTimeout,
// trying again after a failure up to preloadAttempts times in all (up
// to preloadOverloadAttempts, with a backoff, while the node refuses it
// as overloaded).
func putBatchRetrying(ctx context.Context, d BatchPutter, keys []string, values [][]byte, s Spec) error {
	return putBatchRetryingWith(ctx, d, keys, values, s, preloadBackoffMax)
}

// putBatchRetryingWith is putBatchRetrying with the longest wait after
// an overload refusal (tests shorten it).
func putBatchRetryingWith(ctx context.Context, d BatchPutter, keys []string, values [][]byte, s Spec, backoffMax time.Duration) error {
	var err error
	failed, overloaded := 0, 0
	for {
		bctx, cancel := context.WithTimeout(ctx, s.OpTimeout)
		err = d.PutBatch(bctx, keys, values, s.Level)
		cancel()
		if err == nil || ctx.Err() != nil {
			return err
		}
		if !errors.Is(err, client.ErrOverloaded) {
			if failed++; failed >= preloadAttempts {
				return fmt.Errorf("bench: preload batch failed %d times: %w", failed, err)
			}
			continue
		}
		if overloaded++; overloaded >= preloadOverloadAttempts {
			return fmt.Errorf("bench: preload batch refused as overloaded %d times: %w", overloaded, err)
		}
		wait := min(backoffMax, 50*time.Millisecond<<min(overloaded, 10))
		t := time.NewTimer(rand.N(wait) + 1)
		select {
		case <-t.C:
		case <-ctx.Done():
			t.Stop()
			return err
		}
	}
}

// PreloadBatched is Preload for large key spaces: Spec.Concurrency
// callers each write batches of batch keys at Spec.Level (OpTimeout per
// batch), every key its own value of ValueSize random bytes (seeded from
// Spec.Seed and the key's index, so that values differ and compress as
// little as Preload's shared value would not). It writes the keys
// Key(0)..Key(Keys-1) and not the CAS counters. done, if not nil, is
// called with the keys written so far after each batch, from the
// callers' goroutines. A failed batch is tried again, up to
// preloadAttempts times (more, after a backoff, while the node refuses
// it as overloaded). It returns ErrInvalidSpec for a bad spec or
// batch, and every caller's failure joined.
func PreloadBatched(ctx context.Context, d BatchPutter, s Spec, batch int, done func(int64)) error {
	if err := s.Validate(); err != nil {
		return err
	}
	if batch < 1 {
		return fmt.Errorf("%w: batch must be positive, got %d", ErrInvalidSpec, batch)
	}
	var (
		next    atomic.Int64
		written atomic.Int64
		wg      sync.WaitGroup
		mu      sync.Mutex
		errs    []error
	)
	for w := range s.Concurrency {
		wg.Add(1)
		go func() {
			defer wg.Done()
			rng := rand.New(rand.NewPCG(s.Seed, uint64(w)+1))
			keys := make([]string, 0, batch)
			values := make([][]byte, 0, batch)
			for ctx.Err() == nil {
				first := int(next.Add(int64(batch)) - int64(batch))
				if first >= s.Keys {
					return
				}
				keys, values = keys[:0], values[:0]
				for i := first; i < min(first+batch, s.Keys); i++ {
					v := make([]byte, s.ValueSize)
					for j := range v {
						v[j] = alphabet[rng.IntN(len(alphabet))]
					}
					keys, values = append(keys, Key(i)), append(values, v)
				}
				err := putBatchRetrying(ctx, d, keys, values, s)
				if err != nil {
					mu.Lock()
					errs = append(errs, err)
					mu.Unlock()
					return
				}
				n := written.Add(int64(len(keys)))
				if done != nil {
					done(n)
				}
			}
		}()
	}
	wg.Wait()
	if len(errs) > 0 {
		return errors.Join(errs...)
	}
	if err := ctx.Err(); err != nil {
		return fmt.Errorf("bench: preload: %w", err)
	}
	return nil
}
