package coordinator

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"net/http"
	"net/http/httptest"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/ringkv/ringkv/consensus"
	"github.com/ringkv/ringkv/internal/txncheck"
	"github.com/ringkv/ringkv/replica"
)

// spread returns n keys with the given prefix, each in a partition of its
// own, in key order.
func spread(t *testing.T, c *Coordinator, prefix string, n int) [][]byte {
	t.Helper()
	r := c.deps.Ring.Ring()
	if n > r.Partitions() {
		t.Fatalf("%d keys in %d partitions", n, r.Partitions())
	}
	seen := map[uint32]bool{}
	var keys [][]byte
	for i := 0; len(keys) < n; i++ {
		k := []byte(prefix + strconv.Itoa(i))
		if p := r.PartitionOf(k); !seen[p] {
			seen[p] = true
			keys = append(keys, k)
		}
	}
	return keys
}

func set(k []byte, v string) TxnOp { return TxnOp{Kind: consensus.OpSet, Key: k, Value: []byte(v)} }
func getOp(k []byte) TxnOp         { return TxnOp{Kind: consensus.OpGet, Key: k} }

// pollUntil polls cond every few milliseconds until it holds, failing
// the test after within.
func pollUntil(t *testing.T, within time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(within)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("no %s after %s", what, within)
		}
		timer := time.NewTimer(5 * time.Millisecond)
		<-timer.C
	}
}

// waitClean polls until no partition of n1 holds an intent.
func waitClean(t *testing.T, n1 *Coordinator, within time.Duration) {
	t.Helper()
	pollUntil(t, within, "partition free of intents", func() bool {
		left := 0
		for _, g := range n1.deps.Groups.Groups() {
			in, err := g.Intents(t.Context())
			if notLeader(t, err) {
				return false
			}
			left += len(in)
		}
		return left == 0
	})
}

// notLeader reports whether err says the group has no leader right now
// (a loaded in-memory raft steps down and back now and then); any other
// error fails the test.
func notLeader(t *testing.T, err error) bool {
	t.Helper()
	var nle *consensus.NotLeaderError
	switch {
	case errors.As(err, &nle):
		return true
	case err != nil:
		t.Fatal(err)
	}
	return false
}

// records counts the transaction records of n1's partitions.
func records(t *testing.T, n1 *Coordinator) int {
	t.Helper()
	n := 0
	pollUntil(t, 5*time.Second, "answer from every group's leader", func() bool {
		n = 0
		for _, g := range n1.deps.Groups.Groups() {
			recs, err := g.TxnRecords(t.Context())
			if notLeader(t, err) {
				return false
			}
			n += len(recs)
		}
		return true
	})
	return n
}

func mustGet(t *testing.T, c *Coordinator, k []byte) string {
	t.Helper()
	v, found, err := c.Get(t.Context(), k, Linearizable)
	if err != nil {
		t.Fatalf("get %s: %v", k, err)
	}
	if !found {
		return "<absent>"
	}
	return string(v)
}

