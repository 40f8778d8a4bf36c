package consensus

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"reflect"
	"sync"
	"testing"
	"time"

	"github.com/ringkv/ringkv/replica"
)

func TestTxnIDOrderAndForm(t *testing.T) {
	a := txnID{Start: 100, Node: "n2"}
	b := txnID{Start: 100, Node: "n3"}
	c := txnID{Start: 101, Node: "n1"}
	for _, tc := range []struct {
		x, y txnID
		want bool
	}{{a, b, true}, {b, a, false}, {a, c, true}, {c, a, false}, {a, a, false}} {
		if got := tc.x.older(tc.y); got != tc.want {
			t.Errorf("%s older than %s: got %v, want %v", tc.x, tc.y, got, tc.want)
		}
	}
	for _, id := range []txnID{a, c, {Start: 1<<63 + 5, Node: "node/with/slashes"}} {
		got, err := parseTxnID(id.String())
		if err != nil || got != id {
			t.Errorf("parse(%q): got %+v %v, want %+v", id.String(), got, err, id)
		}
	}
	// The stored form sorts by start.
	if a.String() >= c.String() {
		t.Errorf("%q sorts after %q", a.String(), c.String())
	}
	for _, bad := range []string{"", "abc", "0000000000000064", "0000000000000064/", "zz00000000000064/n1", "64/n1"} {
		if _, err := parseTxnID(bad); !errors.Is(err, ErrCorruptCommand) {
			t.Errorf("parse(%q): got %v, want ErrCorruptCommand", bad, err)
		}
	}
	if k := txnRecordKey(a); k[0] != 0 || !bytes.HasPrefix(k, []byte(txnRecordPrefix)) {
		t.Errorf("record key %q is not reserved", k)
	}
	if k := intentKey([]byte("user")); k[0] != 0 || string(k) != intentPrefix+"user" {
		t.Errorf("intent key %q", k)
	}
}

func sampleRecord() txnRecord {
	return txnRecord{
		ID: txnID{Start: 77, Node: "n1"}, Status: txnCommitted,
		Deadline:     time.Unix(1_900_000_000, 5).UTC(),
		Participants: []uint32{3, 17, 1<<32 - 1},
		CommitTS:     99,
		Writes: []replica.Entry{
			{Partition: 3, Key: []byte("a"), Record: replica.Record{Value: []byte("1"), Timestamp: 99, NodeID: "n1"}},
			{Partition: 17, Key: []byte("b"), Record: replica.Record{Timestamp: 99, NodeID: "n1", Tombstone: true}},
		},
	}
}

func TestTxnRecordCodec(t *testing.T) {
	for _, r := range []txnRecord{
		sampleRecord(),
		{ID: txnID{Start: 1, Node: "x"}, Status: txnPending, Deadline: time.Unix(0, 1).UTC(), Participants: []uint32{0}},
		{ID: txnID{Start: 2, Node: "y"}, Status: txnAborted}, // decide's record for a transaction never prepared
	} {
		b := r.appendBinary(nil)
		got, err := decodeTxnRecord(b)
		if err != nil || !reflect.DeepEqual(got, r) {
			t.Fatalf("round trip:\n got %+v %v\nwant %+v", got, err, r)
		}
		for i := range b {
			bad := bytes.Clone(b)
			bad[i] ^= 0x21
			if got, err := decodeTxnRecord(bad); err == nil && bytes.Equal(got.appendBinary(nil), b) {
				t.Fatalf("flipping byte %d went unnoticed", i)
			}
		}
		for n := range b {
			if _, err := decodeTxnRecord(b[:n]); !errors.Is(err, ErrCorruptCommand) {
				t.Fatalf("truncated to %d bytes: got %v, want ErrCorruptCommand", n, err)
			}
		}
	}
	if _, err := decodeTxnRecord(append(sampleRecord().appendBinary(nil), 0)); !errors.Is(err, ErrCorruptCommand) {
		t.Fatalf("trailing byte: got %v", err)
	}
}

func TestIntentCodec(t *testing.T) {
	in := intent{ID: txnID{Start: 5, Node: "n3"}, Anchor: 42, Deadline: time.Unix(1_900_000_000, 0).UTC()}
	b := in.appendBinary(nil)
	got, err := decodeIntent(b)
	if err != nil || got != in {
		t.Fatalf("round trip: got %+v %v, want %+v", got, err, in)
	}
	for n := range b {
		if _, err := decodeIntent(b[:n]); !errors.Is(err, ErrCorruptCommand) {
			t.Fatalf("truncated to %d bytes: got %v", n, err)
		}
	}
	if _, err := decodeIntent(append(bytes.Clone(b), 1)); !errors.Is(err, ErrCorruptCommand) {
		t.Fatalf("trailing byte: got %v", err)
	}
}

