package consensus

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/hashicorp/raft"

	"github.com/ringkv/ringkv/replica"
	"github.com/ringkv/ringkv/ring"
)

func TestCompareHolds(t *testing.T) {
	now := time.Unix(1_800_000_000, 0)
	live := replica.Record{Value: []byte("v"), Timestamp: 77}
	leased := replica.Record{Value: []byte("v"), Timestamp: 78, ExpiresAt: now.Add(10 * time.Second)}
	expired := replica.Record{Value: []byte("v"), Timestamp: 79, ExpiresAt: now.Add(-time.Second)}
	tomb := replica.Record{Timestamp: 80, Tombstone: true}
	for _, tc := range []struct {
		name  string
		c     Compare
		rec   replica.Record
		found bool
		want  bool
	}{
		{"value equal", Compare{Kind: CompareValue, Value: []byte("v")}, live, true, true},
		{"value differs", Compare{Kind: CompareValue, Value: []byte("w")}, live, true, false},
		{"value of absent", Compare{Kind: CompareValue, Value: nil}, replica.Record{}, false, false},
		{"value of expired", Compare{Kind: CompareValue, Value: []byte("v")}, expired, true, false},
		{"value of tombstone", Compare{Kind: CompareValue}, tomb, true, false},
		{"absent: none", Compare{Kind: CompareAbsent}, replica.Record{}, false, true},
		{"absent: tombstone", Compare{Kind: CompareAbsent}, tomb, true, true},
		{"absent: expired", Compare{Kind: CompareAbsent}, expired, true, true},
		{"absent: live", Compare{Kind: CompareAbsent}, live, true, false},
		{"version equal", Compare{Kind: CompareVersion, Version: 77}, live, true, true},
		{"version differs", Compare{Kind: CompareVersion, Version: 76}, live, true, false},
		{"version 0 of absent", Compare{Kind: CompareVersion}, replica.Record{}, false, true},
		{"version 0 of expired", Compare{Kind: CompareVersion}, expired, true, true},
		{"version of expired", Compare{Kind: CompareVersion, Version: 79}, expired, true, false},
		{"version 0 of live", Compare{Kind: CompareVersion}, live, true, false},
		{"ttl: never expires", Compare{Kind: CompareTTLAtLeast, TTL: time.Hour}, live, true, true},
		{"ttl: enough left", Compare{Kind: CompareTTLAtLeast, TTL: 10 * time.Second}, leased, true, true},
		{"ttl: too little left", Compare{Kind: CompareTTLAtLeast, TTL: 11 * time.Second}, leased, true, false},
		{"ttl: expired", Compare{Kind: CompareTTLAtLeast}, expired, true, false},
		{"ttl: absent", Compare{Kind: CompareTTLAtLeast}, replica.Record{}, false, false},
		{"unknown kind", Compare{Kind: 9}, live, true, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if got := tc.c.Holds(tc.rec, tc.found, now); got != tc.want {
				t.Errorf("got %v, want %v", got, tc.want)
			}
		})
	}
}

