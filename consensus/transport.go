package consensus

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"time"

	"github.com/hashicorp/raft"
	"github.com/prometheus/client_golang/prometheus"
	"storj.io/drpc"
	"storj.io/drpc/drpcerr"

	"github.com/ringkv/ringkv/internal/rpcconn"
	"github.com/ringkv/ringkv/proto/kvpb"
)

// Sentinels of the Raft transport. They live here rather than in errors.go
// because the transport was written alongside the rest of the package.
var (
	// ErrUnknownPeer is returned when the Resolver has no address for the
	// target node id. It is returned before any network I/O.
	ErrUnknownPeer = errors.New("consensus: unknown peer")
	// ErrUnknownGroup is returned (wrapped) when the target node hosts no
	// transport for the request's group: the group is not created there yet
	// or was removed. Raft retries with backoff.
	ErrUnknownGroup = errors.New("consensus: unknown raft group")
	// ErrTransportClosed is returned by every call made after the Transport,
	// or the calling group's transport, was closed.
	ErrTransportClosed = errors.New("consensus: raft transport closed")
)

// errRemote marks errors a peer's Raft service returned (as opposed to
// failures to reach it).
var errRemote = errors.New("consensus: raft peer error")

// drpc error codes of the Raft service. codeFor and remoteError are the one
// table that maps errors across the RPC boundary, in both directions; the
// codes travel as drpc error codes and, per request, as error_code in
// AppendEntriesResponse.
const (
	codeInternal     uint64 = 1
	codeClosed       uint64 = 2
	codeUnknownGroup uint64 = 3
)

func codeFor(err error) uint64 {
	switch {
	case errors.Is(err, ErrUnknownGroup):
		return codeUnknownGroup
	case errors.Is(err, ErrTransportClosed):
		return codeClosed
	default:
		return codeInternal
	}
}

// rpcError wraps a server-side error with its drpc code.
func rpcError(err error) error {
	return drpcerr.WithCode(err, codeFor(err))
}

// remoteError turns an error a peer answered with (code as sent by
// codeFor) into ours.
func remoteError(code uint64, err error) error {
	if code == codeUnknownGroup {
		return fmt.Errorf("%w: %w", ErrUnknownGroup, err)
	}
	return fmt.Errorf("%w: %w", errRemote, err)
}

// callError turns an error returned by a drpc call into ours: errors the
// peer sent keep their class, anything else is a failure to reach it.
func callError(err error) error {
	if code := drpcerr.Code(err); code != 0 {
		return remoteError(code, err)
	}
	return err
}

const (
	// snapshotChunkBytes is the size of the data chunks InstallSnapshot
	// streams; it also scales the InstallSnapshot timeout.
	snapshotChunkBytes = 256 << 10
	// pipelineDepth caps the AppendEntries in flight per pipeline (one
	// group to one peer); raft's AppendEntries blocks beyond it.
	pipelineDepth = 64
	// maxFrameRequests and maxFrameBytes cap one AppendEntriesBatch on the
	// pipeline stream. drpc refuses messages over 4 MiB by default, so one
	// AppendEntries request must stay below that (raft's MaxAppendEntries
	// times the largest entry).
	maxFrameRequests = 256
	maxFrameBytes    = 1 << 20
	// streamQueue is the per-peer queue of pipelined requests waiting for
	// the stream's writer.
	streamQueue = 1024
)

// Resolver maps a node id (the raft.ServerID and raft.ServerAddress of that
// node in every group) to its drpc address. It must be safe for concurrent
// use.
type Resolver interface {
	RPCAddr(nodeID string) (string, bool)
}

