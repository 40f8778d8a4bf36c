package node

import (
	"errors"
	"log/slog"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/ringkv/ringkv/internal/loglimit"
	"github.com/ringkv/ringkv/proto/kvpb"
	"github.com/ringkv/ringkv/replica"
)

// TestRepairMergeSkipsRecordsAhead: a record anti-entropy pulls that is
// stamped beyond the clock's maximum offset is skipped and counted; the
// others of the same page are merged.
func TestRepairMergeSkipsRecordsAhead(t *testing.T) {
	cfg := replica.DefaultConfig()
	cfg.InMemory = true
	store, err := replica.Open(cfg, replica.Deps{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = store.Close() })
	now := time.Now()
	ahead := prometheus.NewCounter(prometheus.CounterOpts{Name: "ahead"})
	a := aeStore{s: store, clock: replica.NewClock(func() time.Time { return now }, 500*time.Millisecond), ahead: ahead,
		log: slog.New(slog.DiscardHandler), logs: new(loglimit.Limiter)}
	rec := func(at time.Time) *kvpb.Record {
		return &kvpb.Record{Value: []byte("v"), Timestamp: uint64(replica.MakeTimestamp(at, 0)), NodeId: "n2"}
	}
	err = a.Merge(t.Context(), []*kvpb.KeyedRecord{
		{Partition: 1, Key: []byte("now"), Record: rec(now)},
		{Partition: 1, Key: []byte("future"), Record: rec(now.Add(time.Hour))},
	})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := store.Get(1, []byte("now")); err != nil {
		t.Fatalf("the record in time: %v", err)
	}
	if _, err := store.Get(1, []byte("future")); !errors.Is(err, replica.ErrNotFound) {
		t.Fatalf("the record an hour ahead: %v, want not found", err)
	}
	if got := testutil.ToFloat64(ahead); got != 1 {
		t.Fatalf("ahead = %v, want 1", got)
	}
	if err := a.Merge(t.Context(), []*kvpb.KeyedRecord{{Partition: 1, Key: []byte("future"), Record: rec(now.Add(time.Hour))}}); err != nil {
		t.Fatalf("a page of records all ahead: %v", err)
	}
}
