package consensus

// The receiving side: the Raft drpc service, which hands each request to
// its group's transport, and the snapshot stream reader.

import (
	"context"
	"errors"
	"fmt"
	"io"
	"runtime"
	"sync"
	"time"

	"github.com/hashicorp/raft"
	"storj.io/drpc"

	"github.com/ringkv/ringkv/internal/rpcconn"
	"github.com/ringkv/ringkv/proto/kvpb"
)

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
	if g.matchPrevInSnapshot(req) {
		t.m.prevInSnapshot.Inc()
	}
	g.gate.noteAppend(req)
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

	// out and acks feed the writer; closed by nobody, the writer exits
	// with ctx.
	out := make(chan *kvpb.AppendEntriesResponse, streamQueue)
	acks := make(chan *kvpb.ConfirmAck, 1)
	wg.Go(func() { s.writePipeline(ctx, cancel, stream, out, acks) })
	workers := make(map[uint32]chan *kvpb.AppendEntriesRequest)
	for {
		in, err := stream.Recv()
		if err != nil {
			if ctx.Err() != nil || errors.Is(err, io.EOF) {
				return nil
			}
			return fmt.Errorf("receive raft pipeline frame: %w", err)
		}
		if l := in.GetLiveness(); l != nil {
			t.noteLiveness(l, time.Now())
		}
		if c := in.GetConfirm(); c != nil {
			// Never wait for the writer: an answer it has not taken yet
			// is to a Confirm whose round has ended (the peer runs one
			// round at a time), so the newer answer replaces it.
			ack := t.answerConfirm(c)
			select {
			case <-acks:
			default:
			}
			acks <- ack // cannot block: this loop is acks' only sender, and it is empty
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

func (s raftServer) writePipeline(ctx context.Context, cancel context.CancelFunc, stream kvpb.DRPCRaft_AppendEntriesPipelineStream, out <-chan *kvpb.AppendEntriesResponse, acks <-chan *kvpb.ConfirmAck) {
	batch := &kvpb.AppendEntriesBatchResponse{}
	for {
		batch.Responses = batch.Responses[:0]
		batch.Confirm = nil
		select {
		case r := <-out:
			batch.Responses = append(batch.Responses, r)
		case a := <-acks:
			batch.Confirm = a
		case <-ctx.Done():
			return
		}
		// Let the groups about to answer do so: one frame carries them too.
		runtime.Gosched()
	drain:
		for len(batch.Responses) < maxFrameRequests {
			select {
			case r := <-out:
				batch.Responses = append(batch.Responses, r)
			default:
				break drain
			}
		}
		if batch.Confirm == nil {
			select {
			case a := <-acks:
				batch.Confirm = a
			default:
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
	if g.gate.withhold() {
		s.t.m.votesWithheld.Inc()
		return &kvpb.RequestVoteResponse{Header: headerToWire(g.localHeader()), Term: in.GetTerm()}, nil
	}
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
	if g.gate.withhold() {
		s.t.m.votesWithheld.Inc()
		return &kvpb.RequestPreVoteResponse{Header: headerToWire(g.localHeader()), Term: in.GetTerm()}, nil
	}
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
	if v := g.snapshotVerdict(req.LastLogIndex, req.LastLogTerm); v != snapshotInstall {
		// The follower has it already (guards.go, "Snapshots a follower
		// already has"): read the data to its end and answer for raft:
		// success if the log holds its last entry, else a refusal.
		if _, err := io.Copy(io.Discard, io.LimitReader(data, in.GetSize())); err != nil {
			return fmt.Errorf("drain snapshot: %w", err)
		}
		if err := awaitCloseSend(stream, in.GetSize()); err != nil {
			return err
		}
		t.m.snapshotsSkipped.WithLabelValues(v.String()).Inc()
		if err := stream.SendAndClose(&kvpb.InstallSnapshotResponse{Header: headerToWire(g.localHeader()), Term: in.GetTerm(), Success: v == snapshotHeld}); err != nil {
			return fmt.Errorf("answer install snapshot: %w", err)
		}
		return nil
	}
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
	if err := awaitCloseSend(stream, in.GetSize()); err != nil {
		return err
	}
	if err := stream.SendAndClose(&kvpb.InstallSnapshotResponse{Header: headerToWire(resp.RPCHeader), Term: resp.Term, Success: resp.Success}); err != nil {
		return fmt.Errorf("answer install snapshot: %w", err)
	}
	return nil
}

// awaitCloseSend waits, once the snapshot's size bytes are read (raft
// reads them to the end whatever it answers), for the sender's CloseSend:
// an answer that ends the stream before it arrives fails the sender's
// close ("context canceled") in place of the answer.
func awaitCloseSend(stream kvpb.DRPCRaft_InstallSnapshotStream, size int64) error {
	switch _, err := stream.Recv(); {
	case errors.Is(err, io.EOF):
		return nil
	case err != nil:
		return fmt.Errorf("snapshot stream: awaiting the sender's close: %w", err)
	default:
		return rpcError(fmt.Errorf("consensus: snapshot stream carries more than its size %d", size))
	}
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