func TestCrossPartitionTransfer(t *testing.T) {
	n1, n9, _ := newLinNode(t)
	ctx := t.Context()
	keys := spread(t, n1, "acct", 3)
	a, b, d := keys[0], keys[1], keys[2]
	for _, k := range [][]byte{a, b} {
		if err := n1.Set(ctx, k, []byte("100"), Linearizable); err != nil {
			t.Fatal(err)
		}
	}
	for i, c := range []*Coordinator{n1, n9} {
		from, to := strconv.Itoa(100-10*(i+1)), strconv.Itoa(100+10*(i+1))
		was := strconv.Itoa(100 - 10*i)
		res, err := c.Txn(ctx, &TxnRequest{
			Compares: []consensus.Compare{{Kind: consensus.CompareValue, Key: a, Value: []byte(was)}, {Kind: consensus.CompareAbsent, Key: d}},
			Success:  []TxnOp{set(a, from), set(b, to), getOp(d)},
			Failure:  []TxnOp{getOp(a)},
		})
		if err != nil || !res.Succeeded || len(res.Results) != 3 || res.Results[2].Found {
			t.Fatalf("%s: transfer: %+v %v", c.cfg.NodeID, res, err)
		}
		for k, want := range map[string]string{string(a): from, string(b): to, string(d): "<absent>"} {
			if got := mustGet(t, c, []byte(k)); got != want {
				t.Fatalf("%s: after the transfer %s = %q, want %q", c.cfg.NodeID, k, got, want)
			}
		}
	}
	// A compare that fails runs the failure branch, over partitions too.
	res, err := n9.Txn(ctx, &TxnRequest{
		Compares: []consensus.Compare{{Kind: consensus.CompareValue, Key: a, Value: []byte("100")}},
		Success:  []TxnOp{set(b, "0")},
		Failure:  []TxnOp{getOp(a), getOp(d)},
	})
	if err != nil || res.Succeeded || string(res.Results[0].Record.Value) != "80" || res.Results[1].Found {
		t.Fatalf("failed compare: %+v %v", res, err)
	}
	if got := mustGet(t, n1, b); got != "120" {
		t.Fatalf("b after a failed compare: %q, want 120", got)
	}
	// Each transaction's coordinator resolves its intents and forgets its
	// record in the background.
	waitClean(t, n1, 5*time.Second)
	pollUntil(t, 5*time.Second, "partition free of transaction records", func() bool { return records(t, n1) == 0 })
	// (A reader that came first resolves a committed transaction's intents
	// in its partition itself.)
	got := 0.0
	for _, c := range []*Coordinator{n1, n9} {
		got += testutil.ToFloat64(c.metrics.intentsResolved.WithLabelValues(byCoordinator)) + testutil.ToFloat64(c.metrics.intentsResolved.WithLabelValues(byReader))
	}
	if got < 6 {
		// The anchor's intents are cleared by the decision itself.
		t.Errorf("intents resolved by the coordinators and readers: %v, want 6 (three transactions over two partitions besides the anchor)", got)
	}
}

// blockAfterPrepare arms c's hook to hold the next transaction to finish
// its prepares until release is closed (stop: then it stops there, as a
// coordinator dying would).
func blockAfterPrepare(c *Coordinator, stop bool) (release func(), held <-chan consensus.TxnID) {
	var armed atomic.Bool
	armed.Store(true)
	ch := make(chan struct{})
	got := make(chan consensus.TxnID, 1)
	c.hooks.afterPrepare = func(id consensus.TxnID) bool {
		if !armed.CompareAndSwap(true, false) {
			return false
		}
		got <- id
		<-ch
		return stop
	}
	var once sync.Once
	return func() { once.Do(func() { close(ch) }) }, got
}

