package chaos

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"math/bits"
	"math/rand/v2"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"slices"
	"sort"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/cespare/xxhash/v2"

	"github.com/ringkv/ringkv/client"
)

// Config is one chaos run.
type Config struct {
	// Seed drives the fault schedule and the workers; printed at the start
	// and in the summary, so a failing run replays with the same seed.
	Seed uint64
	// Cluster and Workload configure those parts.
	Cluster  ClusterConfig
	Workload WorkloadConfig
	// Faults are the kinds drawn from (default AllFaults). With
	// EveryKind, each listed kind runs at least once (in a shuffled
	// order) before kinds are drawn at random.
	Faults    []FaultKind
	EveryKind bool
	// The run injects faults until at least MinOps operations (both
	// workloads) completed, MinFaults faults ran and, with EveryKind,
	// every kind ran, or until MaxDuration passed, whichever is first.
	MinOps      int64
	MinFaults   int
	MaxDuration time.Duration
	// Each fault lasts a random time in [HoldMin, HoldMax]; between faults
	// the cluster is healthy for [QuietMin, QuietMax]. Defaults 2-4s and
	// 1-2s.
	HoldMin, HoldMax   time.Duration
	QuietMin, QuietMax time.Duration
	// CheckTimeout bounds the linearizability check of one key. A key
	// the checker gives up on is unproven, and an unproven key fails the
	// run like an illegal one: a run passes only when every key is
	// proven. With the workload's bounds on each key (MaxOpsPerKey,
	// MaxUnknownPerKey) a key takes milliseconds; the summary's
	// slowest-key shows the margin. Default 20s.
	CheckTimeout time.Duration
	// ConvergeBound bounds the wait, after the final heal, for every
	// sampled QUORUM key to be on all its replicas. Default 60s.
	ConvergeBound time.Duration
	// ConvergeSample caps the QUORUM keys read from every replica for the
	// convergence check (all acknowledged keys are checked for loss).
	// Default 1000.
	ConvergeSample int
	// ProgressEvery, if positive, logs the operations completed so far at
	// that interval, so a run's log shows its rate through each fault.
	ProgressEvery time.Duration
	// OutDir receives the history, visualizations and node logs when the
	// run fails (empty: a directory under the test's temp dir, kept).
	OutDir string
}

func (c *Config) fill() {
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
	if c.CheckTimeout <= 0 {
		c.CheckTimeout = 20 * time.Second
	}
	if c.ConvergeBound <= 0 {
		c.ConvergeBound = 60 * time.Second
	}
	if c.ConvergeSample <= 0 {
		c.ConvergeSample = 1000
	}
	c.Workload.Seed = c.Seed
}

// Result is what a run found.
type Result struct {
	Seed     uint64
	Secure   bool             // the cluster spoke TLS (ClusterConfig.Secure)
	Ops      map[string]int64 // by kind/outcome, both workloads
	LinOps   int64            // linearizable operations completed
	Faults   map[string]int
	Lin      LinResult
	Acked    int      // QUORUM writes acknowledged
	Lost     int      // of them, not found with their value after heal
	LostKeys []string // some of them
	// Converged: every sampled key reached all its replicas within the
	// bound; Unconverged counts those that did not.
	Converged       bool
	Unconverged     int
	UnconvergedKeys []string // some of them, with the replicas lacking them
	ConvP50         time.Duration
	ConvP99         time.Duration
	// MembershipChanged: a node joined or left during the run.
	MembershipChanged bool
	ConvBound         time.Duration
	Duration          time.Duration
}

// TotalOps is every completed operation of both workloads.
func (r Result) TotalOps() int64 {
	var n int64
	for _, v := range r.Ops {
		n += v
	}
	return n
}

// OK is true when the run found nothing wrong.
func (r Result) OK() bool { return r.Lin.Linearizable() && r.Lost == 0 && r.Converged }

