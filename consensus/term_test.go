package consensus

import (
	"context"
	"errors"
	"fmt"
	"sync/atomic"
	"testing"
	"time"

	"github.com/hashicorp/raft"
)

// heal reconnects node to every peer in every group (undoes isolate).
func (f *fabric) heal(node string) {
	f.mu.Lock()
	defer f.mu.Unlock()
	for _, byNode := range f.trans {
		self := byNode[node]
		if self == nil {
			continue
		}
		for id, t := range byNode {
			if id == node {
				continue
			}
			self.Connect(raft.ServerAddress(id), t)
			t.Connect(raft.ServerAddress(node), self)
		}
	}
}

// TestReelectedLeaderRefuses: a leader that passed its term's barrier
// (leaderReady), then was deposed and elected again before it read its
// state, must neither answer nor decide on that state: it can lack what
// the term in between committed, yet its leadership, confirmed in the new
// term, would pass. A read and a compare-and-set stopped at that point
// (afterReady) while the test deposes the leader, writes through its
// successor and makes it leader again, answer not-the-leader.
func TestReelectedLeaderRefuses(t *testing.T) {
	c, mgrs := newCluster(t, 1)
	const p = 0
	key := txnKeys(c, p, 1)[0]
	l := leaderOf(mgrs, p)
	if l == nil {
		t.Fatal("no leader")
	}
	var armed atomic.Bool
	entered, resume := make(chan struct{}, 1), make(chan struct{}, 1)
	l.afterReady = func() {
		if armed.CompareAndSwap(true, false) {
			entered <- struct{}{}
			<-resume
		}
	}
	ctx := t.Context()
	if err := l.Put(ctx, key, []byte("a"), false, time.Time{}); err != nil {
		t.Fatal(err)
	}
	expected := []byte("a")
	ops := []struct {
		name string
		op   func(ctx context.Context) error
	}{
		{"read", func(ctx context.Context) error { _, err := l.Get(ctx, key); return err }},
		{"cas", func(ctx context.Context) error {
			_, _, _, err := l.CompareAndSet(ctx, key, &expected, []byte("c"), time.Time{})
			return err
		}},
	}
	for i, o := range ops {
		armed.Store(true)
		done := make(chan error, 1)
		go func() {
			opCtx, cancel := context.WithTimeout(ctx, time.Minute)
			defer cancel()
			done <- o.op(opCtx)
		}()
		select {
		case <-entered:
		case err := <-done:
			t.Fatalf("%s returned before its barrier: %v", o.name, err)
		}
		before := l.raft.CurrentTerm()
		c.f.isolate(l.nodeID)
		value := fmt.Appendf(nil, "b%d", i)
		waitFor(t, 30*time.Second, "a write through a new leader", func() error {
			next := leaderOf(mgrs, p)
			if next == nil || next == l {
				return errors.New("no new leader yet")
			}
			wctx, cancel := context.WithTimeout(ctx, 2*time.Second)
			defer cancel()
			return next.Put(wctx, key, value, false, time.Time{})
		})
		c.f.heal(l.nodeID)
		waitFor(t, 30*time.Second, "the old leader to lead again", func() error {
			if l.raft.State() == raft.Leader && l.raft.CurrentTerm() > before {
				return nil
			}
			if g := leaderOf(mgrs, p); g != nil && g != l {
				_ = g.transferLeadership(raft.ServerID(l.nodeID)) //nolint:errcheck // retried until l leads
			}
			return fmt.Errorf("%s is %v in term %d", l.nodeID, l.raft.State(), l.raft.CurrentTerm())
		})
		resume <- struct{}{}
		err := <-done
		var nl *NotLeaderError
		if !errors.As(err, &nl) {
			t.Fatalf("%s across a re-election: got %v, want not-the-leader", o.name, err)
		}
		// Asked again, the leader answers from its new term's state.
		waitFor(t, 20*time.Second, "a read of the new value", func() error {
			rctx, cancel := context.WithTimeout(ctx, 2*time.Second)
			defer cancel()
			g := leaderOf(mgrs, p)
			if g == nil {
				return errors.New("no leader")
			}
			rec, err := g.Get(rctx, key)
			if err != nil {
				return err
			}
			if string(rec.Value) != string(value) {
				return fmt.Errorf("read %q, want %q", rec.Value, value)
			}
			return nil
		})
		expected = value
	}
}