// TransportConfig tunes a Transport.
type TransportConfig struct {
	// NodeID is this node's id: the LocalAddr of every group transport.
	// Required.
	NodeID string
	// ConnsPerPeer bounds the pooled connections to each peer, which carry
	// the unary RPCs (votes, TimeoutNow, unpipelined AppendEntries) and
	// InstallSnapshot streams; each carries one RPC at a time. Every peer
	// also gets one more, long-lived connection for the stream that carries
	// heartbeats and pipelined AppendEntries. More raises concurrency at the
	// cost of file descriptors. Default 4.
	ConnsPerPeer int
	// Timeout bounds each RPC, waiting for a pooled connection included.
	// InstallSnapshot gets Timeout per 256 KiB of snapshot (at least
	// Timeout), as raft's NetworkTransport does. Default 5s.
	Timeout time.Duration
	// HeartbeatWindow is how long a peer's stream writer, when it holds
	// only periodic heartbeats, waits for more before sending them as one
	// frame. A pipelined AppendEntries, or a heartbeat of a group that is
	// confirming its leadership for a read (see BeginUrgent), ends the wait
	// at once, so the window costs idle groups a little heartbeat latency
	// and never delays reads or writes. Default 25ms (heartbeats go out
	// every HeartbeatTimeout/10, 100ms by default); negative sends at once
	// (requests still coalesce while the writer is busy).
	HeartbeatWindow time.Duration
	// DialTimeout bounds connecting to a peer, the TLS handshake
	// included. Default 1s.
	DialTimeout time.Duration
	// LivenessInterval is how often, once SetLiveness is called, the
	// transport tells each peer which groups this node leads and in which
	// it follows that peer (liveness.go). Default 200ms; negative sends
	// none, and every heartbeat travels.
	LivenessInterval time.Duration
	// LivenessTimeout is how long a peer's last liveness message stands
	// for the heartbeats of the groups it follows this node in. It must
	// exceed LivenessInterval; keep it below raft's LeaderLeaseTimeout
	// plus a little, since a leader cut off from its followers steps down
	// only once their liveness has lapsed and its lease has run out.
	// Default 600ms.
	LivenessTimeout time.Duration
	// ConfirmTimeout bounds a node-level leadership confirmation round
	// (confirm.go): the groups a round leaves unconfirmed then ask raft
	// (VerifyLeader). Default 300ms; negative turns node-level
	// confirmation off, and every group confirms its own leadership
	// through raft.
	ConfirmTimeout time.Duration
	// TLS gives the configuration for dialing a peer's address; nil
	// dials plain TCP (an insecure cluster).
	TLS func(addr string) *tls.Config
	// Identity is sent with every call (rpcconn.Conn.SetIdentity), so
	// that peers can refuse calls from another cluster or from a node
	// outside their membership; the zero value sends none.
	Identity rpcconn.Identity
	// Logger receives transport events; nil discards them.
	Logger *slog.Logger
}

// DefaultTransportConfig returns fresh defaults (NodeID still to be set).
func DefaultTransportConfig() TransportConfig {
	return TransportConfig{
		ConnsPerPeer:     4,
		Timeout:          5 * time.Second,
		HeartbeatWindow:  25 * time.Millisecond,
		DialTimeout:      time.Second,
		LivenessInterval: 200 * time.Millisecond,
		LivenessTimeout:  600 * time.Millisecond,
		ConfirmTimeout:   300 * time.Millisecond,
	}
}

// Validate reports every problem with c.
func (c TransportConfig) Validate() error {
	var errs []error
	if c.NodeID == "" {
		errs = append(errs, errors.New("consensus: TransportConfig.NodeID is empty"))
	}
	if c.ConnsPerPeer <= 0 {
		errs = append(errs, fmt.Errorf("consensus: TransportConfig.ConnsPerPeer %d, want > 0", c.ConnsPerPeer))
	}
	if c.Timeout <= 0 {
		errs = append(errs, fmt.Errorf("consensus: TransportConfig.Timeout %v, want > 0", c.Timeout))
	}
	if c.DialTimeout <= 0 {
		errs = append(errs, fmt.Errorf("consensus: TransportConfig.DialTimeout %v, want > 0", c.DialTimeout))
	}
	if c.LivenessInterval > 0 && c.LivenessTimeout <= c.LivenessInterval {
		errs = append(errs, fmt.Errorf("consensus: TransportConfig.LivenessTimeout %v, want > LivenessInterval %v", c.LivenessTimeout, c.LivenessInterval))
	}
	return errors.Join(errs...)
}

