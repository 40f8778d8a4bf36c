package coordinator

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"log/slog"
	"runtime"
	"sync"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/ringkv/ringkv/internal/rpcconn"
	"github.com/ringkv/ringkv/proto/kvpb"
	"github.com/ringkv/ringkv/replica"
)

// Resolver maps a node id to its drpc address. gossip provides it.
type Resolver interface {
	RPCAddr(nodeID string) (string, bool)
}

// ErrUnknownPeer is returned by RPCTransport for a node id the Resolver does
// not know.
var ErrUnknownPeer = errors.New("coordinator: unknown peer")

// RPCConfig tunes an RPCTransport.
type RPCConfig struct {
	// ConnsPerPeer is how many drpc connections (each carrying one RPC at a
	// time) carry merges and reads to each peer. Few is better: operations
	// waiting for a busy connection go together in the next RPC, so under
	// load a peer gets fewer, larger merges (and commits them in fewer
	// fsyncs). Measured on 2 cores, 2 beat 8 by 20-35% in throughput for
	// QUORUM reads, writes and mixes (docs/bench/HISTORY.md). Default 2.
	ConnsPerPeer int
	// InvokeConnsPerPeer is how many connections carry forwarded
	// linearizable calls and scans to each peer, one call each at a time,
	// apart from merges and reads so that neither waits behind the other.
	// A forwarded write holds its connection for a Raft round: a
	// transaction across partitions sends each peer its prepares,
	// decision, resolves and reads, and at 8 its reads waited behind the
	// raft rounds (in one run the double read took 82 ms at the
	// coordinator where each leader answered its gets in 7 ms).
	// Connections are dialed on first use. Default 64.
	InvokeConnsPerPeer int
	// MaxBatch caps how many waiting operations one RPC carries. Default 512.
	MaxBatch int
	// QueueDepth is the per-peer queue of operations waiting for a
	// connection; callers block (bounded by their ctx) when it is full.
	// Default 4096.
	QueueDepth int
	// DialTimeout bounds connecting to a peer, the TLS handshake
	// included. Default 1s.
	DialTimeout time.Duration
	// TLS gives the configuration for dialing a peer's address; nil
	// dials plain TCP (an insecure cluster).
	TLS func(addr string) *tls.Config
	// Identity is sent with every call (rpcconn.Conn.SetIdentity), so
	// that peers can refuse calls from another cluster or from a node
	// outside their membership; the zero value sends none.
	Identity rpcconn.Identity
	// Logger; nil discards.
	Logger *slog.Logger
}

// DefaultRPCConfig returns fresh defaults.
func DefaultRPCConfig() RPCConfig {
	return RPCConfig{ConnsPerPeer: 2, InvokeConnsPerPeer: 64, MaxBatch: 512, QueueDepth: 4096, DialTimeout: time.Second}
}

// fill sets the zero fields of c to their defaults.
func (c *RPCConfig) fill() {
	def := DefaultRPCConfig()
	if c.ConnsPerPeer == 0 {
		c.ConnsPerPeer = def.ConnsPerPeer
	}
	if c.InvokeConnsPerPeer == 0 {
		c.InvokeConnsPerPeer = def.InvokeConnsPerPeer
	}
	if c.MaxBatch == 0 {
		c.MaxBatch = def.MaxBatch
	}
	if c.QueueDepth == 0 {
		c.QueueDepth = def.QueueDepth
	}
	if c.DialTimeout == 0 {
		c.DialTimeout = def.DialTimeout
	}
}

// Validate reports every problem with c, joined: after fill, every count
// and the dial timeout must be positive (a negative value is a mistake,
// not a request for the default).
func (c RPCConfig) Validate() error {
	var errs []error
	for name, v := range map[string]int{"ConnsPerPeer": c.ConnsPerPeer, "InvokeConnsPerPeer": c.InvokeConnsPerPeer, "MaxBatch": c.MaxBatch, "QueueDepth": c.QueueDepth} {
		if v <= 0 {
			errs = append(errs, fmt.Errorf("coordinator: RPCConfig.%s must be positive, got %d", name, v))
		}
	}
	if c.DialTimeout <= 0 {
		errs = append(errs, fmt.Errorf("coordinator: RPCConfig.DialTimeout must be positive, got %s", c.DialTimeout))
	}
	return errors.Join(errs...)
}

