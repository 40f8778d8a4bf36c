package chaos

import (
	"os"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/ringkv/ringkv/internal/hosts"
)

// envUint reads a uint64 environment variable, def when unset.
func envUint(t *testing.T, name string, def uint64) uint64 {
	t.Helper()
	s := os.Getenv(name)
	if s == "" {
		return def
	}
	v, err := strconv.ParseUint(s, 10, 64)
	if err != nil {
		t.Fatalf("%s=%q: %v", name, s, err)
	}
	return v
}

func seed(t *testing.T) uint64 {
	return envUint(t, "RINGKV_CHAOS_SEED", uint64(time.Now().UnixNano()))
}

func outDir(t *testing.T) string {
	if d := os.Getenv("RINGKV_CHAOS_OUT"); d != "" {
		return d
	}
	return ""
}

// TestChaos is the chaos run: by default the CI mode (every fault kind at
// least once, at least 20,000 operations, bounded to about three
// minutes); with RINGKV_CHAOS_LONG=1 the long mode (at least 1,000,000
// linearizable operations and 200 faults, as issue 21 asks; RINGKV_CHAOS_OPS overrides the
// operation count). RINGKV_CHAOS_SEED replays a schedule;
// RINGKV_CHAOS_OUT keeps the evidence of a failure in that directory.
// RINGKV_CHAOS_SECURE=1 runs either mode against a secure cluster (TLS on
// every port and peer link, through the proxies; ClusterConfig.Secure).
func TestChaos(t *testing.T) {
	cfg := Config{
		Seed:      seed(t),
		Cluster:   ClusterConfig{Nodes: 5, Spares: 1, Secure: os.Getenv("RINGKV_CHAOS_SECURE") == "1"},
		Workload:  WorkloadConfig{Workers: 32, ActiveKeys: 64, QuorumWorkers: 8, QuorumInterval: 20 * time.Millisecond},
		EveryKind: true,
		OutDir:    outDir(t),
	}
	if os.Getenv("RINGKV_CHAOS_LONG") == "1" {
		cfg.Cluster.Spares = 12
		cfg.MinOps = int64(envUint(t, "RINGKV_CHAOS_OPS", 1_000_000))
		cfg.MinFaults = 200
		cfg.MaxDuration = 6 * time.Hour
		cfg.Workload.Workers = 48
		cfg.ConvergeSample = 5000
		// With at most 3 writes of unknown outcome and 100 operations on
		// a key (WorkloadConfig) a key checks in milliseconds; 10 minutes
		// is a margin of orders of magnitude. A key still unproven after
		// it fails the run.
		cfg.CheckTimeout = 10 * time.Minute
	} else {
		cfg.MinOps = int64(envUint(t, "RINGKV_CHAOS_OPS", 20_000))
		cfg.MaxDuration = 100 * time.Second
		cfg.ConvergeBound = 30 * time.Second
		cfg.HoldMin, cfg.HoldMax = 2*time.Second, 3*time.Second
		cfg.QuietMin, cfg.QuietMax = 500*time.Millisecond, time.Second
		// With 64 active keys one key of a 28,563-operation run (seed
		// 1796182003144874207) outran the checker's 20 s. Twice the keys
		// halve the operations overlapping on each, which is what makes
		// porcupine's search grow, and each key gets 60 s (the slowest
		// key now takes well under a second). An unproven key still
		// fails the run.
		cfg.Workload.ActiveKeys = 128
		cfg.CheckTimeout = time.Minute
	}
	res := Run(t, cfg)
	checkLinLost(t, res)
	if !res.Converged {
		t.Errorf("%d sampled QUORUM keys did not reach all their replicas within %s (membership changed: %v): %v", res.Unconverged, res.ConvBound, res.MembershipChanged, res.UnconvergedKeys)
	}
	if got := res.TotalOps(); got < cfg.MinOps {
		t.Errorf("ran %d operations, want at least %d", got, cfg.MinOps)
	}
	for _, k := range cfg.Faults {
		if res.Faults[k.String()] == 0 && len(cfg.Faults) > 0 {
			t.Errorf("fault %s never ran", k)
		}
	}
}

