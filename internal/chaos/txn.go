package chaos

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"math/rand/v2"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/cespare/xxhash/v2"

	"github.com/ringkv/ringkv/client"
	"github.com/ringkv/ringkv/internal/txncheck"
)

// Transactions under chaos (issue 20's must-shows): three workloads run
// together while the nemesis breaks the cluster, each through the Go
// client (which sends a transaction to the leader of its smallest key's
// partition) and through random members' HTTP /api/txn (that member
// coordinates it), so coordinators are killed, paused and cut off as
// well as leaders.
//
//   - Bank: accounts over at least 10 partitions; transfers read two
//     balances, then move an amount in one transaction that holds only if
//     neither account changed since (version compares); readers read every
//     balance in one transaction. Every balance is written with the tag
//     of the transfer that wrote it, and every transfer knows the tags it
//     replaced, so after the run each account's history is rebuilt from
//     its final value back to the start: every acknowledged transfer must
//     be in it, every transfer in one account's history in the other's
//     (atomicity), none that failed, and every read of all balances must
//     see the same total and no negative balance.
//   - List-append: transactions over 1-3 of a few keys, each holding a
//     list, read the lists and append a unique element to some, committed
//     only if no list changed since the read; the history goes to
//     txncheck (Elle's inference), which must find no cycle.
//   - Fractured reads: writers set 5 keys in 5 partitions to one fresh
//     value in one transaction; readers read the 5 in one transaction and
//     must see one writer's value on all of them.

// TxnConfig is one run of the transaction workloads under faults.
type TxnConfig struct {
	Seed    uint64
	Cluster ClusterConfig
	// Faults are drawn as Config's are (default AllFaults); with
	// EveryKind each runs at least once.
	Faults    []FaultKind
	EveryKind bool
	// The run injects faults until MinTxns transactions completed and
	// MinFaults faults ran (and every kind, with EveryKind), or until
	// MaxDuration.
	MinTxns     int64
	MinFaults   int
	MaxDuration time.Duration
	// Hold and quiet times of faults, as Config's (defaults 2-4 s, 1-2 s).
	HoldMin, HoldMax   time.Duration
	QuietMin, QuietMax time.Duration
	// Workers of each workload (defaults: 16 bank, 4 list-append, 4
	// fractured-read).
	BankWorkers, AppendWorkers, FracturedWorkers int
	// Accounts (default 20) spread over at least MinPartitions (10).
	Accounts, MinPartitions int
}

func (c *TxnConfig) fill() {
	if len(c.Faults) == 0 {
		c.Faults = AllFaults()
	}
	if c.MaxDuration <= 0 {
		c.MaxDuration = 2 * time.Minute
	}
	if c.HoldMin <= 0 {
		c.HoldMin = 2 * time.Second
	}
	if c.HoldMax < c.HoldMin {
		c.HoldMax = 2 * c.HoldMin
	}
	if c.QuietMin <= 0 {
		c.QuietMin = time.Second
	}
	if c.QuietMax < c.QuietMin {
		c.QuietMax = 2 * c.QuietMin
	}
	if c.BankWorkers <= 0 {
		c.BankWorkers = 16
	}
	if c.AppendWorkers <= 0 {
		c.AppendWorkers = 4
	}
	if c.FracturedWorkers <= 0 {
		c.FracturedWorkers = 4
	}
	if c.Accounts <= 0 {
		c.Accounts = 20
	}
	if c.MinPartitions <= 0 {
		c.MinPartitions = 10
	}
}

// TxnResult is what a run of the transaction workloads found.
type TxnResult struct {
	Seed     uint64
	Duration time.Duration
	Faults   map[string]int
	// Outcomes of transactions that write, by workload/outcome, and
	// reads done.
	Counts map[string]int64

	// Bank.
	BankReads       int64    // reads of every balance
	BankCommitted   int      // transfers in the rebuilt histories
	BankUnknownSeen int      // of them, answered "outcome unknown"
	BankViolations  []string // empty when the bank holds
	// List-append: txncheck's verdict.
	Append txncheck.Result
	// Fractured reads: reads checked and violations.
	FracturedReads      int64
	FracturedViolations []string
}

// OK reports whether every check passed.
func (r TxnResult) OK() bool {
	return len(r.BankViolations) == 0 && r.Append.Valid() && len(r.FracturedViolations) == 0
}

