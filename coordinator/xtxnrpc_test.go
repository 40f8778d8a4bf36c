package coordinator

import (
	"context"

	"github.com/ringkv/ringkv/consensus"
	"github.com/ringkv/ringkv/proto/kvpb"
	"github.com/ringkv/ringkv/replica"
)

// serverLin's calls of transactions across partitions go through the
// wire forms, as RPCTransport's do.

func (s *serverLin) LinPrepare(ctx context.Context, _ string, p uint32, req *consensus.PrepareRequest) (consensus.PrepareResult, error) {
	if err := s.check(); err != nil {
		return consensus.PrepareResult{}, err
	}
	resp, err := s.srv.Prepare(ctx, prepareToWire(p, req))
	if err != nil {
		err = sentWriteError(err)
	}
	return prepareAnswer(p, resp, err)
}

func (s *serverLin) LinDecide(ctx context.Context, _ string, p uint32, id consensus.TxnID, commit bool, ts replica.Timestamp, writes []replica.Entry) (*consensus.TxnRecord, error) {
	if err := s.check(); err != nil {
		return nil, err
	}
	resp, err := s.srv.Decide(ctx, &kvpb.LinDecideRequest{Partition: p, TxnId: id.String(), Commit: commit, CommitTs: uint64(ts), Writes: entriesToWire(writes)})
	if err != nil {
		return nil, sentWriteError(err)
	}
	if err := redirectError(p, resp.GetRedirect()); err != nil {
		return nil, err
	}
	return txnRecordFromWire(resp.GetRecord())
}

func (s *serverLin) LinTxnStatus(ctx context.Context, _ string, p uint32, id consensus.TxnID) (*consensus.TxnRecord, error) {
	if err := s.check(); err != nil {
		return nil, err
	}
	resp, err := s.srv.TxnStatus(ctx, &kvpb.LinTxnStatusRequest{Partition: p, TxnId: id.String()})
	if err != nil {
		return nil, errorFor(err)
	}
	if err := redirectError(p, resp.GetRedirect()); err != nil {
		return nil, err
	}
	return txnRecordFromWire(resp.GetRecord())
}

func (s *serverLin) LinResolve(ctx context.Context, _ string, p uint32, id consensus.TxnID, commit bool, ts replica.Timestamp, writes []replica.Entry) (int, error) {
	if err := s.check(); err != nil {
		return 0, err
	}
	resp, err := s.srv.Resolve(ctx, &kvpb.LinResolveRequest{Partition: p, TxnId: id.String(), Commit: commit, CommitTs: uint64(ts), Writes: entriesToWire(writes)})
	if err != nil {
		return 0, sentWriteError(err)
	}
	if err := redirectError(p, resp.GetRedirect()); err != nil {
		return 0, err
	}
	return int(resp.GetCleared()), nil
}

func (s *serverLin) LinForget(ctx context.Context, _ string, p uint32, id consensus.TxnID) error {
	if err := s.check(); err != nil {
		return err
	}
	resp, err := s.srv.Forget(ctx, &kvpb.LinForgetRequest{Partition: p, TxnId: id.String()})
	if err != nil {
		return sentWriteError(err)
	}
	return redirectError(p, resp.GetRedirect())
}
