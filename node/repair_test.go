package node

import (
	"errors"
	"log/slog"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/cespare/xxhash/v2"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/ringkv/ringkv/antientropy"
	"github.com/ringkv/ringkv/internal/loglimit"
	"github.com/ringkv/ringkv/proto/kvpb"
	"github.com/ringkv/ringkv/replica"
	"github.com/ringkv/ringkv/ring"
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

// splitRing returns a 16-partition ring of three members and the ring
// after its split (32 partitions, ids 32..63).
func splitRing(t *testing.T) (base, split *ring.Ring) {
	t.Helper()
	base, err := ring.New(ring.Config{Partitions: 16, ReplicationFactor: 3})
	if err != nil {
		t.Fatal(err)
	}
	for _, id := range []string{"n1", "n2", "n3"} {
		if base, err = base.Join(ring.Member{ID: id}); err != nil {
			t.Fatal(err)
		}
	}
	if split, err = base.Split(); err != nil {
		t.Fatal(err)
	}
	return base, split
}

// TestTreeObserverNamesChangesByID: the observer reports each change
// under the id of its key's partition in the node's ring (a child's id
// after a split), and under the store's partition while the node holds no
// decided ring.
func TestTreeObserverNamesChangesByID(t *testing.T) {
	base, split := splitRing(t)
	key := []byte("some key")
	h := xxhash.Sum64(key)
	storage, child := base.PartitionOf(key), split.IDOf(key)
	if child < 32 {
		t.Fatalf("id %d after the split is not of the split level", child)
	}
	for _, tc := range []struct {
		name string
		ring *ring.Ring
		want uint32
	}{
		{"no decided ring", nil, storage},
		{"before a split", base, storage},
		{"after a split", split, child},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var got []antientropy.Change
			observe := treeObserver(func(cs []antientropy.Change) { got = slices.Clone(cs) }, func() *ring.Ring { return tc.ring })
			observe([]replica.Change{{Partition: storage, KeyHash: h, Old: 1, New: 2}})
			want := antientropy.Change{Partition: tc.want, KeyHash: h, Old: 1, New: 2}
			if len(got) != 1 || got[0] != want {
				t.Fatalf("got %+v, want %+v", got, want)
			}
			// A record stored away from its key's partition (an intent
			// lives by the key it guards) is digested in the first
			// partition of its storage partition, as the store's
			// ScanSnapshot counts it, not by its own hash.
			away := (storage + 1) % uint32(base.Partitions())
			observe([]replica.Change{{Partition: away, KeyHash: h, Old: 1, New: 2}})
			wantAway := away
			if tc.ring != nil {
				wantAway = tc.ring.ID(away * uint32(tc.ring.Partitions()/base.Partitions()))
			}
			if len(got) != 1 || got[0].Partition != wantAway {
				t.Fatalf("a record stored in %d away from its hash's partition: got %+v, want partition %d", away, got, wantAway)
			}
		})
	}
}

// TestRepairPartitionIsAnID: the repair endpoint's partition parameter is
// an id of the node's ring: an index before a split, P+index after; the
// error names the valid ids.
func TestRepairPartitionIsAnID(t *testing.T) {
	base, split := splitRing(t)
	for _, tc := range []struct {
		ring  *ring.Ring
		param string
		ok    bool
		valid string // in the error
	}{
		{base, "0", true, ""},
		{base, "15", true, ""},
		{base, "16", false, "0..15"},
		{base, "-1", false, "0..15"},
		{base, "x", false, "0..15"},
		{split, "32", true, ""},
		{split, "63", true, ""},
		{split, "5", false, "32..63"},
		{split, "64", false, "32..63"},
	} {
		id, err := repairPartition(tc.ring, tc.param)
		switch {
		case tc.ok && (err != nil || strconv.Itoa(int(id)) != tc.param):
			t.Errorf("P=%d %q: got %d %v", tc.ring.Partitions(), tc.param, id, err)
		case !tc.ok && (!errors.Is(err, errBadPartition) || !strings.Contains(err.Error(), tc.valid)):
			t.Errorf("P=%d %q: got %d %v, want an error naming %s", tc.ring.Partitions(), tc.param, id, err, tc.valid)
		}
	}
}