// Summary is the run's one-line summary.
func (r TxnResult) Summary() string {
	verdict := "PASS"
	if !r.OK() {
		verdict = "FAIL"
	}
	return fmt.Sprintf("chaos-txn %s seed=%d duration=%s faults=%d (%s) txns: %s; bank: %d reads of every balance, %d transfers committed (%d of them answered unknown), %d violations; append: %s; fractured: %d reads, %d violations",
		verdict, r.Seed, r.Duration.Round(time.Second), sumFaults(r.Faults), formatFaults(r.Faults), formatCounts(r.Counts),
		r.BankReads, r.BankCommitted, r.BankUnknownSeen, len(r.BankViolations), r.Append, r.FracturedReads, len(r.FracturedViolations))
}

// outcome classifies a transaction's error.
type outcome int

const (
	applied outcome = iota + 1
	notApplied
	unknownOutcome
)

// tkv is a transaction as the workloads build it.
type tkv struct {
	cmps      []tcmp
	then, els []top
}

type tcmp struct {
	key     string
	version uint64 // 0: absent
}

type top struct {
	get   bool
	key   string
	value string
}

type tget struct {
	found   bool
	value   string
	version uint64
}

type tans struct {
	succeeded bool
	gets      []tget // one per op of the branch that ran (writes zero)
}

// txnWorker runs transactions through its own client or, for a share of
// them, a random running member's HTTP API.
type txnWorker struct {
	c   *Cluster
	cl  *client.Client
	rng *rand.Rand
	id  int
}

func (w *txnWorker) run(ctx context.Context, t tkv) (tans, outcome, error) {
	if w.rng.IntN(4) == 0 {
		return w.runHTTP(ctx, t)
	}
	b := w.cl.Txn(ctx)
	var cmps []client.Cmp
	for _, c := range t.cmps {
		if c.version == 0 {
			cmps = append(cmps, client.Absent(c.key))
		} else {
			cmps = append(cmps, client.VersionEquals(c.key, c.version))
		}
	}
	ops := func(in []top) []client.Op {
		var out []client.Op
		for _, o := range in {
			if o.get {
				out = append(out, client.GetOp(o.key))
			} else {
				out = append(out, client.SetOp(o.key, []byte(o.value)))
			}
		}
		return out
	}
	resp, err := b.If(cmps...).Then(ops(t.then)...).Else(ops(t.els)...).Commit()
	if err != nil {
		switch {
		case isConflict(err):
			return tans{}, notApplied, err
		case errors.Is(err, client.ErrInvalidArgument), errors.Is(err, client.ErrNotImplemented):
			return tans{}, notApplied, fmt.Errorf("refused: %w", err)
		}
		return tans{}, unknownOutcome, err
	}
	out := tans{succeeded: resp.Succeeded}
	for _, r := range resp.Results {
		out.gets = append(out.gets, tget{found: r.Found, value: string(r.Value), version: r.Version})
	}
	return out, applied, nil
}

// isConflict reports a conflict (retryable, nothing applied): the
// client's ErrConflict, matched by its message so that this file does
// not depend on when the sentinel lands.
func isConflict(err error) bool {
	return err != nil && strings.Contains(err.Error(), "conflict")
}

