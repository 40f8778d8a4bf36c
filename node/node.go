package node

import (
	"context"
	"errors"
	"fmt"
	stdlog "log"
	"log/slog"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"sync"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"storj.io/drpc"
	"storj.io/drpc/drpcmanager"
	"storj.io/drpc/drpcmux"
	"storj.io/drpc/drpcserver"
	"storj.io/drpc/drpcstream"

	"github.com/hashicorp/raft"

	"github.com/ringkv/ringkv/antientropy"
	"github.com/ringkv/ringkv/auth"
	"github.com/ringkv/ringkv/consensus"
	"github.com/ringkv/ringkv/coordinator"
	"github.com/ringkv/ringkv/internal/loglimit"
	"github.com/ringkv/ringkv/internal/pki"
	"github.com/ringkv/ringkv/internal/raftwal"
	"github.com/ringkv/ringkv/internal/rpcconn"
	"github.com/ringkv/ringkv/proto/kvpb"
	"github.com/ringkv/ringkv/replica"
	"github.com/ringkv/ringkv/resp"
	"github.com/ringkv/ringkv/ring"
	"github.com/ringkv/ringkv/ring/gossip"
)

// Deps are what the embedding program provides.
type Deps struct {
	// Registerer receives every component's metrics and Gatherer serves
	// them on /metrics. Both nil: a private registry.
	Registerer prometheus.Registerer
	Gatherer   prometheus.Gatherer
	// Busy, if set, is called for every request the node admits (client
	// or peer): `ringkv serve` passes its idle-procs controller's
	// (internal/idleprocs). Cheap and safe for concurrent use.
	Busy func()
}

// Node is one running ringkv node.
type Node struct {
	cfg   Config
	log   *slog.Logger
	store *replica.Store
	wal   *raftwal.WAL // every group's Raft log entries (format 2)
	clock *replica.Clock
	// clockOffset shifts the clock's physical time (nanoseconds); only the
	// test-only chaos hooks set it (Config.ChaosHooks, ChaosClockOffset).
	clockOffset atomic.Int64
	// diskBad: watchDisk found the disk unhealthy (disk.go).
	diskBad atomic.Bool
	// stalledAt is when diskHealth last saw an fsync stalled (unix
	// nanoseconds; 0: never).
	stalledAt atomic.Int64
	// diskGauge is ringkv_node_disk_unhealthy; diskReg the registerer it
	// is on, for Close.
	diskGauge prometheus.Gauge
	diskReg   prometheus.Registerer
	// syncDelay (nanoseconds) and syncFail are the fsync fault set through
	// POST /chaos/disk (Config.ChaosHooks only).
	syncDelay atomic.Int64
	syncFail  atomic.Bool
	gossip    *gossip.Gossip
	trans     *coordinator.RPCTransport
	raftTr    *consensus.Transport
	groups    *consensus.Manager
	coord     *coordinator.Coordinator
	backup    *coordinator.BackupServer
	trees     *antientropy.Trees
	aeCli     *antientropy.Client
	ae        *antientropy.Service
	// pki serves and dials TLS; nil on an insecure node.
	pki *pki.Reloader
	// authority holds users and roles; nil on an insecure node.
	authority *auth.Authority
	// handshakes limits the log lines about failed TLS handshakes.
	handshakes loglimit.Limiter
	// draining: Drain was called and Undrain was not (drain.go).
	draining atomic.Bool

	rpcLis  net.Listener
	httpLis net.Listener
	httpSrv *http.Server
	// respLis and respSrv serve the Redis protocol; nil when
	// Config.RESPAddr is empty (resp.go).
	respLis net.Listener
	respSrv *resp.Server

	cancel    context.CancelFunc
	wg        sync.WaitGroup
	closeOnce sync.Once
	closeErr  error
}

