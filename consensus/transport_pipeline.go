package consensus

// The sending side of AppendEntries: one pipelined stream per peer that
// carries every group's entries and heartbeats, its futures, and the
// raft.AppendPipeline each group sees over it.

import (
	"context"
	"errors"
	"fmt"
	"runtime"
	"sync"
	"time"

	"github.com/hashicorp/raft"
	"google.golang.org/protobuf/proto"

	"github.com/ringkv/ringkv/internal/rpcconn"
	"github.com/ringkv/ringkv/proto/kvpb"
)

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
	if t.elideHeartbeat(g, target, args, resp) {
		return nil
	}
	t.m.sent.WithLabelValues(rpcHeartbeat).Inc()
	f := &appendFuture{start: time.Now(), args: args, resp: resp, heartbeat: true, urgent: g.urgent.Load() > 0, done: make(chan struct{})}
	f.wire = g.appendToWire(args)
	f.size = proto.Size(f.wire)
	if err := s.enqueue(f, g.closed); err != nil {
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
// from pending (the reader, fail, or abandon) completes it. It gives up
// when the stream fails or cancel (the group's or the pipeline's close)
// closes, so that a raft goroutine waiting here on a stuck stream cannot
// keep the group's Shutdown waiting for it.
func (s *appendStream) enqueue(f *appendFuture, cancel <-chan struct{}) error {
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
	case <-cancel:
		return fmt.Errorf("raft pipeline stream to %s: the group's transport closed: %w", s.addr, ErrTransportClosed)
	}
}

// sendLiveness queues msg for the writer unless the queue is full or the
// stream has failed; it reports whether it queued it. Nothing answers it.
func (s *appendStream) sendLiveness(msg *kvpb.Liveness) bool {
	return s.offer(&appendFuture{liveness: msg, done: make(chan struct{})})
}

// offer queues f, a message nothing answers through its future, for the
// writer unless the queue is full or the stream has failed; it reports
// whether it queued it.
func (s *appendStream) offer(f *appendFuture) bool {
	select {
	case s.sendq <- f:
		return true
	case <-s.ctx.Done():
		return false
	default:
		return false
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
	batch := &frame{}
	for {
		var f *appendFuture
		select {
		case f = <-s.sendq:
		case <-s.ctx.Done():
			return
		}
		batch.Requests = batch.Requests[:0]
		batch.Liveness = nil
		batch.Confirm = nil
		batch.add(f)
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
					batch.add(f)
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
		// Let the groups whose requests are about to be queued (other
		// reads' heartbeats, other writes' entries) do so: one frame then
		// carries them too.
		runtime.Gosched()
	drain:
		for len(batch.Requests) < maxFrameRequests && size < maxFrameBytes {
			select {
			case f := <-s.sendq:
				batch.add(f)
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
		if err := s.stream.Send(&batch.AppendEntriesBatch); err != nil {
			s.fail(err)
			return
		}
		clear(batch.Requests)
	}
}

// frame is the batch the stream writer is filling.
type frame struct{ kvpb.AppendEntriesBatch }

// add puts f's request, or its liveness message or Confirm, in the
// frame; a newer liveness message or Confirm replaces an older one (a
// Confirm of an earlier round is one nobody waits for).
func (b *frame) add(f *appendFuture) {
	switch {
	case f.liveness != nil:
		b.Liveness = f.liveness
		return
	case f.confirm != nil:
		b.Confirm = f.confirm
		return
	}
	b.Requests = append(b.Requests, f.wire)
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
		if a := msg.GetConfirm(); a != nil {
			s.t.noteConfirmAck(s, a)
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
	// liveness, if set, makes this a liveness message (no request, no
	// answer, never pending).
	liveness *kvpb.Liveness
	// confirm, if set, makes this a Confirm (confirm.go): answered by a
	// ConfirmAck, never pending.
	confirm   *kvpb.Confirm
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
	g      *groupTransport
	s      *appendStream
	target raft.ServerAddress
	// last is the last empty request sent (raft's CommitTimeout tick):
	// one saying the same again may be elided. Only raft's replication
	// goroutine, AppendEntries' one caller, touches it.
	last *kvpb.AppendEntriesRequest
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
	elide := p.elidable(f.wire, f.start)
	if !elide && len(f.wire.Entries) == 0 {
		p.last = f.wire
	}
	if elide {
		// Raft's idle tick (CommitTimeout) with nothing new: answered
		// here, in order with the requests before it.
		*resp = raft.AppendEntriesResponse{Term: args.Term, LastLog: args.PrevLogEntry, Success: true}
		f.complete(nil)
	} else {
		f.size = proto.Size(f.wire)
		if len(f.wire.Entries) > 0 {
			p.g.sentEntries.Store(f.start.UnixNano())
		}
	}
	select {
	case p.inflight <- f:
	case <-p.closed:
		return nil, raft.ErrPipelineShutdown
	}
	if elide {
		p.g.t.m.heartbeatsElided.Inc()
		return f, nil
	}
	p.g.t.m.sent.WithLabelValues(rpcPipeline).Inc()
	if err := p.s.enqueue(f, p.closed); err != nil {
		p.s.abandon(f, err)
		return nil, err
	}
	return f, nil
}

// elidable reports whether w, about to be sent at now, may be answered
// without sending it: it carries no entries and says nothing the last
// empty request this pipeline sent did not (same term, previous entry and
// commit index), the stream that request went on has not failed, the
// group is not confirming its leadership, and the follower's liveness
// stands for it (Transport.standsFor).
//
// The stream matters: a follower's process that restarted (its
// connection broke) may have lost its log, a wiped node rejoining, and
// its liveness stands for it again as soon as a heartbeat tells it the
// leader. Answering for it would leave that group's log empty there
// for good; sent for real, the request fails on the broken stream,
// raft closes the pipeline, and its next append finds the follower's
// log.
func (p *pipeline) elidable(w *kvpb.AppendEntriesRequest, now time.Time) bool {
	last := p.last
	if len(w.Entries) > 0 || last == nil || p.g.urgent.Load() > 0 || p.s.ctx.Err() != nil ||
		w.Term != last.Term || w.PrevLogEntry != last.PrevLogEntry || w.PrevLogTerm != last.PrevLogTerm ||
		w.LeaderCommitIndex != last.LeaderCommitIndex {
		return false
	}
	return p.g.t.standsFor(p.target, p.g.group, w.Term, now) && p.g.urgent.Load() == 0
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