func (w *txnWorker) runHTTP(ctx context.Context, t tkv) (tans, outcome, error) {
	members := w.c.RunningMembers()
	if len(members) == 0 {
		return tans{}, notApplied, errors.New("no member runs")
	}
	nd := members[w.rng.IntN(len(members))]
	type cmpJSON struct {
		Key     string `json:"key"`
		Absent  bool   `json:"absent,omitempty"`
		Version string `json:"version,omitempty"`
	}
	type opJSON struct {
		Get   *string `json:"get,omitempty"`
		Set   *string `json:"set,omitempty"`
		Value *string `json:"value,omitempty"`
	}
	body := struct {
		Compare []cmpJSON `json:"compare"`
		Success []opJSON  `json:"success"`
		Failure []opJSON  `json:"failure"`
	}{}
	for _, c := range t.cmps {
		if c.version == 0 {
			body.Compare = append(body.Compare, cmpJSON{Key: c.key, Absent: true})
		} else {
			body.Compare = append(body.Compare, cmpJSON{Key: c.key, Version: strconv.FormatUint(c.version, 10)})
		}
	}
	ops := func(in []top) []opJSON {
		out := []opJSON{}
		for _, o := range in {
			k, v := o.key, o.value
			if o.get {
				out = append(out, opJSON{Get: &k})
			} else {
				out = append(out, opJSON{Set: &k, Value: &v})
			}
		}
		return out
	}
	body.Success, body.Failure = ops(t.then), ops(t.els)
	code, b, err := w.c.do(ctx, nd, http.MethodPost, "/api/txn", nil, body)
	if err != nil {
		return tans{}, unknownOutcome, err
	}
	switch {
	case code == http.StatusConflict:
		return tans{}, notApplied, fmt.Errorf("conflict: %s", b)
	case code == http.StatusBadRequest || code == http.StatusNotImplemented:
		return tans{}, notApplied, fmt.Errorf("refused %d: %s", code, b)
	case code != http.StatusOK:
		return tans{}, unknownOutcome, fmt.Errorf("%s: %d %s", nd.ID, code, b)
	}
	var ans struct {
		Succeeded bool `json:"succeeded"`
		Results   []struct {
			Found   bool   `json:"found"`
			Value   string `json:"value"`
			Version string `json:"version"`
		} `json:"results"`
	}
	if err := json.Unmarshal(b, &ans); err != nil {
		return tans{}, unknownOutcome, fmt.Errorf("answer %q: %w", b, err)
	}
	out := tans{succeeded: ans.Succeeded}
	for _, r := range ans.Results {
		g := tget{found: r.Found, value: r.Value}
		if r.Version != "" {
			v, err := strconv.ParseUint(r.Version, 10, 64)
			if err != nil {
				return tans{}, unknownOutcome, fmt.Errorf("version %q: %w", r.Version, err)
			}
			g.version = v
		}
		out.gets = append(out.gets, g)
	}
	return out, applied, nil
}

// readAll reads keys in one transaction.
func (w *txnWorker) readAll(ctx context.Context, keys []string) ([]tget, error) {
	t := tkv{}
	for _, k := range keys {
		t.then = append(t.then, top{get: true, key: k})
	}
	ans, o, err := w.run(ctx, t)
	if o != applied {
		return nil, err
	}
	if len(ans.gets) != len(keys) {
		return nil, fmt.Errorf("%d results for %d gets", len(ans.gets), len(keys))
	}
	return ans.gets, nil
}

// partitionKeys returns n keys named prefix+i (i counting up from 0,
// skipping) that fall in at least minParts distinct partitions of
// parts, each key in a partition of its own while there are fewer than
// minParts.
func partitionKeys(prefix string, n, minParts, parts int) []string {
	shift := 64
	for p := parts; p > 1; p >>= 1 {
		shift--
	}
	seen := map[uint64]bool{}
	var out []string
	for i := 0; len(out) < n; i++ {
		k := fmt.Sprintf("%s%03d", prefix, i)
		p := uint64(0)
		if shift < 64 {
			p = xxhash.Sum64String(k) >> shift
		}
		if len(seen) < minParts && seen[p] {
			continue
		}
		seen[p] = true
		out = append(out, k)
	}
	return out
}

// counters counts outcomes by name.
type counters struct {
	mu sync.Mutex
	m  map[string]int64
}

func (c *counters) add(name string) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.m == nil {
		c.m = map[string]int64{}
	}
	c.m[name]++
}

func (c *counters) snapshot() map[string]int64 {
	c.mu.Lock()
	defer c.mu.Unlock()
	out := make(map[string]int64, len(c.m))
	for k, v := range c.m {
		out[k] = v
	}
	return out
}

func (c *counters) total() int64 {
	c.mu.Lock()
	defer c.mu.Unlock()
	n := int64(0)
	for _, v := range c.m {
		n += v
	}
	return n
}

func outcomeName(o outcome) string {
	switch o {
	case applied:
		return "ok"
	case notApplied:
		return "fail"
	default:
		return "unknown"
	}
}

