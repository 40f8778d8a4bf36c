package consensus

import (
	"context"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/ringkv/ringkv/replica"
)

// TestProposalsBoundRefusesAtOnce: a group whose queue of proposals is
// full refuses the next write at once with ErrOverloaded, appends
// nothing, and takes writes again once the queue has room.
func TestProposalsBoundRefusesAtOnce(t *testing.T) {
	c, mgrs := newCluster(t, 1)
	ctx, cancel := context.WithTimeout(t.Context(), 20*time.Second)
	defer cancel()
	key := []byte("k")
	g := leaderOf(mgrs, c.ring.Ring().PartitionOf(key))
	if g == nil {
		t.Fatal("no leader")
	}
	if g.proposals == nil {
		t.Fatal("the default config has no proposal bound")
	}
	limit := int64(testConfig(t, "x").MaxPendingProposals)
	if !g.proposals.TryAcquire(limit) { // the queue is full
		t.Fatal("could not fill the queue")
	}
	err := g.Put(ctx, key, []byte("v"), false, time.Time{})
	if !errors.Is(err, ErrOverloaded) {
		t.Fatalf("put with a full queue: got %v, want ErrOverloaded", err)
	}
	if got := testutil.ToFloat64(g.m.proposalsRefused); got != 1 {
		t.Errorf("proposals_refused_total: got %v, want 1", got)
	}
	if _, err := g.Get(ctx, key); !errors.Is(err, replica.ErrNotFound) {
		t.Errorf("get after the refused write: got %v, want not found", err)
	}
	g.proposals.Release(limit)
	if err := g.Put(ctx, key, []byte("v"), false, time.Time{}); err != nil {
		t.Fatalf("put once the queue has room: %v", err)
	}
}

func TestProposalsBoundValidate(t *testing.T) {
	cfg := testConfig(t, "n1")
	cfg.MaxPendingProposals = -1
	if err := cfg.Validate(); err == nil {
		t.Fatal("negative MaxPendingProposals accepted")
	}
}

func TestLogCacheEntriesValidate(t *testing.T) {
	cfg := testConfig(t, "n1")
	cfg.LogCacheEntries = -1
	if err := cfg.Validate(); err == nil || !strings.Contains(err.Error(), "LogCacheEntries") {
		t.Fatalf("negative LogCacheEntries: got %v, want an error naming it", err)
	}
	cfg.LogCacheEntries = 0 // the default
	if err := cfg.Validate(); err != nil {
		t.Fatalf("zero LogCacheEntries: got %v, want nil", err)
	}
}
