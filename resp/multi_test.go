package resp

import (
	"context"
	"errors"
	"fmt"
	"testing"

	"github.com/redis/go-redis/v9"

	"github.com/ringkv/ringkv/consensus"
	"github.com/ringkv/ringkv/coordinator"
)

// multiStore is a memStore with MGet and MSet (MultiStore), refusing a
// duplicate key as the coordinator does, and counting its calls.
type multiStore struct {
	*memStore
	mgets, msets int
	levels       []coordinator.Level
}

func (m *multiStore) MGet(ctx context.Context, keys [][]byte, level coordinator.Level) ([]coordinator.MGetResult, error) {
	if err := dupes(keys); err != nil {
		return nil, err
	}
	out := make([]coordinator.MGetResult, len(keys))
	for i, k := range keys {
		it, ok, err := m.GetItem(ctx, k, level)
		if err != nil {
			return nil, err
		}
		out[i] = coordinator.MGetResult{Key: k, Found: ok, Value: it.Value}
	}
	m.mu.Lock()
	m.mgets++
	m.levels = append(m.levels, level)
	m.mu.Unlock()
	return out, nil
}

func (m *multiStore) MSet(ctx context.Context, pairs []coordinator.MSetPair, level coordinator.Level) error {
	keys := make([][]byte, len(pairs))
	for i, p := range pairs {
		keys[i] = p.Key
	}
	if err := dupes(keys); err != nil {
		return err
	}
	if len(pairs) > consensus.MaxTxnKeys {
		return fmt.Errorf("%w: %d keys", coordinator.ErrInvalidArgument, len(pairs))
	}
	for _, p := range pairs {
		if err := m.Set(ctx, p.Key, p.Value, level, Expiry{}); err != nil {
			return err
		}
	}
	m.mu.Lock()
	m.msets++
	m.levels = append(m.levels, level)
	m.mu.Unlock()
	return nil
}

func dupes(keys [][]byte) error {
	seen := map[string]bool{}
	for _, k := range keys {
		if seen[string(k)] {
			return fmt.Errorf("%w: duplicate key", coordinator.ErrInvalidArgument)
		}
		seen[string(k)] = true
	}
	return nil
}

func TestMultiKey(t *testing.T) {
	st := &multiStore{memStore: newMemStore()}
	_, addr := startServer(t, DefaultConfig(), Deps{Store: st})
	r := newRedis(t, addr, 2)
	ctx := t.Context()
	// MSET with a repeated key: the last value wins, one MSet call.
	if err := r.MSet(ctx, "a", "1", "b", "2", "a", "3").Err(); err != nil {
		t.Fatal(err)
	}
	got, err := r.MGet(ctx, "a", "b", "nope", "a").Result()
	if err != nil {
		t.Fatal(err)
	}
	if fmt.Sprint(got) != "[3 2 <nil> 3]" {
		t.Fatalf("mget: got %v, want [3 2 <nil> 3]", got)
	}
	if st.mgets != 1 || st.msets != 1 {
		t.Fatalf("got %d MGet and %d MSet calls, want 1 each", st.mgets, st.msets)
	}
	// More keys than a batch takes: batches of 128 at quorum.
	var args []any
	for i := range 300 {
		args = append(args, fmt.Sprintf("k%d", i), i)
	}
	if err := r.MSet(ctx, args...).Err(); err != nil {
		t.Fatal(err)
	}
	if st.msets != 4 {
		t.Fatalf("got %d MSet calls, want 1 + 3 batches", st.msets)
	}
	// At linearizable, one call: over the limit it is refused.
	if err := r.Do(ctx, "ringkv.consistency", "linearizable").Err(); err != nil {
		t.Fatal(err)
	}
	if err := r.MSet(ctx, args...).Err(); err == nil {
		t.Fatal("mset of 300 keys at linearizable: want an error")
	}
	if err := r.MSet(ctx, "x", "1", "y", "2").Err(); err != nil {
		t.Fatal(err)
	}
	if v, err := r.MGet(ctx, "x", "y").Result(); err != nil || fmt.Sprint(v) != "[1 2]" {
		t.Fatalf("mget at linearizable: %v %v", v, err)
	}
	if last := st.levels[len(st.levels)-1]; last != coordinator.Linearizable {
		t.Fatalf("got level %s, want linearizable", last)
	}
	// MSETNX: one transaction, all or nothing.
	if n, err := r.MSetNX(ctx, "n1", "a", "x", "b").Result(); err != nil || n {
		t.Fatalf("msetnx over an existing key: %v %v, want false", n, err)
	}
	if err := r.Get(ctx, "n1").Err(); !errors.Is(err, redis.Nil) {
		t.Fatalf("msetnx that failed wrote n1: %v", err)
	}
	if n, err := r.MSetNX(ctx, "n1", "a", "n2", "b").Result(); err != nil || !n {
		t.Fatalf("msetnx over absent keys: %v %v, want true", n, err)
	}
	if v, err := r.MGet(ctx, "n1", "n2").Result(); err != nil || fmt.Sprint(v) != "[a b]" {
		t.Fatalf("after msetnx: %v %v", v, err)
	}
	// A member too old for transactions: MSETNX falls back to CAS.
	st.mu.Lock()
	st.txnErr = fmt.Errorf("%w: a member speaks wire 1", coordinator.ErrNotUpgraded)
	st.mu.Unlock()
	if n, err := r.MSetNX(ctx, "n3", "c", "n4", "d").Result(); err != nil || !n {
		t.Fatalf("msetnx on an old cluster: %v %v, want true", n, err)
	}
	if n, err := r.MSetNX(ctx, "n3", "c", "n5", "d").Result(); err != nil || n {
		t.Fatalf("msetnx on an old cluster over an existing key: %v %v, want false", n, err)
	}
}
