package consensus

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/ringkv/ringkv/replica"
)

func TestIntentWatchStates(t *testing.T) {
	var w intentWatch
	if w.none() {
		t.Fatal("clean before any scan")
	}
	w.scan(func() bool { return false })
	if !w.none() {
		t.Fatal("a scan that found nothing, nothing in flight: not clean")
	}
	w.begin()
	if w.none() {
		t.Fatal("clean with an intent write begun")
	}
	w.scan(func() bool { return false }) // the write may not be visible yet
	if w.none() {
		t.Fatal("marked clean by a scan that began with a write in flight")
	}
	w.end()
	w.scan(func() bool { return true })
	if w.none() {
		t.Fatal("clean after a scan that found an intent")
	}
	// A write that begins while a scan runs leaves it unmarked.
	w.scan(func() bool { w.begin(); w.end(); return false })
	if w.none() {
		t.Fatal("clean although an intent write began during the scan")
	}
	w.scan(func() bool { return false })
	if !w.none() {
		t.Fatal("not clean after a quiet scan that found nothing")
	}
	if anyIntent([]replica.Entry{{Key: intentKey([]byte("k")), Record: replica.Record{Tombstone: true}}, {Key: []byte("k")}}) {
		t.Fatal("a tombstoned intent and a plain key count as an intent write")
	}
	if !anyIntent([]replica.Entry{{Key: []byte("k")}, {Key: intentKey([]byte("k")), Record: replica.Record{Value: []byte("x")}}}) {
		t.Fatal("a live intent not seen")
	}
}

// TestIntentWatchSkipsOnlyWithoutIntents runs the intent checks through
// the watch's fast path: once the sweep found no intent, writes and reads
// skip the store read; a prepared intent is seen at once (by reads,
// writes and a sweep, which does not mark it clean); once the transaction
// is decided and its intent cleared, a sweep makes it clean again.
func TestIntentWatchSkipsOnlyWithoutIntents(t *testing.T) {
	c, mgrs := newCluster(t, 1)
	ctx, cancel := context.WithTimeout(t.Context(), 60*time.Second)
	defer cancel()
	a := txnKeys(c, 0, 1)[0]
	put := func(v string) error {
		return onLeaderOf(ctx, mgrs, 0, func(g *Group) error { return g.Put(ctx, a, []byte(v), false, time.Time{}) })
	}
	sweep := func() (bool, error) {
		return onLeaderValue(ctx, mgrs, 0, func(g *Group) (bool, error) {
			if _, err := g.SweepIntents(ctx); err != nil {
				return false, err
			}
			return g.fsm.intents.none(), nil
		})
	}
	if err := put("1"); err != nil {
		t.Fatal(err)
	}
	if clean, err := sweep(); err != nil || !clean {
		t.Fatalf("after a sweep of a partition without intents: clean %v, %v", clean, err)
	}
	if err := put("2"); err != nil {
		t.Fatalf("put on the fast path: %v", err)
	}

	now := time.Now()
	id := TxnID{Start: replica.MakeTimestamp(now, 0), Node: "n1"}
	if _, err := onLeaderValue(ctx, mgrs, 0, func(g *Group) (PrepareResult, error) {
		return g.Prepare(ctx, &PrepareRequest{ID: id, Anchor: 0, Deadline: now.Add(time.Minute), Participants: []uint32{0}, Keys: [][]byte{a}})
	}); err != nil {
		t.Fatalf("prepare: %v", err)
	}
	check := func() {
		t.Helper()
		_, err := onLeaderValue(ctx, mgrs, 0, func(g *Group) (replica.Record, error) { return g.Get(ctx, a) })
		wantIntentOf(t, err, id)
		wantIntentOf(t, put("x"), id)
	}
	check()
	if clean, err := sweep(); err != nil || clean {
		t.Fatalf("a sweep with an intent live: clean %v, %v", clean, err)
	}
	check()

	if st, err := onLeaderValue(ctx, mgrs, 0, func(g *Group) (*TxnRecord, error) { return g.DecideTxn(ctx, id, false, 0, nil) }); err != nil || st.Status != TxnAborted {
		t.Fatalf("abort: %+v %v", st, err)
	}
	if clean, err := sweep(); err != nil || !clean {
		t.Fatalf("after the abort cleared the intent: clean %v, %v", clean, err)
	}
	if err := put("3"); err != nil {
		t.Fatalf("put after the abort: %v", err)
	}
	rec, err := onLeaderValue(ctx, mgrs, 0, func(g *Group) (replica.Record, error) { return g.Get(ctx, a) })
	if err != nil || string(rec.Value) != "3" {
		t.Fatalf("get after the abort: %+v %v", rec, err)
	}
}

// BenchmarkReadIntent is the intent check of one key on a partition of
// 100,000 records on disk that holds no intent: a store read of the
// absent intent key (the watch not clean), against the watch's two
// atomic loads once a sweep found no intent.
//
//	go test -run '^$' -bench BenchmarkReadIntent ./consensus/
func BenchmarkReadIntent(b *testing.B) {
	st := openStoreIn(b, b.TempDir())
	const keys = 100_000
	entries := make([]replica.Entry, 0, 1000)
	for i := range keys {
		entries = append(entries, replica.Entry{Partition: 0, Key: []byte(fmt.Sprintf("key%08d", i)),
			Record: replica.Record{Value: make([]byte, 100), Timestamp: replica.MakeTimestamp(time.Now(), 0), NodeID: "n1"}})
		if len(entries) == cap(entries) {
			if err := st.Merge(b.Context(), entries); err != nil {
				b.Fatal(err)
			}
			entries = entries[:0]
		}
	}
	for _, clean := range []bool{false, true} {
		b.Run(fmt.Sprintf("clean=%v", clean), func(b *testing.B) {
			g := &Group{id: 0, store: st, fsm: &fsm{group: 0, store: st}}
			if clean {
				g.fsm.intents.scan(func() bool { return false })
			}
			key := []byte("key00012345")
			b.ReportAllocs()
			for b.Loop() {
				if in, _, _, err := g.readIntent(key); in != nil || err != nil {
					b.Fatal(in, err)
				}
			}
		})
	}
}
