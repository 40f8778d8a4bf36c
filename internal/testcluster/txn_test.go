package testcluster

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"math/bits"
	"math/rand/v2"
	"net/http"
	"strconv"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/cespare/xxhash/v2"
)

// txnAnswer is /api/txn's answer.
type txnAnswer struct {
	Succeeded bool `json:"succeeded"`
	Results   []struct {
		Key     string `json:"key"`
		Found   bool   `json:"found"`
		Value   string `json:"value"`
		Version string `json:"version"`
	} `json:"results"`
	Error string `json:"error"`
}

func (nd *Node) txn(ctx context.Context, body map[string]any) (txnAnswer, int, error) {
	code, b, err := nd.Do(ctx, http.MethodPost, "/api/txn", nil, body)
	if err != nil {
		return txnAnswer{}, code, err
	}
	var out txnAnswer
	if err := json.Unmarshal(b, &out); err != nil {
		return out, code, fmt.Errorf("decode txn answer %q: %w", b, err)
	}
	return out, code, nil
}

func gets(keys []string) []map[string]any {
	out := make([]map[string]any, len(keys))
	for i, k := range keys {
		out[i] = map[string]any{"get": k}
	}
	return out
}

// onePartition finds n keys of one partition (by the partition count
// the node's stats show, and the ring's hash, as leaderOfKey).
func onePartition(ctx context.Context, t *testing.T, nd *Node, n int) []string {
	t.Helper()
	s, err := nd.Stats(ctx)
	if err != nil {
		t.Fatal(err)
	}
	parts := len(s.Groups)
	if parts == 0 {
		t.Fatal("the node's stats list no raft groups")
	}
	partition := func(k string) uint64 { return xxhash.Sum64String(k) >> (64 - (bits.Len(uint(parts)) - 1)) }
	keys := []string{"acct-0"}
	for i := 1; len(keys) < n; i++ {
		if k := "acct-" + strconv.Itoa(i); partition(k) == partition(keys[0]) {
			keys = append(keys, k)
		}
	}
	return keys
}

// Transfers between accounts of one partition, made as transactions
// through every node while the node leading the partition is killed and
// restarted, never create or lose money, every read-only transaction sees
// the total intact, and the restarted node ends up with the same balances.
func TestTxnBankAcrossFailover(t *testing.T) {
	bankAcrossFailover(t, 4, onePartition)
}

// TestTxnBankAcrossPartitionsFailover is the bank over accounts each in a
// partition of its own: every transfer and every read of the total is a
// transaction across partitions, and the node killed leads the first
// account's partition (the anchor of every transaction touching it) and
// coordinates some of the transactions in flight.
func TestTxnBankAcrossPartitionsFailover(t *testing.T) {
	bankAcrossFailover(t, 5, spreadPartitions)
}

// spreadPartitions finds n keys each in a partition of its own.
func spreadPartitions(ctx context.Context, t *testing.T, nd *Node, n int) []string {
	t.Helper()
	s, err := nd.Stats(ctx)
	if err != nil {
		t.Fatal(err)
	}
	parts := len(s.Groups)
	if parts < n {
		t.Fatalf("%d raft groups for %d keys", parts, n)
	}
	seen := map[uint64]bool{}
	var keys []string
	for i := 0; len(keys) < n; i++ {
		k := "acct-" + strconv.Itoa(i)
		if p := xxhash.Sum64String(k) >> (64 - (bits.Len(uint(parts)) - 1)); !seen[p] {
			seen[p] = true
			keys = append(keys, k)
		}
	}
	return keys
}

