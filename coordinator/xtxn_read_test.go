package coordinator

import (
	"bytes"
	"context"
	"fmt"
	"slices"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/ringkv/ringkv/consensus"
)

// TestSnapshotReadsSeeTotals reads three accounts in three partitions in
// one read-only transaction (a double read, no locks) while transfers
// between them commit: every read sees the total, most are answered from
// the snapshot, and a compare in a read-only transaction is judged on it.
func TestSnapshotReadsSeeTotals(t *testing.T) {
	n1, n9, _ := newLinNode(t)
	ctx, cancel := context.WithTimeout(t.Context(), 60*time.Second)
	defer cancel()
	keys := spread(t, n1, "snap", 3)
	for _, k := range keys {
		if err := n1.Set(ctx, k, []byte("100"), Linearizable); err != nil {
			t.Fatal(err)
		}
	}
	readAll := &TxnRequest{Success: []TxnOp{getOp(keys[0]), getOp(keys[1]), getOp(keys[2])}}
	stop := make(chan struct{})
	var wg sync.WaitGroup
	wg.Add(1)
	transfers := 0
	go func() {
		defer wg.Done()
		for i := 0; ; i++ {
			select {
			case <-stop:
				return
			default:
			}
			from, to := keys[i%3], keys[(i+1)%3]
			res, err := n9.Txn(ctx, &TxnRequest{Success: []TxnOp{getOp(from), getOp(to)}})
			if err != nil {
				continue
			}
			fv, _ := strconv.Atoi(string(res.Results[0].Record.Value))
			tv, _ := strconv.Atoi(string(res.Results[1].Record.Value))
			if _, err := n9.Txn(ctx, &TxnRequest{
				Compares: []consensus.Compare{
					{Kind: consensus.CompareVersion, Key: from, Version: res.Results[0].Record.Timestamp},
					{Kind: consensus.CompareVersion, Key: to, Version: res.Results[1].Record.Timestamp},
				},
				Success: []TxnOp{set(from, strconv.Itoa(fv-1)), set(to, strconv.Itoa(tv+1))},
			}); err == nil {
				transfers++
			}
		}
	}()
	reads := 0
	for deadline := time.Now().Add(3 * time.Second); time.Now().Before(deadline) || reads < 20; reads++ {
		res, err := n1.Txn(ctx, readAll)
		if err != nil {
			t.Fatalf("read of every account: %v", err)
		}
		total := 0
		for _, r := range res.Results {
			v, err := strconv.Atoi(string(r.Record.Value))
			if err != nil || !r.Found {
				t.Fatalf("account: %+v %v", r, err)
			}
			total += v
		}
		if total != 300 {
			t.Fatalf("read %d saw a total of %d, want 300: %+v", reads, total, res.Results)
		}
	}
	close(stop)
	wg.Wait()
	ok := testutil.ToFloat64(n1.metrics.snapshotReads.WithLabelValues("ok"))
	changed := testutil.ToFloat64(n1.metrics.snapshotReads.WithLabelValues("changed"))
	t.Logf("%d reads during %d transfers: %v answered from the snapshot, %v passes saw a change", reads, transfers, ok, changed)
	if transfers == 0 || ok == 0 {
		t.Fatalf("transfers %d, snapshot answers %v: the test did not exercise the path", transfers, ok)
	}
	// A compare in a read-only transaction is judged on the snapshot.
	res, err := n1.Txn(ctx, &TxnRequest{
		Compares: []consensus.Compare{{Kind: consensus.CompareAbsent, Key: keys[0]}},
		Success:  []TxnOp{getOp(keys[1])},
		Failure:  []TxnOp{getOp(keys[0]), getOp(keys[2])},
	})
	if err != nil || res.Succeeded || len(res.Results) != 2 || !res.Results[0].Found {
		t.Fatalf("read-only transaction with a compare: %+v %v", res, err)
	}
}

// TestLocalReadFirstPass pins down the first pass of a double read: a
// node that replicates the key's partition reads its own replica (a
// tombstone or a missing key is not found), one that does not falls back
// to the leader.
func TestLocalReadFirstPass(t *testing.T) {
	n1, n9, _ := newLinNode(t)
	ctx := t.Context()
	keys := spread(t, n1, "local", 2)
	if err := n1.Set(ctx, keys[0], []byte("v"), Linearizable); err != nil {
		t.Fatal(err)
	}
	if rec, found, ok := n1.localRead(keys[0]); !ok || !found || string(rec.Value) != "v" {
		t.Fatalf("local read of a written key: %+v found %v ok %v", rec, found, ok)
	}
	if _, found, ok := n1.localRead(keys[1]); !ok || found {
		t.Fatalf("local read of a missing key: found %v ok %v, want not found, ok", found, ok)
	}
	if err := n1.Delete(ctx, keys[0], Linearizable); err != nil {
		t.Fatal(err)
	}
	if rec, found, ok := n1.localRead(keys[0]); !ok || found || !rec.Tombstone {
		t.Fatalf("local read of a deleted key: %+v found %v ok %v, want its tombstone, not found", rec, found, ok)
	}
	if _, _, ok := n9.localRead(keys[0]); ok {
		t.Fatal("a node that replicates no partition read locally")
	}
	// n9 reads through the leader in both passes, n1 from its replica
	// first: both answer the same snapshot.
	for _, c := range []*Coordinator{n1, n9} {
		res, err := c.MGet(ctx, keys, Linearizable)
		if err != nil || len(res) != 2 || res[0].Found || res[1].Found {
			t.Fatalf("mget of a deleted and a missing key: %+v %v", res, err)
		}
	}
}

