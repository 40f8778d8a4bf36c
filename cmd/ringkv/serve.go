package main

import (
	"context"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"os/signal"
	"strings"
	"syscall"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"

	"github.com/ringkv/ringkv/internal/idleprocs"
	"github.com/ringkv/ringkv/node"
)

// envDefault returns the environment variable name's value, or def.
func envDefault(name, def string) string {
	if v, ok := os.LookupEnv(name); ok {
		return v
	}
	return def
}

// newLogger returns the logger of serve and dev: records at level and
// above, written to w as text (key=value) or JSON (one object a line, for
// log shippers).
func newLogger(w io.Writer, level, format string) (*slog.Logger, error) {
	var l slog.Level
	if err := l.UnmarshalText([]byte(level)); err != nil {
		return nil, fmt.Errorf("%w: --log-level %q: want debug, info, warn or error", errUsage, level)
	}
	opts := &slog.HandlerOptions{Level: l}
	switch format {
	case "text":
		return slog.New(slog.NewTextHandler(w, opts)), nil
	case "json":
		return slog.New(slog.NewJSONHandler(w, opts)), nil
	default:
		return nil, fmt.Errorf("%w: --log-format %q: want text or json", errUsage, format)
	}
}

func newRegistry() *prometheus.Registry {
	reg := prometheus.NewRegistry()
	reg.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	return reg
}

