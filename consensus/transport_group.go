package consensus

// groupTransport: the raft.Transport each group sees, multiplexed over
// the node's Transport.

import (
	"context"
	"errors"
	"fmt"
	"io"
	"sync"
	"sync/atomic"
	"time"

	"github.com/hashicorp/raft"

	"github.com/ringkv/ringkv/proto/kvpb"
)

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
	// sentEntries is when the group last sent an append carrying entries
	// (unix nanoseconds): while appends flow they carry the commit index
	// to the followers, and the liveness messages leave it out.
	sentEntries atomic.Int64
	closed      chan struct{} // closed by closeLocked
	// logs is the group's log durability, if its log store reports it
	// (SetLogDurability); nil: every stored entry counts as durable.
	logs atomic.Pointer[LogDurability]
	// gate withholds the group's votes while it refills after starting
	// empty (GateVotes, guards.go).
	gate voteGate
	// snapCheck judges incoming snapshots (SetSnapshotCheck, guards.go);
	// nil: every one goes to raft.
	snapCheck atomic.Pointer[func(index, term uint64) snapshotVerdict]
	// prevCheck tells whether an entry is the last of the group's
	// snapshot, with the log starting right after it (SetPrevCheck,
	// guards.go); nil: never.
	prevCheck atomic.Pointer[func(index, term uint64) bool]

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
		g: g, s: s, target: target,
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
	if len(args.Entries) > 0 {
		g.sentEntries.Store(time.Now().UnixNano())
	}
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
		// Finish the stream before call cancels its context: drpc ends
		// the whole connection under a stream cancelled unfinished, and
		// the next call on it fails with "context canceled" (a second
		// snapshot right after the first did, 2026-12-06).
		_ = st.Close() // the answer, or CloseAndRecv's error, is what matters
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