// TestChaosPartitionSplit doubles the ring's partitions under the chaos
// workload, between a kill and an isolation, on three nodes: porcupine
// checks the linearizable history across the split, and no acknowledged
// QUORUM write may be lost (docs/ARCHITECTURE.md, "Partition split").
// Each split doubles the groups for the rest of the run, so the run
// stops after a few faults.
func TestChaosPartitionSplit(t *testing.T) {
	cfg := Config{
		Seed:        seed(t),
		Cluster:     ClusterConfig{Nodes: 3, Spares: 0, Partitions: 8},
		Workload:    WorkloadConfig{Workers: 16, ActiveKeys: 128, QuorumWorkers: 4, QuorumInterval: 20 * time.Millisecond},
		Faults:      []FaultKind{FaultPartitionSplit, FaultKill, FaultIsolate},
		EveryKind:   true,
		MinOps:      int64(envUint(t, "RINGKV_CHAOS_OPS", 5000)),
		MinFaults:   3,
		MaxDuration: 90 * time.Second,
		HoldMin:     2 * time.Second, HoldMax: 3 * time.Second,
		QuietMin: time.Second, QuietMax: 2 * time.Second,
		ConvergeBound: 30 * time.Second,
		CheckTimeout:  time.Minute,
		ProgressEvery: 5 * time.Second,
		OutDir:        outDir(t),
	}
	res := Run(t, cfg)
	checkRun(t, res)
	if res.Faults[FaultPartitionSplit.String()] == 0 {
		t.Error("no split ran")
	}
}

// staleReadConfig isolates one node of three, twice, while linearizable
// reads go through every node's HTTP API.
func staleReadConfig(t *testing.T, args ...string) Config {
	return Config{
		Seed:        seed(t),
		Cluster:     ClusterConfig{Nodes: 3, Spares: 0, Args: args},
		Workload:    WorkloadConfig{Workers: 8, ReadsViaHTTP: true, HTTPFraction: 0.01, QuorumWorkers: 1},
		Faults:      []FaultKind{FaultIsolate},
		MinOps:      3000,
		MinFaults:   2,
		MaxDuration: 60 * time.Second,
		HoldMin:     4 * time.Second, HoldMax: 5 * time.Second,
		QuietMin: time.Second, QuietMax: 2 * time.Second,
		OutDir: outDir(t),
	}
}

// TestCheckerCatchesStaleReads shows the checker can fail: with
// --unsafe-stale-reads (linearizable reads served from the local replica,
// without read-index) and a node isolated while the majority takes
// writes, porcupine must find the history not linearizable.
func TestCheckerCatchesStaleReads(t *testing.T) {
	res := Run(t, staleReadConfig(t, "--unsafe-stale-reads"))
	if res.Lin.Linearizable() {
		t.Fatalf("the checker passed a history with stale reads (%d ops on %d keys)", res.Lin.Ops, res.Lin.Keys)
	}
	t.Logf("as expected: %d of %d keys not linearizable (%v)", res.Lin.Illegal, res.Lin.Keys, res.Lin.BadKeys)
}

// TestStaleReadScheduleLinearizable is the control of
// TestCheckerCatchesStaleReads: the same schedule without the broken
// flag is linearizable.
func TestStaleReadScheduleLinearizable(t *testing.T) {
	res := Run(t, staleReadConfig(t))
	if !res.Lin.Linearizable() {
		t.Fatalf("not linearizable: %d keys illegal, %d unproven (the checker gave up) (%v)", res.Lin.Illegal, res.Lin.TimedOut, res.Lin.BadKeys)
	}
	if res.Lost > 0 {
		t.Errorf("%d acknowledged QUORUM writes lost (%v)", res.Lost, res.LostKeys)
	}
}