func TestValidateTxn(t *testing.T) {
	k := func(s string) []byte { return []byte(s) }
	many := &Txn{}
	for i := range MaxTxnKeys + 1 {
		many.Success = append(many.Success, Op{Kind: OpGet, Key: k("k" + strconv.Itoa(i))})
	}
	exact := &Txn{Success: many.Success[:MaxTxnKeys]}
	big := bytes.Repeat([]byte("x"), MaxTxnBytes/2)
	for _, tc := range []struct {
		name string
		txn  *Txn
		want string // "" = valid
	}{
		{"empty", &Txn{}, "at least one"},
		{"only a compare", &Txn{Compares: []Compare{{Kind: CompareAbsent, Key: k("a")}}}, ""},
		{"compare and op on one key", &Txn{Compares: []Compare{{Kind: CompareAbsent, Key: k("a")}}, Success: []Op{{Kind: OpSet, Key: k("a"), Value: k("1")}}}, ""},
		{"same key in both branches", &Txn{Success: []Op{{Kind: OpSet, Key: k("a")}}, Failure: []Op{{Kind: OpGet, Key: k("a")}}}, ""},
		{"duplicate in a branch", &Txn{Success: []Op{{Kind: OpGet, Key: k("a")}, {Kind: OpSet, Key: k("a")}}}, "appears twice"},
		{"duplicate in failure", &Txn{Failure: []Op{{Kind: OpDelete, Key: k("a")}, {Kind: OpDelete, Key: k("a")}}}, "appears twice"},
		{"empty compare key", &Txn{Compares: []Compare{{Kind: CompareAbsent}}}, "empty key"},
		{"empty op key", &Txn{Success: []Op{{Kind: OpGet}}}, "empty key"},
		{"unknown compare", &Txn{Compares: []Compare{{Kind: 0, Key: k("a")}}}, "unknown kind"},
		{"unknown op", &Txn{Success: []Op{{Kind: 4, Key: k("a")}}}, "unknown kind"},
		{"get with value", &Txn{Success: []Op{{Kind: OpGet, Key: k("a"), Value: k("x")}}}, "no value"},
		{"negative ttl", &Txn{Compares: []Compare{{Kind: CompareTTLAtLeast, Key: k("a"), TTL: -1}}}, "negative"},
		{"128 keys", exact, ""},
		{"129 keys", many, "129 distinct keys"},
		{"too many bytes", &Txn{Success: []Op{{Kind: OpSet, Key: k("a"), Value: big}, {Kind: OpSet, Key: k("b"), Value: big}}}, "bytes of keys and values"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			err := ValidateTxn(tc.txn)
			switch {
			case tc.want == "" && err != nil:
				t.Fatalf("got %v, want valid", err)
			case tc.want != "" && (!errors.Is(err, ErrInvalidTxn) || !strings.Contains(err.Error(), tc.want)):
				t.Fatalf("got %v, want ErrInvalidTxn saying %q", err, tc.want)
			}
		})
	}
}

func TestEvaluate(t *testing.T) {
	now := time.Unix(1_800_000_000, 0)
	cur := map[string]current{
		"a": {rec: replica.Record{Value: []byte("1"), Timestamp: 10}, found: true},
		"b": {rec: replica.Record{Value: []byte("2"), Timestamp: 11, ExpiresAt: now.Add(-time.Second)}, found: true},
	}
	txn := &Txn{
		Compares: []Compare{{Kind: CompareValue, Key: []byte("a"), Value: []byte("1")}, {Kind: CompareAbsent, Key: []byte("b")}},
		Success: []Op{{Kind: OpGet, Key: []byte("a")}, {Kind: OpSet, Key: []byte("b"), Value: []byte("n"), ExpiresAt: now.Add(time.Hour)},
			{Kind: OpDelete, Key: []byte("c")}, {Kind: OpGet, Key: []byte("b")}},
		Failure: []Op{{Kind: OpGet, Key: []byte("b")}},
	}
	res, writes, err := evaluate(txn, cur, now)
	if err != nil || !res.Succeeded || len(res.Results) != 4 {
		t.Fatalf("got %+v %v, want the success branch's 4 results", res, err)
	}
	if r := res.Results[0]; !r.Found || string(r.Record.Value) != "1" || r.Record.Timestamp != 10 {
		t.Errorf("get a: got %+v, want 1 at version 10", r)
	}
	if r := res.Results[3]; r.Found {
		t.Errorf("get of expired b: got %+v, want not found", r)
	}
	if len(writes) != 2 || string(writes[0].Key) != "b" || string(writes[0].Record.Value) != "n" ||
		!writes[0].Record.ExpiresAt.Equal(now.Add(time.Hour)) || string(writes[1].Key) != "c" || !writes[1].Record.Tombstone {
		t.Errorf("writes: got %+v, want set b, delete c", writes)
	}

	// One failing compare runs the failure branch, which writes nothing.
	txn.Compares[0].Value = []byte("other")
	res, writes, err = evaluate(txn, cur, now)
	if err != nil || res.Succeeded || len(res.Results) != 1 || res.Results[0].Found || len(writes) != 0 {
		t.Fatalf("failure branch: got %+v %+v %v", res, writes, err)
	}

	// Gets that would answer too much are refused.
	huge := bytes.Repeat([]byte("x"), MaxTxnBytes)
	big := map[string]current{"a": {rec: replica.Record{Value: huge, Timestamp: 1}, found: true}}
	if _, _, err := evaluate(&Txn{Success: []Op{{Kind: OpGet, Key: []byte("a")}}}, big, now); !errors.Is(err, ErrTxnTooLarge) {
		t.Fatalf("huge get: got %v, want ErrTxnTooLarge", err)
	}
}