// TestDoubleReadSeesWriteAndDeleteOfAbsentKey builds the history in which
// two reads that both find a key absent are not the same version: A is
// absent and B is b0; T1 = {A=1, B=b1} commits between the first pass's
// reads of A and B, and T2 = {delete A, B=b2} between the second pass's
// reads of B and A. Both passes read A absent and B as b1, yet {A absent,
// B=b1} never held: the states were {absent, b0}, {1, b1}, {absent, b2}.
// The read must answer one of them, which it can only do if A's two
// absent reads differ (T2's tombstone has a version; none before T1).
func TestDoubleReadSeesWriteAndDeleteOfAbsentKey(t *testing.T) {
	n1, n9, _ := newLinNode(t)
	ctx, cancel := context.WithTimeout(t.Context(), 30*time.Second)
	defer cancel()
	keys := spread(t, n1, "absent", 2)
	a, b := keys[0], keys[1]
	if err := n1.Set(ctx, b, []byte("b0"), Linearizable); err != nil {
		t.Fatal(err)
	}
	aRead1, bRead2 := make(chan struct{}), make(chan struct{})
	var hookErr error
	var mu sync.Mutex
	commit := func(name string, ops ...TxnOp) {
		if _, err := n1.Txn(ctx, &TxnRequest{Success: ops}); err != nil {
			mu.Lock()
			hookErr = fmt.Errorf("%s: %w", name, err)
			mu.Unlock()
		}
	}
	// n9 replicates nothing: both passes read on the leader, through the
	// Linearizable service's answer as a remote node's would be decoded.
	n9.hooks.snapshotRead = func(pass int, key []byte, after bool) {
		switch {
		case pass == 1 && after && bytes.Equal(key, a):
			close(aRead1)
		case pass == 1 && !after && bytes.Equal(key, b):
			<-aRead1
			commit("T1", set(a, "1"), set(b, "b1"))
		case pass == 2 && after && bytes.Equal(key, b):
			close(bRead2)
		case pass == 2 && !after && bytes.Equal(key, a):
			<-bRead2
			commit("T2", TxnOp{Kind: consensus.OpDelete, Key: a}, set(b, "b2"))
		}
	}
	res, err := n9.Txn(ctx, &TxnRequest{Success: []TxnOp{getOp(a), getOp(b)}})
	n9.hooks.snapshotRead = nil
	if hookErr != nil {
		t.Fatal(hookErr)
	}
	if err != nil || len(res.Results) != 2 {
		t.Fatalf("read of A and B: %+v %v", res, err)
	}
	type state struct {
		a string // "" when absent
		b string
	}
	value := func(r consensus.OpResult) string {
		if !r.Found {
			return ""
		}
		return string(r.Record.Value)
	}
	got := state{value(res.Results[0]), value(res.Results[1])}
	held := []state{{"", "b0"}, {"1", "b1"}, {"", "b2"}}
	if !slices.Contains(held, got) {
		t.Fatalf("the read answered A=%q B=%q, a state that never held (the states were %+v)", got.a, got.b, held)
	}
	if changed := testutil.ToFloat64(n9.metrics.snapshotReads.WithLabelValues("changed")); changed < 1 {
		t.Errorf("no pass saw a change (%v)", changed)
	}
	// The version of an absent key crosses the wire: a remote read of the
	// deleted A carries T2's tombstone, with no value.
	rec, found, err := n9.linGet(ctx, a)
	if err != nil || found || !rec.Tombstone || rec.Timestamp == 0 || rec.Value != nil {
		t.Fatalf("remote read of a deleted key: %+v found %v err %v, want its tombstone's version only", rec, found, err)
	}
	// A key never written has no version.
	rec, found, err = n9.linGet(ctx, []byte("absent-never-written"))
	if err != nil || found || rec.Timestamp != 0 {
		t.Fatalf("remote read of a key never written: %+v found %v err %v", rec, found, err)
	}
}