// RunTxn runs the transaction workloads on a fresh cluster under faults
// and checks them.
func RunTxn(t testing.TB, cfg TxnConfig) TxnResult {
	t.Helper()
	cfg.fill()
	t.Logf("chaos-txn: seed=%d (replay with RINGKV_CHAOS_SEED=%d)", cfg.Seed, cfg.Seed)
	begin := time.Now()
	c := StartCluster(t, cfg.Cluster)
	t.Logf("chaos-txn: cluster of %d up in %s", len(c.Members()), time.Since(begin).Round(time.Millisecond))
	healed := false
	heal := func() {
		if healed {
			return
		}
		healed = true
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		if err := c.HealAll(ctx); err != nil {
			t.Logf("chaos-txn: heal: %v", err)
		}
	}
	t.Cleanup(heal)
	defer heal()

	setup, err := c.NewClient()
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = setup.Close() }()
	topo, err := setup.Topology()
	if err != nil {
		t.Fatalf("chaos-txn: topology: %v", err)
	}
	res := TxnResult{Seed: cfg.Seed, Faults: map[string]int{}}
	bank := newBank(partitionKeys("bank/acct-", cfg.Accounts, cfg.MinPartitions, topo.Partitions))
	app := &appendLoad{keys: 6}
	fr := &fractured{keys: partitionKeys("fr/k", 5, 5, topo.Partitions)}
	var cnt counters

	ctx, cancel := context.WithCancel(context.Background())
	setupCtx, setupCancel := context.WithTimeout(ctx, time.Minute)
	boot := &txnWorker{c: c, cl: setup, rng: rand.New(rand.NewPCG(cfg.Seed, 99)), id: -1}
	if err := bank.init(setupCtx, boot); err != nil {
		setupCancel()
		cancel()
		t.Fatalf("chaos-txn: bank setup: %v", err)
	}
	setupCancel()

	var wg sync.WaitGroup
	start := func(n int, seedTag uint64, loop func(ctx context.Context, w *txnWorker)) {
		for i := range n {
			cl, err := c.NewClient()
			if err != nil {
				cancel()
				t.Fatal(err)
			}
			w := &txnWorker{c: c, cl: cl, rng: rand.New(rand.NewPCG(cfg.Seed, seedTag<<16|uint64(i))), id: int(seedTag)*1000 + i}
			wg.Add(1)
			go func() {
				defer wg.Done()
				defer func() { _ = cl.Close() }()
				loop(ctx, w)
			}()
		}
	}
	start(cfg.BankWorkers, 1, func(ctx context.Context, w *txnWorker) { bank.worker(ctx, w, &cnt) })
	start(cfg.AppendWorkers, 2, func(ctx context.Context, w *txnWorker) { app.worker(ctx, w, &cnt) })
	start(cfg.FracturedWorkers, 3, func(ctx context.Context, w *txnWorker) { fr.worker(ctx, w, &cnt) })
	stopped := false
	stop := func() {
		if !stopped {
			stopped = true
			cancel()
			wg.Wait()
		}
	}
	defer stop()

	runFaults(t, c, faultPlan{seed: cfg.Seed, faults: cfg.Faults, everyKind: cfg.EveryKind, minOps: cfg.MinTxns, minFaults: cfg.MinFaults,
		deadline: begin.Add(cfg.MaxDuration), holdMin: cfg.HoldMin, holdMax: cfg.HoldMax, quietMin: cfg.QuietMin, quietMax: cfg.QuietMax},
		cnt.total, res.Faults, begin)
	heal()
	stop()
	t.Logf("chaos-txn: healed and stopped traffic at %.1fs", time.Since(begin).Seconds())
	c.WaitLeaders(120 * time.Second)

	res.Counts = cnt.snapshot()
	// The final read of every balance, once the cluster is whole: every
	// intent left by a coordinator that died is resolved by then or by
	// the reads themselves.
	finalCtx, finalCancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer finalCancel()
	final, err := bank.finalRead(finalCtx, boot)
	if err != nil {
		res.BankViolations = append(res.BankViolations, fmt.Sprintf("final read: %v", err))
	} else {
		res.BankCommitted, res.BankUnknownSeen, res.BankViolations = bank.check(final)
	}
	res.BankReads = bank.reads.Load()
	res.BankViolations = append(bank.violations(), res.BankViolations...)
	if err := app.finalRead(finalCtx, boot); err != nil {
		t.Logf("chaos-txn: final read of the lists: %v", err)
	}
	res.Append = txncheck.Check(app.history())
	res.FracturedReads = fr.reads.Load()
	res.FracturedViolations = fr.violations()
	res.Duration = time.Since(begin)
	for _, v := range res.BankViolations[:min(len(res.BankViolations), 20)] {
		t.Logf("chaos-txn: bank: %s", v)
	}
	for _, v := range res.FracturedViolations[:min(len(res.FracturedViolations), 20)] {
		t.Logf("chaos-txn: fractured: %s", v)
	}
	t.Log(res.Summary())
	return res
}