// Summary is the one-line summary of the run.
func (r Result) Summary() string {
	yes := map[bool]string{true: "yes", false: "no"}
	mode := "" // a plain run's line reads as it always did
	if r.Secure {
		mode = " secure=yes"
	}
	return fmt.Sprintf("chaos summary: seed=%d%s duration=%s ops=%d (%s) faults=%d (%s) linearizable=%s (keys=%d illegal=%d unproven=%d max-ops/key=%d max-unknown/key=%d check=%s slowest-key=%s) acked-quorum-writes=%d lost=%d converged=%s convergence p50=%s p99=%s bound=%s",
		r.Seed, mode, r.Duration.Round(time.Second), r.TotalOps(), formatCounts(r.Ops), sumFaults(r.Faults), formatFaults(r.Faults),
		yes[r.Lin.Linearizable()], r.Lin.Keys, r.Lin.Illegal, r.Lin.TimedOut, r.Lin.MaxOps, r.Lin.MaxUnknown,
		r.Lin.Took.Round(time.Millisecond), r.Lin.Slowest.Round(time.Millisecond), r.Acked, r.Lost, yes[r.Converged],
		r.ConvP50.Round(time.Millisecond), r.ConvP99.Round(time.Millisecond), r.ConvBound)
}

func formatCounts(m map[string]int64) string {
	keys := make([]string, 0, len(m))
	for k, v := range m {
		if v > 0 {
			keys = append(keys, k)
		}
	}
	sort.Strings(keys)
	parts := make([]string, len(keys))
	for i, k := range keys {
		parts[i] = fmt.Sprintf("%s=%d", k, m[k])
	}
	return strings.Join(parts, " ")
}

func formatFaults(m map[string]int) string {
	c := make(map[string]int64, len(m))
	for k, v := range m {
		c[k] = int64(v)
	}
	return formatCounts(c)
}

func sumFaults(m map[string]int) int {
	n := 0
	for _, v := range m {
		n += v
	}
	return n
}

