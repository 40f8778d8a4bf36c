package coordinator

import (
	"errors"
	"slices"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
	"storj.io/drpc/drpcerr"

	"github.com/ringkv/ringkv/proto/kvpb"
	"github.com/ringkv/ringkv/replica"
	"github.com/ringkv/ringkv/ring"
)

// TestReplicaServerRefusesHostileMerges: a Merge carrying a record this
// node must not store is refused whole, with its code, counted by reason,
// and nothing of the request is stored.
func TestReplicaServerRefusesHostileMerges(t *testing.T) {
	r, err := ring.New(ring.Config{Partitions: 8, ReplicationFactor: 2})
	if err != nil {
		t.Fatal(err)
	}
	for _, id := range []string{"n1", "n2", "n3"} {
		if r, err = r.Join(ring.Member{ID: id}); err != nil {
			t.Fatal(err)
		}
	}
	src := &staticRing{}
	src.r.Store(r)
	cfg := replica.DefaultConfig()
	cfg.InMemory = true
	store, err := replica.Open(cfg, replica.Deps{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = store.Close() })
	now := time.Now()
	clock := replica.NewClock(func() time.Time { return now }, 500*time.Millisecond)
	reg := prometheus.NewRegistry()
	srv, err := NewReplicaServer(store, clock, ReplicaServerOptions{NodeID: "n1", Ring: src, Registerer: reg})
	if err != nil {
		t.Fatal(err)
	}

	// keyIn returns a key of a partition n1 replicates (mine) or not.
	keyIn := func(mine bool) ([]byte, uint32) {
		for i := 0; ; i++ {
			k := []byte{'k', byte(i), byte(i >> 8)}
			p := r.PartitionOf(k)
			if slices.Contains(r.Replicas(p), "n1") == mine {
				return k, p
			}
		}
	}
	ok, okP := keyIn(true)
	other, otherP := keyIn(false)
	rec := func(ts replica.Timestamp) *kvpb.Record {
		return &kvpb.Record{Value: []byte("v"), Timestamp: uint64(ts), NodeId: "n2"}
	}
	fine := &kvpb.KeyedRecord{Partition: okP, Key: ok, Record: rec(replica.MakeTimestamp(now, 0))}
	cases := []struct {
		name   string
		bad    *kvpb.KeyedRecord
		want   error
		code   uint64
		reason string
	}{
		{"not a replica", &kvpb.KeyedRecord{Partition: otherP, Key: other, Record: rec(replica.MakeTimestamp(now, 0))}, ErrNotReplica, codeNotReplica, refuseNotReplica},
		{"partition out of range", &kvpb.KeyedRecord{Partition: 8, Key: ok, Record: rec(replica.MakeTimestamp(now, 0))}, ErrInvalidArgument, codeInvalid, refuseInvalid},
		{"key of another partition", &kvpb.KeyedRecord{Partition: okP + 1, Key: ok, Record: rec(replica.MakeTimestamp(now, 0))}, ErrInvalidArgument, codeInvalid, refuseInvalid},
		{"no record", &kvpb.KeyedRecord{Partition: okP, Key: ok}, ErrInvalidArgument, codeInvalid, refuseInvalid},
		{"timestamp beyond the clock offset", &kvpb.KeyedRecord{Partition: okP, Key: []byte(string(ok)), Record: rec(replica.MakeTimestamp(now.Add(time.Hour), 0))}, replica.ErrClockOffset, codeInvalid, refuseClock},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			before := testutil.ToFloat64(srv.refused.WithLabelValues(tc.reason))
			_, err := srv.Merge(t.Context(), &kvpb.MergeRequest{Records: []*kvpb.KeyedRecord{fine, tc.bad}})
			if !errors.Is(err, tc.want) || drpcerr.Code(err) != tc.code {
				t.Fatalf("Merge: %v (code %d), want %v (code %d)", err, drpcerr.Code(err), tc.want, tc.code)
			}
			if want := tc.want; !errors.Is(errorFor(err), want) && !errors.Is(want, replica.ErrClockOffset) {
				t.Errorf("errorFor(%v) does not match %v", err, want) // a clock offset comes back as ErrInvalidArgument
			}
			if got := testutil.ToFloat64(srv.refused.WithLabelValues(tc.reason)) - before; got != 1 {
				t.Errorf("refused{reason=%s} grew by %v, want 1", tc.reason, got)
			}
			if _, err := store.Get(okP, ok); !errors.Is(err, replica.ErrNotFound) {
				t.Errorf("the request's valid record was stored: %v", err)
			}
		})
	}
	if got := clock.Now().WallTime(); got.After(now.Add(time.Second)) {
		t.Errorf("the refused timestamp moved the clock to %s", got)
	}
	if _, err := srv.Merge(t.Context(), &kvpb.MergeRequest{Records: []*kvpb.KeyedRecord{fine}}); err != nil {
		t.Fatalf("a merge of a partition n1 replicates: %v", err)
	}
	if _, err := store.Get(okP, ok); err != nil {
		t.Fatalf("get after merge: %v", err)
	}
}