// faultPlan is the fault schedule of a run.
type faultPlan struct {
	seed               uint64
	faults             []FaultKind
	everyKind          bool
	minOps             int64
	minFaults          int
	deadline           time.Time
	holdMin, holdMax   time.Duration
	quietMin, quietMax time.Duration
}

// runFaults injects faults one at a time until the plan is met, counting
// them in faults; it returns with every fault healed but the last
// heal's (the caller's HealAll).
func runFaults(t testing.TB, c *Cluster, plan faultPlan, ops func() int64, faults map[string]int, begin time.Time) {
	rng := rand.New(rand.NewPCG(plan.seed, 0x6e656d))
	nm := &Nemesis{c: c, rng: rng}
	var pending []FaultKind
	if plan.everyKind {
		pending = shuffledKinds(rng, plan.faults)
	}
	ctx := context.Background()
	for time.Now().Before(plan.deadline) {
		if ops() >= plan.minOps && sumFaults(faults) >= plan.minFaults && len(pending) == 0 {
			break
		}
		wait(ctx, between(rng, plan.quietMin, plan.quietMax))
		var kind FaultKind
		if len(pending) > 0 {
			kind, pending = pending[0], pending[1:]
		} else {
			kind = plan.faults[rng.IntN(len(plan.faults))]
		}
		f, ok, err := nm.Inject(ctx, kind)
		if err != nil {
			t.Errorf("chaos: %s: %v", kind, err)
			return
		}
		if !ok {
			if kind == FaultLeave && plan.everyKind && faults[FaultLeave.String()] == 0 && len(nm.joined) == 0 && faults[FaultJoin.String()] == 0 {
				pending = append(pending, FaultLeave)
			}
			continue
		}
		faults[kind.String()]++
		t.Logf("chaos: %6.1fs fault %s: %s (ops so far %d)", time.Since(begin).Seconds(), kind, f.Desc, ops())
		if f.Heal != nil {
			wait(ctx, between(rng, plan.holdMin, plan.holdMax))
			if err := f.Heal(ctx); err != nil {
				t.Errorf("chaos: heal %s: %v", kind, err)
				return
			}
		}
	}
}

// ---- bank ----

const bankInitial = 100

// bankTransfer is one transfer as sent: the tag it writes, the accounts,
// the amount, the tags it read (and replaces), and what came back.
type bankTransfer struct {
	tag      string
	from, to string
	amount   int
	pred     map[string]string // account -> tag replaced
	wrote    map[string]int    // account -> balance written
	outcome  outcome
	declined bool // applied, but the compares failed: nothing written
}

type bank struct {
	accounts []string
	mu       sync.Mutex
	byTag    map[string]*bankTransfer
	bad      []string
	reads    atomic.Int64
}

func newBank(accounts []string) *bank {
	return &bank{accounts: accounts, byTag: map[string]*bankTransfer{}}
}

func bankValue(balance int, tag string) string { return fmt.Sprintf("%d/%s", balance, tag) }

func parseBankValue(v string) (int, string, error) {
	b, tag, ok := strings.Cut(v, "/")
	if !ok {
		return 0, "", fmt.Errorf("balance %q has no tag", v)
	}
	n, err := strconv.Atoi(b)
	if err != nil {
		return 0, "", fmt.Errorf("balance %q: %w", v, err)
	}
	return n, tag, nil
}

func (b *bank) violate(format string, args ...any) {
	b.mu.Lock()
	defer b.mu.Unlock()
	if len(b.bad) < 1000 {
		b.bad = append(b.bad, fmt.Sprintf(format, args...))
	}
}

func (b *bank) violations() []string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return append([]string(nil), b.bad...)
}

// init sets every account to its initial balance in one transaction.
func (b *bank) init(ctx context.Context, w *txnWorker) error {
	t := tkv{}
	for _, a := range b.accounts {
		t.then = append(t.then, top{key: a, value: bankValue(bankInitial, "init")})
	}
	for {
		_, o, err := w.run(ctx, t)
		if o == applied {
			return nil
		}
		if ctx.Err() != nil {
			return fmt.Errorf("%w (last: %w)", ctx.Err(), err)
		}
	}
}

