package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"path/filepath"
	"time"

	"github.com/ringkv/ringkv/internal/idleprocs"
	"github.com/ringkv/ringkv/internal/pki"
	"github.com/ringkv/ringkv/node"
	"github.com/ringkv/ringkv/ring"
	"github.com/ringkv/ringkv/ring/gossip"
)

const (
	localProfile   = gossip.Local
	localReconcile = 100 * time.Millisecond
)

// dev runs three real nodes in this process on the fixed loopback ports of
// the README, with data under --data (reused by the next run).
func dev(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("dev", flag.ContinueOnError)
	fs.SetOutput(stderr)
	data := fs.String("data", "./ringkv-data", "data directory; node i uses DATA/n<i>")
	nodes := fs.Int("nodes", 3, "number of nodes (HTTP 8081.., drpc 9001.., gossip 7001..)")
	httpPort := fs.Int("http-port", 8081, "HTTP port of n1; node i uses this+i-1 (0: any free port)")
	rpcPort := fs.Int("rpc-port", 9001, "drpc port of n1; node i uses this+i-1 (0: any free port)")
	gossipPort := fs.Int("gossip-port", 7001, "gossip port of n1; node i uses this+i-1 (0: any free port)")
	respPort := fs.Int("resp-port", 6381, "Redis protocol port of n1; node i uses this+i-1 (0: any free port; negative: off)")
	logLevel := fs.String("log-level", "warn", "debug, info, warn or error")
	logFormat := fs.String("log-format", envDefault("RINGKV_LOG_FORMAT", "text"), "text (key=value) or json (one object a line) (env RINGKV_LOG_FORMAT)")
	pprofAddr := fs.String("pprof", "", "serve net/http/pprof on this address (e.g. 127.0.0.1:6060); empty: off")
	idleAfter := fs.Duration("idle-procs-after", 10*time.Second, idleProcsUsage)
	lim := addLimitFlags(fs, node.DefaultConfig())
	var budget byteSize
	fs.Var(&budget, "memory-budget", memoryBudgetUsage+"; per node (the soft limit is this times --nodes)")
	secure := fs.Bool("secure", false, "TLS everywhere and authentication: make a CA, node certificates and a root client certificate under DATA/certs, and enable auth")
	if err := fs.Parse(args); err != nil {
		return fmt.Errorf("%w: %w", errUsage, err)
	}
	if err := startPprof(ctx, *pprofAddr, stderr); err != nil {
		return err
	}
	if *nodes < 1 || *nodes > 9 {
		return fmt.Errorf("%w: --nodes must be 1..9", errUsage)
	}
	if budget != 0 && budget < node.MinMemoryBudgetBytes {
		return fmt.Errorf("%w: --memory-budget %d is below the minimum 64MiB", errUsage, budget)
	}
	log, err := newLogger(stderr, *logLevel, *logFormat)
	if err != nil {
		return err
	}
	lc := localCluster{
		nodes: *nodes, dataDir: *data, httpPort: *httpPort, rpcPort: *rpcPort, gossipPort: *gossipPort, respPort: *respPort,
		limits: lim, memoryBudget: int64(budget),
	}
	setMemoryLimit(int64(budget), *nodes)
	procs, restoreProcs := setProcs(*nodes)
	defer restoreProcs()
	idle, err := idleprocs.New(idleprocs.Config{After: *idleAfter, Procs: procs})
	if err != nil {
		return fmt.Errorf("%w: --idle-procs-after: %w", errUsage, err)
	}
	if idle != nil {
		lc.busy = idle.Busy
		idleCtx, stopIdle := context.WithCancel(ctx)
		idleDone := make(chan struct{})
		go func() { defer close(idleDone); idle.Run(idleCtx) }()
		defer func() { stopIdle(); <-idleDone }() // before restoreProcs
	}
	if *secure {
		if lc.certsDir, err = devCerts(*data, *nodes); err != nil {
			return err
		}
	}
	running, err := startLocalCluster(ctx, lc, log)
	if err != nil {
		return err
	}
	defer closeNodes(running, stderr)
	if *secure {
		return devSecure(ctx, running, lc.certsDir, stdout)
	}
	fmt.Fprintf(stdout, "ringkv dev: %d nodes ready (data in %s)\n", len(running), *data)
	for _, n := range running {
		fmt.Fprintf(stdout, "  %s  http://%s  drpc %s  gossip %s  redis %s\n", n.ID(), n.HTTPAddr(), n.RPCAddr(), n.GossipAddr(), n.RESPAddr())
	}
	fmt.Fprintln(stdout, `try: curl -s -XPOST localhost:8081/api/set -d '{"key":"user:1001","value":"John Doe"}'`)
	fmt.Fprintln(stdout, `  or: ringkv set user:1001 "John Doe"   (drpc to 127.0.0.1:9001 through the Go client)`)
	fmt.Fprintln(stdout, "Ctrl-C stops the cluster; the next 'ringkv dev' reuses the data.")
	<-ctx.Done()
	fmt.Fprintln(stdout, "ringkv dev: stopping")
	return nil
}