func TestCrossPartitionConflictDieAndWound(t *testing.T) {
	n1, n9, _ := newLinNode(t)
	ctx := t.Context()
	keys := spread(t, n1, "c", 2)
	x, y := keys[0], keys[1]

	// A prepares and holds; B, younger, meets A's intents and dies until
	// A commits; then it reads A's writes and applies its own.
	release, held := blockAfterPrepare(n1, false)
	aDone := make(chan error, 1)
	go func() {
		_, err := n1.Txn(ctx, &TxnRequest{Success: []TxnOp{set(x, "a"), set(y, "a")}})
		aDone <- err
	}()
	<-held
	type answer struct {
		res TxnResult
		err error
	}
	bDone := make(chan answer, 1)
	go func() {
		res, err := n9.Txn(ctx, &TxnRequest{
			Compares: []consensus.Compare{{Kind: consensus.CompareValue, Key: x, Value: []byte("a")}, {Kind: consensus.CompareValue, Key: y, Value: []byte("a")}},
			Success:  []TxnOp{set(x, "b"), set(y, "b")},
		})
		bDone <- answer{res, err}
	}()
	pollUntil(t, 5*time.Second, "death of the younger transaction on the older one's intents", func() bool {
		return testutil.ToFloat64(n9.metrics.txnAborts.WithLabelValues(abortDied)) >= 1
	})
	release()
	if err := <-aDone; err != nil {
		t.Fatalf("A: %v", err)
	}
	b := <-bDone
	if b.err != nil || !b.res.Succeeded {
		t.Fatalf("B: %+v %v, want it to read A's writes", b.res, b.err)
	}
	if got := mustGet(t, n1, x) + mustGet(t, n1, y); got != "bb" {
		t.Fatalf("after both: %q, want bb", got)
	}

	// Wound: a younger transaction holds the keys; an older one (an
	// attempt made with an old start) aborts it and commits; the younger
	// one finds itself aborted at its commit point and retries.
	release, held = blockAfterPrepare(n1, false)
	youngDone := make(chan error, 1)
	go func() {
		_, err := n1.Txn(ctx, &TxnRequest{Success: []TxnOp{getOp(x), set(y, "young")}})
		youngDone <- err
	}()
	<-held
	r := n1.deps.Ring.Ring()
	old := &consensus.Txn{Success: []consensus.Op{{Kind: consensus.OpSet, Key: x, Value: []byte("old")}, {Kind: consensus.OpSet, Key: y, Value: []byte("old")}}}
	anchor, parts := splitTxn(r, old)
	ps := []uint32{parts[0].p, parts[1].p}
	res, retry, err := n9.xtxnAttempt(ctx, r, old, consensus.TxnID{Start: 1, Node: "n9"}, anchor, parts, ps)
	if err != nil || retry || !res.Succeeded {
		t.Fatalf("older transaction: %+v retry %v %v", res, retry, err)
	}
	release()
	if err := <-youngDone; err != nil {
		t.Fatalf("younger transaction after its retry: %v", err)
	}
	if got := testutil.ToFloat64(n1.metrics.txnAborts.WithLabelValues(abortWounded)); got < 1 {
		t.Errorf("wounded aborts: %v, want 1", got)
	}
	if got := mustGet(t, n1, x) + mustGet(t, n1, y); got != "oldyoung" {
		t.Fatalf("after the wound: %q, want oldyoung", got)
	}
	waitClean(t, n1, 5*time.Second)
}

