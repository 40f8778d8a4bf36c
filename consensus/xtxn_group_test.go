package consensus

import (
	"context"
	"errors"
	"fmt"
	"reflect"
	"testing"
	"time"

	"github.com/ringkv/ringkv/replica"
)

// onLeaderValue runs fn on p's leader (following elections) and returns
// its value.
func onLeaderValue[T any](ctx context.Context, mgrs map[string]*Manager, p uint32, fn func(g *Group) (T, error)) (T, error) {
	var out T
	err := onLeaderOf(ctx, mgrs, p, func(g *Group) error {
		var err error
		out, err = fn(g)
		return err
	})
	return out, err
}

// wantIntentOf fails unless err is an *IntentError naming id first, and
// returns its intents.
func wantIntentOf(t *testing.T, err error, id TxnID) []KeyIntent {
	t.Helper()
	var ie *IntentError
	if !errors.As(err, &ie) || len(ie.Intents) == 0 || ie.Intents[0].Intent.ID != id {
		t.Fatalf("got %v, want an IntentError naming %s", err, id)
	}
	return ie.Intents
}

// TestCrossPartitionPrimitives drives one transfer between two
// partitions through the primitives the coordinator strings together:
// prepare on both, the intents locking readers, writers and other
// transactions out, the commit point on the anchor, resolve on each
// participant (idempotent), forget; then an abort, a late prepare, a
// missed deadline, and a resolve that must step above a newer record.
func TestCrossPartitionPrimitives(t *testing.T) {
	c, mgrs := newCluster(t, 2)
	ctx, cancel := context.WithTimeout(t.Context(), 60*time.Second)
	defer cancel()
	a, b := txnKeys(c, 0, 1)[0], txnKeys(c, 1, 1)[0]
	put := func(p uint32, k []byte, v string) error {
		return onLeaderOf(ctx, mgrs, p, func(g *Group) error { return g.Put(ctx, k, []byte(v), false, time.Time{}) })
	}
	if err := put(0, a, "10"); err != nil {
		t.Fatal(err)
	}
	if err := put(1, b, "0"); err != nil {
		t.Fatal(err)
	}
	now := time.Now()
	id := TxnID{Start: replica.MakeTimestamp(now, 0), Node: "n1"}
	deadline := now.Add(time.Minute)
	prepare := func(id TxnID, p uint32, deadline time.Time, keys [][]byte, cmps ...Compare) (PrepareResult, error) {
		return onLeaderValue(ctx, mgrs, p, func(g *Group) (PrepareResult, error) {
			return g.Prepare(ctx, &PrepareRequest{ID: id, Anchor: 0, Deadline: deadline, Participants: []uint32{0, 1}, Keys: keys, Compares: cmps})
		})
	}
	ra, err := prepare(id, 0, deadline, [][]byte{a}, Compare{Kind: CompareValue, Key: a, Value: []byte("10")})
	if err != nil || !ra.Holds || !ra.Reads[0].Found || string(ra.Reads[0].Record.Value) != "10" || ra.MaxTimestamp != ra.Reads[0].Record.Timestamp {
		t.Fatalf("prepare anchor: %+v %v", ra, err)
	}
	rb, err := prepare(id, 1, deadline, [][]byte{b}, Compare{Kind: CompareValue, Key: b, Value: []byte("7")})
	if err != nil || rb.Holds || string(rb.Reads[0].Record.Value) != "0" {
		t.Fatalf("prepare participant: %+v %v (the compare must fail)", rb, err)
	}
	// Preparing again (a retried call) is fine.
	if _, err := prepare(id, 1, deadline, [][]byte{b}); err != nil {
		t.Fatalf("prepare again: %v", err)
	}

	// The intents lock the keys: a read answers the record under the
	// intent with an IntentError, writes and other transactions are
	// refused, nothing written.
	rec, err := onLeaderValue(ctx, mgrs, 0, func(g *Group) (replica.Record, error) { return g.Get(ctx, a) })
	ki := wantIntentOf(t, err, id)[0]
	if !ki.Found || string(ki.Record.Value) != "10" || string(rec.Value) != "10" || ki.Intent.Anchor != 0 {
		t.Fatalf("get under an intent: %+v", ki)
	}
	wantIntentOf(t, put(0, a, "x"), id)
	_, err = onLeaderValue(ctx, mgrs, 1, func(g *Group) (bool, error) {
		ok, _, _, err := g.CompareAndSet(ctx, b, nil, []byte("x"), time.Time{})
		return ok, err
	})
	wantIntentOf(t, err, id)
	_, err = onLeaderValue(ctx, mgrs, 1, func(g *Group) (TxnResult, error) {
		return g.Txn(ctx, &Txn{Success: []Op{{Kind: OpGet, Key: b}}})
	})
	wantIntentOf(t, err, id)
	other := TxnID{Start: id.Start + 1, Node: "n2"}
	_, err = prepare(other, 1, deadline, [][]byte{b})
	wantIntentOf(t, err, id)

	// Status, and the sweep's views.
	st, err := onLeaderValue(ctx, mgrs, 0, func(g *Group) (*TxnRecord, error) { return g.TxnStatus(ctx, id) })
	if err != nil || st == nil || st.Status != TxnPending || !reflect.DeepEqual(st.Participants, []uint32{0, 1}) {
		t.Fatalf("status: %+v %v", st, err)
	}
	recs, err := onLeaderValue(ctx, mgrs, 0, func(g *Group) ([]TxnRecord, error) { return g.TxnRecords(ctx) })
	if err != nil || len(recs) != 1 || recs[0].ID != id {
		t.Fatalf("records: %+v %v", recs, err)
	}
	ins, err := onLeaderValue(ctx, mgrs, 1, func(g *Group) ([]KeyIntent, error) { return g.Intents(ctx) })
	if err != nil || len(ins) != 1 || string(ins[0].Key) != string(b) || ins[0].Intent.ID != id {
		t.Fatalf("intents: %+v %v", ins, err)
	}

	// The commit point, then resolve.
	commitTS := max(ra.MaxTimestamp, rb.MaxTimestamp) + 1
	writes := []replica.Entry{
		{Partition: 0, Key: a, Record: replica.Record{Value: []byte("5")}},
		{Partition: 1, Key: b, Record: replica.Record{Value: []byte("5")}},
	}
	if st, err := onLeaderValue(ctx, mgrs, 0, func(g *Group) (*TxnRecord, error) { return g.DecideTxn(ctx, id, true, commitTS, writes) }); err != nil || st.Status != TxnCommitted {
		t.Fatalf("commit: %+v %v", st, err)
	}
	// The decision's entry resolved the anchor's share: its key reads the
	// committed write, with no intent left, before any resolve.
	if rec, err := onLeaderValue(ctx, mgrs, 0, func(g *Group) (replica.Record, error) { return g.Get(ctx, a) }); err != nil || string(rec.Value) != "5" || rec.Timestamp != commitTS {
		t.Fatalf("anchor key after the decision: %+v %v, want 5 at the commit timestamp", rec, err)
	}
	resolve := func(id TxnID, p uint32, commit bool, ts replica.Timestamp, w []replica.Entry) (int, error) {
		return onLeaderValue(ctx, mgrs, p, func(g *Group) (int, error) { return g.ResolveTxn(ctx, id, commit, ts, w) })
	}
	if n, err := resolve(id, 1, true, commitTS, writes); err != nil || n != 1 {
		t.Fatalf("resolve participant: %d %v", n, err)
	}
	if n, err := resolve(id, 1, true, commitTS, writes); err != nil || n != 0 {
		t.Fatalf("resolve again: %d %v, want 0 cleared", n, err)
	}
	// The decision resolved the anchor's own share in its entry.
	if n, err := resolve(id, 0, true, commitTS, writes); err != nil || n != 0 {
		t.Fatalf("resolve anchor after the decision: %d %v, want 0 cleared", n, err)
	}
	waitFor(t, 10*time.Second, "every replica to hold the committed writes", func() error {
		for node, s := range c.stores {
			for _, w := range writes {
				rec, err := s.Get(w.Partition, w.Key)
				if err != nil || string(rec.Value) != "5" || rec.Timestamp != commitTS {
					return fmt.Errorf("%s: %q = %+v %w", node, w.Key, rec, err)
				}
				if in, err := s.Get(w.Partition, intentKey(w.Key)); err != nil || !in.Tombstone {
					return fmt.Errorf("%s: intent on %q still %+v %w", node, w.Key, in, err)
				}
			}
		}
		return nil
	})
	if err := put(0, a, "after"); err != nil {
		t.Fatalf("write after resolve: %v", err)
	}
	if err := onLeaderOf(ctx, mgrs, 0, func(g *Group) error { return g.ForgetTxn(ctx, id) }); err != nil {
		t.Fatalf("forget: %v", err)
	}
	if st, err := onLeaderValue(ctx, mgrs, 0, func(g *Group) (*TxnRecord, error) { return g.TxnStatus(ctx, id) }); err != nil || st != nil {
		t.Fatalf("status after forget: %+v %v", st, err)
	}
	// A late prepare of the forgotten attempt cannot revive it.
	if _, err := prepare(id, 0, deadline, [][]byte{a}); !errors.Is(err, ErrTxnAborted) {
		t.Fatalf("late prepare on the anchor: %v, want ErrTxnAborted", err)
	}

	// An abort leaves the keys as they were and unlocked.
	ab := TxnID{Start: id.Start + 10, Node: "n3"}
	if _, err := prepare(ab, 1, deadline, [][]byte{b}); err != nil {
		t.Fatal(err)
	}
	if err := onLeaderOf(ctx, mgrs, 0, func(g *Group) error { return g.ForgetTxn(ctx, ab) }); err != nil {
		t.Fatalf("forget of a never-recorded attempt: %v", err)
	}
	if _, err := onLeaderValue(ctx, mgrs, 0, func(g *Group) (*TxnRecord, error) { return g.DecideTxn(ctx, ab, false, 0, nil) }); err != nil {
		t.Fatal(err)
	}
	if _, err := onLeaderValue(ctx, mgrs, 0, func(g *Group) (*TxnRecord, error) { return g.DecideTxn(ctx, ab, true, 1, nil) }); !errors.Is(err, ErrTxnAborted) {
		t.Fatalf("commit after abort: %v", err)
	}
	if n, err := resolve(ab, 1, false, 0, nil); err != nil || n != 1 {
		t.Fatalf("resolve abort: %d %v", n, err)
	}
	if got, err := onLeaderValue(ctx, mgrs, 1, func(g *Group) (replica.Record, error) { return g.Get(ctx, b) }); err != nil || string(got.Value) != "5" {
		t.Fatalf("after the abort: %q %v", got.Value, err)
	}

	// A prepare after its deadline is refused.
	if _, err := prepare(TxnID{Start: id.Start + 20, Node: "n1"}, 1, time.Now().Add(-time.Millisecond), [][]byte{b}); !errors.Is(err, ErrTxnAborted) {
		t.Fatalf("prepare past the deadline: %v", err)
	}
	// Bad requests.
	if _, err := prepare(id, 1, deadline, [][]byte{b, a}); !errors.Is(err, ErrInvalidTxn) && err != nil {
		t.Fatalf("unsorted keys: %v", err)
	}
	if _, err := prepare(id, 1, deadline, [][]byte{b}, Compare{Kind: CompareAbsent, Key: a}); !errors.Is(err, ErrInvalidTxn) {
		t.Fatalf("compare on a key not prepared: %v", err)
	}
	if err := onLeaderOf(ctx, mgrs, 0, func(g *Group) error {
		_, err := g.Prepare(ctx, &PrepareRequest{ID: id, Deadline: deadline})
		return err
	}); !errors.Is(err, ErrInvalidTxn) {
		t.Fatalf("prepare without keys: %v", err)
	}

	// A commit timestamp below a newer record (an eventual write that came
	// in while the intent was held) is stepped above it.
	late := TxnID{Start: id.Start + 30, Attempt: 2, Node: "n2"}
	if _, err := prepare(late, 0, time.Now().Add(time.Minute), [][]byte{a}); err != nil {
		t.Fatal(err)
	}
	future := replica.MakeTimestamp(time.Now().Add(200*time.Millisecond), 0)
	for _, s := range c.stores {
		if err := s.Merge(ctx, []replica.Entry{{Partition: 0, Key: a, Record: replica.Record{Value: []byte("eventual"), Timestamp: future, NodeID: "n9"}}}); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := onLeaderValue(ctx, mgrs, 0, func(g *Group) (*TxnRecord, error) {
		return g.DecideTxn(ctx, late, true, commitTS+5, []replica.Entry{{Partition: 0, Key: a, Record: replica.Record{Value: []byte("txn")}}})
	}); err != nil {
		t.Fatal(err)
	}
	if _, err := resolve(late, 0, true, commitTS+5, []replica.Entry{{Partition: 0, Key: a, Record: replica.Record{Value: []byte("txn")}}}); err != nil {
		t.Fatal(err)
	}
	got, err := onLeaderValue(ctx, mgrs, 0, func(g *Group) (replica.Record, error) { return g.Get(ctx, a) })
	if err != nil || string(got.Value) != "txn" || got.Timestamp != future+1 {
		t.Fatalf("stepped write: %+v %v", got, err)
	}
	if err := onLeaderOf(ctx, mgrs, 0, func(g *Group) error { return g.ForgetTxn(ctx, late) }); err != nil {
		t.Fatal(err)
	}
	pend := TxnID{Start: id.Start + 40, Node: "n2"}
	if _, err := prepare(pend, 0, time.Now().Add(time.Minute), [][]byte{a}); err != nil {
		t.Fatal(err)
	}
	if err := onLeaderOf(ctx, mgrs, 0, func(g *Group) error { return g.ForgetTxn(ctx, pend) }); !errors.Is(err, ErrInvalidTxn) {
		t.Fatalf("forget of a pending record: %v", err)
	}
}