// readBalances reads every account in one transaction and checks the
// total and that no balance is negative.
func (b *bank) readBalances(ctx context.Context, w *txnWorker) ([]tget, error) {
	gets, err := w.readAll(ctx, b.accounts)
	if err != nil {
		return nil, err
	}
	total := 0
	for i, g := range gets {
		if !g.found {
			b.violate("read of every balance: %s absent", b.accounts[i])
			continue
		}
		n, _, err := parseBankValue(g.value)
		if err != nil {
			b.violate("read of every balance: %v", err)
			continue
		}
		if n < 0 {
			b.violate("read of every balance: %s is %d", b.accounts[i], n)
		}
		total += n
	}
	if want := bankInitial * len(b.accounts); total != want {
		b.violate("read of every balance: total %d, want %d (%v)", total, want, gets)
	}
	b.reads.Add(1)
	return gets, nil
}

func (b *bank) worker(ctx context.Context, w *txnWorker, cnt *counters) {
	seq := 0
	for ctx.Err() == nil {
		opCtx, cancel := context.WithTimeout(ctx, 10*time.Second)
		if w.rng.IntN(3) == 0 {
			if _, err := b.readBalances(opCtx, w); err == nil {
				cnt.add("bank/read-all")
			}
			cancel()
			continue
		}
		seq++
		b.transfer(opCtx, w, fmt.Sprintf("w%d-%d", w.id, seq), cnt)
		cancel()
	}
}

func (b *bank) transfer(ctx context.Context, w *txnWorker, tag string, cnt *counters) {
	i := w.rng.IntN(len(b.accounts))
	j := w.rng.IntN(len(b.accounts) - 1)
	if j >= i {
		j++
	}
	from, to := b.accounts[i], b.accounts[j]
	gets, err := w.readAll(ctx, []string{from, to})
	if err != nil {
		return
	}
	tr := &bankTransfer{tag: tag, from: from, to: to, pred: map[string]string{}, wrote: map[string]int{}}
	var bal [2]int
	for k, g := range gets {
		acct := []string{from, to}[k]
		if !g.found {
			b.violate("transfer %s: %s absent", tag, acct)
			return
		}
		n, ptag, err := parseBankValue(g.value)
		if err != nil {
			b.violate("transfer %s: %v", tag, err)
			return
		}
		if n < 0 {
			b.violate("transfer %s: %s read as %d", tag, acct, n)
		}
		bal[k], tr.pred[acct] = n, ptag
	}
	if bal[0] == 0 {
		return
	}
	tr.amount = 1 + w.rng.IntN(min(bal[0], 30))
	tr.wrote[from], tr.wrote[to] = bal[0]-tr.amount, bal[1]+tr.amount
	t := tkv{
		cmps: []tcmp{{key: from, version: gets[0].version}, {key: to, version: gets[1].version}},
		then: []top{{key: from, value: bankValue(tr.wrote[from], tag)}, {key: to, value: bankValue(tr.wrote[to], tag)}},
		els:  []top{{get: true, key: from}, {get: true, key: to}},
	}
	ans, o, _ := w.run(ctx, t)
	tr.outcome = o
	tr.declined = o == applied && !ans.succeeded
	b.mu.Lock()
	b.byTag[tag] = tr
	b.mu.Unlock()
	name := "bank/transfer-" + outcomeName(o)
	if tr.declined {
		name = "bank/transfer-declined"
	}
	cnt.add(name)
}

func (b *bank) finalRead(ctx context.Context, w *txnWorker) ([]tget, error) {
	var last error
	for ctx.Err() == nil {
		gets, err := b.readBalances(ctx, w)
		if err == nil {
			return gets, nil
		}
		last = err
	}
	return nil, fmt.Errorf("%w (last: %w)", ctx.Err(), last)
}

