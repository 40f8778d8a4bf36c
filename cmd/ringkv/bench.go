package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"sync/atomic"
	"time"

	"github.com/ringkv/ringkv/bench"
	"github.com/ringkv/ringkv/client"
	"github.com/ringkv/ringkv/node"
)

// benchCommand is `ringkv bench`: it runs the harness against an embedded
// 3-node cluster (or --target), optionally against etcd in the same run
// (--compare etcd=ADDRS), and reports.
func benchCommand(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("bench", flag.ContinueOnError)
	fs.SetOutput(stderr)
	def := bench.DefaultSpec()
	workloads := fs.String("workloads", strings.Join(bench.Workloads, ","), "comma-separated workloads: A (50/50), B (95/5), C (reads), W (writes), CAS, L (lists), T (read-modify-write transactions of --txn-keys keys)")
	levels := fs.String("levels", "one,quorum,all,linearizable", "comma-separated consistency levels, each run in turn")
	keys := fs.Int("keys", def.Keys, "key space")
	hotKeys := fs.Int("hot-keys", def.HotKeys, "CAS counters")
	valueSize := fs.Int("value-size", def.ValueSize, "value size in bytes")
	dist := fs.String("dist", def.Distribution, "key distribution: uniform or zipfian")
	concurrency := fs.Int("concurrency", def.Concurrency, "concurrent callers")
	duration := fs.Duration("duration", def.Duration, "run time of each workload at each level (0: --ops only)")
	ops := fs.Int64("ops", 0, "operations of each workload at each level (0: --duration only)")
	rate := fs.Float64("rate", 0, "open loop at this many ops/s (latency from each op's scheduled start); 0: closed loop")
	listLimit := fs.Int("list-limit", def.ListLimit, "page size of workload L")
	txnKeys := fs.String("txn-keys", strconv.Itoa(def.TxnKeys), "comma-separated key counts of workload T's transactions, each run in turn (keys in as many partitions)")
	txnSame := fs.Bool("txn-same-partition", false, "workload T's keys all fall in one partition")
	opTimeout := fs.Duration("op-timeout", def.OpTimeout, "deadline of each operation")
	attempts := fs.Int("attempts", 0, "client attempts per operation (1: never retried, so a node's refusals count at once as errors of kind overloaded); 0: the client's default")
	seed := fs.Uint64("seed", def.Seed, "random seed of key choices")
	target := fs.String("target", "", "comma-separated drpc addresses of an existing cluster; empty starts a local 3-node cluster in a temporary directory")
	secure := addSecureFlags(fs) // how to reach a secure --target
	secureLocal := fs.Bool("secure", false, "the local cluster is secure, as 'ringkv dev --secure' makes it: TLS everywhere, authentication on, the bench acting as root by client certificate")
	compare := fs.String("compare", "", "also run against a peer: etcd=ADDR,ADDR,... (the etcd peer driver lives in bench/etcd)")
	etcdLevel := fs.String("etcd-level", "linearizable", "etcd's read level: linearizable (its default) or serializable")
	jsonOut := fs.Bool("json", false, "print the report as JSON instead of a table")
	report := fs.String("report", "", "also write a self-contained HTML report to this file")
	preloadKeys := fs.Bool("preload", true, "write the key space and CAS counters before the workloads (skip when --target already holds them)")
	preloadLevel := fs.String("preload-level", "quorum", "consistency level of the preload's writes")
	preloadBatch := fs.Int("preload-batch", 0, "preload in pipelined batches of this many keys per caller, each key its own random value (large key spaces); 0: one write per key, every key the same value; the CAS counters are written only when 0")
	preloadOnly := fs.Bool("preload-only", false, "preload, then exit without running the workloads")
	pprofAddr := fs.String("pprof", "", "serve net/http/pprof on this address while the bench runs (profiles the embedded cluster too)")
	short := fs.Bool("short", false, "smoke test: 1,000 keys, 8 callers, 300ms per workload and level, 30s op deadline")
	if err := fs.Parse(args); err != nil {
		return fmt.Errorf("%w: %w", errUsage, err)
	}
	if fs.NArg() > 0 {
		return fmt.Errorf("%w: bench takes no arguments, got %q", errUsage, fs.Args())
	}
	clientOpts, err := secure.clientOptions()
	if err != nil {
		return err
	}
	if len(clientOpts) > 0 && *target == "" {
		return fmt.Errorf("%w: --certs-dir is for a secure --target; for a secure local cluster give --secure", errUsage)
	}
	if *secureLocal && *target != "" {
		return fmt.Errorf("%w: --secure makes the local cluster secure; for a secure --target give --certs-dir", errUsage)
	}
	if *short {
		// A smoke test, often under the race detector on a busy machine:
		// generous deadlines, so slow operations count as slow, not failed.
		*keys, *concurrency, *duration, *ops, *opTimeout = 1000, 8, 300*time.Millisecond, 0, 30*time.Second
	}
	if err := startPprof(ctx, *pprofAddr, stderr); err != nil {
		return err
	}
	base := def
	base.Keys, base.HotKeys, base.ValueSize, base.Distribution = *keys, *hotKeys, *valueSize, *dist
	base.Concurrency, base.Duration, base.Ops, base.Rate = *concurrency, *duration, *ops, *rate
	base.ListLimit, base.OpTimeout, base.Seed = *listLimit, *opTimeout, *seed
	base.TxnSamePartition = *txnSame
	var ks []int
	for _, k := range splitList(*txnKeys) {
		n, err := strconv.Atoi(k)
		if err != nil {
			return fmt.Errorf("%w: --txn-keys: %w", errUsage, err)
		}
		ks = append(ks, n)
	}
	var specs []bench.Spec
	for _, wl := range splitList(*workloads) {
		for i, lvl := range splitList(*levels) {
			if _, err := client.ParseConsistency(lvl); err != nil {
				return fmt.Errorf("%w: --levels: %w", errUsage, err)
			}
			s := base
			s.Workload, s.Level = strings.ToUpper(wl), lvl
			if s.Workload == bench.WorkloadCAS && lvl != "linearizable" && slices.Contains(splitList(*levels), "linearizable") {
				continue // compare-and-set is always linearizable: run it once
			}
			variants := []bench.Spec{s}
			if s.Workload == bench.WorkloadT {
				// Transactions are linearizable whatever the level: one
				// run per key count.
				if i > 0 {
					continue
				}
				variants = nil
				for _, k := range ks {
					s.Level, s.TxnKeys = "linearizable", k
					variants = append(variants, s)
				}
			}
			for _, s := range variants {
				if err := s.Validate(); err != nil {
					return fmt.Errorf("%w: %w", errUsage, err)
				}
				specs = append(specs, s)
			}
		}
	}
	if len(specs) == 0 {
		return fmt.Errorf("%w: no workloads or levels", errUsage)
	}
	var peerAddrs []string
	if *compare != "" {
		name, addrs, ok := strings.Cut(*compare, "=")
		if !ok || name != "etcd" || len(splitList(addrs)) == 0 {
			return fmt.Errorf("%w: --compare wants etcd=ADDR,ADDR,..., got %q", errUsage, *compare)
		}
		peerAddrs = splitList(addrs)
	}

	addrs := splitList(*target)
	if len(addrs) == 0 {
		dir, err := os.MkdirTemp("", "ringkv-bench-")
		if err != nil {
			return fmt.Errorf("bench: %w", err)
		}
		defer os.RemoveAll(dir) //nolint:errcheck // best effort: a temporary directory
		lc := localCluster{nodes: 3, dataDir: dir}
		_, restoreProcs := setProcs(lc.nodes) // the Ps of three processes, one per node
		defer restoreProcs()
		if *secureLocal {
			if lc.certsDir, err = devCerts(dir, lc.nodes); err != nil {
				return fmt.Errorf("bench: %w", err)
			}
			clientOpts = append(clientOpts, client.WithCertsDir(lc.certsDir, "root"))
		}
		fmt.Fprintf(stderr, "starting a local 3-node cluster in %s (secure: %v)\n", dir, *secureLocal)
		nodes, err := startLocalCluster(ctx, lc, slog.New(slog.DiscardHandler))
		if err != nil {
			return fmt.Errorf("bench: %w", err)
		}
		defer closeNodes(nodes, stderr)
		for _, n := range nodes {
			addrs = append(addrs, n.RPCAddr())
		}
		if err := waitReady(ctx, nodes, 2*time.Minute); err != nil {
			return err
		}
		if *secureLocal {
			if err := enableAuthAsRoot(ctx, lc.certsDir, nodes[0].HTTPAddr()); err != nil {
				return fmt.Errorf("bench: %w", err)
			}
		}
	}
	if *attempts > 0 {
		cd := client.DefaultConfig()
		clientOpts = append(clientOpts, client.WithRetry(*attempts, cd.BackoffBase, cd.BackoffMax))
	}
	c, err := client.New(addrs, clientOpts...)
	if err != nil {
		return fmt.Errorf("bench: %w", err)
	}
	defer c.Close() //nolint:errcheck // the run is over
	d := bench.NewClientDriver(c)

	rep := bench.Report{Command: "ringkv bench " + strings.Join(args, " "), Machine: machine(), Started: time.Now().UTC()}
	preload := base
	preload.Level = *preloadLevel
	if _, err := client.ParseConsistency(preload.Level); err != nil {
		return fmt.Errorf("%w: --preload-level: %w", errUsage, err)
	}
	switch {
	case !*preloadKeys:
	case *preloadBatch > 0:
		fmt.Fprintf(stderr, "preloading %d keys in batches of %d at %s\n", base.Keys, *preloadBatch, preload.Level)
		start := time.Now()
		var last atomic.Int64
		report := func(n int64) {
			old := last.Load()
			if s := int64(time.Since(start) / (5 * time.Second)); s > old && last.CompareAndSwap(old, s) {
				fmt.Fprintf(stderr, "preloaded %d keys in %s\n", n, time.Since(start).Round(time.Second))
			}
		}
		if err := bench.PreloadBatched(ctx, d, preload, *preloadBatch, report); err != nil {
			return err
		}
		el := time.Since(start)
		fmt.Fprintf(stderr, "preloaded %d keys in %s (%.0f keys/s)\n", base.Keys, el.Round(time.Millisecond), float64(base.Keys)/el.Seconds())
	default:
		fmt.Fprintf(stderr, "preloading %d keys and %d counters\n", base.Keys, base.HotKeys)
		if err := bench.Preload(ctx, d, preload); err != nil {
			return err
		}
	}
	if *preloadOnly {
		return nil
	}
	if slices.ContainsFunc(specs, func(s bench.Spec) bool { return s.Workload == bench.WorkloadT }) {
		// Workload T groups the keys by the cluster's partitions.
		p, err := clusterPartitions(ctx, c)
		if err != nil {
			return err
		}
		for i := range specs {
			specs[i].Partitions = p
			if err := specs[i].Validate(); err != nil {
				return fmt.Errorf("bench: %w", err)
			}
		}
	}
	// Each workload runs on ringkv at every level and then on the peer,
	// before the next workload: the figures a ratio compares are taken
	// seconds apart, so that a noisy machine's slow minutes fall on both
	// systems alike rather than on whichever ran then.
	peerDone := map[string]bool{}
	for i, s := range specs {
		res, err := bench.Run(ctx, d, s, progressLine(stderr, "ringkv"))
		if err != nil {
			return err
		}
		fmt.Fprintf(stderr, "\r%-80s\rringkv %-3s %-12s %9.0f ops/s  p99 %s\n", "", s.Label(), s.Level, res.Throughput, time.Duration(res.Latency.P99)*time.Microsecond)
		rep.Results = append(rep.Results, res)
		if ctx.Err() != nil {
			return fmt.Errorf("bench: %w", ctx.Err())
		}
		lastLevel := i == len(specs)-1 || specs[i+1].Label() != s.Label()
		if len(peerAddrs) == 0 || !lastLevel || peerDone[s.Label()] {
			continue
		}
		firstPeerJob := len(peerDone) == 0 // preloads the peer's key space
		peerDone[s.Label()] = true
		ps := s
		ps.Level = *etcdLevel
		peerRes, err := runEtcdPeer(ctx, peerAddrs, []bench.Spec{ps}, firstPeerJob, stderr)
		if err != nil {
			return err
		}
		rep.Peer = append(rep.Peer, peerRes...)
	}
	if *report != "" {
		var page bytes.Buffer
		if err := rep.WriteHTML(&page); err != nil {
			return err
		}
		if err := os.WriteFile(*report, page.Bytes(), 0o644); err != nil { //nolint:gosec // a report for people to read
			return fmt.Errorf("bench: write report: %w", err)
		}
		fmt.Fprintf(stderr, "report written to %s\n", *report)
	}
	if *jsonOut {
		return rep.WriteJSON(stdout)
	}
	return rep.WriteTable(stdout)
}