func TestCrossPartitionNoLostUpdate(t *testing.T) {
	t.Parallel()
	n1, n9, _ := newLinNode(t)
	ctx, cancel := context.WithTimeout(t.Context(), 30*time.Second)
	defer cancel()
	keys := spread(t, n1, "n", 3)
	const clients, each = 4, 3
	var wg sync.WaitGroup
	errs := make(chan error, clients)
	for i := range clients {
		c := []*Coordinator{n1, n9}[i%2]
		wg.Add(1)
		go func() {
			defer wg.Done()
			for done := 0; done < each; {
				// Read every counter, then add one to each if no version
				// moved: an optimistic read-modify-write over 3 partitions.
				var gets []TxnOp
				for _, k := range keys {
					gets = append(gets, getOp(k))
				}
				res, err := c.Txn(ctx, &TxnRequest{Success: gets})
				if err != nil {
					errs <- err
					return
				}
				req := &TxnRequest{}
				for j, k := range keys {
					n := 0
					if r := res.Results[j]; r.Found {
						n, _ = strconv.Atoi(string(r.Record.Value))
						req.Compares = append(req.Compares, consensus.Compare{Kind: consensus.CompareVersion, Key: k, Version: r.Record.Timestamp})
					} else {
						req.Compares = append(req.Compares, consensus.Compare{Kind: consensus.CompareAbsent, Key: k})
					}
					req.Success = append(req.Success, set(k, strconv.Itoa(n+1)))
				}
				res, err = c.Txn(ctx, req)
				switch {
				case errors.Is(err, ErrConflict):
				case err != nil:
					errs <- err
					return
				case res.Succeeded:
					done++
				}
			}
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatal(err)
	}
	for _, k := range keys {
		if got := mustGet(t, n1, k); got != strconv.Itoa(clients*each) {
			t.Fatalf("%s = %s, want %d: an update was lost", k, got, clients*each)
		}
	}
}

// TestCrossPartitionCoordinatorKilled stops one transaction after its
// prepares and another after its commit point, as a coordinator dying
// there would: readers, writers and the sweep finish or abort them.
func TestCrossPartitionCoordinatorKilled(t *testing.T) {
	t.Parallel()
	n1, n9, _ := newLinNode(t)
	ctx := t.Context()
	pre := spread(t, n1, "p", 3)
	post := spread(t, n1, "q", 2)
	for _, k := range append(append([][]byte{}, pre...), post...) {
		if err := n1.Set(ctx, k, []byte("before"), Linearizable); err != nil {
			t.Fatal(err)
		}
	}
	// Killed after its prepares: PENDING, intents on pre.
	release, _ := blockAfterPrepare(n1, true)
	release()
	start := time.Now()
	if _, err := n1.Txn(ctx, &TxnRequest{Success: []TxnOp{set(pre[0], "lost"), set(pre[1], "lost"), set(pre[2], "lost")}}); !errors.Is(err, errTxnStopped) {
		t.Fatalf("stopped after prepare: %v", err)
	}
	// Killed after its commit point: COMMITTED, intents on post.
	n1.hooks.afterCommit = func(consensus.TxnID) bool { return true }
	if res, err := n1.Txn(ctx, &TxnRequest{Success: []TxnOp{set(post[0], "after"), set(post[1], "after")}}); err != nil || !res.Succeeded {
		t.Fatalf("stopped after commit: %+v %v", res, err)
	}
	n1.hooks.afterCommit = nil

	// Lists (paged by 4) see the committed writes and the pending
	// transaction's keys as they were.
	for _, c := range []*Coordinator{n9, n1} {
		for prefix, want := range map[string]string{"q": "after", "p": "before"} {
			pairs, err := c.List(ctx, []byte(prefix), 0, Linearizable)
			if err != nil || len(pairs) < 2 {
				t.Fatalf("%s: list %s: %v %v", c.cfg.NodeID, prefix, pairs, err)
			}
			for _, pr := range pairs {
				if string(pr.Value) != want {
					t.Fatalf("%s: list %s: %s = %q, want %q", c.cfg.NodeID, prefix, pr.Key, pr.Value, want)
				}
			}
		}
	}
	// Readers: the committed transaction's writes at once, through either
	// node; the pending one's keys as they were before it.
	for _, c := range []*Coordinator{n9, n1} {
		if got := mustGet(t, c, post[0]); got != "after" {
			t.Fatalf("%s: read of a committed transaction's key: %q, want after", c.cfg.NodeID, got)
		}
		if got := mustGet(t, c, pre[0]); got != "before" {
			t.Fatalf("%s: read of a pending transaction's key: %q, want before", c.cfg.NodeID, got)
		}
	}
	if got := testutil.ToFloat64(n1.metrics.intentsResolved.WithLabelValues(byReader)); got < 1 {
		// The reader resolves in the background; it may not have landed.
		t.Logf("intents resolved by readers so far: %v", got)
	}
	// A writer on a pending key waits for its deadline, then aborts it.
	wctx, cancel := context.WithTimeout(ctx, 2*consensus.TxnTimeout)
	defer cancel()
	if err := n9.Set(wctx, pre[1], []byte("written"), Linearizable); err != nil {
		t.Fatalf("writer on a pending key: %v", err)
	}
	if d := time.Since(start); d < consensus.TxnTimeout-time.Second {
		t.Fatalf("the writer went through after %s, before the transaction's deadline", d)
	}
	// The sweep clears what is left (pre[2]'s and post[1]'s intents).
	waitClean(t, n1, 2*sweepInterval+time.Second)
	t.Logf("every intent cleared %s after the transactions started", time.Since(start).Round(time.Millisecond))
	for k, want := range map[string]string{string(pre[0]): "before", string(pre[1]): "written", string(pre[2]): "before", string(post[0]): "after", string(post[1]): "after"} {
		if got := mustGet(t, n1, []byte(k)); got != want {
			t.Fatalf("%s = %q, want %q", k, got, want)
		}
	}
	// The keys are writable again, by transactions too.
	if res, err := n9.Txn(ctx, &TxnRequest{Success: []TxnOp{set(pre[2], "again"), set(post[1], "again")}}); err != nil || !res.Succeeded {
		t.Fatalf("transaction after recovery: %+v %v", res, err)
	}
	if got := testutil.ToFloat64(n1.metrics.abandoned); got < 1 {
		t.Errorf("abandoned transactions recovered: %v, want at least 1", got)
	}
}

func TestCrossPartitionTxnHTTP(t *testing.T) {
	n1, _, _ := newLinNode(t)
	srv := httptest.NewServer(HTTPHandler(n1))
	defer srv.Close()
	keys := spread(t, n1, "h", 2)
	a, b := string(keys[0]), string(keys[1])
	post := func(body string) (int, string) {
		req, err := http.NewRequestWithContext(t.Context(), "POST", srv.URL+"/api/txn", strings.NewReader(body))
		if err != nil {
			t.Fatal(err)
		}
		resp, err := srv.Client().Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer func() { _ = resp.Body.Close() }() // read below
		var sb strings.Builder
		buf := make([]byte, 4096)
		for {
			n, err := resp.Body.Read(buf)
			sb.Write(buf[:n])
			if err != nil {
				break
			}
		}
		return resp.StatusCode, sb.String()
	}
	body := fmt.Sprintf(`{"compare":[{"key":%q,"absent":true}],"success":[{"set":%q,"value":"1"},{"set":%q,"value":"2"}]}`, a, a, b)
	if code, out := post(body); code != 200 || !strings.Contains(out, `"succeeded":true`) {
		t.Fatalf("two-partition txn: %d %s", code, out)
	}
	// An older transaction holds the keys past the younger one's retries:
	// 409, nothing applied.
	release, held := blockAfterPrepare(n1, false)
	done := make(chan error, 1)
	go func() {
		_, err := n1.Txn(t.Context(), &TxnRequest{Success: []TxnOp{set(keys[0], "held"), set(keys[1], "held")}})
		done <- err
	}()
	<-held
	code, out := post(fmt.Sprintf(`{"success":[{"set":%q,"value":"x"},{"set":%q,"value":"x"}]}`, a, b))
	release()
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	if code != 409 || !strings.Contains(out, "conflict") {
		t.Fatalf("conflicting txn: got %d %s, want 409", code, out)
	}
	if got := mustGet(t, n1, keys[0]) + mustGet(t, n1, keys[1]); got != "heldheld" {
		t.Fatalf("after the conflict: %q, want heldheld", got)
	}
}

func TestXTxnWire(t *testing.T) {
	id := consensus.TxnID{Start: 12345, Attempt: 2, Node: "n3"}
	req := &consensus.PrepareRequest{ID: id, Anchor: 3, Deadline: time.Unix(100, 5), Participants: []uint32{1, 3},
		Keys: [][]byte{[]byte("a"), []byte("b")}, Compares: []consensus.Compare{{Kind: consensus.CompareVersion, Key: []byte("a"), Version: 9}}}
	back, err := prepareFromWire(prepareToWire(3, req))
	if err != nil || back.ID != id || back.Anchor != 3 || !back.Deadline.Equal(req.Deadline) || len(back.Keys) != 2 || back.Compares[0].Version != 9 {
		t.Fatalf("prepare round trip: %+v %v", back, err)
	}
	if _, err := prepareFromWire(prepareToWire(3, &consensus.PrepareRequest{})); !errors.Is(err, ErrInvalidArgument) {
		t.Fatalf("prepare without an id: %v, want ErrInvalidArgument", err)
	}
	res := consensus.PrepareResult{Holds: true, MaxTimestamp: 7, Reads: []consensus.KeyRead{{Found: true, Record: replica.Record{Value: []byte("v"), Timestamp: 7}}, {}}}
	if got := prepareResultFromWire(prepareResultToWire(res)); !got.Holds || got.MaxTimestamp != 7 || string(got.Reads[0].Record.Value) != "v" || got.Reads[1].Found {
		t.Fatalf("prepare result round trip: %+v", got)
	}
	rec := &consensus.TxnRecord{ID: id, Status: consensus.TxnCommitted, Deadline: time.Unix(100, 0), Participants: []uint32{1, 3}, CommitTS: 99,
		Writes: []replica.Entry{{Partition: 3, Key: []byte("a"), Record: replica.Record{Tombstone: true}}}}
	gotRec, err := txnRecordFromWire(txnRecordToWire(rec))
	if err != nil || gotRec.ID != id || gotRec.Status != consensus.TxnCommitted || gotRec.CommitTS != 99 || !gotRec.Writes[0].Record.Tombstone {
		t.Fatalf("record round trip: %+v %v", gotRec, err)
	}
	if r, err := txnRecordFromWire(nil); r != nil || err != nil {
		t.Fatalf("no record: %v %v", r, err)
	}
	ie := intentErrorFromWire(4, intentsToWire([]consensus.KeyIntent{{Key: []byte("k"), Intent: consensus.Intent{ID: id, Anchor: 3, Deadline: time.Unix(5, 0)}}}))
	var got *consensus.IntentError
	if !errors.As(ie, &got) || got.Group != 4 || got.Intents[0].Intent.ID != id || got.Intents[0].Intent.Anchor != 3 {
		t.Fatalf("intents round trip: %v", ie)
	}
	for _, err := range []error{consensus.ErrTxnAborted, consensus.ErrTxnCommitted, ErrConflict} {
		if back := errorFor(rpcError(err)); !errors.Is(back, err) {
			t.Errorf("%v across the wire: %v", err, back)
		}
	}
}

// TestSweepRecords drives one sweep of a partition by hand: an abandoned
// attempt (prepared with a deadline 200 ms ahead, then left) is aborted,
// cleaned and forgotten; a fence (an abort of an attempt without a
// record) is kept.
func TestSweepRecords(t *testing.T) {
	n1, _, _ := newLinNode(t)
	ctx := t.Context()
	keys := spread(t, n1, "s", 2)
	r := n1.deps.Ring.Ring()
	anchor, other := r.PartitionOf(keys[0]), r.PartitionOf(keys[1])
	ga, _ := n1.deps.Groups.Group(anchor)
	for _, k := range keys { // waits for the groups' leaders
		if err := n1.Set(ctx, k, []byte("v"), Linearizable); err != nil {
			t.Fatal(err)
		}
	}
	id := consensus.TxnID{Start: n1.deps.Clock.Now(), Node: "gone"}
	deadline := n1.now().Add(200 * time.Millisecond)
	for i, p := range []uint32{anchor, other} {
		req := &consensus.PrepareRequest{ID: id, Anchor: anchor, Deadline: deadline, Participants: []uint32{anchor, other}, Keys: [][]byte{keys[i]}}
		if _, err := n1.prepareOn(ctx, p, req); err != nil {
			t.Fatal(err)
		}
	}
	fenced := consensus.TxnID{Start: 5, Node: "gone"}
	if _, err := n1.decideOn(ctx, anchor, fenced, false, 0, nil); err != nil {
		t.Fatal(err)
	}
	fences := map[consensus.TxnID]time.Time{}
	// sweep runs one sweep of the anchor (again while its leader, on
	// this loaded in-memory raft, steps down and back).
	sweep := func() {
		t.Helper()
		var last error
		pollUntil(t, 5*time.Second, "sweep on the leader", func() bool {
			last = n1.sweepGroup(ctx, ga, true, fences)
			var nle *consensus.NotLeaderError
			return !errors.As(last, &nle)
		})
		if last != nil {
			t.Fatal(last)
		}
	}
	// Before the deadline nothing is touched.
	sweep()
	if n := records(t, n1); n != 2 {
		t.Fatalf("records before the deadline: %d, want 2", n)
	}
	pollUntil(t, 5*time.Second, "deadline", func() bool { return !n1.now().Before(deadline) })
	sweep()
	var recs []consensus.TxnRecord
	var err error
	pollUntil(t, 5*time.Second, "answer from the anchor's leader", func() bool {
		recs, err = ga.TxnRecords(ctx)
		return !notLeader(t, err)
	})
	if err != nil || len(recs) != 1 || recs[0].ID != fenced {
		t.Fatalf("records after the sweep: %+v %v, want only the fence", recs, err)
	}
	if _, ok := fences[fenced]; !ok {
		t.Fatal("the sweep did not note the fence")
	}
	waitClean(t, n1, time.Second)
	if got := testutil.ToFloat64(n1.metrics.abandoned); got < 1 {
		t.Fatalf("abandoned recovered: %v, want 1", got)
	}
	// A fence seen long enough ago goes.
	fences[fenced] = time.Now().Add(-fenceKeep)
	sweep()
	if n := records(t, n1); n != 0 {
		t.Fatalf("records after the fence's time: %d, want 0", n)
	}
}

// TestCrossPartitionListAppendSerializable records a history of
// list-append transactions across partitions, made by 4 clients through
// two coordinators, and checks it with Elle's inference (txncheck): every
// transaction reads the lists of some keys and appends a unique element
// to others, as a read of every key it touches, then a transaction whose
// version compares make the reads and the appends one instant.
func TestCrossPartitionListAppendSerializable(t *testing.T) {
	t.Parallel()
	n1, n9, _ := newLinNode(t)
	ctx, cancel := context.WithTimeout(t.Context(), 60*time.Second)
	defer cancel()
	var keys [][]byte
	for i := range 6 {
		keys = append(keys, []byte("la"+strconv.Itoa(i)))
	}
	parse := func(v []byte) []int {
		var out []int
		for _, f := range strings.Split(string(v), ",") {
			if n, err := strconv.Atoi(f); err == nil {
				out = append(out, n)
			}
		}
		return out
	}
	join := func(list []int) string {
		f := make([]string, len(list))
		for i, n := range list {
			f[i] = strconv.Itoa(n)
		}
		return strings.Join(f, ",")
	}
	var mu sync.Mutex
	var history []txncheck.Txn
	var next atomic.Int64
	const clients, each = 4, 8
	var wg sync.WaitGroup
	for w := range clients {
		c := []*Coordinator{n1, n9}[w%2]
		wg.Add(1)
		go func() {
			defer wg.Done()
			rng := rand.New(rand.NewPCG(uint64(w), 11))
			for range each {
				// 3 keys: one or two appended, the rest read.
				perm := rng.Perm(len(keys))[:3]
				appends := 1 + rng.IntN(2)
				var gets []TxnOp
				for _, i := range perm {
					gets = append(gets, getOp(keys[i]))
				}
				read, err := c.Txn(ctx, &TxnRequest{Success: gets})
				if err != nil {
					continue
				}
				req := &TxnRequest{}
				var mops []txncheck.Mop
				for j, i := range perm {
					k, r := keys[i], read.Results[j]
					if r.Found {
						req.Compares = append(req.Compares, consensus.Compare{Kind: consensus.CompareVersion, Key: k, Version: r.Record.Timestamp})
					} else {
						req.Compares = append(req.Compares, consensus.Compare{Kind: consensus.CompareAbsent, Key: k})
					}
					list := parse(r.Record.Value)
					if j < appends {
						v := int(next.Add(1))
						req.Success = append(req.Success, set(k, join(append(slices.Clone(list), v))))
						mops = append(mops, txncheck.Mop{Key: string(k), Read: list}, txncheck.Mop{Key: string(k), Append: true, Value: v})
					} else {
						mops = append(mops, txncheck.Mop{Key: string(k), Read: list})
					}
				}
				parts := map[uint32]bool{}
				for _, i := range perm {
					parts[n1.deps.Ring.Ring().PartitionOf(keys[i])] = true
				}
				invoke := time.Now()
				res, err := c.Txn(ctx, req)
				h := txncheck.Txn{Invoke: invoke, Complete: time.Now(), Mops: mops, Label: fmt.Sprintf("%s over %d partitions", c.cfg.NodeID, len(parts))}
				switch {
				case errors.Is(err, consensus.ErrAmbiguous):
					h.Outcome = txncheck.Unknown
				case err != nil || !res.Succeeded:
					h.Outcome = txncheck.Fail
				default:
					h.Outcome = txncheck.OK
				}
				mu.Lock()
				history = append(history, h)
				mu.Unlock()
			}
		}()
	}
	wg.Wait()
	res := txncheck.Check(history)
	ok, across := 0, 0
	for _, h := range history {
		if h.Outcome == txncheck.OK {
			ok++
			if !strings.HasSuffix(h.Label, " 1 partitions") {
				across++
			}
		}
	}
	if !res.Valid() {
		t.Fatal(res)
	}
	if ok < clients || across == 0 {
		t.Fatalf("only %d of %d transactions committed, %d across partitions", ok, len(history), across)
	}
	t.Logf("%d of %d committed (%d across partitions); %s", ok, len(history), across, res)
}