// Run starts a cluster, runs the workloads under the fault schedule,
// heals everything (always, even when the test fails midway), and checks:
// linearizability of the linearizable history (porcupine, per key), no
// lost acknowledged QUORUM write, convergence of the QUORUM keys on their
// replicas. It logs the seed first and the summary last, and saves the
// evidence to OutDir when a check fails. It does not fail t for a check
// that fails: the caller decides from the Result.
func Run(t testing.TB, cfg Config) Result {
	t.Helper()
	cfg.fill()
	t.Logf("chaos: seed=%d (replay with RINGKV_CHAOS_SEED=%d)", cfg.Seed, cfg.Seed)
	begin := time.Now()
	c := StartCluster(t, cfg.Cluster)
	mode := "plaintext"
	if c.Secure() {
		mode = "secure: TLS on every port and peer link, gossip encrypted"
	}
	t.Logf("chaos: cluster of %d up in %s (%s)", len(c.Members()), time.Since(begin).Round(time.Millisecond), mode)

	healed := false
	heal := func() {
		if healed {
			return
		}
		healed = true
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		if err := c.HealAll(ctx); err != nil {
			t.Logf("chaos: heal: %v", err)
		}
	}
	t.Cleanup(heal) // even when the test fails midway
	defer heal()

	w, err := StartWorkload(c, cfg.Workload)
	if err != nil {
		t.Fatalf("%v", err)
	}
	stopped := false
	stop := func() {
		if !stopped {
			stopped = true
			w.Stop()
		}
	}
	defer stop()

	res := Result{Seed: cfg.Seed, Secure: c.Secure(), Faults: map[string]int{}, ConvBound: cfg.ConvergeBound}
	rng := rand.New(rand.NewPCG(cfg.Seed, 0x6e656d))
	nm := &Nemesis{c: c, rng: rng}
	pending := []FaultKind{}
	if cfg.EveryKind {
		pending = shuffledKinds(rng, cfg.Faults)
	}
	deadline := begin.Add(cfg.MaxDuration)
	ctx := context.Background()
	total := func() int64 { return w.Ops() + w.qOK.Load() + w.qFail.Load() + w.qUnk.Load() }
	if cfg.ProgressEvery > 0 {
		pctx, stopProgress := context.WithCancel(ctx)
		defer stopProgress()
		go func() {
			tk := time.NewTicker(cfg.ProgressEvery)
			defer tk.Stop()
			last := total()
			for {
				select {
				case <-pctx.Done():
					return
				case <-tk.C:
					n := total()
					t.Logf("chaos: %6.1fs progress: %d ops, %.0f ops/s", time.Since(begin).Seconds(), n, float64(n-last)/cfg.ProgressEvery.Seconds())
					last = n
				}
			}
		}()
	}
	for time.Now().Before(deadline) {
		if total() >= cfg.MinOps && sumFaults(res.Faults) >= cfg.MinFaults && len(pending) == 0 {
			break
		}
		wait(ctx, between(rng, cfg.QuietMin, cfg.QuietMax))
		var kind FaultKind
		if len(pending) > 0 {
			kind, pending = pending[0], pending[1:]
		} else {
			kind = cfg.Faults[rng.IntN(len(cfg.Faults))]
		}
		f, ok, err := nm.Inject(ctx, kind)
		if err != nil {
			t.Errorf("chaos: %s: %v", kind, err)
			break
		}
		if !ok {
			if kind == FaultLeave && cfg.EveryKind && res.Faults[FaultLeave.String()] == 0 && len(nm.joined) == 0 && res.Faults[FaultJoin.String()] == 0 {
				pending = append(pending, FaultLeave) // after the join still to come
			}
			continue
		}
		res.Faults[kind.String()]++
		t.Logf("chaos: %6.1fs fault %s: %s (ops so far %d)", time.Since(begin).Seconds(), kind, f.Desc, total())
		if f.Heal != nil {
			wait(ctx, between(rng, cfg.HoldMin, cfg.HoldMax))
			if err := f.Heal(ctx); err != nil {
				t.Errorf("chaos: heal %s: %v", kind, err)
				break
			}
		}
	}
	res.MembershipChanged = res.Faults[FaultJoin.String()]+res.Faults[FaultLeave.String()] > 0
	heal()
	healedAt := time.Now()
	stop()
	t.Logf("chaos: healed and stopped traffic at %.1fs", time.Since(begin).Seconds())
	res.Ops = w.Counts()
	res.LinOps = w.Ops()

	outDir := cfg.OutDir
	if outDir == "" {
		outDir = filepath.Join(t.TempDir(), "chaos")
	}
	if err := os.MkdirAll(outDir, 0o755); err != nil {
		t.Fatalf("chaos: out dir: %v", err)
	}

	c.WaitLeaders(120 * time.Second)
	acked := w.Acked()
	res.Acked = len(acked)
	conv := convergence(c, acked, cfg.ConvergeSample, cfg.ConvergeBound, healedAt)
	res.Lost, res.LostKeys = checkLost(t, c, acked, cfg.ConvergeBound)
	res.Converged = conv.unconverged == 0
	res.Unconverged = conv.unconverged
	res.UnconvergedKeys = conv.missing
	res.ConvP50, res.ConvP99 = conv.p50, conv.p99

	ops := w.History().Ops()
	res.Lin = CheckLinearizable(ops, cfg.CheckTimeout, outDir)
	res.Duration = time.Since(begin)
	if !res.OK() {
		saveEvidence(t, c, ops, res, outDir)
	}
	t.Logf("chaos: checked %d linearizable operations on %d keys in %s (at most %d operations and %d of unknown outcome on a key; slowest key %s, %s)",
		res.Lin.Ops, res.Lin.Keys, res.Lin.Took.Round(time.Millisecond), res.Lin.MaxOps, res.Lin.MaxUnknown, res.Lin.SlowestKey, res.Lin.Slowest.Round(time.Millisecond))
	t.Log(res.Summary())
	return res
}