// localCluster says how to lay out a cluster of nodes in this process.
type localCluster struct {
	nodes                         int
	dataDir                       string  // node i uses dataDir/n<i>
	httpPort, rpcPort, gossipPort int     // of n1; node i uses port+i-1; 0 picks free ports
	respPort                      int     // as above; negative: no Redis protocol
	certsDir                      string  // set: node i uses certsDir/n<i> (a secure cluster)
	limits                        *limits // nil: the defaults
	memoryBudget                  int64   // node.Config.MemoryBudgetBytes of every node
	busy                          func()  // node.Deps.Busy of every node; nil: none
}

// startLocalCluster starts lc's nodes on loopback, each seeded with the
// gossip addresses of the ones before it, and waits until every node's
// ring lists all of them as joined. On error it closes what it started.
func startLocalCluster(ctx context.Context, lc localCluster, log *slog.Logger) ([]*node.Node, error) {
	var running []*node.Node
	for i := 1; i <= lc.nodes; i++ {
		cfg := node.DefaultConfig()
		cfg.ID = fmt.Sprintf("n%d", i)
		cfg.DataDir = filepath.Join(lc.dataDir, cfg.ID)
		cfg.HTTPAddr = loopback(lc.httpPort, i)
		cfg.RPCAddr = loopback(lc.rpcPort, i)
		cfg.GossipAddr = loopback(lc.gossipPort, i)
		if lc.respPort >= 0 {
			cfg.RESPAddr = loopback(lc.respPort, i)
		}
		for _, prev := range running { // seed with every earlier node
			cfg.Join = append(cfg.Join, prev.GossipAddr())
		}
		if lc.certsDir != "" {
			cfg.CertsDir = filepath.Join(lc.certsDir, cfg.ID)
			cfg.GossipKeyringFile = filepath.Join(lc.certsDir, pki.GossipKeyFile)
		}
		if lc.limits != nil {
			lc.limits.apply(&cfg)
		}
		cfg.MemoryBudgetBytes = lc.memoryBudget
		cfg.GossipProfile = localProfile
		cfg.Consensus.ReconcileInterval = localReconcile
		cfg.Logger = log
		reg := newRegistry()
		n, err := node.Open(cfg, node.Deps{Registerer: reg, Gatherer: reg, Busy: lc.busy})
		if err != nil {
			closeNodes(running, io.Discard)
			return nil, fmt.Errorf("start %s: %w", cfg.ID, err)
		}
		running = append(running, n)
	}
	if err := waitJoined(ctx, running, 30*time.Second); err != nil {
		closeNodes(running, io.Discard)
		return nil, err
	}
	return running, nil
}

// closeNodes closes nodes in reverse order, reporting failures to w.
func closeNodes(nodes []*node.Node, w io.Writer) {
	for i := len(nodes) - 1; i >= 0; i-- {
		if err := nodes[i].Close(); err != nil {
			fmt.Fprintf(w, "close %s: %v\n", nodes[i].ID(), err)
		}
	}
}

// waitJoined polls until every node's ring lists every node as joined.
func waitJoined(ctx context.Context, nodes []*node.Node, timeout time.Duration) error {
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	tick := time.NewTicker(50 * time.Millisecond)
	defer tick.Stop()
	for {
		if allJoined(nodes) {
			return nil
		}
		select {
		case <-ctx.Done():
			if errors.Is(ctx.Err(), context.DeadlineExceeded) {
				return fmt.Errorf("dev: nodes did not all join the ring within %s", timeout)
			}
			return nil
		case <-tick.C:
		}
	}
}

func allJoined(nodes []*node.Node) bool {
	for _, n := range nodes {
		r := n.Gossip().Ring()
		for _, m := range nodes {
			if mm, ok := r.Member(m.ID()); !ok || mm.Status != ring.Joined {
				return false
			}
		}
	}
	return true
}

// loopback returns 127.0.0.1 with node i's port: base+i-1, or 0 if base is 0.
func loopback(base, i int) string {
	if base == 0 {
		return "127.0.0.1:0"
	}
	return fmt.Sprintf("127.0.0.1:%d", base+i-1)
}