func serve(ctx context.Context, args []string, stderr io.Writer) error {
	fs := flag.NewFlagSet("serve", flag.ContinueOnError)
	fs.SetOutput(stderr)
	cfg := node.DefaultConfig()
	id := fs.String("id", envDefault("RINGKV_ID", ""), "unique node id (env RINGKV_ID)")
	data := fs.String("data", envDefault("RINGKV_DATA", ""), "data directory (env RINGKV_DATA)")
	httpAddr := fs.String("http", envDefault("RINGKV_HTTP", "127.0.0.1:8081"), "HTTP listen address (env RINGKV_HTTP)")
	rpcAddr := fs.String("rpc", envDefault("RINGKV_RPC", "127.0.0.1:9001"), "drpc listen address (env RINGKV_RPC)")
	gossipAddr := fs.String("gossip", envDefault("RINGKV_GOSSIP", "127.0.0.1:7001"), "gossip listen address (env RINGKV_GOSSIP)")
	fs.StringVar(&cfg.RESPAddr, "resp", envDefault("RINGKV_RESP", "127.0.0.1:6379"), "Redis protocol (RESP2/RESP3) listen address; empty: off (env RINGKV_RESP)")
	fs.StringVar(&cfg.Advertise, "advertise", envDefault("RINGKV_ADVERTISE", ""), "host (IP or DNS name) peers and clients reach this node by, with each listener's port; required when a listen address is 0.0.0.0 (env RINGKV_ADVERTISE)")
	fs.StringVar(&cfg.AdvertiseHTTPAddr, "advertise-http", envDefault("RINGKV_ADVERTISE_HTTP", ""), "host:port advertised for the HTTP listener, when its port is translated (env RINGKV_ADVERTISE_HTTP)")
	fs.StringVar(&cfg.AdvertiseRPCAddr, "advertise-rpc", envDefault("RINGKV_ADVERTISE_RPC", ""), "host:port advertised for the drpc listener, when its port is translated (env RINGKV_ADVERTISE_RPC)")
	fs.StringVar(&cfg.AdvertiseGossipAddr, "advertise-gossip", envDefault("RINGKV_ADVERTISE_GOSSIP", ""), "host:port advertised for gossip, when its port is translated (env RINGKV_ADVERTISE_GOSSIP)")
	join := fs.String("join", envDefault("RINGKV_JOIN", ""), "comma-separated gossip addresses of members to join; empty founds a new cluster (env RINGKV_JOIN)")
	zone := fs.String("zone", envDefault("RINGKV_ZONE", ""), "failure zone of this node (env RINGKV_ZONE)")
	fs.IntVar(&cfg.Ring.Partitions, "partitions", cfg.Ring.Partitions, "partitions of a new cluster (power of two)")
	fs.IntVar(&cfg.Ring.ReplicationFactor, "replicas", cfg.Ring.ReplicationFactor, "replication factor N of a new cluster")
	fs.Uint64Var(&cfg.Consensus.SnapshotThreshold, "snapshot-threshold", cfg.Consensus.SnapshotThreshold, "raft entries a group logs between snapshots")
	fs.Uint64Var(&cfg.Consensus.TrailingLogs, "trailing-logs", cfg.Consensus.TrailingLogs, "raft entries a group keeps behind a snapshot")
	fs.DurationVar(&cfg.Consensus.SnapshotInterval, "snapshot-interval", cfg.Consensus.SnapshotInterval, "how often a group checks whether to snapshot")
	fs.BoolVar(&cfg.Coordinator.HintedHandoff, "hints", cfg.Coordinator.HintedHandoff, "keep hints for replicas a write missed and replay them when they return (env RINGKV_HINTS)")
	fs.DurationVar(&cfg.Coordinator.HintWindow, "hint-window", cfg.Coordinator.HintWindow, "drop hints older than this, leaving them to anti-entropy (env RINGKV_HINT_WINDOW)")
	fs.IntVar(&cfg.Coordinator.HintReplayRate, "hint-replay-rate", cfg.Coordinator.HintReplayRate, "hint records replayed per second, all targets together (env RINGKV_HINT_REPLAY_RATE)")
	fs.DurationVar(&cfg.AntiEntropy.Interval, "ae-interval", cfg.AntiEntropy.Interval, "how often each partition's Merkle tree is exchanged with every other replica; negative disables scheduled exchanges")
	fs.Float64Var(&cfg.AntiEntropy.KeysPerSec, "ae-keys-per-sec", cfg.AntiEntropy.KeysPerSec, "records per second anti-entropy may transfer")
	fs.Float64Var(&cfg.AntiEntropy.BytesPerSec, "ae-bytes-per-sec", cfg.AntiEntropy.BytesPerSec, "bytes per second anti-entropy may transfer")
	fs.Float64Var(&cfg.AntiEntropy.ScrubPerSec, "scrub-rate", cfg.AntiEntropy.ScrubPerSec, "stored records per second the scrubber verifies; negative disables it")
	fs.DurationVar(&cfg.AntiEntropy.TombstoneGrace, "tombstone-grace", cfg.AntiEntropy.TombstoneGrace, "how long tombstones are kept at least before collection; negative never collects")
	fs.DurationVar(&cfg.AntiEntropy.GCInterval, "gc-interval", cfg.AntiEntropy.GCInterval, "how often collectable tombstones are looked for")
	fs.DurationVar(&cfg.Replica.SyncLinger, "sync-linger", cfg.Replica.SyncLinger, "longest an fsync of the store or of the Raft WAL waits for more writes under load while it covers fewer than 16 (the WAL: 64 appends); never longer than recent fsyncs took, ending early after a quiet quarter of it: fewer, larger fsyncs; negative: sync at once")
	var budget byteSize
	fs.Var(&budget, "memory-budget", memoryBudgetUsage+" (env RINGKV_MEMORY_BUDGET)")
	fs.Int64Var(&cfg.Replica.MemTableBytes, "memtable-bytes", cfg.Replica.MemTableBytes, "size of one Badger memtable (two are held); smaller suits a small disk")
	minFree := fs.Int64("min-free-bytes", 0, "free space of the data directory below which the node refuses writes (HTTP 507) and hands its raft leadership away, until space is freed; it must cover what Badger may write after that (memtable flushes, compactions); 0: four memtables; negative: no guard (a full disk crashes the node)")
	fs.DurationVar(&cfg.DiskStallTimeout, "disk-stall-timeout", cfg.DiskStallTimeout, "an fsync running longer than this makes the node hand its raft leadership away and report itself not ready; negative: never")
	fs.StringVar(&cfg.CertsDir, "certs-dir", envDefault("RINGKV_CERTS_DIR", ""), "this node's certificates (ca.crt, node.crt, node.key; see 'ringkv certs'): TLS on every port, mutual TLS between nodes, users and roles (env RINGKV_CERTS_DIR)")
	fs.StringVar(&cfg.GossipKeyringFile, "gossip-key-file", envDefault("RINGKV_GOSSIP_KEY_FILE", ""), "gossip keyring: one base64 key per line, the first encrypts, all decrypt ('ringkv certs create-gossip-key' writes one); SIGHUP reloads it; empty: gossip is not encrypted (env RINGKV_GOSSIP_KEY_FILE)")
	insecure := fs.Bool("insecure", false, "allow listening on a non-loopback address without --certs-dir: plaintext, no authentication")
	fs.BoolVar(&cfg.MetricsOpen, "metrics-open", false, "serve /metrics and /api/stats to anyone on a secure node (default: the metrics permission)")
	lim := addLimitFlags(fs, cfg)
	fast := fs.Bool("fast-gossip", false, "use loopback timers for gossip and raft reconfiguration (tests)")
	logLevel := fs.String("log-level", envDefault("RINGKV_LOG_LEVEL", "info"), "debug, info, warn or error (env RINGKV_LOG_LEVEL)")
	logFormat := fs.String("log-format", envDefault("RINGKV_LOG_FORMAT", "text"), "text (key=value) or json (one object a line) (env RINGKV_LOG_FORMAT)")
	drainTimeout := fs.Duration("drain-timeout", 30*time.Second, "on SIGTERM or SIGINT, drain for at most this long before stopping (hand over raft leadership, refuse new client requests, finish those in flight, flush hints); 0 stops at once; a second signal cuts the drain short (env RINGKV_DRAIN_TIMEOUT)")
	idleAfter := fs.Duration("idle-procs-after", 10*time.Second, idleProcsUsage+" (env RINGKV_IDLE_PROCS_AFTER)")
	pprofAddr := fs.String("pprof", envDefault("RINGKV_PPROF", ""), "serve net/http/pprof on this address (e.g. 127.0.0.1:6060); empty: off (env RINGKV_PPROF)")
	// Test-only hooks for the chaos harness (internal/chaos); see
	// docs/RELIABILITY.md. They are not listed in the usage text's examples
	// and must never be used in production.
	dialOverrides := fs.String("chaos-dial-overrides", "", "TEST ONLY: peer=addr,... dial these addresses for peers' drpc traffic (chaos proxies)")
	fs.BoolVar(&cfg.ChaosHooks, "chaos-hooks", false, "TEST ONLY: enable POST /chaos/clock-offset (clock skew) and POST /chaos/disk (stalled or failing fsyncs)")
	fs.DurationVar(&cfg.ChaosClockOffset, "chaos-clock-offset", 0, "TEST ONLY (needs --chaos-hooks): start with the clock shifted by this much (clock skew from the first instant)")
	fs.BoolVar(&cfg.Coordinator.UnsafeStaleReads, "unsafe-stale-reads", false, "TEST ONLY, BROKEN: serve linearizable reads from the local replica without read-index")
	fs.BoolVar(&cfg.Consensus.UnsafeIgnoreIntents, "unsafe-ignore-intents", false, "TEST ONLY, BROKEN: raft groups ignore the intents of transactions across partitions")
	if err := setFromEnv(fs, map[string]string{
		"hints": "RINGKV_HINTS", "hint-window": "RINGKV_HINT_WINDOW", "hint-replay-rate": "RINGKV_HINT_REPLAY_RATE",
		"drain-timeout": "RINGKV_DRAIN_TIMEOUT", "memory-budget": "RINGKV_MEMORY_BUDGET",
		"idle-procs-after": "RINGKV_IDLE_PROCS_AFTER",
	}); err != nil {
		return err
	}
	if err := fs.Parse(args); err != nil {
		return fmt.Errorf("%w: %w", errUsage, err)
	}
	cfg.Replica.MinFreeBytes = *minFree // 0: derived from the memtable size
	cfg.MemoryBudgetBytes = int64(budget)
	lim.apply(&cfg)
	if fs.NArg() > 0 {
		return fmt.Errorf("%w: serve takes no arguments, got %q", errUsage, fs.Args())
	}
	if err := startPprof(ctx, *pprofAddr, stderr); err != nil {
		return err
	}
	log, err := newLogger(stderr, *logLevel, *logFormat)
	if err != nil {
		return err
	}
	cfg.ID, cfg.DataDir, cfg.Zone = *id, *data, *zone
	cfg.HTTPAddr, cfg.RPCAddr, cfg.GossipAddr = *httpAddr, *rpcAddr, *gossipAddr
	cfg.Join = splitList(*join)
	if cfg.PeerDialOverrides, err = parseOverrides(*dialOverrides); err != nil {
		return err
	}
	if *fast {
		cfg.GossipProfile = localProfile
		cfg.Consensus.ReconcileInterval = localReconcile
	}
	cfg.Logger = log
	if err := cfg.Validate(); err != nil {
		return fmt.Errorf("%w: %w", errUsage, err)
	}
	if err := checkSecure(cfg, *insecure); err != nil {
		return err
	}
	if limit := setMemoryLimit(cfg.MemoryBudgetBytes, 1); limit > 0 {
		log.Info("memory budget", "budget_bytes", cfg.MemoryBudgetBytes, "go_memory_limit_bytes", limit)
	}
	idle, err := idleprocs.New(idleprocs.Config{After: *idleAfter})
	if err != nil {
		return fmt.Errorf("%w: --idle-procs-after: %w", errUsage, err)
	}
	reg := newRegistry()
	deps := node.Deps{Registerer: reg, Gatherer: reg}
	if idle != nil {
		deps.Busy = idle.Busy
		reg.MustRegister(prometheus.NewGaugeFunc(prometheus.GaugeOpts{
			Namespace: "ringkv", Subsystem: "node", Name: "idle_one_proc",
			Help: "1 while the process runs the Go scheduler on one P because it is idle (--idle-procs-after), else 0.",
		}, func() float64 {
			if idle.Idle() {
				return 1
			}
			return 0
		}))
	}
	n, err := node.Open(cfg, deps)
	if err != nil {
		return fmt.Errorf("serve: %w", err)
	}
	if idle != nil {
		// Stops with ctx (the first SIGTERM), restoring GOMAXPROCS
		// before the drain.
		go idle.Run(ctx)
	}
	hup := make(chan os.Signal, 1)
	signal.Notify(hup, syscall.SIGHUP)
	defer signal.Stop(hup)
	for done := false; !done; {
		select {
		case <-ctx.Done():
			done = true
		case <-hup:
			if err := n.ReloadCerts(); err != nil {
				log.Error("reload certificates", "err", err)
			} else if n.Secure() {
				log.Info("certificates reloaded")
			}
			if cfg.GossipKeyringFile != "" {
				if err := n.ReloadGossipKeyring(); err != nil {
					log.Error("reload gossip keyring", "err", err)
				}
			}
		}
	}
	drainBeforeStop(n, *drainTimeout, log)
	log.Info("shutting down")
	if err := n.Close(); err != nil {
		return fmt.Errorf("serve: close: %w", err)
	}
	return nil
}

