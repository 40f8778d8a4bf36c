package consensus

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/hashicorp/raft"
	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/ringkv/ringkv/replica"
	"github.com/ringkv/ringkv/ring"
)

// splitOp is one write of the split test's history on a key: acked, or
// of unknown outcome.
type splitOp struct {
	value   string
	unknown bool
}

// putOn writes key=value at the linearizable level on the leader of the
// key's partition under the ring current at each attempt, as the
// coordinator does: a refusal that applied nothing (not the leader, no
// group yet, ErrSplit) is retried, under the ring as it then is.
func putOn(ctx context.Context, c *cluster, mgrs map[string]*Manager, key []byte, value string) error {
	for {
		id := c.ring.Ring().IDOf(key)
		g := leaderOf(mgrs, id)
		var err error
		if g == nil {
			err = fmt.Errorf("group %d: %w", id, ErrNoGroup)
		} else {
			err = g.Put(ctx, key, []byte(value), false, time.Time{})
		}
		switch {
		case err == nil:
			return nil
		case errors.Is(err, ErrAmbiguous), ctx.Err() != nil:
			return err
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("%w: last error %w", ctx.Err(), err)
		case <-time.After(5 * time.Millisecond):
		}
	}
}

// TestSplitUnderLoad: writers keep writing at the linearizable level
// while the ring doubles P; every parent group splits (once), its
// children start with three voters from the parent's state, every
// acknowledged write reads back from the key's child at the linearizable
// level, and the parents refuse reads and writes with ErrSplit.
func TestSplitUnderLoad(t *testing.T) {
	const P = 4
	c, mgrs := newCluster(t, P)
	for _, s := range c.stores {
		if err := s.SetBasePartitions(P); err != nil {
			t.Fatal(err)
		}
	}
	ctx, cancel := context.WithTimeout(t.Context(), 60*time.Second)
	defer cancel()

	load := startSplitLoad(ctx, t, c, mgrs)
	acked := load.acked
	waitFor(t, 20*time.Second, "writes before the split", func() error {
		if n := acked(); n < 100 {
			return fmt.Errorf("%d writes", n)
		}
		return nil
	})
	before := c.ring.Ring()
	split, err := before.Split()
	if err != nil {
		t.Fatal(err)
	}
	c.ring.r.Store(split)
	start := time.Now()
	waitFor(t, 30*time.Second, "every child group led, with three voters on every node", func() error {
		for _, id := range split.IDs() {
			if leaderOf(mgrs, id) == nil {
				return fmt.Errorf("child %d has no leader", id)
			}
			for node, m := range mgrs {
				g, ok := m.Group(id)
				if !ok {
					return fmt.Errorf("%s has no group %d", node, id)
				}
				if n := voters(g); n != 3 {
					return fmt.Errorf("child %d has %d voters on %s", id, n, node)
				}
			}
		}
		return nil
	})
	t.Logf("every child led %v after the split", time.Since(start).Round(time.Millisecond))
	mark := acked()
	waitFor(t, 20*time.Second, "writes after the split", func() error {
		if n := acked(); n < mark+100 {
			return fmt.Errorf("%d writes since the children were led", n-mark)
		}
		return nil
	})
	history := load.stop()

	for _, id := range before.IDs() {
		for node, m := range mgrs {
			g, ok := m.Group(id)
			if !ok {
				t.Fatalf("%s lost parent group %d", node, id)
			}
			if _, ok := g.Split(); !ok {
				t.Fatalf("parent %d on %s has not split", id, node)
			}
		}
		g := leaderOf(mgrs, id)
		if g == nil {
			continue // a parent needs no leader once split
		}
		if err := g.Put(ctx, []byte("late"), []byte("x"), false, time.Time{}); !errors.Is(err, ErrSplit) {
			t.Fatalf("put on split parent %d: %v, want ErrSplit", id, err)
		}
		if err := g.ReadIndex(ctx); !errors.Is(err, ErrSplit) {
			t.Fatalf("read on split parent %d: %v, want ErrSplit", id, err)
		}
	}
	checkHistory(t, split, history, func(id uint32, key []byte) (replica.Record, string, error) {
		g := leaderOf(mgrs, id)
		if g == nil {
			return replica.Record{}, "", fmt.Errorf("child %d has no leader", id)
		}
		rec, err := g.Get(ctx, key)
		return rec, g.nodeID, err
	})
	t.Logf("%d writes (%d keys) across the split, every acknowledged one read back", acked(), len(history))
}