func FuzzDecodeTxnRecord(f *testing.F) {
	r := sampleRecord()
	f.Add(r.appendBinary(nil))
	f.Add(intent{ID: txnID{Start: 1, Node: "n"}, Anchor: 1}.appendBinary(nil))
	f.Fuzz(func(t *testing.T, b []byte) {
		if r, err := decodeTxnRecord(b); err == nil {
			again, err := decodeTxnRecord(r.appendBinary(nil))
			if err != nil || !reflect.DeepEqual(again, r) {
				t.Fatalf("accepted record does not round-trip: %+v vs %+v (%v)", r, again, err)
			}
		}
		if in, err := decodeIntent(b); err == nil {
			if again, err := decodeIntent(in.appendBinary(nil)); err != nil || again != in {
				t.Fatalf("accepted intent does not round-trip: %+v vs %+v (%v)", in, again, err)
			}
		}
	})
}

func TestDecide(t *testing.T) {
	id := txnID{Start: 10, Node: "n1"}
	pending := &txnRecord{ID: id, Status: txnPending, Participants: []uint32{1, 2}}
	committed := &txnRecord{ID: id, Status: txnCommitted, CommitTS: 50}
	aborted := &txnRecord{ID: id, Status: txnAborted}
	writes := []replica.Entry{{Partition: 2, Key: []byte("k"), Record: replica.Record{Value: []byte("v")}}}
	for _, tc := range []struct {
		name    string
		cur     *txnRecord
		want    txnStatus
		next    txnStatus // 0: nothing proposed
		wantErr error
	}{
		{"commit pending", pending, txnCommitted, txnCommitted, nil},
		{"abort pending", pending, txnAborted, txnAborted, nil},
		{"commit again", committed, txnCommitted, 0, nil},
		{"abort again", aborted, txnAborted, 0, nil},
		{"commit aborted", aborted, txnCommitted, 0, errTxnAborted},
		{"abort committed", committed, txnAborted, 0, errTxnCommitted},
		{"commit absent", nil, txnCommitted, 0, errTxnAborted},
		{"abort absent", nil, txnAborted, txnAborted, nil},
	} {
		t.Run(tc.name, func(t *testing.T) {
			next, err := decide(tc.cur, id, tc.want, 60, writes)
			switch {
			case !errors.Is(err, tc.wantErr) || (tc.wantErr == nil) != (err == nil):
				t.Fatalf("got %v, want %v", err, tc.wantErr)
			case tc.next == 0 && next != nil:
				t.Fatalf("proposed %+v, want nothing", next)
			case tc.next != 0 && (next == nil || next.Status != tc.next || next.ID != id):
				t.Fatalf("proposed %+v, want status %s", next, tc.next)
			}
			if tc.next == txnCommitted && (next.CommitTS != 60 || len(next.Writes) != 1 || !reflect.DeepEqual(next.Participants, pending.Participants)) {
				t.Fatalf("commit record: %+v", next)
			}
			if tc.cur != nil && tc.cur.Status == txnPending && tc.cur == pending && pending.Status != txnPending {
				t.Fatal("decide changed the stored record in place")
			}
		})
	}
	// An abort of a transaction never prepared stores a record that
	// reads back the same.
	rec, err := decide(nil, id, txnAborted, 0, nil)
	if err != nil {
		t.Fatal(err)
	}
	if back, err := decodeTxnRecord(rec.appendBinary(nil)); err != nil || !reflect.DeepEqual(back, *rec) {
		t.Fatalf("aborted-unprepared record: got %+v %v, want %+v", back, err, *rec)
	}
	if _, err := decide(pending, txnID{Start: 11, Node: "n1"}, txnCommitted, 1, nil); err == nil {
		t.Fatal("decided another transaction's record")
	}
	if _, err := decide(pending, id, txnPending, 1, nil); err == nil {
		t.Fatal("PENDING accepted as a decision")
	}
}

func TestOnConflict(t *testing.T) {
	now := time.Unix(1_900_000_000, 0)
	old := txnID{Start: 10, Node: "n1"}
	young := txnID{Start: 20, Node: "n1"}
	live := now.Add(time.Second)
	for _, tc := range []struct {
		name   string
		self   txnID
		other  intent
		status txnStatus
		want   conflictAction
	}{
		{"other committed", old, intent{ID: young, Deadline: live}, txnCommitted, finishOther},
		{"other aborted", young, intent{ID: old, Deadline: live}, txnAborted, cleanOther},
		{"older wounds younger", old, intent{ID: young, Deadline: live}, txnPending, woundOther},
		{"younger dies", young, intent{ID: old, Deadline: live}, txnPending, dieSelf},
		{"younger takes an expired one", young, intent{ID: old, Deadline: now}, txnPending, woundOther},
		{"no record yet counts as pending", young, intent{ID: old, Deadline: live}, 0, dieSelf},
		{"no record past deadline", young, intent{ID: old, Deadline: now.Add(-time.Second)}, 0, woundOther},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if got := onConflict(tc.self, tc.other, tc.status, now); got != tc.want {
				t.Fatalf("got %s, want %s", got, tc.want)
			}
		})
	}
}

