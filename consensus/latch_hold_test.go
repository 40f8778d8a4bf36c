package consensus

import (
	"context"
	"errors"
	"fmt"
	"testing"
	"time"
)

// latchHeld reports whether key's latch is held on g.
func latchHeld(g *Group, key []byte) bool {
	g.latches.mu.Lock()
	defer g.latches.mu.Unlock()
	_, held := g.latches.latches[string(key)]
	return held
}

// TestAmbiguousWriteKeepsLatch: a write whose caller gave up (its context
// ended while the entry was in raft: ErrAmbiguous) may still be applied,
// so its key's latch stays held until raft answers. Released at once, the
// next update of the key would decide on the applied state, which lacks
// the pending write: a CAS there succeeds against a value the pending
// write replaces, and both apply (the lost update behind an "Illegal"
// TestTxnStrictSerializability history under load, where operations
// reach their 2 s deadline).
func TestAmbiguousWriteKeepsLatch(t *testing.T) {
	c, mgrs := newCluster(t, 1)
	const p = 0
	keys := txnKeys(c, p, 2)
	g := leaderOf(mgrs, p)
	if g == nil {
		t.Fatal("no leader")
	}
	// A first write makes the term's barrier (leaderReady) pass.
	if err := g.Put(t.Context(), keys[0], []byte("w"), false, time.Time{}); err != nil {
		t.Fatal(err)
	}
	// Cut the leader off: its entries cannot commit, and raft answers
	// them only when it steps down (LeaderLeaseTimeout, 100 ms here).
	c.f.isolate(g.nodeID)
	checked := 0
	for name, write := range map[string]func(ctx context.Context) error{
		"put": func(ctx context.Context) error {
			return g.Put(ctx, keys[0], []byte("x"), false, time.Time{})
		},
		"txn": func(ctx context.Context) error {
			_, err := g.Txn(ctx, &Txn{Success: []Op{{Kind: OpSet, Key: keys[1], Value: []byte("x")}}})
			return err
		},
	} {
		checked++
		key := keys[0]
		if name == "txn" {
			key = keys[1]
		}
		ctx, cancel := context.WithTimeout(t.Context(), 20*time.Millisecond)
		err := write(ctx)
		held := latchHeld(g, key)
		cancel()
		if !errors.Is(err, ErrAmbiguous) {
			// Deposed before the entry reached raft: nothing to check.
			t.Logf("%s: %v (not ambiguous)", name, err)
			checked--
			continue
		}
		if !held {
			t.Errorf("%s: latch released while the ambiguous entry is still in raft", name)
		}
		waitFor(t, 10*time.Second, name+": latch released once raft answers", func() error {
			if latchHeld(g, key) {
				return fmt.Errorf("still held")
			}
			return nil
		})
	}
	if checked == 0 {
		t.Fatal("no write was ambiguous: the leader stepped down first (a loaded machine?)")
	}
}