func TestBatchCommandCodec(t *testing.T) {
	entries := []replica.Entry{
		{Partition: 3, Key: []byte("a"), Record: replica.Record{Value: []byte("1"), Timestamp: 5, NodeID: "n1"}},
		{Partition: 3, Key: []byte("bb"), Record: replica.Record{Timestamp: 6, NodeID: "n1", Tombstone: true}},
		{Partition: 3, Key: []byte("c"), Record: replica.Record{Value: bytes.Repeat([]byte("v"), 300), Timestamp: 7, NodeID: "n2", ExpiresAt: time.Unix(1_900_000_000, 9).UTC()}},
	}
	b := encodeBatch(entries)
	got, err := decodeCommand(nil, 3, b)
	if err != nil || len(got) != len(entries) {
		t.Fatalf("round trip: %d entries, %v", len(got), err)
	}
	for i := range entries {
		if got[i].Partition != 3 || !bytes.Equal(got[i].Key, entries[i].Key) || replica.Compare(got[i].Record, entries[i].Record) != 0 {
			t.Errorf("entry %d: got %+v, want %+v", i, got[i], entries[i])
		}
	}
	// A merge command decodes through the same entry point.
	m := encodeMerge([]byte("k"), entries[0].Record)
	if got, err := decodeCommand([]replica.Entry{{}}, 3, m); err != nil || len(got) != 2 || string(got[1].Key) != "k" {
		t.Fatalf("merge through decodeCommand: %+v %v", got, err)
	}
	for _, tc := range []struct {
		name string
		b    []byte
	}{
		{"nil", nil},
		{"unknown op", append([]byte{commandVersion, 9}, b[2:]...)},
		{"unknown version", append([]byte{2}, b[1:]...)},
		{"truncated", b[:len(b)-1]},
		{"trailing bytes", append(bytes.Clone(b), 0)},
		{"zero count", []byte{commandVersion, opBatch, 0}},
		{"count beyond data", []byte{commandVersion, opBatch, 5, 1, 'a'}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if got, err := decodeCommand(nil, 3, tc.b); !errors.Is(err, ErrCorruptCommand) || len(got) != 0 {
				t.Fatalf("got %d entries, %v; want ErrCorruptCommand and none", len(got), err)
			}
		})
	}
	// Every flipped byte is caught (record checksums, lengths) or decodes
	// to something else that re-encodes to what was decoded.
	for i := range b {
		bad := bytes.Clone(b)
		bad[i] ^= 0x40
		got, err := decodeCommand(nil, 3, bad)
		if err == nil && bytes.Equal(encodeBatch(got), b) {
			t.Fatalf("flipping byte %d went unnoticed", i)
		}
	}
}

func FuzzDecodeCommand(f *testing.F) {
	f.Add(encodeBatch([]replica.Entry{{Key: []byte("k"), Record: replica.Record{Value: []byte("v"), Timestamp: 1, NodeID: "n"}}}))
	f.Add(encodeMerge([]byte("k"), replica.Record{Value: []byte("v"), Timestamp: 1, NodeID: "n"}))
	f.Add([]byte{1, 2, 200})
	f.Fuzz(func(t *testing.T, b []byte) {
		got, err := decodeCommand(nil, 0, b)
		if err != nil {
			return
		}
		var again []byte
		if b[1] == opMerge {
			again = encodeMerge(got[0].Key, got[0].Record)
		} else {
			again = encodeBatch(got)
		}
		if !bytes.Equal(again, b) {
			t.Fatalf("accepted input does not re-encode identically")
		}
	})
}