// Transport multiplexes the Raft RPCs of every group a node hosts over
// drpc: one instance per node, served on the node's drpc server by
// Register, handing out one raft.Transport per group through Group.
//
// Toward each peer node it keeps a pool of at most ConnsPerPeer
// connections for unary RPCs and snapshots, plus one long-lived
// AppendEntriesPipeline stream that carries the heartbeats and the
// pipelined replication of every group; requests waiting for the stream's
// writer at the same moment travel as one frame. Heartbeats (AppendEntries
// without entries, which raft sends every HeartbeatTimeout/10 per group and
// follower) bound for the same peer within HeartbeatWindow share a frame,
// and the receiver answers them at once through each group's heartbeat
// fast path. A stream frame costs one write on each side where a unary
// drpc call costs about four, which is what idle groups mostly pay for.
//
// Once the Manager calls SetLiveness, most periodic heartbeats do not
// travel at all (liveness.go): every LivenessInterval each node sends each
// peer one liveness message on its stream, naming the groups it leads and
// those in which it follows that peer, with their terms. A leader's
// periodic heartbeat to a follower whose node's last message is younger
// than LivenessTimeout and says it follows this leader at the heartbeat's
// term is answered by the transport itself; a follower's node, receiving a
// leader's message, hands each of its groups that follows that leader at
// the named term the heartbeat raft would have sent. Raft's timers are
// unchanged: when a node dies or is cut off its messages stop, its
// followers' election timers and its peers' leader leases run out as they
// would without heartbeats. Heartbeats of a group confirming its
// leadership for reads (BeginUrgent) always travel.
//
// Incoming RPCs for a group this node does not host (not yet created, or
// removed) are answered at once with ErrUnknownGroup; raft backs off and
// retries, so a group created a little later than its peers' catches up.
//
// Goroutines, all stopped by Close:
//   - per peer, while its stream is open, the writer (fed by heartbeats
//     and pipelines) and the reader (fed by the peer), which also owns the
//     stream's connection; a failed stream ends both and is reopened on
//     the next heartbeat or AppendEntriesPipeline;
//   - once SetLiveness is called, one goroutine sending the liveness
//     messages;
//   - while groups confirm their leadership for reads, one goroutine
//     running the node's confirmation rounds (confirm.go);
//   - per pipeline, one goroutine delivering completed futures in order to
//     raft, stopped by the pipeline's Close;
//   - server side, per incoming stream (in the drpc server's handler
//     goroutine, which answers heartbeats itself), one response writer and
//     one worker per group seen on the stream, which keeps each group's
//     pipelined requests in order without one busy group holding up the
//     others; they end with the stream.
//
// All methods are safe for concurrent use.
type Transport struct {
	cfg      TransportConfig
	resolver Resolver
	log      *slog.Logger
	m        transportMetrics

	// lifetime ends with Close; every outbound call and goroutine derives
	// from it.
	lifetime context.Context
	cancel   context.CancelFunc
	// wg counts the transport's goroutines and outbound calls in progress;
	// Add only under mu while !mu.closed, or from a counted goroutine.
	wg sync.WaitGroup
	// confirm runs the node-level leadership confirmations (confirm.go).
	confirm confirmer

	mu struct {
		sync.Mutex
		closed bool
		groups map[uint32]*groupTransport
		peers  map[string]*peer // by drpc address
		// liveness reports this node's groups (SetLiveness); nil until set.
		liveness LivenessSource
		// live holds each peer node's last liveness message, by node id.
		live map[string]*peerLiveness
	}
}

