package chaos

import (
	"os"
	"testing"
	"time"
)

// TestChaosTxn runs the bank, list-append and fractured-read workloads of
// transactions across partitions under faults (txn.go): by default the CI
// mode (every fault kind once, at least 500 transactions, traffic for at
// most 75 s); with
// RINGKV_CHAOS_TXN_LONG=1 the long mode (at least 100,000 transactions
// and 50 faults; RINGKV_CHAOS_OPS overrides the count). RINGKV_CHAOS_SEED
// replays a schedule.
func TestChaosTxn(t *testing.T) {
	cfg := TxnConfig{
		Seed:      seed(t),
		Cluster:   ClusterConfig{Nodes: 5, Spares: 1},
		EveryKind: true,
	}
	if os.Getenv("RINGKV_CHAOS_TXN_LONG") == "1" {
		cfg.Cluster.Spares = 4
		cfg.MinTxns = int64(envUint(t, "RINGKV_CHAOS_OPS", 100_000))
		cfg.MinFaults = 50
		cfg.MaxDuration = 4 * time.Hour
	} else {
		cfg.MinTxns = int64(envUint(t, "RINGKV_CHAOS_OPS", 500))
		cfg.MaxDuration = 75 * time.Second
		// Shorter holds than TestChaos's: every kind still runs once,
		// and the run ends sooner (CI's budget).
		cfg.HoldMin, cfg.HoldMax = 1500*time.Millisecond, 2*time.Second
		cfg.QuietMin, cfg.QuietMax = 300*time.Millisecond, 600*time.Millisecond
	}
	res := RunTxn(t, cfg)
	checkTxnRun(t, cfg, res)
}

// TestChaosTxnSplit runs TestChaosTxn's workloads (transactions across
// partitions: bank, list-append, fractured reads) on three nodes while
// the ring's partitions double, between kills and isolations: a
// transaction's record moves to the child its key hashes into, and its
// participants are resolved in each child (ARCHITECTURE, "Partition
// split"). At most two splits (16 into 64 partitions).
func TestChaosTxnSplit(t *testing.T) {
	cfg := TxnConfig{
		Seed:        seed(t),
		Cluster:     ClusterConfig{Nodes: 3, Spares: 0, Partitions: 16, MaxPartitions: 64},
		Faults:      []FaultKind{FaultPartitionSplit, FaultKill, FaultIsolate},
		EveryKind:   true,
		MinTxns:     int64(envUint(t, "RINGKV_CHAOS_OPS", 500)),
		MinFaults:   4,
		MaxDuration: 90 * time.Second,
		HoldMin:     1500 * time.Millisecond, HoldMax: 2 * time.Second,
		QuietMin: 500 * time.Millisecond, QuietMax: time.Second,
	}
	res := RunTxn(t, cfg)
	checkTxnRun(t, cfg, res)
}

// checkTxnRun fails t if a checker of the transaction workloads found a
// violation, a workload made no progress or a fault kind never ran.
func checkTxnRun(t *testing.T, cfg TxnConfig, res TxnResult) {
	t.Helper()
	if len(res.BankViolations) > 0 {
		t.Errorf("bank: %d violations, first: %s", len(res.BankViolations), res.BankViolations[0])
	}
	if !res.Append.Valid() {
		t.Errorf("list-append: %s", res.Append)
	}
	if len(res.FracturedViolations) > 0 {
		t.Errorf("fractured reads: %d, first: %s", len(res.FracturedViolations), res.FracturedViolations[0])
	}
	if res.BankReads == 0 || res.BankCommitted == 0 || res.FracturedReads == 0 || res.Append.Txns == 0 {
		t.Errorf("a workload made no progress: %s", res.Summary())
	}
	for _, k := range cfg.Faults {
		if res.Faults[k.String()] == 0 {
			t.Errorf("fault %s never ran", k)
		}
	}
}

// TestTxnCheckersCatchIgnoredIntents runs the workloads against a cluster
// whose raft groups ignore transactions' intents
// (--unsafe-ignore-intents, broken on purpose): reads see values under
// intents and prepares go through them, so transactions overlap. The
// list-append history must then fail txncheck, as the bank and the
// fractured reads must fail theirs; TestChaosTxn is the control. About
// 45 s: run by hand (RINGKV_CHAOS_TXN_BROKEN=1), not in CI.
func TestTxnCheckersCatchIgnoredIntents(t *testing.T) {
	if os.Getenv("RINGKV_CHAOS_TXN_BROKEN") != "1" {
		t.Skip("the broken mode runs by hand: RINGKV_CHAOS_TXN_BROKEN=1")
	}
	res := RunTxn(t, TxnConfig{
		Seed:        seed(t),
		Cluster:     ClusterConfig{Nodes: 3, Args: []string{"--unsafe-ignore-intents"}},
		Faults:      []FaultKind{FaultSlow},
		MinTxns:     1500,
		MinFaults:   1,
		MaxDuration: 40 * time.Second,
	})
	if res.Append.Valid() {
		t.Errorf("txncheck passed a history of transactions that ignored each other's intents: %s", res.Append)
	}
	if len(res.BankViolations) == 0 {
		t.Errorf("the bank held with intents ignored")
	}
	if len(res.FracturedViolations) == 0 {
		t.Errorf("no fractured read with intents ignored")
	}
}