// progressLine returns a progress callback that rewrites one line.
func progressLine(w io.Writer, target string) func(bench.Progress) {
	return func(p bench.Progress) {
		fmt.Fprintf(w, "\r%s %-3s %-12s %5.1fs %10d ops %9.0f ops/s %6d errors", target, p.Spec.Label(), p.Spec.Level,
			p.Elapsed.Seconds(), p.Ops, p.Interval, p.Errors)
	}
}

// clusterPartitions returns the cluster's number of partitions from the
// client's topology, polling until the client has learned one.
func clusterPartitions(ctx context.Context, c *client.Client) (int, error) {
	ctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	tick := time.NewTicker(50 * time.Millisecond)
	defer tick.Stop()
	for {
		top, err := c.Topology()
		if err == nil && top.Partitions > 0 {
			return top.Partitions, nil
		}
		select {
		case <-ctx.Done():
			return 0, fmt.Errorf("bench: the cluster's partitions: %w", errors.Join(ctx.Err(), err))
		case <-tick.C:
		}
	}
}

// waitReady polls until every node's groups have leaders and their full
// configurations, so linearizable workloads measure the steady state.
func waitReady(ctx context.Context, nodes []*node.Node, timeout time.Duration) error {
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	tick := time.NewTicker(100 * time.Millisecond)
	defer tick.Stop()
	for {
		ready := true
		for _, n := range nodes {
			if ok, _, _, _ := n.Ready(); !ok || !n.ClusterStatus().Converged {
				ready = false
			}
		}
		if ready {
			return nil
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("bench: cluster not ready: %w", ctx.Err())
		case <-tick.C:
		}
	}
}

