package consensus

import (
	"errors"
	"fmt"
	"testing"
	"time"
)

// TestLeadershipLostSettled: a write whose leader steps down after
// appending it (raft.ErrLeadershipLost) is answered with its real
// outcome once the group has decided it, not with an unknown one:
// success when the entry reached the followers and the next leader
// committed it, not-the-leader (safe to retry) when it reached no one
// and the next leader wrote another entry at its index.
func TestLeadershipLostSettled(t *testing.T) {
	for _, tc := range []struct {
		name      string
		reached   bool // the entry reaches the followers (its answers are lost)
		committed bool
	}{
		{"reached the followers", true, true},
		{"reached no one", false, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			cf := newCutFabric(t)
			cutsOf := cf.cutsOf
			_, mgrs := newClusterOn(t, cf.f, 1)
			l := leaderOf(mgrs, 0)
			if l == nil {
				t.Fatal("no leader")
			}
			// A write first: the leader's barrier of its term is behind it.
			if err := l.Put(t.Context(), []byte("k"), []byte("before"), false, time.Time{}); err != nil {
				t.Fatal(err)
			}
			x := l.nodeID
			others := map[string]*Manager{}
			for id, m := range mgrs {
				if id != x {
					others[id] = m
				}
			}
			// X can no longer be elected; its appends reach the
			// followers without an answer, or reach no one.
			cutsOf(x, 0).votes.Store(true)
			if tc.reached {
				cutsOf(x, 0).lossy.Store(true)
			} else {
				cutsOf(x, 0).appends.Store(true)
			}
			errc := make(chan error, 1)
			go func() { errc <- l.Put(t.Context(), []byte("k"), []byte("mine"), false, time.Time{}) }()
			if !tc.reached {
				// Another leader writes its own entries at X's index (its
				// leadership may still move between the others: retry).
				waitFor(t, 30*time.Second, "the other leader's write", func() error {
					g := leaderOf(others, 0)
					if g == nil {
						return errors.New("no leader among the others")
					}
					return g.Put(t.Context(), []byte("k"), []byte("theirs"), false, time.Time{})
				})
				cutsOf(x, 0).appends.Store(false)
			}
			var err error
			select {
			case err = <-errc:
			case <-time.After(30 * time.Second):
				t.Fatal("the write was not answered")
			}
			cutsOf(x, 0).lossy.Store(false)
			if errors.Is(err, ErrAmbiguous) {
				t.Fatalf("got an unknown outcome: %v", err)
			}
			var nl *NotLeaderError
			switch {
			case tc.committed && err != nil:
				t.Fatalf("got %v, want nil (committed by the next leader)", err)
			case !tc.committed && !errors.As(err, &nl):
				t.Fatalf("got %v, want a *NotLeaderError (not committed, safe to retry)", err)
			}
			want := "mine"
			if !tc.committed {
				want = "theirs"
			}
			waitFor(t, 20*time.Second, "a leader to read from", func() error {
				g := leaderOf(mgrs, 0)
				if g == nil {
					return errors.New("no leader")
				}
				rec, err := g.Get(t.Context(), []byte("k"))
				if err != nil {
					return err
				}
				if string(rec.Value) != want {
					return fmt.Errorf("k = %q, want %q", rec.Value, want)
				}
				return nil
			})
		})
	}
}