// leaderTxn runs t on p's leader, following leadership as it moves (the
// Manager hands it to the partition's primary once the group formed).
func leaderTxn(ctx context.Context, mgrs map[string]*Manager, p uint32, t *Txn) (TxnResult, error) {
	tick := time.NewTicker(10 * time.Millisecond)
	defer tick.Stop()
	for {
		g := leaderOf(mgrs, p)
		if g != nil {
			res, err := g.Txn(ctx, t)
			if !errors.Is(err, ErrNotLeader) {
				return res, err
			}
		}
		select {
		case <-tick.C:
		case <-ctx.Done():
			return TxnResult{}, fmt.Errorf("no leader took the transaction: %w", ctx.Err())
		}
	}
}

// txnKeys returns n keys that all fall in partition p of c's ring.
func txnKeys(c *cluster, p uint32, n int) [][]byte {
	var out [][]byte
	for i := 0; len(out) < n; i++ {
		k := []byte("tk" + strconv.Itoa(i))
		if c.ring.Ring().PartitionOf(k) == p {
			out = append(out, k)
		}
	}
	return out
}

func TestGroupTxn(t *testing.T) {
	c, mgrs := newCluster(t, 2)
	ctx, cancel := context.WithTimeout(t.Context(), 30*time.Second)
	defer cancel()
	const p = 1
	keys := txnKeys(c, p, 3)
	a, b, d := keys[0], keys[1], keys[2]
	// Put-if-absent of two keys at once, with a TTL on one.
	exp := time.Now().Add(time.Hour)
	res, err := leaderTxn(ctx, mgrs, p, &Txn{
		Compares: []Compare{{Kind: CompareAbsent, Key: a}, {Kind: CompareAbsent, Key: b}},
		Success:  []Op{{Kind: OpSet, Key: a, Value: []byte("1")}, {Kind: OpSet, Key: b, Value: []byte("2"), ExpiresAt: exp}},
		Failure:  []Op{{Kind: OpGet, Key: a}},
	})
	if err != nil || !res.Succeeded || len(res.Results) != 2 {
		t.Fatalf("first txn: %+v %v", res, err)
	}
	// Again: the compares fail; the failure branch reads a.
	res, err = leaderTxn(ctx, mgrs, p, &Txn{
		Compares: []Compare{{Kind: CompareAbsent, Key: a}},
		Success:  []Op{{Kind: OpSet, Key: a, Value: []byte("x")}},
		Failure:  []Op{{Kind: OpGet, Key: a}, {Kind: OpGet, Key: b}, {Kind: OpGet, Key: d}},
	})
	if err != nil || res.Succeeded || len(res.Results) != 3 {
		t.Fatalf("second txn: %+v %v", res, err)
	}
	ra, rb := res.Results[0], res.Results[1]
	if !ra.Found || string(ra.Record.Value) != "1" || !rb.Found || string(rb.Record.Value) != "2" ||
		!rb.Record.ExpiresAt.Equal(exp) || res.Results[2].Found {
		t.Fatalf("failure branch gets: %+v", res.Results)
	}
	// Version compare: swap a and b only if neither changed.
	res, err = leaderTxn(ctx, mgrs, p, &Txn{
		Compares: []Compare{{Kind: CompareVersion, Key: a, Version: ra.Record.Timestamp}, {Kind: CompareVersion, Key: b, Version: rb.Record.Timestamp}},
		Success:  []Op{{Kind: OpSet, Key: a, Value: []byte("2")}, {Kind: OpSet, Key: b, Value: []byte("1")}, {Kind: OpDelete, Key: d}},
	})
	if err != nil || !res.Succeeded {
		t.Fatalf("swap: %+v %v", res, err)
	}
	// The old versions no longer match.
	res, err = leaderTxn(ctx, mgrs, p, &Txn{Compares: []Compare{{Kind: CompareVersion, Key: a, Version: ra.Record.Timestamp}}})
	if err != nil || res.Succeeded {
		t.Fatalf("stale version: %+v %v", res, err)
	}
	// Every replica applies the same records.
	waitFor(t, 10*time.Second, "replicas to apply the swap", func() error {
		for id, s := range c.stores {
			ga, err1 := s.Get(p, a)
			gb, err2 := s.Get(p, b)
			gd, err3 := s.Get(p, d)
			if err := errors.Join(err1, err2, err3); err != nil {
				return fmt.Errorf("%s: %w", id, err)
			}
			if string(ga.Value) != "2" || string(gb.Value) != "1" || !gd.Tombstone || !gb.ExpiresAt.IsZero() {
				return fmt.Errorf("%s: a %+v b %+v d %+v", id, ga, gb, gd)
			}
		}
		return nil
	})

	// A follower refuses and names the leader; an invalid transaction is
	// refused before anything else.
	for _, m := range mgrs {
		if fg, _ := m.Group(p); fg.raft.State() == raft.Follower {
			if _, err := fg.Txn(ctx, &Txn{Success: []Op{{Kind: OpGet, Key: a}}}); !errors.Is(err, ErrNotLeader) {
				t.Fatalf("txn on a follower: got %v, want ErrNotLeader", err)
			}
			break
		}
	}
	if _, err := leaderTxn(ctx, mgrs, p, &Txn{}); !errors.Is(err, ErrInvalidTxn) {
		t.Fatalf("empty txn: got %v, want ErrInvalidTxn", err)
	}
}