func bankAcrossFailover(t *testing.T, accounts int, place func(ctx context.Context, t *testing.T, nd *Node, n int) []string) {
	if testing.Short() {
		t.Skip("starts real processes")
	}
	c := Start(t, 3)
	c.WaitRaftReady(90*time.Second, 3)
	ctx, cancel := context.WithTimeout(t.Context(), 3*time.Minute)
	defer cancel()
	const start = 1000
	keys := place(ctx, t, c.Nodes[0], accounts)
	// Bad transactions are refused with 400 before anything is done.
	many := make([]string, 129)
	for i := range many {
		many[i] = "many-" + strconv.Itoa(i)
	}
	for _, bad := range []map[string]any{
		{},
		{"success": gets(many)},
		{"success": []map[string]any{{"get": keys[0]}, {"delete": keys[0]}}},
		{"compare": []map[string]any{{"key": keys[0]}}},
	} {
		if ans, code, err := c.Nodes[1].txn(ctx, bad); err != nil || code != http.StatusBadRequest || ans.Error == "" {
			t.Fatalf("bad transaction %v: got %d %+v %v, want 400 with an error", bad, code, ans, err)
		}
	}
	var sets []map[string]any
	var absent []map[string]any
	for _, k := range keys {
		sets = append(sets, map[string]any{"set": k, "value": strconv.Itoa(start)})
		absent = append(absent, map[string]any{"key": k, "absent": true})
	}
	if ans, code, err := c.Nodes[0].txn(ctx, map[string]any{"compare": absent, "success": sets}); err != nil || code != 200 || !ans.Succeeded {
		t.Fatalf("opening the accounts: %d %+v %v", code, ans, err)
	}

	var stopped atomic.Bool
	var down atomic.Pointer[Node]
	pick := func(rng *rand.Rand) *Node {
		for {
			nd := c.Nodes[rng.IntN(len(c.Nodes))]
			if nd != down.Load() {
				return nd
			}
		}
	}
	var committed, failedCompare, conflicts, unknown, readsChecked atomic.Int64
	var wg sync.WaitGroup
	errs := make(chan error, 16)
	report := func(err error) {
		select {
		case errs <- err:
		default:
		}
	}
	for w := range 4 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			rng := rand.New(rand.NewPCG(uint64(w), 7))
			for !stopped.Load() && ctx.Err() == nil {
				i := rng.IntN(accounts)
				from, to := keys[i], keys[(i+1+rng.IntN(accounts-1))%accounts]
				nd := pick(rng)
				read, code, err := nd.txn(ctx, map[string]any{"success": gets([]string{from, to})})
				if err != nil || code != 200 {
					continue // the node may be down or electing; try again
				}
				fb, _ := strconv.Atoi(read.Results[0].Value)
				tb, _ := strconv.Atoi(read.Results[1].Value)
				amount := 1 + rng.IntN(5)
				ans, code, err := nd.txn(ctx, map[string]any{
					"compare": []map[string]any{{"key": from, "version": read.Results[0].Version}, {"key": to, "version": read.Results[1].Version}},
					"success": []map[string]any{{"set": from, "value": strconv.Itoa(fb - amount)}, {"set": to, "value": strconv.Itoa(tb + amount)}},
				})
				switch {
				case err == nil && code == 200 && ans.Succeeded:
					committed.Add(1)
				case err == nil && code == 200:
					failedCompare.Add(1)
				case err == nil && code == http.StatusConflict:
					conflicts.Add(1) // nothing applied
				case code == http.StatusGatewayTimeout || err != nil:
					unknown.Add(1) // applied whole or not at all
				case code == http.StatusBadRequest:
					report(fmt.Errorf("transfer refused as bad input: %s", ans.Error))
					return
				}
			}
		}()
	}
	wg.Add(1)
	go func() {
		defer wg.Done()
		rng := rand.New(rand.NewPCG(99, 7))
		for !stopped.Load() && ctx.Err() == nil {
			ans, code, err := pick(rng).txn(ctx, map[string]any{"success": gets(keys)})
			if err != nil || code != 200 {
				continue
			}
			sum := 0
			for _, r := range ans.Results {
				n, err := strconv.Atoi(r.Value)
				if err != nil || !r.Found {
					report(fmt.Errorf("balance of %s: %+v", r.Key, r))
					return
				}
				sum += n
			}
			if sum != accounts*start {
				report(fmt.Errorf("read-only transaction saw a total of %d, want %d: %+v", sum, accounts*start, ans.Results))
				return
			}
			readsChecked.Add(1)
		}
	}()

	waitCount := func(what string, n *atomic.Int64, atLeast int64) {
		c.WaitFor(60*time.Second, what, func(context.Context) error {
			if got := n.Load(); got < atLeast {
				return fmt.Errorf("%d so far", got)
			}
			return nil
		})
	}
	waitCount("transfers before the kill", &committed, 30)
	// Kill the node that leads the accounts' partition.
	s, err := c.Nodes[0].Stats(ctx)
	if err != nil {
		t.Fatal(err)
	}
	victim := leaderOfKey(c, keys[0], s)
	if victim == nil {
		t.Fatalf("no node leads the partition of %s: %+v", keys[0], s.Groups)
	}
	down.Store(victim)
	victim.Kill()
	before := committed.Load()
	waitCount("transfers after the kill", &committed, before+30)
	victim.Start()
	down.Store(nil)
	waitCount("transfers after the restart", &committed, committed.Load()+30)
	stopped.Store(true)
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
	if readsChecked.Load() == 0 {
		t.Fatal("no read-only transaction was checked")
	}
	t.Logf("killed %s; %d transfers committed, %d failed their compares, %d conflicts, %d with an unknown outcome; %d totals checked",
		victim.ID, committed.Load(), failedCompare.Load(), conflicts.Load(), unknown.Load(), readsChecked.Load())

	// Every replica holds the same balances, the restarted one included.
	var final txnAnswer
	c.WaitFor(60*time.Second, "a final read", func(ctx context.Context) error {
		// The restarted node may still refuse (503) until it is ready.
		ans, code, err := c.Nodes[1].txn(ctx, map[string]any{"success": gets(keys)})
		if err != nil || code != 200 {
			return errors.Join(err, fmt.Errorf("%d %s", code, ans.Error))
		}
		final = ans
		return nil
	})
	c.WaitFor(60*time.Second, "the replicas to hold the final balances", func(ctx context.Context) error {
		for _, nd := range c.Nodes {
			for _, r := range final.Results {
				v, code, err := nd.Get(ctx, r.Key, "one")
				if err != nil || code != 200 || v != r.Value {
					return errors.Join(err, fmt.Errorf("%s: %s is %q (%d), want %q", nd.ID, r.Key, v, code, r.Value))
				}
			}
		}
		return nil
	})
}

// leaderOfKey names the node that leads key's partition in s (every node
// replicates every partition of a 3-node cluster, so s lists them all),
// nil if none does.
func leaderOfKey(c *Cluster, key string, s Stats) *Node {
	parts := len(s.Groups)
	if parts == 0 {
		return nil
	}
	p := uint32(xxhash.Sum64String(key) >> (64 - (bits.Len(uint(parts)) - 1)))
	for _, g := range s.Groups {
		if g.Partition != p {
			continue
		}
		for _, nd := range c.Nodes {
			if nd.ID == g.Leader {
				return nd
			}
		}
	}
	return nil
}