// splitLoad is the split tests' writers.
type splitLoad struct {
	mu      sync.Mutex
	history map[string][]splitOp
	done    chan struct{}
	wg      sync.WaitGroup
}

// startSplitLoad starts 6 writers, each writing its own 8 keys in turn
// through putOn, until stop.
func startSplitLoad(ctx context.Context, t *testing.T, c *cluster, mgrs map[string]*Manager) *splitLoad {
	const writers, keysPer = 6, 8
	l := &splitLoad{history: map[string][]splitOp{}, done: make(chan struct{})}
	for w := range writers {
		l.wg.Go(func() {
			for n := 0; ; n++ {
				select {
				case <-l.done:
					return
				default:
				}
				key := fmt.Sprintf("w%d-k%d", w, n%keysPer)
				value := fmt.Sprintf("%d", n)
				err := putOn(ctx, c, mgrs, []byte(key), value)
				l.mu.Lock()
				switch {
				case err == nil:
					l.history[key] = append(l.history[key], splitOp{value: value})
				case errors.Is(err, ErrAmbiguous):
					l.history[key] = append(l.history[key], splitOp{value: value, unknown: true})
				default:
					l.mu.Unlock()
					t.Errorf("put %s: %v", key, err)
					return
				}
				l.mu.Unlock()
			}
		})
	}
	return l
}

// acked counts the writes done so far.
func (l *splitLoad) acked() int {
	l.mu.Lock()
	defer l.mu.Unlock()
	n := 0
	for _, ops := range l.history {
		n += len(ops)
	}
	return n
}

// stop stops the writers and returns the history.
func (l *splitLoad) stop() map[string][]splitOp {
	close(l.done)
	l.wg.Wait()
	return l.history
}

// checkHistory reads every key of history at the linearizable level from
// the group lead(id) of its partition under r, and fails unless it reads
// the key's last acknowledged write (or a later one of unknown outcome).
func checkHistory(t *testing.T, r *ring.Ring, history map[string][]splitOp, read func(id uint32, key []byte) (replica.Record, string, error)) {
	t.Helper()
	for key, ops := range history {
		id := r.IDOf([]byte(key))
		rec, where, err := read(id, []byte(key))
		if err != nil {
			t.Fatalf("get %s from child %d: %v", key, id, err)
		}
		// Each key's writes are sequential: the value read is the last
		// acknowledged one, or a later write of unknown outcome.
		last := -1
		for i, op := range ops {
			if !op.unknown {
				last = i
			}
		}
		ok := false
		for i := max(last, 0); i < len(ops); i++ {
			if ops[i].value == string(rec.Value) && (i == last || ops[i].unknown) {
				ok = true
			}
		}
		if !ok {
			t.Fatalf("%s reads %q from child %d on %s; acknowledged writes end with %+v", key, rec.Value, id, where, ops[max(last, 0):])
		}
	}
}

func voters(g *Group) int {
	cf := g.raft.GetConfiguration()
	if cf.Error() != nil {
		return 0
	}
	n := 0
	for _, s := range cf.Configuration().Servers {
		if s.Suffrage == raft.Voter {
			n++
		}
	}
	return n
}

// TestSplitCodec: the split command and the snapshot trailer round-trip,
// and malformed ones are refused.
func TestSplitCodec(t *testing.T) {
	voters := []string{"n1", "n2", "n3"}
	got, err := decodeSplit(encodeSplit(voters))
	if err != nil || fmt.Sprint(got) != fmt.Sprint(voters) {
		t.Fatalf("split round trip: %v %v", got, err)
	}
	for _, bad := range [][]byte{
		{commandVersion, opSplit},
		{commandVersion, opSplit, 1},
		{commandVersion, opSplit, 1, 0},
		append(encodeSplit(voters), 0),
		{commandVersion, opMerge, 1, 'a'},
	} {
		if _, err := decodeSplit(bad); !errors.Is(err, ErrCorruptCommand) {
			t.Fatalf("decodeSplit(%v): %v, want ErrCorruptCommand", bad, err)
		}
	}
}