// runEtcdPeer runs specs against etcd through the peer driver of
// bench/etcd: the binary named by RINGKV_BENCH_ETCD, or `go run .` in
// ./bench/etcd. preload: write the key space first (the first call of a run).
func runEtcdPeer(ctx context.Context, endpoints []string, specs []bench.Spec, preload bool, stderr io.Writer) ([]bench.Result, error) {
	job, err := json.Marshal(map[string]any{"endpoints": endpoints, "specs": specs, "preload": preload, "conns": 4})
	if err != nil {
		return nil, fmt.Errorf("bench: %w", err)
	}
	var cmd *exec.Cmd
	if bin := os.Getenv("RINGKV_BENCH_ETCD"); bin != "" {
		cmd = exec.CommandContext(ctx, bin)
	} else {
		dir := filepath.Join("bench", "etcd")
		if _, err := os.Stat(filepath.Join(dir, "go.mod")); err != nil {
			return nil, fmt.Errorf("bench: the etcd peer driver: run from the repository root (for bench/etcd) or set RINGKV_BENCH_ETCD to its binary (cd bench/etcd && go build): %w", err)
		}
		cmd = exec.CommandContext(ctx, "go", "run", ".")
		cmd.Dir = dir
	}
	cmd.Stdin = bytes.NewReader(job)
	cmd.Stderr = stderr
	out, err := cmd.Output()
	if err != nil {
		return nil, fmt.Errorf("bench: etcd peer: %w", err)
	}
	var results []bench.Result
	if err := json.Unmarshal(out, &results); err != nil {
		return nil, fmt.Errorf("bench: etcd peer output: %w", err)
	}
	return results, nil
}

// machine describes this machine for the report.
func machine() string {
	model := ""
	if b, err := os.ReadFile("/proc/cpuinfo"); err == nil {
		for _, line := range strings.Split(string(b), "\n") {
			if k, v, ok := strings.Cut(line, ":"); ok && strings.TrimSpace(k) == "model name" {
				model = strings.TrimSpace(v)
				break
			}
		}
	}
	return strings.TrimSpace(fmt.Sprintf("%s/%s, %d CPUs, %s, %s", runtime.GOOS, runtime.GOARCH, runtime.NumCPU(), runtime.Version(), model))
}