// drainBeforeStop drains n for at most timeout (0: not at all); a SIGINT
// or SIGTERM meanwhile cuts it short. A drain that does not finish is
// logged; the node stops anyway.
func drainBeforeStop(n *node.Node, timeout time.Duration, log *slog.Logger) {
	if timeout <= 0 {
		return
	}
	// Registered only now: the signal that stopped serve went to main's
	// context, so whatever arrives here is a second one.
	again := make(chan os.Signal, 1)
	signal.Notify(again, os.Interrupt, syscall.SIGTERM)
	defer signal.Stop(again)
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	stop := make(chan struct{})
	defer close(stop)
	go func() {
		select {
		case <-again:
			log.Warn("second signal: stopping without finishing the drain")
			cancel()
		case <-stop:
		}
	}()
	log.Info("draining before stop", "timeout", timeout)
	if _, err := n.Drain(ctx); err != nil {
		log.Warn("stopping before the drain finished", "err", err)
	}
}

// checkSecure refuses, with one line naming --insecure, a node that would
// listen on an address other than loopback without certificates
// (--certs-dir) or without a gossip key (--gossip-key-file).
func checkSecure(cfg node.Config, insecure bool) error {
	if insecure {
		return nil
	}
	for _, addr := range []string{cfg.HTTPAddr, cfg.RPCAddr, cfg.GossipAddr, cfg.RESPAddr} {
		if addr == "" || isLoopback(addr) {
			continue
		}
		if cfg.CertsDir == "" {
			return fmt.Errorf("%w: refusing to listen on %s without certificates: give --certs-dir (see 'ringkv certs'), or --insecure to serve plaintext without authentication", errUsage, addr)
		}
		if cfg.GossipKeyringFile == "" {
			return fmt.Errorf("%w: refusing to gossip in plaintext on %s (anyone reaching it could hand the cluster a ring): give --gossip-key-file (see 'ringkv certs create-gossip-key'), or --insecure", errUsage, addr)
		}
	}
	return nil
}

