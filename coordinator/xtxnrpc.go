package coordinator

import (
	"context"
	"fmt"

	"github.com/ringkv/ringkv/consensus"
	"github.com/ringkv/ringkv/proto/kvpb"
	"github.com/ringkv/ringkv/replica"
)

// The Linearizable service's calls for transactions across partitions
// (wire version 2): Prepare, Decide, TxnStatus, Resolve and Forget, each
// served by the partition's leader and answered with a Redirect when the
// receiver does not lead it. Prepare's *consensus.IntentError travels in
// its answer (the coordinator needs the holders for wound-wait);
// consensus.ErrTxnAborted and consensus.ErrTxnCommitted travel as drpc
// codes (wire.go).

func entriesFromWire(w []*kvpb.KeyedRecord) []replica.Entry {
	if len(w) == 0 {
		return nil
	}
	out := make([]replica.Entry, len(w))
	for i, kr := range w {
		out[i] = replica.Entry{Partition: kr.GetPartition(), Key: kr.GetKey(), Record: recordFromWire(kr.GetRecord())}
	}
	return out
}

func txnIDFromWire(s string) (consensus.TxnID, error) {
	id, err := consensus.ParseTxnID(s)
	if err != nil {
		return id, fmt.Errorf("%w: %w", ErrInvalidArgument, err)
	}
	return id, nil
}

func intentsToWire(in []consensus.KeyIntent) []*kvpb.TxnIntent {
	out := make([]*kvpb.TxnIntent, len(in))
	for i, ki := range in {
		out[i] = &kvpb.TxnIntent{Key: ki.Key, TxnId: ki.Intent.ID.String(), Anchor: ki.Intent.Anchor, DeadlineUnixNanos: expiryToWire(ki.Intent.Deadline)}
	}
	return out
}

func intentErrorFromWire(p uint32, w []*kvpb.TxnIntent) error {
	ie := &consensus.IntentError{Group: p, Intents: make([]consensus.KeyIntent, len(w))}
	for i, in := range w {
		id, err := consensus.ParseTxnID(in.GetTxnId())
		if err != nil {
			return fmt.Errorf("coordinator: prepare answer: %w", err)
		}
		ie.Intents[i] = consensus.KeyIntent{Key: in.GetKey(), Intent: consensus.Intent{ID: id, Anchor: in.GetAnchor(), Deadline: expiryFromWire(in.GetDeadlineUnixNanos())}}
	}
	return ie
}

func txnRecordToWire(r *consensus.TxnRecord) *kvpb.TxnRecordMsg {
	if r == nil {
		return nil
	}
	return &kvpb.TxnRecordMsg{TxnId: r.ID.String(), Status: uint32(r.Status), DeadlineUnixNanos: expiryToWire(r.Deadline),
		Participants: r.Participants, CommitTs: uint64(r.CommitTS), Writes: entriesToWire(r.Writes)}
}

func txnRecordFromWire(w *kvpb.TxnRecordMsg) (*consensus.TxnRecord, error) {
	if w == nil {
		return nil, nil
	}
	id, err := consensus.ParseTxnID(w.GetTxnId())
	if err != nil {
		return nil, fmt.Errorf("coordinator: transaction record answer: %w", err)
	}
	return &consensus.TxnRecord{ID: id, Status: consensus.TxnStatus(min(w.GetStatus(), 255)), Deadline: expiryFromWire(w.GetDeadlineUnixNanos()),
		Participants: w.GetParticipants(), CommitTS: replica.Timestamp(w.GetCommitTs()), Writes: entriesFromWire(w.GetWrites())}, nil
}

func prepareToWire(p uint32, req *consensus.PrepareRequest) *kvpb.LinPrepareRequest {
	w := &kvpb.LinPrepareRequest{Partition: p, TxnId: req.ID.String(), Anchor: req.Anchor, DeadlineUnixNanos: expiryToWire(req.Deadline),
		Participants: req.Participants, Keys: req.Keys, Compares: make([]*kvpb.TxnCompare, len(req.Compares))}
	for i, c := range req.Compares {
		w.Compares[i] = &kvpb.TxnCompare{Kind: uint32(c.Kind), Key: c.Key, Value: c.Value, Version: uint64(c.Version), TtlNanos: int64(c.TTL)}
	}
	return w
}

func prepareFromWire(w *kvpb.LinPrepareRequest) (*consensus.PrepareRequest, error) {
	id, err := txnIDFromWire(w.GetTxnId())
	if err != nil {
		return nil, err
	}
	t := txnFromWire(&kvpb.LinTxnRequest{Compares: w.GetCompares()})
	return &consensus.PrepareRequest{ID: id, Anchor: w.GetAnchor(), Deadline: expiryFromWire(w.GetDeadlineUnixNanos()),
		Participants: w.GetParticipants(), Keys: w.GetKeys(), Compares: t.Compares}, nil
}

