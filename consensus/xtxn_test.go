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
	a := TxnID{Start: 100, Node: "n2"}
	b := TxnID{Start: 100, Node: "n3"}
	c := TxnID{Start: 101, Node: "n1"}
	for _, tc := range []struct {
		x, y TxnID
		want bool
	}{{a, b, true}, {b, a, false}, {a, c, true}, {c, a, false}, {a, a, false}} {
		if got := tc.x.Older(tc.y); got != tc.want {
			t.Errorf("%s older than %s: got %v, want %v", tc.x, tc.y, got, tc.want)
		}
	}
	for _, id := range []TxnID{a, c, {Start: 1<<63 + 5, Attempt: 1<<32 - 1, Node: "node/with/slashes"}} {
		got, err := ParseTxnID(id.String())
		if err != nil || got != id {
			t.Errorf("parse(%q): got %+v %v, want %+v", id.String(), got, err, id)
		}
	}
	// The stored form sorts by start.
	if a.String() >= c.String() {
		t.Errorf("%q sorts after %q", a.String(), c.String())
	}
	for _, bad := range []string{"", "abc", "0000000000000064", "0000000000000064/", "zz00000000000064/n1", "64/n1", "0000000000000064/00000000/", "0000000000000064/0000000z/n1", "0000000000000064/1/n1"} {
		if _, err := ParseTxnID(bad); !errors.Is(err, ErrCorruptCommand) {
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

func sampleRecord() TxnRecord {
	return TxnRecord{
		ID: TxnID{Start: 77, Node: "n1"}, Status: TxnCommitted,
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
	for _, r := range []TxnRecord{
		sampleRecord(),
		{ID: TxnID{Start: 1, Node: "x"}, Status: TxnPending, Deadline: time.Unix(0, 1).UTC(), Participants: []uint32{0}},
		{ID: TxnID{Start: 2, Node: "y"}, Status: TxnAborted}, // decide's record for a transaction never prepared
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
	in := Intent{ID: TxnID{Start: 5, Node: "n3"}, Anchor: 42, Deadline: time.Unix(1_900_000_000, 0).UTC()}
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
	f.Add(Intent{ID: TxnID{Start: 1, Node: "n"}, Anchor: 1}.appendBinary(nil))
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
	id := TxnID{Start: 10, Node: "n1"}
	pending := &TxnRecord{ID: id, Status: TxnPending, Participants: []uint32{1, 2}}
	committed := &TxnRecord{ID: id, Status: TxnCommitted, CommitTS: 50}
	aborted := &TxnRecord{ID: id, Status: TxnAborted}
	writes := []replica.Entry{{Partition: 2, Key: []byte("k"), Record: replica.Record{Value: []byte("v")}}}
	for _, tc := range []struct {
		name    string
		cur     *TxnRecord
		want    TxnStatus
		next    TxnStatus // 0: nothing proposed
		wantErr error
	}{
		{"commit pending", pending, TxnCommitted, TxnCommitted, nil},
		{"abort pending", pending, TxnAborted, TxnAborted, nil},
		{"commit again", committed, TxnCommitted, 0, nil},
		{"abort again", aborted, TxnAborted, 0, nil},
		{"commit aborted", aborted, TxnCommitted, 0, ErrTxnAborted},
		{"abort committed", committed, TxnAborted, 0, ErrTxnCommitted},
		{"commit absent", nil, TxnCommitted, 0, ErrTxnAborted},
		{"abort absent", nil, TxnAborted, TxnAborted, nil},
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
			if tc.next == TxnCommitted && (next.CommitTS != 60 || len(next.Writes) != 1 || !reflect.DeepEqual(next.Participants, pending.Participants)) {
				t.Fatalf("commit record: %+v", next)
			}
			if tc.cur != nil && tc.cur.Status == TxnPending && tc.cur == pending && pending.Status != TxnPending {
				t.Fatal("decide changed the stored record in place")
			}
		})
	}
	// An abort of a transaction never prepared stores a record that
	// reads back the same.
	rec, err := decide(nil, id, TxnAborted, 0, nil)
	if err != nil {
		t.Fatal(err)
	}
	if back, err := decodeTxnRecord(rec.appendBinary(nil)); err != nil || !reflect.DeepEqual(back, *rec) {
		t.Fatalf("aborted-unprepared record: got %+v %v, want %+v", back, err, *rec)
	}
	if _, err := decide(pending, TxnID{Start: 11, Node: "n1"}, TxnCommitted, 1, nil); err == nil {
		t.Fatal("decided another transaction's record")
	}
	if _, err := decide(pending, id, TxnPending, 1, nil); err == nil {
		t.Fatal("PENDING accepted as a decision")
	}
}

func TestOnConflict(t *testing.T) {
	now := time.Unix(1_900_000_000, 0)
	old := TxnID{Start: 10, Node: "n1"}
	young := TxnID{Start: 20, Node: "n1"}
	live := now.Add(time.Second)
	for _, tc := range []struct {
		name   string
		self   TxnID
		other  Intent
		status TxnStatus
		want   ConflictAction
	}{
		{"other committed", old, Intent{ID: young, Deadline: live}, TxnCommitted, FinishOther},
		{"other aborted", young, Intent{ID: old, Deadline: live}, TxnAborted, CleanOther},
		{"older wounds younger", old, Intent{ID: young, Deadline: live}, TxnPending, WoundOther},
		{"younger dies", young, Intent{ID: old, Deadline: live}, TxnPending, DieSelf},
		{"younger takes an expired one", young, Intent{ID: old, Deadline: now}, TxnPending, WoundOther},
		{"no record yet counts as pending", young, Intent{ID: old, Deadline: live}, 0, DieSelf},
		{"no record past deadline", young, Intent{ID: old, Deadline: now.Add(-time.Second)}, 0, WoundOther},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if got := OnConflict(tc.self, tc.other, tc.status, now); got != tc.want {
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
	id := TxnID{Start: 1000, Node: "n1"}
	commit := func(id TxnID) (*TxnRecord, error) {
		var got *TxnRecord
		err := onLeaderOf(ctx, mgrs, p, func(g *Group) error {
			var err error
			got, err = g.decideTxn(ctx, id, TxnCommitted, 2000, []replica.Entry{{Partition: 1, Key: []byte("k"), Record: replica.Record{Value: []byte("v")}}})
			return err
		})
		return got, err
	}
	abort := func(id TxnID) (*TxnRecord, error) {
		var got *TxnRecord
		err := onLeaderOf(ctx, mgrs, p, func(g *Group) error {
			var err error
			got, err = g.decideTxn(ctx, id, TxnAborted, 0, nil)
			return err
		})
		return got, err
	}
	// No record: a commit is refused; an abort fences the id.
	if _, err := commit(id); !errors.Is(err, ErrTxnAborted) {
		t.Fatalf("commit without a record: got %v, want ErrTxnAborted", err)
	}
	fenced := TxnID{Start: 999, Node: "n2"}
	if rec, err := abort(fenced); err != nil || rec.Status != TxnAborted {
		t.Fatalf("abort without a record: %+v %v", rec, err)
	}
	if _, err := commit(fenced); !errors.Is(err, ErrTxnAborted) {
		t.Fatalf("commit after the fence: got %v, want ErrTxnAborted", err)
	}

	// A PENDING record, as the anchor's prepare will write it.
	pending := TxnRecord{ID: id, Status: TxnPending, Deadline: time.Now().Add(time.Minute), Participants: []uint32{0, 1}}
	if err := onLeaderOf(ctx, mgrs, p, func(g *Group) error {
		rec := replica.Record{Value: pending.appendBinary(nil)}
		g.stamp(&rec, replica.Record{}, false)
		return g.proposeData(ctx, encodeBatch([]replica.Entry{{Partition: p, Key: txnRecordKey(id), Record: rec}}))
	}); err != nil {
		t.Fatal(err)
	}
	type outcome struct {
		commit bool
		rec    *TxnRecord
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
		case o.err == nil && o.commit && o.rec.Status == TxnCommitted:
			committed++
		case o.err == nil && !o.commit && o.rec.Status == TxnAborted:
			aborted++
		case o.commit && errors.Is(o.err, ErrTxnAborted), !o.commit && errors.Is(o.err, ErrTxnCommitted):
		default:
			t.Fatalf("commit=%v: %+v %v", o.commit, o.rec, o.err)
		}
	}
	if (committed == 0) == (aborted == 0) {
		t.Fatalf("%d commits and %d aborts succeeded: want exactly one kind", committed, aborted)
	}
	want := TxnCommitted
	if aborted > 0 {
		want = TxnAborted
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
			if want == TxnCommitted && (r.CommitTS != 2000 || len(r.Writes) != 1) {
				return fmt.Errorf("%s: committed record without its writes: %+v", node, r)
			}
		}
		return nil
	})
	t.Logf("decision: %s (%d callers heard it made by them)", want, committed+aborted)
}