// isLoopback reports whether addr ("host:port") is on a loopback address;
// an empty host (every address) is not.
func isLoopback(addr string) bool {
	host, _, err := net.SplitHostPort(addr)
	if err != nil {
		return false
	}
	if host == "localhost" {
		return true
	}
	ip := net.ParseIP(host)
	return ip != nil && ip.IsLoopback()
}

// setFromEnv sets each flag (by name) from its environment variable, when
// that is set, so that the command line, parsed afterwards, still wins.
func setFromEnv(fs *flag.FlagSet, envs map[string]string) error {
	for name, env := range envs {
		v, ok := os.LookupEnv(env)
		if !ok {
			continue
		}
		if err := fs.Set(name, v); err != nil {
			return fmt.Errorf("%w: %s=%q: %w", errUsage, env, v, err)
		}
	}
	return nil
}

func splitList(s string) []string {
	var out []string
	for _, part := range strings.Split(s, ",") {
		if part = strings.TrimSpace(part); part != "" {
			out = append(out, part)
		}
	}
	return out
}

// parseOverrides parses --chaos-dial-overrides: "n2=127.0.0.1:1234,...".
func parseOverrides(s string) (map[string]string, error) {
	parts := splitList(s)
	if len(parts) == 0 {
		return nil, nil
	}
	out := make(map[string]string, len(parts))
	for _, part := range parts {
		id, addr, ok := strings.Cut(part, "=")
		if !ok || id == "" || addr == "" {
			return nil, fmt.Errorf("%w: --chaos-dial-overrides: %q is not peer=addr", errUsage, part)
		}
		out[id] = addr
	}
	return out, nil
}