// TestChaosHosts runs five secure nodes on five hosts (network
// namespaces, internal/hosts: each node listens on 0.0.0.0 of its host
// and advertises the host's address) under the chaos workload, and
// injects each host-level fault once: a host's link cut, a host frozen,
// a host down and restarted. By default each lasts 5 s (CI);
// RINGKV_CHAOS_HOSTS_FULL=1 holds each for 30 s over a longer run
// (docs/RELIABILITY.md). Skipped where namespaces cannot be made, unless
// RINGKV_HOSTS_REQUIRED=1.
func TestChaosHosts(t *testing.T) {
	nt := hosts.New(t, 5)
	cfg := Config{
		Seed:          seed(t),
		Cluster:       ClusterConfig{Nodes: 5, Spares: 0, Secure: true, Hosts: nt},
		Workload:      WorkloadConfig{Workers: 16, ActiveKeys: 128, QuorumWorkers: 8, QuorumInterval: 20 * time.Millisecond},
		Faults:        hostFaults(t),
		EveryKind:     true,
		ProgressEvery: 5 * time.Second,
		MinOps:        int64(envUint(t, "RINGKV_CHAOS_OPS", 3000)),
		MaxDuration:   90 * time.Second,
		HoldMin:       5 * time.Second, HoldMax: 5 * time.Second,
		QuietMin: 2 * time.Second, QuietMax: 3 * time.Second,
		ConvergeBound: 30 * time.Second,
		CheckTimeout:  time.Minute,
		OutDir:        outDir(t),
	}
	if os.Getenv("RINGKV_CHAOS_HOSTS_FULL") == "1" {
		cfg.HoldMin, cfg.HoldMax = 30*time.Second, 30*time.Second
		cfg.QuietMin, cfg.QuietMax = 10*time.Second, 10*time.Second
		cfg.MinOps = int64(envUint(t, "RINGKV_CHAOS_OPS", 50_000))
		cfg.MaxDuration = 10 * time.Minute
		cfg.ConvergeBound = 60 * time.Second
	}
	res := Run(t, cfg)
	checkRun(t, res)
	for _, k := range cfg.Faults {
		if res.Faults[k.String()] == 0 {
			t.Errorf("fault %s never ran", k)
		}
	}
}

// hostFaults is HostFaults, or the kinds named in RINGKV_CHAOS_FAULTS
// (comma-separated, e.g. host-freeze).
func hostFaults(t *testing.T) []FaultKind {
	names := os.Getenv("RINGKV_CHAOS_FAULTS")
	if names == "" {
		return HostFaults()
	}
	var out []FaultKind
	for _, name := range strings.Split(names, ",") {
		found := false
		for k := range numFaultKinds {
			if k.String() == name {
				out, found = append(out, k), true
			}
		}
		if !found {
			t.Fatalf("RINGKV_CHAOS_FAULTS: unknown fault %q", name)
		}
	}
	return out
}

// checkLinLost fails t unless res's history is linearizable and no
// acknowledged QUORUM write was lost.
func checkLinLost(t *testing.T, res Result) {
	t.Helper()
	if !res.Lin.Linearizable() {
		t.Errorf("not linearizable: %d keys illegal, %d unproven (the checker gave up) (%v)", res.Lin.Illegal, res.Lin.TimedOut, res.Lin.BadKeys)
	}
	if res.Lost > 0 {
		t.Errorf("%d acknowledged QUORUM writes lost (%v)", res.Lost, res.LostKeys)
	}
}

// checkRun is checkLinLost, and every sampled QUORUM key converged.
func checkRun(t *testing.T, res Result) {
	t.Helper()
	checkLinLost(t, res)
	if !res.Converged {
		t.Errorf("%d sampled QUORUM keys did not reach all their replicas within %s: %v", res.Unconverged, res.ConvBound, res.UnconvergedKeys)
	}
}