// NewTransport returns a Transport for the node cfg.NodeID, resolving peers
// with resolver and registering its metrics on reg (nil keeps them
// private). It returns an error for an invalid config or a metric that is
// already registered. Nothing listens until Register.
func NewTransport(cfg TransportConfig, resolver Resolver, reg prometheus.Registerer) (*Transport, error) {
	def := DefaultTransportConfig()
	if cfg.ConnsPerPeer == 0 {
		cfg.ConnsPerPeer = def.ConnsPerPeer
	}
	if cfg.Timeout == 0 {
		cfg.Timeout = def.Timeout
	}
	if cfg.HeartbeatWindow == 0 {
		cfg.HeartbeatWindow = def.HeartbeatWindow
	}
	if cfg.DialTimeout == 0 {
		cfg.DialTimeout = def.DialTimeout
	}
	if cfg.LivenessInterval == 0 {
		cfg.LivenessInterval = def.LivenessInterval
	}
	if cfg.LivenessTimeout == 0 {
		cfg.LivenessTimeout = max(def.LivenessTimeout, 3*cfg.LivenessInterval)
	}
	if cfg.ConfirmTimeout == 0 {
		cfg.ConfirmTimeout = def.ConfirmTimeout
	}
	err := cfg.Validate()
	if resolver == nil {
		err = errors.Join(err, errors.New("consensus: NewTransport needs a Resolver"))
	}
	if err != nil {
		return nil, err
	}
	log := cfg.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	if reg == nil {
		reg = prometheus.NewRegistry()
	}
	m, err := newTransportMetrics(reg)
	if err != nil {
		return nil, err
	}
	ctx, cancel := context.WithCancel(context.Background())
	t := &Transport{cfg: cfg, resolver: resolver, log: log, m: m, lifetime: ctx, cancel: cancel}
	t.mu.groups = make(map[uint32]*groupTransport)
	t.mu.peers = make(map[string]*peer)
	t.mu.live = make(map[string]*peerLiveness)
	return t, nil
}

// Register serves the Raft service of t on mux, normally the mux of the
// node's drpc server that already serves Replica. It returns the mux's
// error if the service is already registered.
func (t *Transport) Register(mux drpc.Mux) error {
	if err := kvpb.DRPCRegisterRaft(mux, raftServer{t}); err != nil {
		return fmt.Errorf("register raft service: %w", err)
	}
	return nil
}

// Group returns the raft.Transport of group, creating it on first call;
// later calls return the same one until it is closed (by raft's Shutdown,
// which closes its transport, or by RemoveGroup), after which the next call
// creates a fresh one. Its Consumer receives only this group's RPCs. The
// result also implements raft.WithClose and raft.WithPreVote. After Close,
// Group returns a transport whose calls fail with ErrTransportClosed.
func (t *Transport) Group(group uint32) raft.Transport {
	t.mu.Lock()
	defer t.mu.Unlock()
	if g, ok := t.mu.groups[group]; ok {
		return g
	}
	g := &groupTransport{t: t, group: group, consumer: make(chan raft.RPC), closed: make(chan struct{})}
	g.mu.pipelines = make(map[*pipeline]struct{})
	if t.mu.closed {
		g.closeLocked()
		return g
	}
	t.mu.groups[group] = g
	return g
}

// RemoveGroup closes group's transport, if any: its pending calls and
// pipelines fail with ErrTransportClosed and incoming RPCs for group are
// answered with ErrUnknownGroup. Shut the group's raft down first.
func (t *Transport) RemoveGroup(group uint32) {
	t.mu.Lock()
	g := t.mu.groups[group]
	delete(t.mu.groups, group)
	t.mu.Unlock()
	if g != nil {
		g.close()
	}
}

// Close closes every group transport, stops every goroutine of t, and
// closes every connection, waiting for calls in progress to fail with
// ErrTransportClosed. Incoming streams end; the drpc server itself belongs
// to the caller. Close is idempotent and returns nil.
func (t *Transport) Close() error {
	t.mu.Lock()
	if t.mu.closed {
		t.mu.Unlock()
		return nil
	}
	t.mu.closed = true
	groups := t.mu.groups
	t.mu.groups = make(map[uint32]*groupTransport)
	peers := t.mu.peers
	t.mu.Unlock()

	for _, g := range groups {
		g.close()
	}
	t.cancel()
	t.wg.Wait()
	for _, p := range peers {
		p.closeIdle()
	}
	return nil
}

// group returns the live transport of group, or nil.
func (t *Transport) group(group uint32) *groupTransport {
	t.mu.Lock()
	defer t.mu.Unlock()
	return t.mu.groups[group]
}

// begin counts an outbound call in t.wg; it fails once t is closed. The
// caller calls t.wg.Done when the call ends.
func (t *Transport) begin() error {
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.mu.closed {
		return ErrTransportClosed
	}
	t.wg.Add(1)
	return nil
}

