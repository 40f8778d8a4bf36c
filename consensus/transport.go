package consensus

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"sync"
	"sync/atomic"
	"time"

	"github.com/hashicorp/raft"
	"github.com/prometheus/client_golang/prometheus"
	"google.golang.org/protobuf/proto"
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
	// TLS gives the configuration for dialing a peer's address; nil
	// dials plain TCP (an insecure cluster).
	TLS func(addr string) *tls.Config
	// Logger receives transport events; nil discards them.
	Logger *slog.Logger
}

// DefaultTransportConfig returns fresh defaults (NodeID still to be set).
func DefaultTransportConfig() TransportConfig {
	return TransportConfig{
		ConnsPerPeer:    4,
		Timeout:         5 * time.Second,
		HeartbeatWindow: 25 * time.Millisecond,
		DialTimeout:     time.Second,
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
// Incoming RPCs for a group this node does not host (not yet created, or
// removed) are answered at once with ErrUnknownGroup; raft backs off and
// retries, so a group created a little later than its peers' catches up.
//
// Goroutines, all stopped by Close:
//   - per peer, while its stream is open, the writer (fed by heartbeats
//     and pipelines) and the reader (fed by the peer), which also owns the
//     stream's connection; a failed stream ends both and is reopened on
//     the next heartbeat or AppendEntriesPipeline;
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

	mu struct {
		sync.Mutex
		closed bool
		groups map[uint32]*groupTransport
		peers  map[string]*peer // by drpc address
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

// heartbeat sends one group's heartbeat on target's stream and waits for
// its answer, at most Timeout.
func (t *Transport) heartbeat(g *groupTransport, target raft.ServerAddress, args *raft.AppendEntriesRequest, resp *raft.AppendEntriesResponse) error {
	p, err := t.peerFor(target)
	if err != nil {
		return err
	}
	s, err := t.stream(p)
	if err != nil {
		return err
	}
	t.m.sent.WithLabelValues(rpcHeartbeat).Inc()
	f := &appendFuture{start: time.Now(), args: args, resp: resp, heartbeat: true, urgent: g.urgent.Load() > 0, done: make(chan struct{})}
	f.wire = g.appendToWire(args)
	f.size = proto.Size(f.wire)
	if err := s.enqueue(f); err != nil {
		s.abandon(f, err)
		return err
	}
	timer := time.NewTimer(t.cfg.Timeout)
	defer timer.Stop()
	select {
	case <-f.done:
	case <-timer.C:
		// A heartbeat is a few bytes that any live peer answers at once:
		// one unanswered for Timeout means the stream's connection is
		// stuck (a cut link put back while TCP still backs off its
		// retransmissions, a peer frozen and thawed), and every heartbeat
		// and append behind it would wait the same. Fail the stream, so
		// the next one dials anew.
		s.fail(fmt.Errorf("heartbeat to %s: %w", target, context.DeadlineExceeded))
	case <-g.closed:
		s.abandon(f, ErrTransportClosed)
	}
	// abandon completed f, or the reader claimed it first and completes it
	// without blocking.
	<-f.done
	return f.err
}

// stream returns p's live stream, opening one if there is none.
func (t *Transport) stream(p *peer) (*appendStream, error) {
	p.mu.Lock()
	s := p.mu.stream
	p.mu.Unlock()
	if s != nil && s.ctx.Err() == nil {
		return s, nil
	}
	if err := t.begin(); err != nil {
		return nil, err
	}
	defer t.wg.Done()
	s, err := t.openStream(p)
	if err != nil {
		return nil, err
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	if cur := p.mu.stream; cur != nil && cur.ctx.Err() == nil {
		s.fail(errors.New("raced with another stream"))
		return cur, nil
	}
	p.mu.stream = s
	return s, nil
}

func (t *Transport) openStream(p *peer) (*appendStream, error) {
	ctx, cancel := context.WithCancel(t.lifetime)
	conn, err := t.dial(ctx, p.addr)
	if err != nil {
		cancel()
		return nil, err
	}
	st, err := kvpb.NewDRPCRaftClient(conn).AppendEntriesPipeline(ctx)
	if err != nil {
		cancel()
		_ = conn.Close() // never used
		return nil, fmt.Errorf("open raft pipeline stream to %s: %w", p.addr, err)
	}
	s := &appendStream{t: t, addr: p.addr, stream: st, ctx: ctx, cancel: cancel, sendq: make(chan *appendFuture, streamQueue)}
	s.mu.pending = make(map[uint64]*appendFuture)
	t.wg.Add(2) // under the caller's begin
	go s.write()
	go s.read(conn)
	t.log.Debug("raft pipeline stream opened", "peer", p.addr)
	return s, nil
}

// appendStream is the client side of one AppendEntriesPipeline stream: it
// carries the heartbeats and pipelined AppendEntries of every group to one
// peer, each request tagged with an id its response echoes.
type appendStream struct {
	t      *Transport
	addr   string
	stream kvpb.DRPCRaft_AppendEntriesPipelineClient
	// ctx ends when the stream fails or the transport closes.
	ctx    context.Context
	cancel context.CancelFunc
	// sendq feeds the writer; closed by nobody, the writer exits with ctx.
	sendq chan *appendFuture

	mu struct {
		sync.Mutex
		nextID  uint64
		err     error // set once the stream has failed
		pending map[uint64]*appendFuture
	}
}

// enqueue registers f and queues it for the writer. Whoever removes f
// from pending (the reader, fail, or abandon) completes it.
func (s *appendStream) enqueue(f *appendFuture) error {
	s.mu.Lock()
	if s.mu.err != nil {
		err := s.mu.err
		s.mu.Unlock()
		return err
	}
	s.mu.nextID++
	f.wire.Id = s.mu.nextID
	s.mu.pending[f.wire.Id] = f
	s.mu.Unlock()
	select {
	case s.sendq <- f:
		return nil
	case <-s.ctx.Done():
		return fmt.Errorf("raft pipeline stream to %s: %w", s.addr, ErrTransportClosed)
	}
}

// abandon completes f with err unless a response already claimed it.
func (s *appendStream) abandon(f *appendFuture, err error) {
	s.mu.Lock()
	_, ok := s.mu.pending[f.wire.Id]
	delete(s.mu.pending, f.wire.Id)
	s.mu.Unlock()
	if ok {
		f.complete(err)
	}
}

// fail ends the stream, failing every request waiting for a response.
func (s *appendStream) fail(err error) {
	s.mu.Lock()
	if s.mu.err != nil {
		s.mu.Unlock()
		return
	}
	ferr := fmt.Errorf("raft stream to %s failed: %w", s.addr, err)
	s.mu.err = ferr
	pending := s.mu.pending
	s.mu.pending = nil
	s.mu.Unlock()
	s.cancel()
	for _, f := range pending {
		f.complete(ferr)
	}
	if s.t.lifetime.Err() == nil {
		s.t.log.Debug("raft pipeline stream failed", "peer", s.addr, "err", err)
	}
}

// write sends queued requests, every one waiting at that moment (up to
// maxFrameRequests/maxFrameBytes) in one frame. While it holds only
// heartbeats it waits up to HeartbeatWindow for more.
func (s *appendStream) write() {
	defer s.t.wg.Done()
	window := s.t.cfg.HeartbeatWindow
	timer := time.NewTimer(time.Hour)
	timer.Stop()
	batch := &kvpb.AppendEntriesBatch{}
	for {
		var f *appendFuture
		select {
		case f = <-s.sendq:
		case <-s.ctx.Done():
			return
		}
		batch.Requests = append(batch.Requests[:0], f.wire)
		size := f.size
		heartbeats := 0
		if f.heartbeat {
			heartbeats++
		}
		if f.heartbeat && !f.urgent && window > 0 {
			timer.Reset(window)
		gather:
			for len(batch.Requests) < maxFrameRequests {
				select {
				case f := <-s.sendq:
					batch.Requests = append(batch.Requests, f.wire)
					size += f.size
					if !f.heartbeat {
						break gather
					}
					heartbeats++
					if f.urgent {
						break gather
					}
				case <-timer.C:
					break gather
				case <-s.ctx.Done():
					timer.Stop()
					return
				}
			}
			timer.Stop()
		}
	drain:
		for len(batch.Requests) < maxFrameRequests && size < maxFrameBytes {
			select {
			case f := <-s.sendq:
				batch.Requests = append(batch.Requests, f.wire)
				size += f.size
				if f.heartbeat {
					heartbeats++
				}
			default:
				break drain
			}
		}
		if heartbeats > 0 {
			s.t.m.heartbeatBatch.Observe(float64(heartbeats))
		}
		s.t.m.frames.WithLabelValues(rpcPipeline).Inc()
		if err := s.stream.Send(batch); err != nil {
			s.fail(err)
			return
		}
		clear(batch.Requests)
	}
}

// read completes futures as their responses arrive; it owns the stream's
// connection.
func (s *appendStream) read(conn *rpcconn.Conn) {
	defer s.t.wg.Done()
	defer func() { _ = conn.Close() }() // the stream has ended; nothing to report
	for {
		msg, err := s.stream.Recv()
		if err != nil {
			s.fail(err)
			return
		}
		for _, r := range msg.GetResponses() {
			s.mu.Lock()
			f := s.mu.pending[r.GetId()]
			delete(s.mu.pending, r.GetId())
			s.mu.Unlock()
			if f != nil {
				f.complete(appendRespFromWire(r, f.resp))
			}
		}
	}
}

// appendFuture is a request on a stream: a heartbeat (urgent when its
// group was confirming leadership as it was sent), or a pipelined
// AppendEntries (for which it implements raft.AppendFuture).
type appendFuture struct {
	heartbeat bool
	urgent    bool
	start     time.Time
	args      *raft.AppendEntriesRequest
	resp      *raft.AppendEntriesResponse
	wire      *kvpb.AppendEntriesRequest
	size      int
	err       error         // written once before done is closed
	done      chan struct{} // closed by complete
}

func (f *appendFuture) complete(err error) {
	f.err = err
	close(f.done)
}

func (f *appendFuture) Error() error {
	<-f.done
	return f.err
}

func (f *appendFuture) Start() time.Time                      { return f.start }
func (f *appendFuture) Request() *raft.AppendEntriesRequest   { return f.args }
func (f *appendFuture) Response() *raft.AppendEntriesResponse { return f.resp }

// pipeline implements raft.AppendPipeline for one group to one peer over
// the peer's shared stream.
type pipeline struct {
	g *groupTransport
	s *appendStream
	// inflight holds sent futures in order; its capacity is the pipeline
	// depth. Closed by nobody.
	inflight chan *appendFuture
	// done delivers completed futures to raft, in order.
	done      chan raft.AppendFuture
	closed    chan struct{} // closed by Close
	closeOnce sync.Once
}

func (p *pipeline) AppendEntries(args *raft.AppendEntriesRequest, resp *raft.AppendEntriesResponse) (raft.AppendFuture, error) {
	f := &appendFuture{start: time.Now(), args: args, resp: resp, done: make(chan struct{})}
	f.wire = p.g.appendToWire(args)
	f.size = proto.Size(f.wire)
	select {
	case p.inflight <- f:
	case <-p.closed:
		return nil, raft.ErrPipelineShutdown
	}
	p.g.t.m.sent.WithLabelValues(rpcPipeline).Inc()
	if err := p.s.enqueue(f); err != nil {
		p.s.abandon(f, err)
		return nil, err
	}
	return f, nil
}

func (p *pipeline) Consumer() <-chan raft.AppendFuture { return p.done }

// Close stops the pipeline; requests in flight are dropped. It is
// idempotent and returns nil.
func (p *pipeline) Close() error {
	p.closeOnce.Do(func() { close(p.closed) })
	p.g.mu.Lock()
	delete(p.g.mu.pipelines, p)
	p.g.mu.Unlock()
	return nil
}

// deliver hands completed futures to raft in the order they were sent,
// failing one whose response has not come within Timeout.
func (p *pipeline) deliver() {
	t := p.g.t
	defer t.wg.Done()
	timer := time.NewTimer(time.Hour)
	timer.Stop()
	for {
		var f *appendFuture
		select {
		case f = <-p.inflight:
		case <-p.closed:
			return
		case <-t.lifetime.Done():
			return
		}
		timer.Reset(time.Until(f.start.Add(t.cfg.Timeout)))
		select {
		case <-f.done:
		case <-timer.C:
			p.s.abandon(f, fmt.Errorf("pipelined append entries to %s: %w", p.s.addr, context.DeadlineExceeded))
			<-f.done // completed by abandon, or by the reader that claimed it first
		case <-p.closed:
			timer.Stop()
			return
		case <-t.lifetime.Done():
			timer.Stop()
			return
		}
		timer.Stop()
		select {
		case p.done <- f:
		case <-p.closed:
			return
		case <-t.lifetime.Done():
			return
		}
	}
}

// groupTransport is the raft.Transport of one group.
type groupTransport struct {
	t     *Transport
	group uint32
	// consumer carries incoming RPCs to raft; unbuffered, never closed.
	consumer  chan raft.RPC
	heartbeat atomic.Pointer[func(raft.RPC)]
	// urgent counts the group's VerifyLeader rounds in flight: while it is
	// above zero its heartbeats skip the HeartbeatWindow.
	urgent atomic.Int32
	closed chan struct{} // closed by closeLocked
	// logs is the group's log durability, if its log store reports it
	// (SetLogDurability); nil: every stored entry counts as durable.
	logs atomic.Pointer[LogDurability]

	mu struct {
		sync.Mutex
		closed    bool
		pipelines map[*pipeline]struct{}
	}
}

// LogDurability is what a group's transport and state machine need from a
// log store whose StoreLogs returns before the entries are fsynced
// (LogStore does).
type LogDurability interface {
	// DurableIndex is the index up to which every stored entry is fsynced.
	DurableIndex() uint64
	// WaitDurable returns once every entry up to index is fsynced, with
	// the durability failure if there was one, or with ctx's error.
	WaitDurable(ctx context.Context, index uint64) error
}

// SetLogDurability tells the transport how durable the group's log is, so
// that it answers an append only once the appended entries are durable and
// sends the leader's commit index only as far as the leader's log is
// durable (see LogStore.StoreLogs). Set it before raft starts.
func (g *groupTransport) SetLogDurability(d LogDurability) { g.logs.Store(&d) }

func (g *groupTransport) durability() LogDurability {
	if d := g.logs.Load(); d != nil {
		return *d
	}
	return nil
}

// appendToWire encodes args for the wire, holding the leader's commit
// index back to what its own log has made durable: a follower must not
// apply an entry the leader could still lose.
func (g *groupTransport) appendToWire(args *raft.AppendEntriesRequest) *kvpb.AppendEntriesRequest {
	w := appendToWire(g.group, 0, args)
	if d := g.durability(); d != nil {
		w.LeaderCommitIndex = min(w.LeaderCommitIndex, d.DurableIndex())
	}
	return w
}

// appendDurable waits until the entries a successful append stored are
// durable; nil at once for one that stored none.
func (g *groupTransport) appendDurable(ctx context.Context, wait uint64) error {
	if g == nil || wait == 0 {
		return nil
	}
	d := g.durability()
	if d == nil {
		return nil
	}
	if err := d.WaitDurable(ctx, wait); err != nil {
		return fmt.Errorf("appended entries not durable: %w", err)
	}
	return nil
}

var (
	_ raft.Transport   = (*groupTransport)(nil)
	_ raft.WithClose   = (*groupTransport)(nil)
	_ raft.WithPreVote = (*groupTransport)(nil)
)

func (g *groupTransport) Consumer() <-chan raft.RPC { return g.consumer }

// BeginUrgent marks the group's heartbeats as urgent until the returned
// function is called: the group is confirming its leadership (raft's
// VerifyLeader sends a heartbeat round) and reads wait for the answers.
func (g *groupTransport) BeginUrgent() (end func()) {
	g.urgent.Add(1)
	return func() { g.urgent.Add(-1) }
}

func (g *groupTransport) LocalAddr() raft.ServerAddress {
	return raft.ServerAddress(g.t.cfg.NodeID)
}

func (g *groupTransport) SetHeartbeatHandler(cb func(raft.RPC)) {
	if cb == nil {
		g.heartbeat.Store(nil)
		return
	}
	g.heartbeat.Store(&cb)
}

// EncodePeer and DecodePeer: addresses are node ids, resolved per call.
func (g *groupTransport) EncodePeer(_ raft.ServerID, addr raft.ServerAddress) []byte {
	return []byte(addr)
}

func (g *groupTransport) DecodePeer(buf []byte) raft.ServerAddress { return raft.ServerAddress(buf) }

// Close closes this group's transport (raft's Shutdown calls it) and
// forgets it, so that Transport.Group creates a fresh one. It returns nil.
func (g *groupTransport) Close() error {
	g.t.mu.Lock()
	if g.t.mu.groups[g.group] == g {
		delete(g.t.mu.groups, g.group)
	}
	g.t.mu.Unlock()
	g.close()
	return nil
}

func (g *groupTransport) close() {
	g.mu.Lock()
	g.closeLocked()
	pipelines := g.mu.pipelines
	g.mu.pipelines = nil
	g.mu.Unlock()
	for p := range pipelines {
		p.closeOnce.Do(func() { close(p.closed) })
	}
}

func (g *groupTransport) closeLocked() {
	if !g.mu.closed {
		g.mu.closed = true
		close(g.closed)
	}
}

func (g *groupTransport) isClosed() bool {
	select {
	case <-g.closed:
		return true
	default:
		return false
	}
}

// AppendEntriesPipeline returns a pipeline over target's shared stream,
// opening the stream if needed.
func (g *groupTransport) AppendEntriesPipeline(_ raft.ServerID, target raft.ServerAddress) (raft.AppendPipeline, error) {
	if g.isClosed() {
		return nil, ErrTransportClosed
	}
	p, err := g.t.peerFor(target)
	if err != nil {
		return nil, err
	}
	s, err := g.t.stream(p)
	if err != nil {
		return nil, err
	}
	pl := &pipeline{
		g: g, s: s,
		inflight: make(chan *appendFuture, pipelineDepth),
		done:     make(chan raft.AppendFuture, pipelineDepth),
		closed:   make(chan struct{}),
	}
	g.mu.Lock()
	defer g.mu.Unlock()
	if g.mu.closed {
		return nil, ErrTransportClosed
	}
	if err := g.t.begin(); err != nil {
		return nil, err
	}
	g.mu.pipelines[pl] = struct{}{}
	go pl.deliver()
	return pl, nil
}

// AppendEntries sends one request; heartbeats go through the peer's
// coalescer.
func (g *groupTransport) AppendEntries(_ raft.ServerID, target raft.ServerAddress, args *raft.AppendEntriesRequest, resp *raft.AppendEntriesResponse) error {
	if g.isClosed() {
		return ErrTransportClosed
	}
	if isHeartbeat(args) {
		return g.t.heartbeat(g, target, args, resp)
	}
	g.t.m.sent.WithLabelValues(rpcAppendEntries).Inc()
	req := &kvpb.AppendEntriesBatch{Requests: []*kvpb.AppendEntriesRequest{g.appendToWire(args)}}
	return g.t.call(target, g.t.cfg.Timeout, func(ctx context.Context, client kvpb.DRPCRaftClient) error {
		g.t.m.frames.WithLabelValues(rpcAppendEntries).Inc()
		out, err := client.AppendEntries(ctx, req)
		if err != nil {
			return fmt.Errorf("append entries to %s: %w", target, callError(err))
		}
		if len(out.GetResponses()) != 1 {
			return fmt.Errorf("%w: append entries to %s: %d responses for 1 request", errRemote, target, len(out.GetResponses()))
		}
		return appendRespFromWire(out.GetResponses()[0], resp)
	})
}

func (g *groupTransport) RequestVote(_ raft.ServerID, target raft.ServerAddress, args *raft.RequestVoteRequest, resp *raft.RequestVoteResponse) error {
	if g.isClosed() {
		return ErrTransportClosed
	}
	g.t.m.sent.WithLabelValues(rpcRequestVote).Inc()
	req := &kvpb.RequestVoteRequest{
		Group: g.group, Header: headerToWire(args.RPCHeader), Term: args.Term, Candidate: args.Candidate, //nolint:staticcheck // raft still sends and reads the deprecated field
		LastLogIndex: args.LastLogIndex, LastLogTerm: args.LastLogTerm, LeadershipTransfer: args.LeadershipTransfer,
	}
	return g.t.call(target, g.t.cfg.Timeout, func(ctx context.Context, client kvpb.DRPCRaftClient) error {
		g.t.m.frames.WithLabelValues(rpcRequestVote).Inc()
		out, err := client.RequestVote(ctx, req)
		if err != nil {
			return fmt.Errorf("request vote from %s: %w", target, callError(err))
		}
		*resp = raft.RequestVoteResponse{
			RPCHeader: headerFromWire(out.GetHeader()), Term: out.GetTerm(), Peers: out.GetPeers(), Granted: out.GetGranted(),
		}
		return nil
	})
}

func (g *groupTransport) RequestPreVote(_ raft.ServerID, target raft.ServerAddress, args *raft.RequestPreVoteRequest, resp *raft.RequestPreVoteResponse) error {
	if g.isClosed() {
		return ErrTransportClosed
	}
	g.t.m.sent.WithLabelValues(rpcRequestPreVote).Inc()
	req := &kvpb.RequestPreVoteRequest{
		Group: g.group, Header: headerToWire(args.RPCHeader), Term: args.Term,
		LastLogIndex: args.LastLogIndex, LastLogTerm: args.LastLogTerm,
	}
	return g.t.call(target, g.t.cfg.Timeout, func(ctx context.Context, client kvpb.DRPCRaftClient) error {
		g.t.m.frames.WithLabelValues(rpcRequestPreVote).Inc()
		out, err := client.RequestPreVote(ctx, req)
		if err != nil {
			return fmt.Errorf("request pre-vote from %s: %w", target, callError(err))
		}
		*resp = raft.RequestPreVoteResponse{RPCHeader: headerFromWire(out.GetHeader()), Term: out.GetTerm(), Granted: out.GetGranted()}
		return nil
	})
}

func (g *groupTransport) TimeoutNow(_ raft.ServerID, target raft.ServerAddress, args *raft.TimeoutNowRequest, resp *raft.TimeoutNowResponse) error {
	if g.isClosed() {
		return ErrTransportClosed
	}
	g.t.m.sent.WithLabelValues(rpcTimeoutNow).Inc()
	req := &kvpb.TimeoutNowRequest{Group: g.group, Header: headerToWire(args.RPCHeader)}
	return g.t.call(target, g.t.cfg.Timeout, func(ctx context.Context, client kvpb.DRPCRaftClient) error {
		g.t.m.frames.WithLabelValues(rpcTimeoutNow).Inc()
		out, err := client.TimeoutNow(ctx, req)
		if err != nil {
			return fmt.Errorf("timeout now to %s: %w", target, callError(err))
		}
		*resp = raft.TimeoutNowResponse{RPCHeader: headerFromWire(out.GetHeader())}
		return nil
	})
}

// InstallSnapshot streams args and then data, read to EOF, in chunks of
// 256 KiB. Its timeout is Timeout per 256 KiB of args.Size, at least
// Timeout.
func (g *groupTransport) InstallSnapshot(_ raft.ServerID, target raft.ServerAddress, args *raft.InstallSnapshotRequest, resp *raft.InstallSnapshotResponse, data io.Reader) error {
	if g.isClosed() {
		return ErrTransportClosed
	}
	g.t.m.sent.WithLabelValues(rpcInstallSnapshot).Inc()
	timeout := g.t.cfg.Timeout * time.Duration(max(1, args.Size/snapshotChunkBytes))
	first := &kvpb.InstallSnapshotChunk{Request: &kvpb.InstallSnapshotRequest{
		Group: g.group, Header: headerToWire(args.RPCHeader), SnapshotVersion: int32(args.SnapshotVersion),
		Term: args.Term, Leader: args.Leader, LastLogIndex: args.LastLogIndex, LastLogTerm: args.LastLogTerm,
		Peers: args.Peers, Configuration: args.Configuration, ConfigurationIndex: args.ConfigurationIndex, Size: args.Size,
	}}
	return g.t.call(target, timeout, func(ctx context.Context, client kvpb.DRPCRaftClient) error {
		g.t.m.frames.WithLabelValues(rpcInstallSnapshot).Inc()
		st, err := client.InstallSnapshot(ctx)
		if err != nil {
			return fmt.Errorf("install snapshot on %s: %w", target, err)
		}
		// A failed Send usually means the peer ended the stream with an
		// error (unknown group, say): report that error.
		sendFailed := func(err error) error {
			if _, rerr := st.CloseAndRecv(); rerr != nil {
				err = callError(rerr)
			}
			return fmt.Errorf("install snapshot on %s: %w", target, err)
		}
		if err := st.Send(first); err != nil {
			return sendFailed(err)
		}
		buf := make([]byte, snapshotChunkBytes)
		for {
			n, rerr := io.ReadFull(data, buf)
			if n > 0 {
				if err := st.Send(&kvpb.InstallSnapshotChunk{Data: buf[:n]}); err != nil {
					return sendFailed(err)
				}
			}
			if errors.Is(rerr, io.EOF) || errors.Is(rerr, io.ErrUnexpectedEOF) {
				break
			}
			if rerr != nil {
				_ = st.Close() // abandoning the stream; the read error is what matters
				return fmt.Errorf("read snapshot for %s: %w", target, rerr)
			}
		}
		out, err := st.CloseAndRecv()
		if err != nil {
			return fmt.Errorf("install snapshot on %s: %w", target, callError(err))
		}
		*resp = raft.InstallSnapshotResponse{RPCHeader: headerFromWire(out.GetHeader()), Term: out.GetTerm(), Success: out.GetSuccess()}
		return nil
	})
}

// serve hands rpc to the group's raft (through the heartbeat fast path if
// fast and one is set) and waits for its answer. It returns
// ErrTransportClosed if the group or transport closes first, ctx's error if
// ctx ends first, and raft's error if raft answers with one.
func (g *groupTransport) serve(ctx context.Context, rpc raft.RPC, fast bool) (any, error) {
	resp := make(chan raft.RPCResponse, 1) // raft answers once and never blocks
	rpc.RespChan = resp
	handled := false
	if fast {
		if fn := g.heartbeat.Load(); fn != nil {
			(*fn)(rpc)
			handled = true
		}
	}
	if !handled {
		select {
		case g.consumer <- rpc:
		case <-g.closed:
			return nil, ErrTransportClosed
		case <-g.t.lifetime.Done():
			return nil, ErrTransportClosed
		case <-ctx.Done():
			return nil, ctx.Err()
		}
	}
	select {
	case r := <-resp:
		return r.Response, r.Error
	case <-g.closed:
		return nil, ErrTransportClosed
	case <-g.t.lifetime.Done():
		return nil, ErrTransportClosed
	case <-ctx.Done():
		return nil, ctx.Err()
	}
}

// groupFor returns the live transport of group or ErrUnknownGroup.
func (t *Transport) groupFor(group uint32) (*groupTransport, error) {
	if g := t.group(group); g != nil {
		return g, nil
	}
	return nil, fmt.Errorf("%w: %d on %s", ErrUnknownGroup, group, t.cfg.NodeID)
}

// serveAppend answers one AppendEntries request, waiting until the entries
// it stored are durable; errors travel in the response.
func (t *Transport) serveAppend(ctx context.Context, w *kvpb.AppendEntriesRequest, fast bool) *kvpb.AppendEntriesResponse {
	resp, g, wait := t.handleAppend(ctx, w, fast)
	if err := g.appendDurable(ctx, wait); err != nil {
		return appendFailure(w, err)
	}
	return resp
}

func appendFailure(w *kvpb.AppendEntriesRequest, err error) *kvpb.AppendEntriesResponse {
	return &kvpb.AppendEntriesResponse{Group: w.GetGroup(), Id: w.GetId(), ErrorCode: codeFor(err), Error: err.Error()}
}

// handleAppend hands one AppendEntries request to raft and returns its
// answer, without waiting for durability: wait is the index the answer
// must wait for (appendDurable) before it is sent, 0 if none, and g the
// group (nil with an error answer).
func (t *Transport) handleAppend(ctx context.Context, w *kvpb.AppendEntriesRequest, fast bool) (_ *kvpb.AppendEntriesResponse, g *groupTransport, wait uint64) {
	fail := func(err error) (*kvpb.AppendEntriesResponse, *groupTransport, uint64) {
		return appendFailure(w, err), nil, 0
	}
	g, err := t.groupFor(w.GetGroup())
	if err != nil {
		return fail(err)
	}
	req := appendFromWire(w)
	hb := fast && isHeartbeat(req)
	rpcName := rpcAppendEntries
	switch {
	case hb:
		rpcName = rpcHeartbeat
	case w.GetId() != 0:
		rpcName = rpcPipeline
	}
	t.m.received.WithLabelValues(rpcName).Inc()
	out, err := g.serve(ctx, raft.RPC{Command: req}, hb)
	if err != nil {
		return fail(err)
	}
	resp, ok := out.(*raft.AppendEntriesResponse)
	if !ok {
		return fail(fmt.Errorf("raft answered append entries with %T", out))
	}
	if resp.Success && len(req.Entries) > 0 {
		wait = req.Entries[len(req.Entries)-1].Index
	}
	return &kvpb.AppendEntriesResponse{
		Group: w.GetGroup(), Id: w.GetId(), Header: headerToWire(resp.RPCHeader), Term: resp.Term,
		LastLog: resp.LastLog, Success: resp.Success, NoRetryBackoff: resp.NoRetryBackoff,
	}, g, wait
}

// raftServer implements kvpb.DRPCRaftServer on a Transport.
type raftServer struct{ t *Transport }

// AppendEntries answers each request in order; heartbeats take the
// group's fast path.
func (s raftServer) AppendEntries(ctx context.Context, in *kvpb.AppendEntriesBatch) (*kvpb.AppendEntriesBatchResponse, error) {
	out := &kvpb.AppendEntriesBatchResponse{Responses: make([]*kvpb.AppendEntriesResponse, len(in.GetRequests()))}
	for i, req := range in.GetRequests() {
		out.Responses[i] = s.t.serveAppend(ctx, req, true)
	}
	return out, nil
}

// AppendEntriesPipeline serves one peer's stream: heartbeats are answered
// at once through their group's fast path, a worker per group keeps each
// group's other requests in order, and a writer sends every response
// waiting at that moment as one frame.
func (s raftServer) AppendEntriesPipeline(stream kvpb.DRPCRaft_AppendEntriesPipelineStream) error {
	t := s.t
	ctx, cancel := context.WithCancel(stream.Context())
	stopLifetime := context.AfterFunc(t.lifetime, cancel)
	// Ending ctx (transport closed, writer failed) unblocks Recv.
	stopClose := closeOnDone(ctx, stream)
	var wg sync.WaitGroup
	defer func() {
		stopClose()
		cancel()
		wg.Wait()
		stopLifetime()
	}()

	// out feeds the writer; closed by nobody, the writer exits with ctx.
	out := make(chan *kvpb.AppendEntriesResponse, streamQueue)
	wg.Go(func() { s.writePipeline(ctx, cancel, stream, out) })
	workers := make(map[uint32]chan *kvpb.AppendEntriesRequest)
	for {
		in, err := stream.Recv()
		if err != nil {
			if ctx.Err() != nil || errors.Is(err, io.EOF) {
				return nil
			}
			return fmt.Errorf("receive raft pipeline frame: %w", err)
		}
		for _, req := range in.GetRequests() {
			if wireIsHeartbeat(req) {
				resp := t.serveAppend(ctx, req, true)
				select {
				case out <- resp:
				case <-ctx.Done():
					return nil
				}
				continue
			}
			queue, ok := workers[req.GetGroup()]
			if !ok {
				// Buffered to the pipeline depth so a worker busy with
				// its raft rarely blocks this loop.
				queue = make(chan *kvpb.AppendEntriesRequest, pipelineDepth)
				workers[req.GetGroup()] = queue
				wg.Go(func() { s.pipelineWorker(ctx, queue, out) })
			}
			select {
			case queue <- req:
			case <-ctx.Done():
				return nil
			}
		}
	}
}

// pipelineWorker hands one group's pipelined requests to raft in order;
// a responder sends the answers in the same order, each once the entries
// it stored are durable, so raft takes the next append while the last one
// is still being fsynced.
func (s raftServer) pipelineWorker(ctx context.Context, queue <-chan *kvpb.AppendEntriesRequest, out chan<- *kvpb.AppendEntriesResponse) {
	type answer struct {
		req  *kvpb.AppendEntriesRequest
		resp *kvpb.AppendEntriesResponse
		g    *groupTransport
		wait uint64
	}
	answers := make(chan answer, pipelineDepth)
	var wg sync.WaitGroup
	defer wg.Wait()
	wg.Go(func() {
		for {
			var a answer
			select {
			case a = <-answers:
			case <-ctx.Done():
				return
			}
			if err := a.g.appendDurable(ctx, a.wait); err != nil {
				a.resp = appendFailure(a.req, err)
			}
			select {
			case out <- a.resp:
			case <-ctx.Done():
				return
			}
		}
	})
	for {
		var req *kvpb.AppendEntriesRequest
		select {
		case req = <-queue:
		case <-ctx.Done():
			return
		}
		resp, g, wait := s.t.handleAppend(ctx, req, false)
		select {
		case answers <- answer{req: req, resp: resp, g: g, wait: wait}:
		case <-ctx.Done():
			return
		}
	}
}

func (s raftServer) writePipeline(ctx context.Context, cancel context.CancelFunc, stream kvpb.DRPCRaft_AppendEntriesPipelineStream, out <-chan *kvpb.AppendEntriesResponse) {
	batch := &kvpb.AppendEntriesBatchResponse{}
	for {
		select {
		case r := <-out:
			batch.Responses = append(batch.Responses[:0], r)
		case <-ctx.Done():
			return
		}
	drain:
		for len(batch.Responses) < maxFrameRequests {
			select {
			case r := <-out:
				batch.Responses = append(batch.Responses, r)
			default:
				break drain
			}
		}
		err := stream.Send(batch)
		if err == nil {
			err = rpcconn.Flush(stream)
		}
		if err != nil {
			s.t.log.Debug("raft pipeline response failed", "err", err)
			cancel()
			return
		}
		clear(batch.Responses)
	}
}

func (s raftServer) RequestVote(ctx context.Context, in *kvpb.RequestVoteRequest) (*kvpb.RequestVoteResponse, error) {
	g, err := s.t.groupFor(in.GetGroup())
	if err != nil {
		return nil, rpcError(err)
	}
	s.t.m.received.WithLabelValues(rpcRequestVote).Inc()
	out, err := g.serve(ctx, raft.RPC{Command: &raft.RequestVoteRequest{
		RPCHeader: headerFromWire(in.GetHeader()), Term: in.GetTerm(), Candidate: in.GetCandidate(),
		LastLogIndex: in.GetLastLogIndex(), LastLogTerm: in.GetLastLogTerm(), LeadershipTransfer: in.GetLeadershipTransfer(),
	}}, false)
	if err != nil {
		return nil, rpcError(err)
	}
	resp, ok := out.(*raft.RequestVoteResponse)
	if !ok {
		return nil, rpcError(fmt.Errorf("raft answered request vote with %T", out))
	}
	return &kvpb.RequestVoteResponse{Header: headerToWire(resp.RPCHeader), Term: resp.Term, Peers: resp.Peers, Granted: resp.Granted}, nil
}

func (s raftServer) RequestPreVote(ctx context.Context, in *kvpb.RequestPreVoteRequest) (*kvpb.RequestPreVoteResponse, error) {
	g, err := s.t.groupFor(in.GetGroup())
	if err != nil {
		return nil, rpcError(err)
	}
	s.t.m.received.WithLabelValues(rpcRequestPreVote).Inc()
	out, err := g.serve(ctx, raft.RPC{Command: &raft.RequestPreVoteRequest{
		RPCHeader: headerFromWire(in.GetHeader()), Term: in.GetTerm(),
		LastLogIndex: in.GetLastLogIndex(), LastLogTerm: in.GetLastLogTerm(),
	}}, false)
	if err != nil {
		return nil, rpcError(err)
	}
	resp, ok := out.(*raft.RequestPreVoteResponse)
	if !ok {
		return nil, rpcError(fmt.Errorf("raft answered request pre-vote with %T", out))
	}
	return &kvpb.RequestPreVoteResponse{Header: headerToWire(resp.RPCHeader), Term: resp.Term, Granted: resp.Granted}, nil
}

func (s raftServer) TimeoutNow(ctx context.Context, in *kvpb.TimeoutNowRequest) (*kvpb.TimeoutNowResponse, error) {
	g, err := s.t.groupFor(in.GetGroup())
	if err != nil {
		return nil, rpcError(err)
	}
	s.t.m.received.WithLabelValues(rpcTimeoutNow).Inc()
	out, err := g.serve(ctx, raft.RPC{Command: &raft.TimeoutNowRequest{RPCHeader: headerFromWire(in.GetHeader())}}, false)
	if err != nil {
		return nil, rpcError(err)
	}
	resp, ok := out.(*raft.TimeoutNowResponse)
	if !ok {
		return nil, rpcError(fmt.Errorf("raft answered timeout now with %T", out))
	}
	return &kvpb.TimeoutNowResponse{Header: headerToWire(resp.RPCHeader)}, nil
}

// InstallSnapshot hands raft the request of the first message and a reader
// over the data chunks that follow.
func (s raftServer) InstallSnapshot(stream kvpb.DRPCRaft_InstallSnapshotStream) error {
	t := s.t
	ctx := stream.Context()
	// Closing the stream unblocks raft's read of the data on Close.
	defer closeOnDone(t.lifetime, stream)()
	first, err := stream.Recv()
	if err != nil {
		return fmt.Errorf("receive snapshot request: %w", err)
	}
	in := first.GetRequest()
	if in == nil {
		return rpcError(errors.New("consensus: install snapshot stream without a request"))
	}
	g, err := t.groupFor(in.GetGroup())
	if err != nil {
		return rpcError(err)
	}
	t.m.received.WithLabelValues(rpcInstallSnapshot).Inc()
	req := &raft.InstallSnapshotRequest{
		RPCHeader: headerFromWire(in.GetHeader()), SnapshotVersion: raft.SnapshotVersion(in.GetSnapshotVersion()),
		Term: in.GetTerm(), Leader: in.GetLeader(), LastLogIndex: in.GetLastLogIndex(), LastLogTerm: in.GetLastLogTerm(),
		Peers: in.GetPeers(), Configuration: in.GetConfiguration(), ConfigurationIndex: in.GetConfigurationIndex(), Size: in.GetSize(),
	}
	data := &chunkReader{stream: stream, buf: first.GetData()}
	out, err := g.serve(ctx, raft.RPC{Command: req, Reader: io.LimitReader(data, in.GetSize())}, false)
	if err != nil {
		return rpcError(err)
	}
	resp, ok := out.(*raft.InstallSnapshotResponse)
	if !ok {
		return rpcError(fmt.Errorf("raft answered install snapshot with %T", out))
	}
	if resp.Success {
		t.m.snapshotsInstalled.Inc()
	}
	if err := stream.SendAndClose(&kvpb.InstallSnapshotResponse{Header: headerToWire(resp.RPCHeader), Term: resp.Term, Success: resp.Success}); err != nil {
		return fmt.Errorf("answer install snapshot: %w", err)
	}
	return nil
}

// closeOnDone closes stream when ctx ends. The returned func stops that,
// waiting for a Close already under way, so the handler can return.
func closeOnDone(ctx context.Context, stream drpc.Stream) (stop func()) {
	closed := make(chan struct{})
	stopAfter := context.AfterFunc(ctx, func() {
		defer close(closed)
		_ = stream.Close() // the handler is ending; its caller reports why
	})
	return func() {
		if !stopAfter() {
			<-closed
		}
	}
}

// chunkReader reads the data chunks of an InstallSnapshot stream.
type chunkReader struct {
	stream kvpb.DRPCRaft_InstallSnapshotStream
	buf    []byte
}

func (r *chunkReader) Read(p []byte) (int, error) {
	for len(r.buf) == 0 {
		msg, err := r.stream.Recv()
		if errors.Is(err, io.EOF) {
			return 0, io.ErrUnexpectedEOF // the sender stopped short of Size
		}
		if err != nil {
			return 0, fmt.Errorf("receive snapshot chunk: %w", err)
		}
		r.buf = msg.GetData()
	}
	n := copy(p, r.buf)
	r.buf = r.buf[n:]
	return n, nil
}

// isHeartbeat reports whether req is a heartbeat, by the test raft's
// NetworkTransport uses for its fast path.
func isHeartbeat(req *raft.AppendEntriesRequest) bool {
	leader := req.Addr
	if len(leader) == 0 {
		leader = req.Leader //nolint:staticcheck // as raft does, for senders without RPCHeader.Addr
	}
	return req.Term != 0 && leader != nil &&
		req.PrevLogEntry == 0 && req.PrevLogTerm == 0 &&
		len(req.Entries) == 0 && req.LeaderCommitIndex == 0
}

// wireIsHeartbeat is isHeartbeat on the wire form.
func wireIsHeartbeat(w *kvpb.AppendEntriesRequest) bool {
	return w.GetTerm() != 0 && (len(w.GetHeader().GetAddr()) > 0 || len(w.GetLeader()) > 0) &&
		w.GetPrevLogEntry() == 0 && w.GetPrevLogTerm() == 0 &&
		len(w.GetEntries()) == 0 && w.GetLeaderCommitIndex() == 0
}

func headerToWire(h raft.RPCHeader) *kvpb.RPCHeader {
	return &kvpb.RPCHeader{ProtocolVersion: int32(h.ProtocolVersion), Id: h.ID, Addr: h.Addr}
}

func headerFromWire(h *kvpb.RPCHeader) raft.RPCHeader {
	return raft.RPCHeader{ProtocolVersion: raft.ProtocolVersion(h.GetProtocolVersion()), ID: h.GetId(), Addr: h.GetAddr()}
}

// appendToWire converts args; the result shares args' byte slices.
func appendToWire(group uint32, id uint64, args *raft.AppendEntriesRequest) *kvpb.AppendEntriesRequest {
	w := &kvpb.AppendEntriesRequest{
		Group: group, Id: id, Header: headerToWire(args.RPCHeader), Term: args.Term, Leader: args.Leader, //nolint:staticcheck // raft still sends and reads the deprecated field
		PrevLogEntry: args.PrevLogEntry, PrevLogTerm: args.PrevLogTerm, LeaderCommitIndex: args.LeaderCommitIndex,
	}
	if len(args.Entries) > 0 {
		w.Entries = make([]*kvpb.RaftLog, len(args.Entries))
		for i, e := range args.Entries {
			l := &kvpb.RaftLog{Index: e.Index, Term: e.Term, Type: uint32(e.Type), Data: e.Data, Extensions: e.Extensions}
			if !e.AppendedAt.IsZero() {
				l.AppendedAtUnixNanos = e.AppendedAt.UnixNano()
			}
			w.Entries[i] = l
		}
	}
	return w
}

func appendFromWire(w *kvpb.AppendEntriesRequest) *raft.AppendEntriesRequest {
	req := &raft.AppendEntriesRequest{
		RPCHeader: headerFromWire(w.GetHeader()), Term: w.GetTerm(), Leader: w.GetLeader(),
		PrevLogEntry: w.GetPrevLogEntry(), PrevLogTerm: w.GetPrevLogTerm(), LeaderCommitIndex: w.GetLeaderCommitIndex(),
	}
	if n := len(w.GetEntries()); n > 0 {
		req.Entries = make([]*raft.Log, n)
		for i, l := range w.GetEntries() {
			e := &raft.Log{Index: l.GetIndex(), Term: l.GetTerm(), Type: raft.LogType(l.GetType()), Data: l.GetData(), Extensions: l.GetExtensions()}
			if ns := l.GetAppendedAtUnixNanos(); ns != 0 {
				e.AppendedAt = time.Unix(0, ns)
			}
			req.Entries[i] = e
		}
	}
	return req
}

// appendRespFromWire fills resp from w, or returns the error w carries.
func appendRespFromWire(w *kvpb.AppendEntriesResponse, resp *raft.AppendEntriesResponse) error {
	if code := w.GetErrorCode(); code != 0 {
		return remoteError(code, errors.New(w.GetError()))
	}
	*resp = raft.AppendEntriesResponse{
		RPCHeader: headerFromWire(w.GetHeader()), Term: w.GetTerm(), LastLog: w.GetLastLog(),
		Success: w.GetSuccess(), NoRetryBackoff: w.GetNoRetryBackoff(),
	}
	return nil
}

// rpc label values of the transport metrics.
const (
	rpcHeartbeat       = "heartbeat"
	rpcAppendEntries   = "append_entries"
	rpcPipeline        = "append_entries_pipeline"
	rpcRequestVote     = "request_vote"
	rpcRequestPreVote  = "request_pre_vote"
	rpcTimeoutNow      = "timeout_now"
	rpcInstallSnapshot = "install_snapshot"
)

// transportMetrics are the Transport's metrics. They are declared here,
// not in metrics.go, to keep the transport in one file.
type transportMetrics struct {
	// sent counts Raft RPCs sent, by rpc; frames counts the drpc calls and
	// stream frames (rpc="append_entries_pipeline", heartbeats included)
	// that carried them, so sent/frames is the coalescing factor.
	sent   *prometheus.CounterVec
	frames *prometheus.CounterVec
	// received counts Raft RPCs handed to a local group, by rpc.
	received *prometheus.CounterVec
	// heartbeatBatch observes the heartbeats per stream frame that has any.
	heartbeatBatch prometheus.Histogram
	// snapshotsInstalled counts snapshots received that raft installed.
	snapshotsInstalled prometheus.Counter
}

func newTransportMetrics(reg prometheus.Registerer) (transportMetrics, error) {
	m := transportMetrics{
		sent: prometheus.NewCounterVec(prometheus.CounterOpts{
			Namespace: "ringkv", Subsystem: "consensus", Name: "transport_rpcs_sent_total",
			Help: "Raft RPCs sent to peers, by rpc.",
		}, []string{"rpc"}),
		frames: prometheus.NewCounterVec(prometheus.CounterOpts{
			Namespace: "ringkv", Subsystem: "consensus", Name: "transport_frames_sent_total",
			Help: "drpc calls and stream frames that carried the Raft RPCs sent, by rpc.",
		}, []string{"rpc"}),
		received: prometheus.NewCounterVec(prometheus.CounterOpts{
			Namespace: "ringkv", Subsystem: "consensus", Name: "transport_rpcs_received_total",
			Help: "Raft RPCs received for a local group, by rpc.",
		}, []string{"rpc"}),
		heartbeatBatch: prometheus.NewHistogram(prometheus.HistogramOpts{
			Namespace: "ringkv", Subsystem: "consensus", Name: "transport_heartbeat_batch_size",
			Help:    "Heartbeats coalesced into one stream frame.",
			Buckets: prometheus.ExponentialBuckets(1, 2, 10),
		}),
		snapshotsInstalled: prometheus.NewCounter(prometheus.CounterOpts{
			Namespace: "ringkv", Subsystem: "consensus", Name: "transport_snapshots_installed_total",
			Help: "Snapshots received from a leader and installed by a local group.",
		}),
	}
	for _, c := range []prometheus.Collector{m.sent, m.frames, m.received, m.heartbeatBatch, m.snapshotsInstalled} {
		if err := reg.Register(c); err != nil {
			return transportMetrics{}, fmt.Errorf("register raft transport metrics: %w", err)
		}
	}
	return m, nil
}