func prepareResultToWire(res consensus.PrepareResult) *kvpb.LinPrepareResponse {
	resp := &kvpb.LinPrepareResponse{Holds: res.Holds, MaxTimestamp: uint64(res.MaxTimestamp), Reads: make([]*kvpb.KeyRead, len(res.Reads))}
	for i, r := range res.Reads {
		resp.Reads[i] = &kvpb.KeyRead{Found: r.Found}
		if r.Record.Timestamp != 0 || r.Found {
			resp.Reads[i].Record = recordToWire(r.Record)
		}
	}
	return resp
}

func prepareResultFromWire(resp *kvpb.LinPrepareResponse) consensus.PrepareResult {
	res := consensus.PrepareResult{Holds: resp.GetHolds(), MaxTimestamp: replica.Timestamp(resp.GetMaxTimestamp()), Reads: make([]consensus.KeyRead, len(resp.GetReads()))}
	for i, r := range resp.GetReads() {
		res.Reads[i] = consensus.KeyRead{Found: r.GetFound()}
		if r.GetRecord() != nil {
			res.Reads[i].Record = recordFromWire(r.GetRecord())
		}
	}
	return res
}

// Prepare serves a participant's prepare (consensus.Group.Prepare).
func (s *LinearizableServer) Prepare(ctx context.Context, req *kvpb.LinPrepareRequest) (*kvpb.LinPrepareResponse, error) {
	g, err := s.group(req.GetPartition())
	if err != nil {
		return nil, err
	}
	preq, err := prepareFromWire(req)
	if err != nil {
		return nil, rpcError(err)
	}
	res, err := g.Prepare(ctx, preq)
	if ie, ok := asIntentError(err); ok {
		return &kvpb.LinPrepareResponse{Intents: intentsToWire(ie.Intents)}, nil
	}
	if err != nil {
		r, err := redirect(err)
		return &kvpb.LinPrepareResponse{Redirect: r}, err
	}
	return prepareResultToWire(res), nil
}

// txnGroup returns the group of partition and the transaction id a
// request names: the prologue of Decide, TxnStatus, Resolve and Forget.
func (s *LinearizableServer) txnGroup(partition uint32, wire string) (*consensus.Group, consensus.TxnID, error) {
	g, err := s.group(partition)
	if err != nil {
		return nil, consensus.TxnID{}, err
	}
	id, err := txnIDFromWire(wire)
	if err != nil {
		return nil, consensus.TxnID{}, rpcError(err)
	}
	return g, id, nil
}

// Decide serves the anchor's decision (consensus.Group.DecideTxn).
func (s *LinearizableServer) Decide(ctx context.Context, req *kvpb.LinDecideRequest) (*kvpb.LinDecideResponse, error) {
	g, id, err := s.txnGroup(req.GetPartition(), req.GetTxnId())
	if err != nil {
		return nil, err
	}
	rec, err := g.DecideTxn(ctx, id, req.GetCommit(), replica.Timestamp(req.GetCommitTs()), entriesFromWire(req.GetWrites()))
	if err != nil {
		r, err := redirect(err)
		return &kvpb.LinDecideResponse{Redirect: r}, err
	}
	return &kvpb.LinDecideResponse{Record: txnRecordToWire(rec)}, nil
}

// TxnStatus serves a linearizable read of a transaction record
// (consensus.Group.TxnStatus).
func (s *LinearizableServer) TxnStatus(ctx context.Context, req *kvpb.LinTxnStatusRequest) (*kvpb.LinTxnStatusResponse, error) {
	g, id, err := s.txnGroup(req.GetPartition(), req.GetTxnId())
	if err != nil {
		return nil, err
	}
	rec, err := g.TxnStatus(ctx, id)
	if err != nil {
		r, err := redirect(err)
		return &kvpb.LinTxnStatusResponse{Redirect: r}, err
	}
	return &kvpb.LinTxnStatusResponse{Record: txnRecordToWire(rec)}, nil
}

// Resolve serves a participant's resolve (consensus.Group.ResolveTxn).
func (s *LinearizableServer) Resolve(ctx context.Context, req *kvpb.LinResolveRequest) (*kvpb.LinResolveResponse, error) {
	g, id, err := s.txnGroup(req.GetPartition(), req.GetTxnId())
	if err != nil {
		return nil, err
	}
	n, err := g.ResolveTxn(ctx, id, req.GetCommit(), replica.Timestamp(req.GetCommitTs()), entriesFromWire(req.GetWrites()))
	if err != nil {
		r, err := redirect(err)
		return &kvpb.LinResolveResponse{Redirect: r}, err
	}
	return &kvpb.LinResolveResponse{Cleared: uint32(max(n, 0))}, nil //nolint:gosec // n is at most MaxTxnKeys
}