// The commit point: on a 3-replica anchor group, commits and aborts of
// one PENDING transaction race; exactly one decision is made, every
// caller hears which, and every replica stores it.
func TestDecideTxnOnGroup(t *testing.T) {
	c, mgrs := newCluster(t, 2)
	ctx, cancel := context.WithTimeout(t.Context(), 30*time.Second)
	defer cancel()
	const p = 0
	id := txnID{Start: 1000, Node: "n1"}
	commit := func(id txnID) (*txnRecord, error) {
		var got *txnRecord
		err := onLeaderOf(ctx, mgrs, p, func(g *Group) error {
			var err error
			got, err = g.decideTxn(ctx, id, txnCommitted, 2000, []replica.Entry{{Partition: 1, Key: []byte("k"), Record: replica.Record{Value: []byte("v")}}})
			return err
		})
		return got, err
	}
	abort := func(id txnID) (*txnRecord, error) {
		var got *txnRecord
		err := onLeaderOf(ctx, mgrs, p, func(g *Group) error {
			var err error
			got, err = g.decideTxn(ctx, id, txnAborted, 0, nil)
			return err
		})
		return got, err
	}
	// No record: a commit is refused; an abort fences the id.
	if _, err := commit(id); !errors.Is(err, errTxnAborted) {
		t.Fatalf("commit without a record: got %v, want errTxnAborted", err)
	}
	fenced := txnID{Start: 999, Node: "n2"}
	if rec, err := abort(fenced); err != nil || rec.Status != txnAborted {
		t.Fatalf("abort without a record: %+v %v", rec, err)
	}
	if _, err := commit(fenced); !errors.Is(err, errTxnAborted) {
		t.Fatalf("commit after the fence: got %v, want errTxnAborted", err)
	}

	// A PENDING record, as the anchor's prepare will write it.
	pending := txnRecord{ID: id, Status: txnPending, Deadline: time.Now().Add(time.Minute), Participants: []uint32{0, 1}}
	if err := onLeaderOf(ctx, mgrs, p, func(g *Group) error {
		rec := replica.Record{Value: pending.appendBinary(nil)}
		g.stamp(&rec, replica.Record{}, false)
		return g.proposeData(ctx, encodeBatch([]replica.Entry{{Partition: p, Key: txnRecordKey(id), Record: rec}}))
	}); err != nil {
		t.Fatal(err)
	}
	type outcome struct {
		commit bool
		rec    *txnRecord
		err    error
	}
	results := make(chan outcome, 8)
	var wg sync.WaitGroup
	for i := range 8 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			if i%2 == 0 {
				rec, err := commit(id)
				results <- outcome{true, rec, err}
			} else {
				rec, err := abort(id)
				results <- outcome{false, rec, err}
			}
		}()
	}
	wg.Wait()
	close(results)
	var committed, aborted int
	for o := range results {
		switch {
		case o.err == nil && o.commit && o.rec.Status == txnCommitted:
			committed++
		case o.err == nil && !o.commit && o.rec.Status == txnAborted:
			aborted++
		case o.commit && errors.Is(o.err, errTxnAborted), !o.commit && errors.Is(o.err, errTxnCommitted):
		default:
			t.Fatalf("commit=%v: %+v %v", o.commit, o.rec, o.err)
		}
	}
	if (committed == 0) == (aborted == 0) {
		t.Fatalf("%d commits and %d aborts succeeded: want exactly one kind", committed, aborted)
	}
	want := txnCommitted
	if aborted > 0 {
		want = txnAborted
	}
	waitFor(t, 10*time.Second, "every replica to store the decision", func() error {
		for node, s := range c.stores {
			rec, err := s.Get(p, txnRecordKey(id))
			if err != nil {
				return fmt.Errorf("%s: %w", node, err)
			}
			r, err := decodeTxnRecord(rec.Value)
			if err != nil || r.Status != want || !reflect.DeepEqual(r.Participants, pending.Participants) {
				return fmt.Errorf("%s: %+v, want %s: %w", node, r, want, err)
			}
			if want == txnCommitted && (r.CommitTS != 2000 || len(r.Writes) != 1) {
				return fmt.Errorf("%s: committed record without its writes: %+v", node, r)
			}
		}
		return nil
	})
	t.Logf("decision: %s (%d callers heard it made by them)", want, committed+aborted)
}