// peerFor resolves target and returns its peer, creating it on first use.
func (t *Transport) peerFor(target raft.ServerAddress) (*peer, error) {
	addr, ok := t.resolver.RPCAddr(string(target))
	if !ok {
		return nil, fmt.Errorf("%w: %s", ErrUnknownPeer, target)
	}
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.mu.closed {
		return nil, ErrTransportClosed
	}
	if p, ok := t.mu.peers[addr]; ok {
		return p, nil
	}
	p := &peer{
		addr:  addr,
		node:  string(target),
		slots: make(chan struct{}, t.cfg.ConnsPerPeer),
		idle:  make(chan *rpcconn.Conn, t.cfg.ConnsPerPeer),
	}
	t.mu.peers[addr] = p
	return p, nil
}

func (t *Transport) dial(ctx context.Context, addr string) (*rpcconn.Conn, error) {
	ctx, cancel := context.WithTimeout(ctx, t.cfg.DialTimeout)
	defer cancel()
	conn, err := rpcconn.Dial(ctx, addr, t.cfg.TLS)
	if err != nil {
		return nil, fmt.Errorf("dial raft peer %s: %w", addr, err)
	}
	conn.SetIdentity(t.cfg.Identity)
	return conn, nil
}

// call runs fn on a pooled connection to target within timeout.
func (t *Transport) call(target raft.ServerAddress, timeout time.Duration, fn func(context.Context, kvpb.DRPCRaftClient) error) error {
	p, err := t.peerFor(target)
	if err != nil {
		return err
	}
	if err := t.begin(); err != nil {
		return err
	}
	defer t.wg.Done()
	ctx, cancel := context.WithTimeout(t.lifetime, timeout)
	defer cancel()
	return t.callPeer(ctx, p, fn)
}

func (t *Transport) callPeer(ctx context.Context, p *peer, fn func(context.Context, kvpb.DRPCRaftClient) error) error {
	conn, err := t.acquire(ctx, p)
	if err != nil {
		return err
	}
	err = fn(ctx, kvpb.NewDRPCRaftClient(conn))
	p.release(conn)
	if err != nil && t.lifetime.Err() != nil {
		return ErrTransportClosed
	}
	return err
}

// acquire returns an idle connection to p or dials one, waiting (bounded by
// ctx) while ConnsPerPeer are in use.
func (t *Transport) acquire(ctx context.Context, p *peer) (*rpcconn.Conn, error) {
	var conn *rpcconn.Conn
	select {
	case conn = <-p.idle:
	default:
		select {
		case conn = <-p.idle:
		case p.slots <- struct{}{}:
		case <-ctx.Done():
			if t.lifetime.Err() != nil {
				return nil, ErrTransportClosed
			}
			return nil, fmt.Errorf("wait for a connection to %s: %w", p.addr, ctx.Err())
		}
	}
	if conn != nil {
		select {
		case <-conn.Closed():
			_ = conn.Close() // already broken; redial on its slot
		default:
			return conn, nil
		}
	}
	conn, err := t.dial(ctx, p.addr)
	if err != nil {
		<-p.slots
		return nil, err
	}
	return conn, nil
}

// peer is the client side of one peer node.
type peer struct {
	addr string
	// node is the node id the peer was first resolved from.
	node string
	// slots holds a token per open pooled connection (idle or in use).
	slots chan struct{}
	// idle holds the pooled connections not in use; its capacity equals
	// slots', so release never blocks.
	idle chan *rpcconn.Conn

	mu struct {
		sync.Mutex
		stream *appendStream // nil or possibly failed; replaced on demand
	}
}

// release returns conn to the pool, or closes it if drpc has closed it (a
// canceled call hard-closes its connection).
func (p *peer) release(conn *rpcconn.Conn) {
	select {
	case <-conn.Closed():
		_ = conn.Close() // broken: nothing to report
		<-p.slots
	default:
		p.idle <- conn
	}
}

func (p *peer) closeIdle() {
	for {
		select {
		case conn := <-p.idle:
			_ = conn.Close() // shutting down
			<-p.slots
		default:
			return
		}
	}
}