// Concurrent transfers between keys of one partition never create or
// lose money, and every read-only transaction sees the total intact
// (no fractured read), while single-key CAS increments run on a key of
// the same transactions.
func TestGroupTxnBank(t *testing.T) {
	c, mgrs := newCluster(t, 2)
	ctx, cancel := context.WithTimeout(t.Context(), 60*time.Second)
	defer cancel()
	const p, accounts, start = 0, 4, 100
	keys := txnKeys(c, p, accounts)
	init := &Txn{}
	for _, k := range keys {
		init.Success = append(init.Success, Op{Kind: OpSet, Key: k, Value: []byte(strconv.Itoa(start))})
	}
	if _, err := leaderTxn(ctx, mgrs, p, init); err != nil {
		t.Fatal(err)
	}
	readAll := &Txn{}
	for _, k := range keys {
		readAll.Success = append(readAll.Success, Op{Kind: OpGet, Key: k})
	}
	total := func() (int, error) {
		res, err := leaderTxn(ctx, mgrs, p, readAll)
		if err != nil {
			return 0, err
		}
		sum := 0
		for _, r := range res.Results {
			n, err := strconv.Atoi(string(r.Record.Value))
			if err != nil {
				return 0, fmt.Errorf("balance %q: %w", r.Record.Value, err)
			}
			sum += n
		}
		return sum, nil
	}
	var wg sync.WaitGroup
	var mu sync.Mutex
	committed := 0
	for w := range 4 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range 20 {
				from, to := keys[(w+i)%accounts], keys[(w+i+1)%accounts]
				res, err := leaderTxn(ctx, mgrs, p, &Txn{Success: []Op{{Kind: OpGet, Key: from}, {Kind: OpGet, Key: to}}})
				if err != nil {
					t.Error(err)
					return
				}
				fb, tb := res.Results[0].Record, res.Results[1].Record
				f, _ := strconv.Atoi(string(fb.Value))
				to2, _ := strconv.Atoi(string(tb.Value))
				res, err = leaderTxn(ctx, mgrs, p, &Txn{
					Compares: []Compare{{Kind: CompareVersion, Key: from, Version: fb.Timestamp}, {Kind: CompareVersion, Key: to, Version: tb.Timestamp}},
					Success:  []Op{{Kind: OpSet, Key: from, Value: []byte(strconv.Itoa(f - 1))}, {Kind: OpSet, Key: to, Value: []byte(strconv.Itoa(to2 + 1))}},
				})
				if err != nil {
					t.Error(err)
					return
				}
				if res.Succeeded {
					mu.Lock()
					committed++
					mu.Unlock()
				}
				if sum, err := total(); err != nil || sum != accounts*start {
					t.Errorf("total %d (%v), want %d", sum, err, accounts*start)
					return
				}
			}
		}()
	}
	wg.Wait()
	if committed == 0 {
		t.Fatal("no transfer committed")
	}
	if sum, err := total(); err != nil || sum != accounts*start {
		t.Fatalf("final total %d (%v), want %d", sum, err, accounts*start)
	}
	t.Logf("%d transfers committed", committed)
}