func shuffledKinds(rng *rand.Rand, kinds []FaultKind) []FaultKind {
	s := slices.Clone(kinds)
	rng.Shuffle(len(s), func(i, j int) { s[i], s[j] = s[j], s[i] })
	// A leave needs a join before it.
	if i, j := slices.Index(s, FaultLeave), slices.Index(s, FaultJoin); i >= 0 && j > i {
		s[i], s[j] = s[j], s[i]
	}
	return s
}

func between(rng *rand.Rand, lo, hi time.Duration) time.Duration {
	if hi <= lo {
		return lo
	}
	return lo + time.Duration(rng.Int64N(int64(hi-lo)))
}

// wait blocks for d or until ctx ends.
func wait(ctx context.Context, d time.Duration) {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
	case <-ctx.Done():
	}
}

// checkLost reads every acknowledged QUORUM key at QUORUM (in batches,
// retrying failed reads until bound) and returns how many are absent or
// hold another value.
func checkLost(t testing.TB, c *Cluster, acked map[string]string, bound time.Duration) (int, []string) {
	cl, err := c.NewClient(client.WithRequestTimeout(10 * time.Second))
	if err != nil {
		t.Fatalf("%v", err)
	}
	defer func() { _ = cl.Close() }() // reads only
	keys := make([]string, 0, len(acked))
	for k := range acked {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	var lost []string
	deadline := time.Now().Add(bound)
	for len(keys) > 0 {
		var retry []string
		for start := 0; start < len(keys); start += 256 {
			chunk := keys[start:min(start+256, len(keys))]
			ops := make([]client.Op, len(chunk))
			for i, k := range chunk {
				ops[i] = client.GetOp(k, client.WithConsistency(client.Quorum))
			}
			ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
			results := cl.Batch(ctx, ops)
			cancel()
			for i, r := range results {
				switch {
				case r.Err == nil && string(r.Value) == acked[chunk[i]]:
				case r.Err == nil, errors.Is(r.Err, client.ErrNotFound):
					lost = append(lost, chunk[i])
				default:
					retry = append(retry, chunk[i])
				}
			}
		}
		if len(retry) > 0 && time.Now().After(deadline) {
			t.Errorf("chaos: %d acknowledged keys could not be read within %s", len(retry), bound)
			break
		}
		keys = retry
	}
	n := len(lost)
	if len(lost) > 10 {
		lost = lost[:10]
	}
	return n, lost
}

type convResult struct {
	unconverged int
	missing     []string // some unconverged keys and the replicas lacking them
	p50, p99    time.Duration
}

// convergence polls a sample of the acknowledged QUORUM keys on each of
// their replicas (HTTP get at ONE on the replica itself, which reads its
// own store first) until every replica holds the value or bound passes,
// and reports the time each key took, measured from healedAt.
//
// TODO(lead): once package antientropy lands, also require every replica
// of every partition to report the same Merkle root within the bound.
func convergence(c *Cluster, acked map[string]string, sample int, bound time.Duration, healedAt time.Time) convResult {
	keys := make([]string, 0, len(acked))
	for k := range acked {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	if len(keys) > sample {
		step := float64(len(keys)) / float64(sample)
		picked := make([]string, 0, sample)
		for i := range sample {
			picked = append(picked, keys[int(float64(i)*step)])
		}
		keys = picked
	}
	var times []time.Duration
	var missing []string
	deadline := time.Now().Add(bound)
	pending := keys
	for len(pending) > 0 && time.Now().Before(deadline) {
		prefs, err := preferences(c)
		if err != nil {
			wait(context.Background(), 500*time.Millisecond)
			continue
		}
		var mu sync.Mutex
		var next []string
		missing = nil
		sem := make(chan struct{}, 16)
		var wg sync.WaitGroup
		for _, k := range pending {
			wg.Add(1)
			sem <- struct{}{}
			go func() {
				defer wg.Done()
				defer func() { <-sem }()
				lacking := lackingReplicas(c, prefs, k, acked[k])
				mu.Lock()
				defer mu.Unlock()
				if len(lacking) == 0 {
					times = append(times, time.Since(healedAt))
				} else {
					next = append(next, k)
					if len(missing) < 10 {
						missing = append(missing, k+" on "+strings.Join(lacking, ","))
					}
				}
			}()
		}
		wg.Wait()
		pending = next
		if len(pending) > 0 {
			wait(context.Background(), 500*time.Millisecond)
		}
	}
	slices.Sort(times)
	r := convResult{unconverged: len(pending), missing: missing}
	if len(times) > 0 {
		r.p50 = times[len(times)/2]
		r.p99 = times[min(len(times)-1, len(times)*99/100)]
	}
	return r
}

// preferences returns each partition's preference list as the first
// running member sees it.
func preferences(c *Cluster) ([][]string, error) {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	var last error
	for _, nd := range c.RunningMembers() {
		s, err := c.clusterStatus(ctx, nd)
		if err != nil {
			last = err
			continue
		}
		out := make([][]string, len(s.Partitions))
		for i, p := range s.Partitions {
			out[i] = p.Preference
		}
		return out, nil
	}
	return nil, fmt.Errorf("chaos: no member answered: %w", last)
}

// lackingReplicas returns the replicas of key that do not answer value
// for a read at ONE through their own HTTP API.
func lackingReplicas(c *Cluster, prefs [][]string, key, value string) []string {
	if len(prefs) == 0 {
		return []string{"?"}
	}
	shift := 64 - bits.TrailingZeros(uint(len(prefs)))
	p := uint32(0)
	if shift < 64 {
		p = uint32(xxhash.Sum64String(key) >> shift)
	}
	var lacking []string
	for _, id := range prefs[p] {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		code, body, err := c.do(ctx, c.Node(id), http.MethodGet, "/api/get", url.Values{"key": {key}, "consistency": {"one"}}, nil)
		cancel()
		var out struct {
			Value string `json:"value"`
		}
		if err != nil || code != http.StatusOK || json.Unmarshal(body, &out) != nil || out.Value != value {
			lacking = append(lacking, fmt.Sprintf("%s(p%d,HTTP %d)", id, p, code))
		}
	}
	return lacking
}

// saveEvidence writes the history, the summary and every node's log to
// outDir and says where.
func saveEvidence(t testing.TB, c *Cluster, ops []Op, res Result, outDir string) {
	if b, err := json.Marshal(ops); err == nil {
		_ = os.WriteFile(filepath.Join(outDir, "history.json"), b, 0o644) // diagnostics: best effort
	}
	_ = os.WriteFile(filepath.Join(outDir, "summary.txt"), []byte(res.Summary()+"\nbad keys: "+strings.Join(res.Lin.BadKeys, ", ")+"\nlost keys: "+strings.Join(res.LostKeys, ", ")+"\nunconverged: "+strings.Join(res.UnconvergedKeys, "; ")+"\n"), 0o644) // best effort
	for _, nd := range c.TC.Nodes {
		if b, err := os.ReadFile(nd.LogPath); err == nil {
			_ = os.WriteFile(filepath.Join(outDir, nd.ID+".log"), b, 0o644) // best effort
		}
		if !nd.Running() {
			continue
		}
		// What the node thinks at the end: ring, liveness, Merkle roots,
		// and its counters (hints, anti-entropy exchanges by outcome).
		for name, path := range map[string]string{"status.json": "/api/cluster/status", "metrics.txt": "/metrics"} {
			ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
			code, body, err := c.do(ctx, nd, http.MethodGet, path, nil, nil)
			cancel()
			if err == nil && code == http.StatusOK {
				_ = os.WriteFile(filepath.Join(outDir, nd.ID+"."+name), body, 0o644) // best effort
			}
		}
	}
	t.Logf("chaos: evidence (history, porcupine visualizations, node logs) saved in %s", outDir)
}