// RPCTransport is the drpc Transport. Each peer gets a bounded pool of
// ConnsPerPeer connections, each driven by one sender goroutine. A sender
// takes every operation waiting for that peer at that moment (up to
// MaxBatch) and sends the merges as one Merge RPC and the reads as one Read
// RPC, so concurrent requests bound for the same peer share round trips.
// Forwarded linearizable calls and scans go through a second pool of
// InvokeConnsPerPeer connections, one call at a time each.
//
// Goroutines: ConnsPerPeer + InvokeConnsPerPeer senders per peer, started
// on first use, fed by the peer's two queues, stopped by Close.
type RPCTransport struct {
	cfg      RPCConfig
	resolver Resolver
	log      *slog.Logger
	batch    prometheus.Histogram

	lifetime context.Context
	cancel   context.CancelFunc
	wg       sync.WaitGroup
	// enqueuing counts MergeAsync calls between their check of closed
	// and their hand-off, so that Close answers every call they queued.
	enqueuing sync.WaitGroup

	mu struct {
		sync.Mutex
		peers  map[string]*peer // by address
		closed bool
	}
}

type peer struct {
	addr string
	// calls (merges, reads) and invokes (forwarded linearizable calls,
	// scans) are closed by nobody: senders exit on lifetime cancellation.
	calls   chan *call
	invokes chan *call
}

type callKind int

const (
	callMerge callKind = iota
	callRead
	callScan
	callInvoke
)

type call struct {
	kind      callKind
	ctx       context.Context
	entries   []replica.Entry
	partition uint32
	key       []byte
	scan      ScanRequest
	invoke    func(ctx context.Context, conn *rpcconn.Conn) (any, error)
	done      chan callResult // buffered 1: the sender never blocks; nil when notify is set
	// notify, if set, replaces done: it is called exactly once with the
	// call's error, on a sender's goroutine (MergeAsync).
	notify func(error)
	// state moves once from callQueued to callTaken (a sender will send
	// it) or to callAbandoned (the caller left first: never sent), so a
	// caller that stops waiting knows whether the peer may have it.
	state atomic.Int32
}

// answer gives c its outcome.
func (c *call) answer(res callResult) {
	if c.notify != nil {
		c.notify(res.err)
		return
	}
	c.done <- res
}

const (
	callQueued int32 = iota
	callTaken
	callAbandoned
)

// errMaybeSent marks a call whose caller stopped waiting after a sender
// took it: the peer may have received and applied it.
var errMaybeSent = errors.New("coordinator: stopped waiting after the request was sent")

// callResult is a call's outcome. A sender hands back everything it
// received through it and writes nothing its caller can see otherwise:
// a caller that stopped waiting may return while the call still runs.
type callResult struct {
	rec  replica.Record
	scan []ScanResult
	val  any // callInvoke's response
	err  error
}

