package consensus

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/hashicorp/raft"

	"github.com/ringkv/ringkv/replica"
	"github.com/ringkv/ringkv/ring"
)

// drainSet is a DrainSource the test controls.
type drainSet struct {
	mu sync.Mutex
	m  map[string]bool
}

func (d *drainSet) Draining(id string) bool {
	d.mu.Lock()
	defer d.mu.Unlock()
	return d.m[id]
}

func (d *drainSet) set(id string, on bool) {
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.m == nil {
		d.m = map[string]bool{}
	}
	d.m[id] = on
}

// A draining node hands every group it leads to another voter, and keeps
// leading none while it drains, although it is the primary of some (whose
// leaders would otherwise hand them back); once the drain ends, the
// primaries lead again.
func TestHandOffWhileDraining(t *testing.T) {
	c, mgrs := newCluster(t, 8)
	n1 := mgrs["n1"]
	primaryOf := 0
	for p := range 8 {
		if c.ring.Ring().Replicas(uint32(p))[0] == "n1" {
			primaryOf++
		}
	}
	if primaryOf == 0 {
		t.Fatal("n1 is the primary of no partition; the test needs one")
	}
	waitFor(t, 30*time.Second, "n1 to lead its primaries' groups", func() error {
		if got := len(n1.Leading()); got < primaryOf {
			return fmt.Errorf("n1 leads %d groups, is primary of %d", got, primaryOf)
		}
		return nil
	})
	c.drains.set("n1", true)
	n1.SetDraining(true)
	if !n1.Draining() {
		t.Fatal("Draining() false after SetDraining(true)")
	}
	ctx, cancel := context.WithTimeout(t.Context(), 30*time.Second)
	defer cancel()
	if err := n1.HandOff(ctx); err != nil {
		t.Fatalf("HandOff: %v", err)
	}
	if led := n1.Leading(); len(led) != 0 {
		t.Fatalf("n1 leads %v after HandOff", led)
	}
	// Twenty reconcile intervals: no leader hands a group back.
	deadline := time.Now().Add(20 * testConfig(t, "x").ReconcileInterval)
	for time.Now().Before(deadline) {
		if led := n1.Leading(); len(led) != 0 {
			t.Fatalf("n1 leads %v again while draining", led)
		}
		tick := time.NewTimer(10 * time.Millisecond)
		<-tick.C
	}
	for p := range 8 {
		if leaderOf(mgrs, uint32(p)) == nil {
			t.Errorf("group %d has no leader", p)
		}
	}
	c.drains.set("n1", false)
	n1.SetDraining(false)
	waitFor(t, 30*time.Second, "n1 to lead its primaries' groups again", func() error {
		if got := len(n1.Leading()); got < primaryOf {
			return fmt.Errorf("n1 leads %d groups, is primary of %d", got, primaryOf)
		}
		return nil
	})
}

// A group with no other voter cannot be handed over: HandOff says so at
// once instead of waiting for its deadline.
func TestHandOffWithoutVoters(t *testing.T) {
	r, err := ring.New(ring.Config{Partitions: 2, ReplicationFactor: 3})
	if err != nil {
		t.Fatal(err)
	}
	c := &cluster{t: t, f: newFabric(), ring: &ringBox{}, stores: map[string]*replica.Store{}, drains: &drainSet{}}
	if r, err = r.Join(ring.Member{ID: "n1"}); err != nil {
		t.Fatal(err)
	}
	c.ring.r.Store(r)
	m := c.start("n1")
	waitFor(t, 30*time.Second, "n1 to lead both groups", func() error {
		if got := len(m.Leading()); got != 2 {
			return fmt.Errorf("leads %d", got)
		}
		return nil
	})
	m.SetDraining(true)
	ctx, cancel := context.WithTimeout(t.Context(), 30*time.Second)
	defer cancel()
	start := time.Now()
	if err := m.HandOff(ctx); !errors.Is(err, ErrNoVoter) {
		t.Fatalf("HandOff alone: got %v, want ErrNoVoter", err)
	}
	if took := time.Since(start); took > 10*time.Second {
		t.Errorf("HandOff alone took %s", took)
	}
	if g, ok := m.Group(0); !ok || g.raft.State() != raft.Leader {
		t.Error("n1 stopped leading group 0")
	}
}