// A leader whose cluster has a member older than wire version 2 refuses
// a transaction that writes, and proposes nothing; a read-only one runs.
func TestGroupTxnNeedsUpgrade(t *testing.T) {
	c := &cluster{t: t, f: newFabric(), ring: &ringBox{}, stores: map[string]*replica.Store{}, drains: &drainSet{}}
	r := oneNodeRing(t)
	c.ring.r.Store(r)
	m := c.start("n1")
	waitFor(t, 10*time.Second, "a leader", func() error {
		if g, ok := m.Group(0); !ok || g.raft.State() != raft.Leader {
			return errors.New("not yet")
		}
		return nil
	})
	g, _ := m.Group(0)
	g.features = wireFeatures(1)
	ctx := t.Context()
	_, err := g.Txn(ctx, &Txn{Success: []Op{{Kind: OpSet, Key: []byte("k"), Value: []byte("v")}}})
	if !errors.Is(err, ErrNotUpgraded) {
		t.Fatalf("write txn: got %v, want ErrNotUpgraded", err)
	}
	if rec, err := c.stores["n1"].Get(0, []byte("k")); !errors.Is(err, replica.ErrNotFound) {
		t.Fatalf("refused txn wrote %+v (%v)", rec, err)
	}
	if res, err := g.Txn(ctx, &Txn{Success: []Op{{Kind: OpGet, Key: []byte("k")}}}); err != nil || res.Results[0].Found {
		t.Fatalf("read-only txn: %+v %v", res, err)
	}
	g.features = wireFeatures(2)
	if _, err := g.Txn(ctx, &Txn{Success: []Op{{Kind: OpSet, Key: []byte("k"), Value: []byte("v")}}}); err != nil {
		t.Fatalf("after the upgrade: %v", err)
	}
	// Transactions across partitions need wire 3: no intent is written
	// while a member of wire 2 could serve reads without reading through
	// it, and nothing is decided either.
	id := TxnID{Start: replica.MakeTimestamp(time.Now(), 0), Node: "n1"}
	prep := &PrepareRequest{ID: id, Anchor: 0, Deadline: time.Now().Add(time.Minute), Participants: []uint32{0, 1}, Keys: [][]byte{[]byte("k")}}
	if _, err := g.Prepare(ctx, prep); !errors.Is(err, ErrNotUpgraded) {
		t.Fatalf("prepare at wire 2: got %v, want ErrNotUpgraded", err)
	}
	if _, err := g.DecideTxn(ctx, id, false, 0, nil); !errors.Is(err, ErrNotUpgraded) {
		t.Fatalf("decide at wire 2: got %v, want ErrNotUpgraded", err)
	}
	if in, err := c.stores["n1"].Get(0, intentKey([]byte("k"))); !errors.Is(err, replica.ErrNotFound) {
		t.Fatalf("refused prepare wrote an intent %+v (%v)", in, err)
	}
	g.features = wireFeatures(3)
	if res, err := g.Prepare(ctx, prep); err != nil || !res.Holds {
		t.Fatalf("prepare at wire 3: %+v %v", res, err)
	}
}

// wireFeatures says every member speaks up to its version.
type wireFeatures int

func (w wireFeatures) SpeaksWire(v int) bool { return v <= int(w) }

// oneNodeRing is a ring of 2 partitions with n1 alone.
func oneNodeRing(t *testing.T) *ring.Ring {
	t.Helper()
	r, err := ring.New(ring.Config{Partitions: 2, ReplicationFactor: 3})
	if err != nil {
		t.Fatal(err)
	}
	if r, err = r.Join(ring.Member{ID: "n1"}); err != nil {
		t.Fatal(err)
	}
	return r
}
