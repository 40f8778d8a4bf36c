package coordinator

import (
	"context"
	"time"

	"github.com/ringkv/ringkv/consensus"
	"github.com/ringkv/ringkv/proto/kvpb"
	"github.com/ringkv/ringkv/replica"
)

// The Linearizable service's Txn (wire version 2): a single-partition
// transaction forwarded to the partition's leader.

func txnToWire(p uint32, t *consensus.Txn) *kvpb.LinTxnRequest {
	req := &kvpb.LinTxnRequest{Partition: p, Compares: make([]*kvpb.TxnCompare, len(t.Compares))}
	for i, c := range t.Compares {
		req.Compares[i] = &kvpb.TxnCompare{Kind: uint32(c.Kind), Key: c.Key, Value: c.Value, Version: uint64(c.Version), TtlNanos: int64(c.TTL)}
	}
	req.Success, req.Failure = opsToWire(t.Success), opsToWire(t.Failure)
	return req
}

func opsToWire(ops []consensus.Op) []*kvpb.TxnOp {
	out := make([]*kvpb.TxnOp, len(ops))
	for i, op := range ops {
		out[i] = &kvpb.TxnOp{Kind: uint32(op.Kind), Key: op.Key, Value: op.Value, ExpiresAtUnixNanos: expiryToWire(op.ExpiresAt)}
	}
	return out
}

// txnFromWire decodes a request; kinds out of range are left for
// consensus.ValidateTxn to refuse.
func txnFromWire(req *kvpb.LinTxnRequest) *consensus.Txn {
	t := &consensus.Txn{Compares: make([]consensus.Compare, len(req.GetCompares()))}
	for i, c := range req.GetCompares() {
		t.Compares[i] = consensus.Compare{Kind: consensus.CompareKind(min(c.GetKind(), 255)), Key: c.GetKey(), Value: c.GetValue(),
			Version: replica.Timestamp(c.GetVersion()), TTL: time.Duration(c.GetTtlNanos())}
	}
	t.Success, t.Failure = opsFromWire(req.GetSuccess()), opsFromWire(req.GetFailure())
	return t
}

func opsFromWire(ops []*kvpb.TxnOp) []consensus.Op {
	out := make([]consensus.Op, len(ops))
	for i, op := range ops {
		out[i] = consensus.Op{Kind: consensus.OpKind(min(op.GetKind(), 255)), Key: op.GetKey(), Value: op.GetValue(), ExpiresAt: expiryFromWire(op.GetExpiresAtUnixNanos())}
	}
	return out
}

func txnResultToWire(res consensus.TxnResult) *kvpb.LinTxnResponse {
	resp := &kvpb.LinTxnResponse{Succeeded: res.Succeeded, Results: make([]*kvpb.TxnOpResult, len(res.Results))}
	for i, r := range res.Results {
		resp.Results[i] = &kvpb.TxnOpResult{Found: r.Found}
		if r.Found {
			resp.Results[i].Record = recordToWire(r.Record)
		}
	}
	return resp
}

func txnResultFromWire(resp *kvpb.LinTxnResponse) consensus.TxnResult {
	res := consensus.TxnResult{Succeeded: resp.GetSucceeded(), Results: make([]consensus.OpResult, len(resp.GetResults()))}
	for i, r := range resp.GetResults() {
		if r.GetFound() {
			res.Results[i] = consensus.OpResult{Found: true, Record: recordFromWire(r.GetRecord())}
		}
	}
	return res
}

// Txn serves a single-partition transaction on the leader
// (consensus.Group.Txn).
func (s *LinearizableServer) Txn(ctx context.Context, req *kvpb.LinTxnRequest) (*kvpb.LinTxnResponse, error) {
	g, err := s.group(req.GetPartition())
	if err != nil {
		return nil, err
	}
	t := txnFromWire(req)
	var res consensus.TxnResult
	err = s.writeThrough(ctx, func() error {
		var err error
		res, err = g.Txn(ctx, t)
		return err //nolint:wrapcheck // mapped below
	})
	if err != nil {
		r, err := redirect(err)
		return &kvpb.LinTxnResponse{Redirect: r}, err
	}
	return txnResultToWire(res), nil
}

// LinTxn implements LinTransport.
func (t *RPCTransport) LinTxn(ctx context.Context, node string, p uint32, txn *consensus.Txn) (consensus.TxnResult, error) {
	req := txnToWire(p, txn)
	resp, err := invokeWrite(ctx, t, node, func(ctx context.Context, c kvpb.DRPCLinearizableClient) (*kvpb.LinTxnResponse, error) {
		resp, err := c.Txn(ctx, req)
		if err != nil {
			return nil, sentWriteError(err)
		}
		return resp, nil
	})
	if err != nil {
		return consensus.TxnResult{}, err
	}
	if err := redirectError(p, resp.GetRedirect()); err != nil {
		return consensus.TxnResult{}, err
	}
	return txnResultFromWire(resp), nil
}