// NewRPCTransport returns a transport resolving node ids with resolver and
// registering its metrics on reg (nil keeps them private).
func NewRPCTransport(cfg RPCConfig, resolver Resolver, reg prometheus.Registerer) (*RPCTransport, error) {
	cfg.fill()
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	if resolver == nil {
		return nil, errors.New("coordinator: RPCTransport needs a Resolver")
	}
	log := cfg.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	if reg == nil {
		reg = prometheus.NewRegistry()
	}
	batch := prometheus.NewHistogram(prometheus.HistogramOpts{
		Namespace: "ringkv", Subsystem: "coordinator", Name: "rpc_batch_ops",
		Help:    "Operations coalesced into one replica RPC.",
		Buckets: prometheus.ExponentialBuckets(1, 2, 10),
	})
	if err := reg.Register(batch); err != nil {
		return nil, fmt.Errorf("register transport metrics: %w", err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	t := &RPCTransport{cfg: cfg, resolver: resolver, log: log, batch: batch, lifetime: ctx, cancel: cancel}
	t.mu.peers = make(map[string]*peer)
	return t, nil
}

// Close stops every sender and closes every connection. Operations still
// queued fail with ErrClosed.
func (t *RPCTransport) Close() error {
	t.mu.Lock()
	t.mu.closed = true
	t.mu.Unlock()
	t.cancel()
	t.wg.Wait()
	// Senders are gone; so, after this, is every MergeAsync still handing
	// a call over. What is left in the queues was never sent: a MergeAsync
	// caller is told, a waiting caller has already left (ErrClosed).
	t.enqueuing.Wait()
	t.mu.Lock()
	defer t.mu.Unlock()
	for _, p := range t.mu.peers {
		for _, q := range []chan *call{p.calls, p.invokes} {
		drain:
			for {
				select {
				case c := <-q:
					if c.state.CompareAndSwap(callQueued, callTaken) {
						c.answer(callResult{err: ErrClosed})
					}
				default:
					break drain
				}
			}
		}
	}
	return nil
}

// MergeAsync merges like Merge without waiting: done is called exactly once
// with what Merge would have returned, on one of the transport's
// goroutines, and must not block. It blocks only while the peer's queue is
// full (bounded by ctx); ctx's deadline also bounds the RPC. If MergeAsync
// returns an error, done is not called. The coordinator uses it to wait
// for several replicas without a goroutine for each.
func (t *RPCTransport) MergeAsync(ctx context.Context, node string, entries []replica.Entry, done func(error)) error {
	p, err := t.peerOf(node)
	if err != nil {
		return err
	}
	t.mu.Lock()
	if t.mu.closed {
		t.mu.Unlock()
		return ErrClosed
	}
	t.enqueuing.Add(1)
	t.mu.Unlock()
	defer t.enqueuing.Done()
	c := &call{kind: callMerge, ctx: ctx, entries: entries, notify: done}
	select {
	case p.calls <- c:
		return nil
	case <-ctx.Done():
		return ctx.Err() //nolint:wrapcheck // as Merge: the caller's own context
	case <-t.lifetime.Done():
		return ErrClosed
	}
}

// Merge implements Transport.
func (t *RPCTransport) Merge(ctx context.Context, node string, entries []replica.Entry) error {
	res := t.do(ctx, node, &call{kind: callMerge, entries: entries})
	return res.err
}

// Read implements Transport.
func (t *RPCTransport) Read(ctx context.Context, node string, partition uint32, key []byte) (replica.Record, error) {
	res := t.do(ctx, node, &call{kind: callRead, partition: partition, key: key})
	return res.rec, res.err
}

// Scan implements Transport.
func (t *RPCTransport) Scan(ctx context.Context, node string, req ScanRequest) ([]ScanResult, error) {
	res := t.do(ctx, node, &call{kind: callScan, scan: req})
	return res.scan, res.err
}

func (t *RPCTransport) do(ctx context.Context, node string, c *call) callResult {
	p, err := t.peerOf(node)
	if err != nil {
		return callResult{err: err}
	}
	c.ctx = ctx
	c.done = make(chan callResult, 1)
	queue := p.calls
	if c.kind == callInvoke || c.kind == callScan {
		queue = p.invokes
	}
	select {
	case queue <- c:
	case <-ctx.Done():
		return callResult{err: ctx.Err()}
	case <-t.lifetime.Done():
		return callResult{err: ErrClosed}
	}
	select {
	case res := <-c.done:
		return res
	case <-ctx.Done():
		err = ctx.Err()
	case <-t.lifetime.Done():
		err = ErrClosed
	}
	if c.state.CompareAndSwap(callQueued, callAbandoned) {
		return callResult{err: err} // no sender took it
	}
	return callResult{err: fmt.Errorf("%w: %w", errMaybeSent, err)}
}

// peerOf resolves node and returns its peer, started on first use.
func (t *RPCTransport) peerOf(node string) (*peer, error) {
	addr, ok := t.resolver.RPCAddr(node)
	if !ok {
		return nil, fmt.Errorf("%w: %s", ErrUnknownPeer, node)
	}
	return t.peer(addr)
}

func (t *RPCTransport) peer(addr string) (*peer, error) {
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.mu.closed {
		return nil, ErrClosed
	}
	if p, ok := t.mu.peers[addr]; ok {
		return p, nil
	}
	p := &peer{addr: addr, calls: make(chan *call, t.cfg.QueueDepth), invokes: make(chan *call, t.cfg.QueueDepth)}
	t.mu.peers[addr] = p
	for range t.cfg.ConnsPerPeer {
		t.wg.Add(1)
		go t.sender(p, p.calls, t.cfg.MaxBatch)
	}
	for range t.cfg.InvokeConnsPerPeer {
		t.wg.Add(1)
		go t.sender(p, p.invokes, 1)
	}
	return p, nil
}

// sender owns one connection to p and sends batches of up to maxBatch calls
// from queue until Close.
func (t *RPCTransport) sender(p *peer, queue <-chan *call, maxBatch int) {
	defer t.wg.Done()
	var conn *rpcconn.Conn
	defer func() {
		if conn != nil {
			_ = conn.Close() // shutting down; nothing to report to
		}
	}()
	batch := make([]*call, 0, maxBatch)
	for {
		if t.lifetime.Err() != nil {
			return // closing: Close answers what is still queued
		}
		batch = batch[:0]
		select {
		case <-t.lifetime.Done():
			return
		case c := <-queue:
			batch = append(batch, c)
		}
		if maxBatch > 1 {
			// Let the goroutines that woke it (or run beside it) queue
			// what they have first: more calls per RPC.
			runtime.Gosched()
		}
	drain:
		for len(batch) < maxBatch {
			select {
			case c := <-queue:
				batch = append(batch, c)
			default:
				break drain
			}
		}
		batch = live(batch)
		if len(batch) == 0 {
			continue
		}
		t.batch.Observe(float64(len(batch)))
		if conn != nil {
			select {
			case <-conn.Closed():
				conn = nil
			default:
			}
		}
		if conn == nil {
			var err error
			conn, err = t.dial(p.addr)
			if err != nil {
				answerAll(batch, fmt.Errorf("%w: dial %s: %w", errPeer, p.addr, err))
				continue
			}
		}
		if err := t.send(conn, batch); err != nil {
			t.log.Debug("replica rpc failed", "peer", p.addr, "err", err)
			_ = conn.Close() // the connection may be broken; redial next time
			conn = nil
		}
	}
}

// live drops calls whose caller has already given up.
func live(batch []*call) []*call {
	out := batch[:0]
	for _, c := range batch {
		if !c.state.CompareAndSwap(callQueued, callTaken) {
			continue // abandoned: its caller has its answer
		}
		if c.ctx.Err() != nil {
			c.answer(callResult{err: c.ctx.Err()})
			continue
		}
		out = append(out, c)
	}
	return out
}

// answerAll gives every call in batch the same outcome (nil: success).
func answerAll(batch []*call, err error) {
	for _, c := range batch {
		c.answer(callResult{err: err})
	}
}

func (t *RPCTransport) dial(addr string) (*rpcconn.Conn, error) {
	ctx, cancel := context.WithTimeout(t.lifetime, t.cfg.DialTimeout)
	defer cancel()
	conn, err := rpcconn.Dial(ctx, addr, t.cfg.TLS)
	if err != nil {
		return nil, fmt.Errorf("dial: %w", err)
	}
	conn.SetIdentity(t.cfg.Identity)
	return conn, nil
}

// batchContext returns a context for an RPC serving calls: it ends at the
// latest of their deadlines, or with the transport.
func (t *RPCTransport) batchContext(calls []*call) (context.Context, context.CancelFunc) {
	var latest time.Time
	for _, c := range calls {
		d, ok := c.ctx.Deadline()
		if !ok {
			return context.WithCancel(t.lifetime)
		}
		if d.After(latest) {
			latest = d
		}
	}
	return context.WithDeadline(t.lifetime, latest)
}

// send issues the batch's RPCs on conn, answering every call. It returns
// the first transport-level error, after which conn should be dropped.
func (t *RPCTransport) send(conn *rpcconn.Conn, batch []*call) error {
	client := kvpb.NewDRPCReplicaClient(conn)
	var merges, reads []*call
	var firstErr error
	for _, c := range batch {
		switch c.kind {
		case callMerge:
			merges = append(merges, c)
		case callRead:
			reads = append(reads, c)
		case callScan:
			if err := t.sendScan(client, c); err != nil && firstErr == nil {
				firstErr = err
			}
		case callInvoke:
			ctx, cancel := t.batchContext([]*call{c})
			v, err := c.invoke(ctx, conn)
			cancel()
			c.answer(callResult{val: v, err: err})
			if err != nil && drpcerrCode(err) == 0 && firstErr == nil {
				firstErr = err // a transport failure, not an answer
			}
		}
	}
	if len(merges) > 0 {
		if err := t.sendMerges(client, merges); err != nil && firstErr == nil {
			firstErr = err
		}
	}
	if len(reads) > 0 {
		if err := t.sendReads(client, reads); err != nil && firstErr == nil {
			firstErr = err
		}
	}
	return firstErr
}

// maxMergeRPCBytes bounds the keys and values of the calls coalesced into
// one Merge RPC, well under drpc's 4 MiB message limit (a single call
// larger than it goes alone).
const maxMergeRPCBytes = 2 << 20

// sendMerges sends calls as Merge RPCs of at most maxMergeRPCBytes each
// and returns the first error.
func (t *RPCTransport) sendMerges(client kvpb.DRPCReplicaClient, calls []*call) error {
	var firstErr error
	for len(calls) > 0 {
		n, size := 0, 0
		for n < len(calls) {
			b := 0
			for _, e := range calls[n].entries {
				b += len(e.Key) + len(e.Record.Value) + 64
			}
			if n > 0 && size+b > maxMergeRPCBytes {
				break
			}
			size += b
			n++
		}
		if err := t.sendMergeRPC(client, calls[:n]); err != nil && firstErr == nil {
			firstErr = err
		}
		calls = calls[n:]
	}
	return firstErr
}

func (t *RPCTransport) sendMergeRPC(client kvpb.DRPCReplicaClient, calls []*call) error {
	req := &kvpb.MergeRequest{}
	for _, c := range calls {
		req.Records = append(req.Records, entriesToWire(c.entries)...)
	}
	ctx, cancel := t.batchContext(calls)
	defer cancel()
	_, err := client.Merge(ctx, req)
	if err != nil {
		err = errorFor(err)
	}
	answerAll(calls, err)
	return err
}

func (t *RPCTransport) sendReads(client kvpb.DRPCReplicaClient, calls []*call) error {
	req := &kvpb.ReadRequest{Keys: make([]*kvpb.ReadKey, len(calls))}
	for i, c := range calls {
		req.Keys[i] = &kvpb.ReadKey{Partition: c.partition, Key: c.key}
	}
	ctx, cancel := t.batchContext(calls)
	defer cancel()
	resp, err := client.Read(ctx, req)
	if err == nil && len(resp.GetResults()) != len(calls) {
		err = fmt.Errorf("%w: read returned %d results for %d keys", errPeer, len(resp.GetResults()), len(calls))
	} else if err != nil {
		err = errorFor(err)
	}
	if err != nil {
		answerAll(calls, err)
		return err
	}
	for i, r := range resp.GetResults() {
		c := calls[i]
		switch r.GetStatus() {
		case kvpb.ReadResult_STATUS_FOUND:
			c.answer(callResult{rec: recordFromWire(r.GetRecord())})
		case kvpb.ReadResult_STATUS_NOT_FOUND:
			c.answer(callResult{err: replica.ErrNotFound})
		case kvpb.ReadResult_STATUS_CORRUPT:
			c.answer(callResult{err: &replica.CorruptError{Partition: c.partition, Key: c.key}})
		default:
			c.answer(callResult{err: fmt.Errorf("%w: unknown read status %v", errPeer, r.GetStatus())})
		}
	}
	return nil
}

func (t *RPCTransport) sendScan(client kvpb.DRPCReplicaClient, c *call) error {
	ctx, cancel := t.batchContext([]*call{c})
	defer cancel()
	resp, err := client.Scan(ctx, &kvpb.ScanRequest{
		Partitions: c.scan.Partitions,
		Prefix:     c.scan.Prefix,
		Start:      c.scan.Start,
		Limit:      uint32(c.scan.Limit),
	})
	if err != nil {
		err = errorFor(err)
		c.answer(callResult{err: err})
		return err
	}
	c.answer(callResult{scan: scanResultsFromWire(resp.GetResults())})
	return nil
}