// check rebuilds each account's history from its final value back to its
// initial one and checks every transfer against them.
func (b *bank) check(final []tget) (committed, unknownSeen int, bad []string) {
	b.mu.Lock()
	defer b.mu.Unlock()
	in := map[string]map[string]bool{} // account -> tags in its history
	for i, acct := range b.accounts {
		in[acct] = map[string]bool{}
		_, tag, err := parseBankValue(final[i].value)
		if err != nil {
			bad = append(bad, fmt.Sprintf("final %s: %v", acct, err))
			continue
		}
		for tag != "init" {
			tr, ok := b.byTag[tag]
			if !ok {
				bad = append(bad, fmt.Sprintf("%s holds tag %q, written by no transfer", acct, tag))
				break
			}
			if tr.from != acct && tr.to != acct {
				bad = append(bad, fmt.Sprintf("%s holds tag %q of a transfer between %s and %s", acct, tag, tr.from, tr.to))
				break
			}
			if in[acct][tag] {
				bad = append(bad, fmt.Sprintf("%s: its history loops at %q", acct, tag))
				break
			}
			in[acct][tag] = true
			tag = tr.pred[acct]
		}
	}
	for tag, tr := range b.byTag {
		inFrom, inTo := in[tr.from][tag], in[tr.to][tag]
		switch {
		case inFrom != inTo:
			bad = append(bad, fmt.Sprintf("transfer %s (%s -> %s, %d, %s) applied to one account only: %s %v, %s %v", tag, tr.from, tr.to, tr.amount, outcomeName(tr.outcome), tr.from, inFrom, tr.to, inTo))
		case inFrom && (tr.outcome == notApplied || tr.declined):
			bad = append(bad, fmt.Sprintf("transfer %s (%s) took effect though it was answered not applied (declined %v)", tag, outcomeName(tr.outcome), tr.declined))
		case !inFrom && tr.outcome == applied && !tr.declined:
			bad = append(bad, fmt.Sprintf("transfer %s (%s -> %s, %d) was acknowledged and is lost", tag, tr.from, tr.to, tr.amount))
		case inFrom:
			committed++
			if tr.outcome == unknownOutcome {
				unknownSeen++
			}
		}
	}
	// The final balances are the initial ones plus the committed
	// transfers.
	for i, acct := range b.accounts {
		want := bankInitial
		for tag := range in[acct] {
			tr := b.byTag[tag]
			if tr.from == acct {
				want -= tr.amount
			} else {
				want += tr.amount
			}
		}
		if n, _, err := parseBankValue(final[i].value); err == nil && n != want {
			bad = append(bad, fmt.Sprintf("%s ends at %d; initial plus its committed transfers is %d", acct, n, want))
		}
	}
	return committed, unknownSeen, bad
}

// ---- list-append ----

type appendLoad struct {
	keys int
	next atomic.Int64
	mu   sync.Mutex
	h    []txncheck.Txn
}

func (a *appendLoad) record(t txncheck.Txn) {
	a.mu.Lock()
	defer a.mu.Unlock()
	a.h = append(a.h, t)
}

func (a *appendLoad) history() []txncheck.Txn {
	a.mu.Lock()
	defer a.mu.Unlock()
	return append([]txncheck.Txn(nil), a.h...)
}

// generation is the key set's generation: keys are renamed every 2,000
// appends so that lists stay short.
func (a *appendLoad) key(gen int64, i int) string { return fmt.Sprintf("la/g%d/k%d", gen, i) }

func parseList(g tget) ([]int, error) {
	if !g.found || g.value == "" {
		return []int{}, nil
	}
	parts := strings.Split(g.value, ",")
	out := make([]int, len(parts))
	for i, p := range parts {
		n, err := strconv.Atoi(p)
		if err != nil {
			return nil, fmt.Errorf("list %q: %w", g.value, err)
		}
		out[i] = n
	}
	return out, nil
}

func (a *appendLoad) worker(ctx context.Context, w *txnWorker, cnt *counters) {
	for ctx.Err() == nil {
		opCtx, cancel := context.WithTimeout(ctx, 10*time.Second)
		a.one(opCtx, w, cnt)
		cancel()
	}
}