// Forget serves the anchor's forgetting of a decided record
// (consensus.Group.ForgetTxn).
func (s *LinearizableServer) Forget(ctx context.Context, req *kvpb.LinForgetRequest) (*kvpb.LinForgetResponse, error) {
	g, id, err := s.txnGroup(req.GetPartition(), req.GetTxnId())
	if err != nil {
		return nil, err
	}
	if err := g.ForgetTxn(ctx, id); err != nil {
		r, err := redirect(err)
		return &kvpb.LinForgetResponse{Redirect: r}, err
	}
	return &kvpb.LinForgetResponse{}, nil
}

// LinPrepare implements LinTransport.
func (t *RPCTransport) LinPrepare(ctx context.Context, node string, p uint32, req *consensus.PrepareRequest) (consensus.PrepareResult, error) {
	w := prepareToWire(p, req)
	resp, err := invokeWrite(ctx, t, node, func(ctx context.Context, c kvpb.DRPCLinearizableClient) (*kvpb.LinPrepareResponse, error) {
		resp, err := c.Prepare(ctx, w)
		if err != nil {
			return nil, sentWriteError(err)
		}
		return resp, nil
	})
	return prepareAnswer(p, resp, err)
}

// prepareAnswer turns a prepare's answer into its result or error.
func prepareAnswer(p uint32, resp *kvpb.LinPrepareResponse, err error) (consensus.PrepareResult, error) {
	if err != nil {
		return consensus.PrepareResult{}, err
	}
	if err := redirectError(p, resp.GetRedirect()); err != nil {
		return consensus.PrepareResult{}, err
	}
	if len(resp.GetIntents()) > 0 {
		return consensus.PrepareResult{}, intentErrorFromWire(p, resp.GetIntents())
	}
	return prepareResultFromWire(resp), nil
}

// LinDecide implements LinTransport.
func (t *RPCTransport) LinDecide(ctx context.Context, node string, p uint32, id consensus.TxnID, commit bool, commitTS replica.Timestamp, writes []replica.Entry) (*consensus.TxnRecord, error) {
	req := &kvpb.LinDecideRequest{Partition: p, TxnId: id.String(), Commit: commit, CommitTs: uint64(commitTS), Writes: entriesToWire(writes)}
	resp, err := invokeWrite(ctx, t, node, func(ctx context.Context, c kvpb.DRPCLinearizableClient) (*kvpb.LinDecideResponse, error) {
		resp, err := c.Decide(ctx, req)
		if err != nil {
			return nil, sentWriteError(err)
		}
		return resp, nil
	})
	if err != nil {
		return nil, err
	}
	if err := redirectError(p, resp.GetRedirect()); err != nil {
		return nil, err
	}
	return txnRecordFromWire(resp.GetRecord())
}

// LinTxnStatus implements LinTransport.
func (t *RPCTransport) LinTxnStatus(ctx context.Context, node string, p uint32, id consensus.TxnID) (*consensus.TxnRecord, error) {
	resp, err := invoke(ctx, t, node, func(ctx context.Context, c kvpb.DRPCLinearizableClient) (*kvpb.LinTxnStatusResponse, error) {
		resp, err := c.TxnStatus(ctx, &kvpb.LinTxnStatusRequest{Partition: p, TxnId: id.String()})
		if err != nil {
			return nil, errorFor(err)
		}
		return resp, nil
	})
	if err != nil {
		return nil, err
	}
	if err := redirectError(p, resp.GetRedirect()); err != nil {
		return nil, err
	}
	return txnRecordFromWire(resp.GetRecord())
}

// LinResolve implements LinTransport.
func (t *RPCTransport) LinResolve(ctx context.Context, node string, p uint32, id consensus.TxnID, commit bool, commitTS replica.Timestamp, writes []replica.Entry) (int, error) {
	req := &kvpb.LinResolveRequest{Partition: p, TxnId: id.String(), Commit: commit, CommitTs: uint64(commitTS), Writes: entriesToWire(writes)}
	resp, err := invokeWrite(ctx, t, node, func(ctx context.Context, c kvpb.DRPCLinearizableClient) (*kvpb.LinResolveResponse, error) {
		resp, err := c.Resolve(ctx, req)
		if err != nil {
			return nil, sentWriteError(err)
		}
		return resp, nil
	})
	if err != nil {
		return 0, err
	}
	if err := redirectError(p, resp.GetRedirect()); err != nil {
		return 0, err
	}
	return int(resp.GetCleared()), nil
}

// LinForget implements LinTransport.
func (t *RPCTransport) LinForget(ctx context.Context, node string, p uint32, id consensus.TxnID) error {
	resp, err := invokeWrite(ctx, t, node, func(ctx context.Context, c kvpb.DRPCLinearizableClient) (*kvpb.LinForgetResponse, error) {
		resp, err := c.Forget(ctx, &kvpb.LinForgetRequest{Partition: p, TxnId: id.String()})
		if err != nil {
			return nil, sentWriteError(err)
		}
		return resp, nil
	})
	if err != nil {
		return err
	}
	return redirectError(p, resp.GetRedirect())
}