// TestSplitReachesALaggingReplica: n3 is cut off before the split while
// writes go on and the parents compact their logs; after it heals it
// learns of the split (from the parent's log or, compacted, its
// snapshot's trailer), starts the children, and, made the leader of every
// child, reads every acknowledged write from its own store.
func TestSplitReachesALaggingReplica(t *testing.T) {
	const P = 4
	f := newFabric()
	f.tune = func(cfg *Config) {
		cfg.SnapshotThreshold = 16
		cfg.TrailingLogs = 4
		cfg.SnapshotInterval = 50 * time.Millisecond
	}
	c, mgrs := newClusterOn(t, f, P)
	for _, s := range c.stores {
		if err := s.SetBasePartitions(P); err != nil {
			t.Fatal(err)
		}
	}
	ctx, cancel := context.WithTimeout(t.Context(), 90*time.Second)
	defer cancel()
	f.isolate("n3")
	live := map[string]*Manager{"n1": mgrs["n1"], "n2": mgrs["n2"]}
	load := startSplitLoad(ctx, t, c, live)
	waitFor(t, 20*time.Second, "writes while n3 is cut off", func() error {
		if n := load.acked(); n < 200 {
			return fmt.Errorf("%d writes", n)
		}
		return nil
	})
	split, err := c.ring.Ring().Split()
	if err != nil {
		t.Fatal(err)
	}
	c.ring.r.Store(split)
	waitFor(t, 30*time.Second, "every child led without n3", func() error {
		for _, id := range split.IDs() {
			if leaderOf(live, id) == nil {
				return fmt.Errorf("child %d has no leader", id)
			}
		}
		return nil
	})
	mark := load.acked()
	waitFor(t, 20*time.Second, "writes to the children", func() error {
		if n := load.acked(); n < mark+200 {
			return fmt.Errorf("%d writes since the children were led", n-mark)
		}
		return nil
	})
	history := load.stop()
	if _, ok := mgrs["n3"].Group(split.IDs()[0]); ok {
		t.Fatal("n3 started a child while cut off from the split")
	}

	// Every parent's newest snapshot follows its split, and the entries
	// n3 lacks are compacted away: it learns of the split from a
	// snapshot's trailer.
	for _, m := range live {
		for _, g := range m.Groups() {
			if _, ok := g.Split(); !ok {
				continue
			}
			if err := g.raft.Snapshot().Error(); err != nil && !errors.Is(err, raft.ErrNothingNewToSnapshot) {
				t.Fatalf("snapshot of parent %d: %v", g.id, err)
			}
		}
	}
	f.heal("n3")
	for _, id := range split.IDs() {
		waitFor(t, 30*time.Second, fmt.Sprintf("n3 applying child %d", id), func() error {
			g, ok := mgrs["n3"].Group(id)
			if !ok {
				return fmt.Errorf("n3 has no group %d", id)
			}
			l := leaderOf(mgrs, id)
			if l == nil {
				return fmt.Errorf("child %d has no leader", id)
			}
			if g.raft.AppliedIndex() < l.raft.CommitIndex() {
				return fmt.Errorf("n3 applied %d of %d", g.raft.AppliedIndex(), l.raft.CommitIndex())
			}
			return nil
		})
	}
	// n3's own store: what it would answer as the children's leader.
	checkHistory(t, split, history, func(id uint32, key []byte) (replica.Record, string, error) {
		rec, err := c.stores["n3"].Get(id, key)
		return rec, "n3's store", err
	})
	viaLog := testutil.ToFloat64(mgrs["n3"].m.splitsApplied.WithLabelValues("log"))
	viaSnap := testutil.ToFloat64(mgrs["n3"].m.splitsApplied.WithLabelValues("snapshot"))
	if viaSnap == 0 {
		t.Fatalf("n3 learned of %v splits from the log and none from a snapshot: the trailer went untested", viaLog)
	}
	t.Logf("n3 holds all %d keys after the split it missed (splits learned from the log %v, from snapshots %v)", len(history), viaLog, viaSnap)
}