func (a *appendLoad) one(ctx context.Context, w *txnWorker, cnt *counters) {
	gen := a.next.Load() / 2000
	n := 1 + w.rng.IntN(3)
	perm := w.rng.Perm(a.keys)[:n]
	keys := make([]string, n)
	for i, p := range perm {
		keys[i] = a.key(gen, p)
	}
	inv := time.Now()
	gets, err := w.readAll(ctx, keys)
	if err != nil {
		return
	}
	lists := make([][]int, n)
	read := txncheck.Txn{Invoke: inv, Complete: time.Now(), Outcome: txncheck.OK, Label: fmt.Sprintf("w%d read", w.id)}
	for i, g := range gets {
		l, err := parseList(g)
		if err != nil {
			read.Mops = append(read.Mops, txncheck.Mop{Key: keys[i], Read: []int{-1}}) // garbage: flagged
			continue
		}
		lists[i] = l
		read.Mops = append(read.Mops, txncheck.Mop{Key: keys[i], Read: l})
	}
	a.record(read)
	cnt.add("append/read")
	t := tkv{}
	var appends []txncheck.Mop
	for i, k := range keys {
		t.cmps = append(t.cmps, tcmp{key: k, version: gets[i].version})
		t.els = append(t.els, top{get: true, key: k})
		if i == 0 || w.rng.IntN(2) == 0 {
			e := int(a.next.Add(1))
			v := strconv.Itoa(e)
			if gets[i].found && gets[i].value != "" {
				v = gets[i].value + "," + v
			}
			t.then = append(t.then, top{key: k, value: v})
			appends = append(appends, txncheck.Mop{Key: k, Append: true, Value: e})
		}
	}
	inv = time.Now()
	ans, o, _ := w.run(ctx, t)
	rec := txncheck.Txn{Invoke: inv, Complete: time.Now(), Label: fmt.Sprintf("w%d", w.id)}
	switch {
	case o == applied && ans.succeeded:
		// The compares held: the lists were as read at the commit.
		rec.Outcome = txncheck.OK
		for i, k := range keys {
			rec.Mops = append(rec.Mops, txncheck.Mop{Key: k, Read: lists[i]})
		}
		rec.Mops = append(rec.Mops, appends...)
	case o == applied:
		rec.Outcome = txncheck.OK
		for i, g := range ans.gets {
			l, err := parseList(g)
			if err != nil {
				l = []int{-1}
			}
			rec.Mops = append(rec.Mops, txncheck.Mop{Key: keys[i], Read: l})
		}
	case o == notApplied:
		rec.Outcome = txncheck.Fail
		rec.Mops = appends
	default:
		rec.Outcome = txncheck.Unknown
		rec.Mops = appends
	}
	a.record(rec)
	cnt.add("append/txn-" + outcomeName(o))
}

// finalRead reads every key of every generation once the cluster is
// whole, so that the last appends are placed in their lists.
func (a *appendLoad) finalRead(ctx context.Context, w *txnWorker) error {
	for gen := int64(0); gen <= a.next.Load()/2000; gen++ {
		keys := make([]string, a.keys)
		for i := range keys {
			keys[i] = a.key(gen, i)
		}
		inv := time.Now()
		var gets []tget
		var err error
		for ctx.Err() == nil {
			if gets, err = w.readAll(ctx, keys); err == nil {
				break
			}
		}
		if err != nil {
			return err
		}
		rec := txncheck.Txn{Invoke: inv, Complete: time.Now(), Outcome: txncheck.OK, Label: "final read"}
		for i, g := range gets {
			l, err := parseList(g)
			if err != nil {
				l = []int{-1}
			}
			rec.Mops = append(rec.Mops, txncheck.Mop{Key: keys[i], Read: l})
		}
		a.record(rec)
	}
	return nil
}

// ---- fractured reads ----

type fractured struct {
	keys  []string
	reads atomic.Int64
	mu    sync.Mutex
	bad   []string
}

func (f *fractured) worker(ctx context.Context, w *txnWorker, cnt *counters) {
	seq := 0
	for ctx.Err() == nil {
		opCtx, cancel := context.WithTimeout(ctx, 10*time.Second)
		if w.rng.IntN(2) == 0 {
			seq++
			v := fmt.Sprintf("w%d-%d", w.id, seq)
			t := tkv{}
			for _, k := range f.keys {
				t.then = append(t.then, top{key: k, value: v})
			}
			_, o, _ := w.run(opCtx, t)
			cnt.add("fractured/write-" + outcomeName(o))
		} else if gets, err := w.readAll(opCtx, f.keys); err == nil {
			f.reads.Add(1)
			cnt.add("fractured/read")
			for _, g := range gets[1:] {
				if g.found != gets[0].found || g.value != gets[0].value {
					f.mu.Lock()
					if len(f.bad) < 1000 {
						f.bad = append(f.bad, fmt.Sprintf("one read saw %v", gets))
					}
					f.mu.Unlock()
					break
				}
			}
		}
		cancel()
	}
}

func (f *fractured) violations() []string {
	f.mu.Lock()
	defer f.mu.Unlock()
	return append([]string(nil), f.bad...)
}