// Open starts a node: it opens the store, binds the listeners, joins gossip
// and starts serving. On error everything opened so far is closed again.
func Open(cfg Config, deps Deps) (_ *Node, err error) {
	cfg = cfg.withMemoryBudget()
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	if deps.Registerer == nil && deps.Gatherer == nil {
		reg := prometheus.NewRegistry()
		deps.Registerer, deps.Gatherer = reg, reg
	}
	if deps.Registerer == nil || deps.Gatherer == nil {
		return nil, errors.New("node: Deps.Registerer and Deps.Gatherer go together")
	}
	log := cfg.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	base := log // gossip adds node_id itself
	log = log.With("node_id", cfg.ID)
	if err := os.MkdirAll(cfg.DataDir, 0o755); err != nil {
		return nil, fmt.Errorf("node: create data dir: %w", err)
	}
	format, err := checkDiskFormat(cfg.DataDir)
	if err != nil {
		return nil, err
	}
	n := &Node{cfg: cfg, log: log}
	defer func() {
		if err != nil {
			_ = n.Close() // report the Open error, not a secondary one
		}
	}()

	rcfg := cfg.Replica
	rcfg.Dir = filepath.Join(cfg.DataDir, "replica")
	rcfg.Logger = log.With("component", "replica")
	n.trees = antientropy.NewTrees()
	rdeps := replica.Deps{Registerer: deps.Registerer, Observer: treeObserver(n.trees.Apply, n.decidedRing), BasePartitions: n.basePartitions}
	if cfg.ChaosHooks {
		rdeps.SyncFault = n.syncFault
	}
	if n.store, err = replica.Open(rcfg, rdeps); err != nil {
		return nil, fmt.Errorf("node: open replica store: %w", err)
	}
	if err := n.openWAL(format, deps.Registerer); err != nil {
		return nil, err
	}
	if cfg.ChaosHooks && cfg.ChaosClockOffset != 0 {
		n.clockOffset.Store(int64(cfg.ChaosClockOffset))
		log.Warn("chaos: clock offset set at start", "offset", cfg.ChaosClockOffset)
	}
	n.clock = replica.NewClock(func() time.Time {
		return time.Now().Add(time.Duration(n.clockOffset.Load()))
	}, 0)

	if n.rpcLis, err = net.Listen("tcp", cfg.RPCAddr); err != nil {
		return nil, fmt.Errorf("node: listen rpc: %w", err)
	}
	if n.httpLis, err = net.Listen("tcp", cfg.HTTPAddr); err != nil {
		return nil, fmt.Errorf("node: listen http: %w", err)
	}
	if n.rpcLis, n.httpLis, err = n.openSecurity(n.rpcLis, n.httpLis); err != nil {
		return nil, err
	}
	if err := n.listenRESP(); err != nil {
		return nil, err
	}

	gcfg := gossip.DefaultConfig()
	gcfg.NodeID = cfg.ID
	gcfg.Zone = cfg.Zone
	gcfg.BindAddr = cfg.GossipAddr
	gcfg.AdvertiseAddr = cfg.AdvertiseGossipAddr
	if gcfg.AdvertiseAddr == "" && cfg.Advertise != "" {
		gcfg.AdvertiseAddr = net.JoinHostPort(cfg.Advertise, "0") // the bound port
	}
	gcfg.RPCAddr = cfg.advertised(n.rpcLis.Addr(), cfg.AdvertiseRPCAddr)
	gcfg.HTTPAddr = cfg.advertised(n.httpLis.Addr(), cfg.AdvertiseHTTPAddr)
	gcfg.Seeds = cfg.Join
	gcfg.DataDir = cfg.DataDir
	gcfg.Ring = cfg.Ring
	gcfg.Profile = cfg.GossipProfile
	gcfg.KeyringFile = cfg.GossipKeyringFile
	gcfg.Logger = base.With("component", "gossip")
	gcfg.Starting = true // until announceReady
	gdeps := gossip.Deps{Registerer: deps.Registerer}
	if n.pki != nil {
		gdeps.Vet = n.vetPeer
	}
	if n.gossip, err = gossip.Open(gcfg, gdeps); err != nil {
		return nil, fmt.Errorf("node: open gossip: %w", err)
	}

	members := membership{g: n.gossip, overrides: cfg.PeerDialOverrides}
	self := rpcconn.Identity{NodeID: cfg.ID, Cluster: n.gossip.ClusterID}
	tcfg := cfg.RPC
	tcfg.Logger = log.With("component", "transport")
	tcfg.TLS = n.peerTLS()
	tcfg.Identity = self
	if n.trans, err = coordinator.NewRPCTransport(tcfg, members, deps.Registerer); err != nil {
		return nil, fmt.Errorf("node: transport: %w", err)
	}
	rtcfg := consensus.TransportConfig{NodeID: cfg.ID, Logger: log.With("component", "raft_transport"), TLS: n.peerTLS(), Identity: self}
	if n.raftTr, err = consensus.NewTransport(rtcfg, members, deps.Registerer); err != nil {
		return nil, fmt.Errorf("node: raft transport: %w", err)
	}
	gcfgRaft := cfg.Consensus
	gcfgRaft.NodeID = cfg.ID
	gcfgRaft.DataDir = filepath.Join(cfg.DataDir, "raft")
	gcfgRaft.Logger = log.With("component", "consensus")
	gcfgRaft.Founder = n.gossip.Founded()
	store := n.store
	n.groups, err = consensus.NewManager(gcfgRaft, consensus.Deps{
		Store:      store,
		Clock:      n.clock,
		Ring:       n.gossip,
		Transports: n.raftTr,
		Logs: func(group uint32) (raft.LogStore, raft.StableStore, error) {
			ls, err := consensus.NewWALLogStore(store, n.wal, group)
			if err != nil {
				return nil, nil, fmt.Errorf("log store: %w", err)
			}
			ls.SetSyncStallLimit(cfg.diskStallTimeout()) // a stalled leader steps down (disk.go)
			return ls, ls, nil
		},
		Progress:   n.trans,
		Registerer: deps.Registerer,
		Drains:     members,
		Features:   members,
	})
	if err != nil {
		return nil, fmt.Errorf("node: consensus: %w", err)
	}
	ccfg := cfg.Coordinator
	ccfg.NodeID = cfg.ID
	ccfg.Logger = log.With("component", "coordinator")
	var authz coordinator.Authorizer
	var logins coordinator.Authenticator
	if n.pki != nil {
		acfg := cfg.Auth
		acfg.Logger = log.With("component", "auth")
		if n.authority, err = auth.New(acfg, auth.Deps{Store: reservedStore{n}}); err != nil {
			return nil, fmt.Errorf("node: auth: %w", err)
		}
		authz, logins = authorizer{n}, login{n}
	}
	n.coord, err = coordinator.New(ccfg, coordinator.Deps{
		Store:      n.store,
		Clock:      n.clock,
		Ring:       n.gossip,
		Transport:  n.trans,
		Liveness:   members,
		Registerer: deps.Registerer,
		Groups:     n.groups,
		Lin:        n.trans,
		Auth:       authz,
		Login:      logins,
		Busy:       deps.Busy,
	})
	if err != nil {
		return nil, fmt.Errorf("node: coordinator: %w", err)
	}
	n.gossip.SetStore(ringRegister{reservedStore{n}})

	aecfg := cfg.AntiEntropy
	aecfg.NodeID = cfg.ID
	aecfg.Logger = log.With("component", "antientropy")
	n.aeCli = antientropy.NewClient(members, n.peerTLS(), self)
	ahead := prometheus.NewCounter(prometheus.CounterOpts{
		Namespace: "ringkv", Subsystem: "node", Name: "repair_records_ahead_total",
		Help: "Records anti-entropy pulled from a peer and skipped: stamped further ahead of this node's clock than the maximum clock offset.",
	})
	if deps.Registerer != nil {
		if err := deps.Registerer.Register(ahead); err != nil {
			return nil, fmt.Errorf("node: register metrics: %w", err)
		}
	}
	n.ae, err = antientropy.New(aecfg, antientropy.Deps{
		Trees:      n.trees,
		Store:      aeStore{s: n.store, clock: n.clock, ahead: ahead, log: aecfg.Logger, logs: new(loglimit.Limiter)},
		Scrub:      aeStore{s: n.store},
		Collect:    aeStore{s: n.store},
		Peers:      n.aeCli,
		Ring:       n.gossip,
		Liveness:   members,
		Registerer: deps.Registerer,
	})
	if err != nil {
		return nil, fmt.Errorf("node: antientropy: %w", err)
	}

	mux := drpcmux.New()
	rs, err := coordinator.NewReplicaServer(n.store, n.clock, coordinator.ReplicaServerOptions{
		NodeID: cfg.ID, Ring: n.gossip, Logger: log.With("component", "replica_server"), Registerer: deps.Registerer,
	})
	if err != nil {
		return nil, fmt.Errorf("node: replica service: %w", err)
	}
	rs.SetAdmission(n.coord) // other coordinators' calls take the peer budget
	if err := kvpb.DRPCRegisterReplica(mux, rs); err != nil {
		return nil, fmt.Errorf("node: register replica service: %w", err)
	}
	lin := coordinator.NewLinearizableServer(n.groups)
	lin.SetResolver(n.coord) // forwarded operations read and write through transactions' intents
	if err := kvpb.DRPCRegisterLinearizable(mux, lin); err != nil {
		return nil, fmt.Errorf("node: register linearizable service: %w", err)
	}
	if err := kvpb.DRPCRegisterClient(mux, coordinator.NewClientServer(n.coord, members)); err != nil {
		return nil, fmt.Errorf("node: register client service: %w", err)
	}
	bcfg := coordinator.DefaultBackupConfig()
	bcfg.Logger = log.With("component", "backup")
	if n.backup, err = coordinator.NewBackupServer(n.coord, bcfg); err != nil {
		return nil, fmt.Errorf("node: backup service: %w", err)
	}
	if err := kvpb.DRPCRegisterBackup(mux, n.backup); err != nil {
		return nil, fmt.Errorf("node: register backup service: %w", err)
	}
	if err := kvpb.DRPCRegisterRepair(mux, n.ae); err != nil {
		return nil, fmt.Errorf("node: register repair service: %w", err)
	}
	if err := n.raftTr.Register(mux); err != nil {
		return nil, fmt.Errorf("node: register raft service: %w", err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	n.cancel = cancel
	// ManualFlush: a unary answer and the stream's close go out in one
	// write instead of two. The one server stream that sends and goes on
	// (the raft pipeline) flushes each message itself.
	pc, err := newPeerCheck(mux, n.gossip, deps.Registerer, log.Warn)
	if err != nil {
		return nil, fmt.Errorf("node: %w", err)
	}
	var handler drpc.Handler = pc
	if n.pki != nil {
		var refusals loglimit.Limiter
		handler = planeGuard{next: pc, warn: func(peer, rpc string) {
			if refusals.Allow(peer, time.Now()) {
				log.Warn("refused a peer service to a caller without a node certificate", "peer", peer, "rpc", rpc)
			}
		}}
	}
	rpcSrv := drpcserver.NewWithOptions(handler, drpcserver.Options{
		Manager: drpcmanager.Options{Stream: drpcstream.Options{ManualFlush: true}},
	})
	n.wg.Add(1)
	go func() {
		defer n.wg.Done()
		if err := rpcSrv.Serve(ctx, n.rpcLis); err != nil && ctx.Err() == nil {
			log.Error("drpc server stopped", "err", err)
		}
	}()

	httpHandler := n.httpHandler(deps.Gatherer)
	if n.pki != nil {
		httpHandler = n.guardHTTP(httpHandler)
	}
	n.httpSrv = &http.Server{Handler: httpHandler, ReadHeaderTimeout: 10 * time.Second}
	if n.pki != nil {
		n.httpSrv.ErrorLog = stdlog.New(httpErrorLog{n}, "", 0)
	}
	httpLis := n.httpLis
	n.wg.Add(1)
	go func() {
		defer n.wg.Done()
		if err := n.httpSrv.Serve(httpLis); err != nil && !errors.Is(err, http.ErrServerClosed) {
			log.Error("http server stopped", "err", err)
		}
	}()
	if err := n.serveRESP(); err != nil {
		return nil, err
	}
	// Groups start once peers can reach this node's raft service.
	if err := n.groups.Start(); err != nil {
		return nil, fmt.Errorf("node: start raft groups: %w", err)
	}
	n.ae.Start()
	n.wg.Add(1)
	go func() {
		defer n.wg.Done()
		n.announceReady(ctx)
	}()
	n.diskGauge = newDiskGauge()
	if err := deps.Registerer.Register(n.diskGauge); err != nil {
		return nil, fmt.Errorf("node: register metrics: %w", err)
	}
	n.diskReg = deps.Registerer
	n.wg.Add(1)
	go func() {
		defer n.wg.Done()
		n.watchDisk(ctx)
	}()
	log.Info("node started", "resp", n.RESPAddr(), "http", n.HTTPAddr(), "rpc", n.RPCAddr(), "gossip", n.GossipAddr(), "advertised_http", gcfg.HTTPAddr, "advertised_rpc", gcfg.RPCAddr, "data", cfg.DataDir)
	return n, nil
}

// ID returns the node's id.
func (n *Node) ID() string { return n.cfg.ID }

// HTTPAddr returns the bound HTTP address (peers are told the advertised
// one: Config.Advertise).
func (n *Node) HTTPAddr() string { return n.httpLis.Addr().String() }

// RPCAddr returns the bound drpc address.
func (n *Node) RPCAddr() string { return n.rpcLis.Addr().String() }

// GossipAddr returns the bound gossip address.
func (n *Node) GossipAddr() string { return n.gossip.Addr() }

// Coordinator returns the node's coordinator, for embedding programs and
// tests that bypass HTTP.
func (n *Node) Coordinator() *coordinator.Coordinator { return n.coord }

// Gossip returns the node's membership, for status reporting.
func (n *Node) Gossip() *gossip.Gossip { return n.gossip }

// Close stops serving and closes every component, waiting for their
// goroutines. It is safe to call more than once.
func (n *Node) Close() error {
	n.closeOnce.Do(func() {
		var errs []error
		if n.httpSrv != nil {
			ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
			if err := n.httpSrv.Shutdown(ctx); err != nil {
				errs = append(errs, fmt.Errorf("node: http shutdown: %w", err))
			}
			cancel()
		} else if n.httpLis != nil {
			_ = n.httpLis.Close() // never served; nothing else holds it
		}
		if n.respSrv != nil {
			errs = append(errs, n.respSrv.Close())
		} else if n.respLis != nil {
			_ = n.respLis.Close() // never served; nothing else holds it
		}
		if n.cancel != nil {
			n.cancel()
		} else if n.rpcLis != nil {
			_ = n.rpcLis.Close() // never served; nothing else holds it
		}
		n.wg.Wait()
		if n.diskReg != nil {
			n.diskReg.Unregister(n.diskGauge)
		}
		if n.ae != nil {
			errs = append(errs, n.ae.Close())
		}
		if n.aeCli != nil {
			errs = append(errs, n.aeCli.Close())
		}
		if n.backup != nil {
			errs = append(errs, n.backup.Close())
		}
		if n.coord != nil {
			errs = append(errs, n.coord.Close())
		}
		if n.groups != nil {
			errs = append(errs, n.groups.Close())
		}
		if n.raftTr != nil {
			errs = append(errs, n.raftTr.Close())
		}
		if n.trans != nil {
			errs = append(errs, n.trans.Close())
		}
		if n.gossip != nil {
			errs = append(errs, n.gossip.Close())
		}
		if n.wal != nil {
			errs = append(errs, n.wal.Close())
		}
		if n.store != nil {
			errs = append(errs, n.store.Close())
		}
		n.closeErr = errors.Join(errs...)
		n.log.Info("node stopped")
	})
	return n.closeErr
}

// announceReady stops advertising "starting" once the node is first
// ready (joined, a group for every partition it replicates, every group's
// leader known) and knows the address of every other joined member (a
// restarted node without --join learns them only when they reconnect to
// it; until then it cannot reach their replicas), or, failing the latter,
// startPeersWait after it started; or when ctx ends. Goroutine: one,
// started by Open.
func (n *Node) announceReady(ctx context.Context) {
	tick := time.NewTicker(100 * time.Millisecond)
	defer tick.Stop()
	start := time.Now()
	for {
		if n.readyIgnoringDrain() && (n.peersKnown() || time.Since(start) > startPeersWait) {
			if err := n.gossip.SetStarting(false); err != nil {
				n.log.Debug("advertise ready", "err", err)
			}
			return
		}
		select {
		case <-ctx.Done():
			return
		case <-tick.C:
		}
	}
}

// startPeersWait bounds how long announceReady waits for the addresses of
// members that may be down for good.
const startPeersWait = 10 * time.Second

// peersKnown reports whether gossip gives an RPC address, and liveness,
// for every other joined member of the ring.
func (n *Node) peersKnown() bool {
	for _, m := range n.gossip.Ring().Members() {
		if m.ID == n.cfg.ID || m.Status != ring.Joined {
			continue
		}
		if info, ok := n.gossip.Member(m.ID); !ok || info.RPCAddr == "" || info.Liveness != gossip.Alive {
			return false
		}
	}
	return true
}

// membership adapts gossip to the coordinator's Resolver and Liveness.
// overrides (Config.PeerDialOverrides, test-only) replaces the address
// dialed for a peer.
type membership struct {
	g         *gossip.Gossip
	overrides map[string]string
}

func (m membership) RPCAddr(id string) (string, bool) {
	if addr, ok := m.overrides[id]; ok {
		return addr, true
	}
	info, ok := m.g.Member(id)
	if !ok || info.RPCAddr == "" {
		return "", false
	}
	return info.RPCAddr, true
}

// ClientMembers implements coordinator.MemberLister.
func (m membership) ClientMembers() []coordinator.ClientMember {
	infos := m.g.Members()
	out := make([]coordinator.ClientMember, 0, len(infos))
	for _, mi := range infos {
		status := ""
		if mi.Status != 0 {
			status = mi.Status.String()
		}
		out = append(out, coordinator.ClientMember{
			ID: mi.ID, Zone: mi.Zone, RPCAddr: mi.RPCAddr, HTTPAddr: mi.HTTPAddr,
			Alive: mi.Liveness == gossip.Alive, Status: status, Draining: mi.Draining || mi.Starting,
		})
	}
	return out
}

// Draining implements consensus.DrainSource and the coordinator's
// optional read-ordering ability: id advertises that it drains, or that
// it has not been ready since it started (it gets no leadership and is
// read from last meanwhile).
func (m membership) Draining(id string) bool {
	info, ok := m.g.Member(id)
	return ok && (info.Draining || info.Starting)
}

// SpeaksWire implements consensus.Features: every member of the ring
// that is not removed advertises a wire range reaching version (a member
// whose metadata this node never saw does not).
func (m membership) SpeaksWire(version int) bool {
	for _, rm := range m.g.Ring().Members() {
		if rm.Status == ring.Removed {
			continue
		}
		if info, ok := m.g.Member(rm.ID); !ok || info.Wire.Max < version {
			return false
		}
	}
	return true
}

func (m membership) Alive(id string) bool {
	info, ok := m.g.Member(id)
	return ok && info.Liveness == gossip.Alive
}

// basePartitions is the replica store's source of the cluster's first P
// (replica.Deps.BasePartitions): the ring's base once this node holds a
// decided ring, 0 before.
func (n *Node) basePartitions() int {
	if r := n.decidedRing(); r != nil {
		return r.Base()
	}
	return 0
}

// decidedRing returns the ring this node holds once it is a decided one
// (version above 0), nil before: a joiner's own ring config may differ
// from the cluster's. The replica store asks it (basePartitions,
// treeObserver) from its committer: gossip is opened after the store,
// before anything else uses it.
func (n *Node) decidedRing() *ring.Ring {
	if n.gossip == nil {
		return nil
	}
	if r := n.gossip.Ring(); r.Version() > 0 {
		return r
	}
	return nil
}
