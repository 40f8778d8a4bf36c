package coordinator

import (
	"google.golang.org/protobuf/proto"

	"context"
	"fmt"
	"time"

	"github.com/ringkv/ringkv/consensus"
	"github.com/ringkv/ringkv/proto/kvpb"
	"github.com/ringkv/ringkv/replica"
)

// Txn runs a transaction (Coordinator.Txn) for a client library. Errors
// travel in the answer, coded by clientCode.
func (s *ClientServer) Txn(ctx context.Context, req *kvpb.ClientTxnRequest) (*kvpb.ClientTxnResponse, error) {
	ctx, cancel := s.budget(ctx, req.GetTimeoutMicros())
	defer cancel()
	resp := &kvpb.ClientTxnResponse{Header: s.header()}
	tr, err := clientTxnFromWire(req)
	if len(tr.Compares)+len(tr.Success)+len(tr.Failure) > 0 {
		resp.Leader = s.leaderOf(firstKey(tr))
	}
	release, rerr := s.c.enter(PlaneDRPC, int64(proto.Size(req)))
	if rerr != nil {
		resp.Error, resp.Message = clientCode(rerr, Linearizable, true), rerr.Error()
		return resp, nil
	}
	defer release()
	var res TxnResult
	if err == nil {
		res, err = s.c.Txn(ctx, tr)
	}
	if err != nil {
		resp.Error, resp.Message = clientCode(err, Linearizable, txnWrites(tr)), err.Error()
		return resp, nil
	}
	resp.Succeeded = res.Succeeded
	resp.Results = make([]*kvpb.ClientTxnResult, len(res.Results))
	now := s.c.now()
	for i, r := range res.Results {
		out := &kvpb.ClientTxnResult{Found: r.Found}
		if r.Found {
			out.Value, out.Version = r.Record.Value, Version(r.Record)
			out.TtlMicros = int64(Item{ExpiresAt: r.Record.ExpiresAt}.TTL(now) / time.Microsecond)
		}
		resp.Results[i] = out
	}
	return resp, nil
}

// txnWrites tells whether either branch of tr writes: a transaction that
// cannot write is never an unknown outcome.
func txnWrites(tr *TxnRequest) bool {
	for _, ops := range [][]TxnOp{tr.Success, tr.Failure} {
		for _, op := range ops {
			if op.Kind != consensus.OpGet {
				return true
			}
		}
	}
	return false
}

// firstKey is the smallest key of tr, which a client routes by.
func firstKey(tr *TxnRequest) []byte {
	var first []byte
	see := func(k []byte) {
		if first == nil || string(k) < string(first) {
			first = k
		}
	}
	for _, c := range tr.Compares {
		see(c.Key)
	}
	for _, ops := range [][]TxnOp{tr.Success, tr.Failure} {
		for _, op := range ops {
			see(op.Key)
		}
	}
	return first
}

// clientTxnFromWire decodes a request; it always returns a request (for
// routing), and an error for values out of range.
func clientTxnFromWire(req *kvpb.ClientTxnRequest) (*TxnRequest, error) {
	tr := &TxnRequest{Compares: make([]consensus.Compare, len(req.GetCompares()))}
	var bad error
	for i, c := range req.GetCompares() {
		tr.Compares[i] = consensus.Compare{Kind: consensus.CompareKind(min(c.GetKind(), 255)), Key: c.GetKey(), Value: c.GetValue(),
			Version: replica.Timestamp(c.GetVersion())}
		if us := c.GetTtlMicros(); us < 0 || us > int64(MaxTTL/time.Microsecond) {
			bad = fmt.Errorf("%w: compare %d: ttl_micros %d outside 0..%d", ErrInvalidArgument, i, us, int64(MaxTTL/time.Microsecond))
		} else {
			tr.Compares[i].TTL = time.Duration(us) * time.Microsecond
		}
	}
	for _, b := range []struct {
		in  []*kvpb.ClientTxnOp
		out *[]TxnOp
	}{{req.GetSuccess(), &tr.Success}, {req.GetFailure(), &tr.Failure}} {
		*b.out = make([]TxnOp, len(b.in))
		for i, op := range b.in {
			(*b.out)[i] = TxnOp{Kind: consensus.OpKind(min(op.GetKind(), 255)), Key: op.GetKey(), Value: op.GetValue()}
			if us := op.GetTtlMicros(); us < 0 || us > int64(MaxTTL/time.Microsecond) {
				bad = fmt.Errorf("%w: op %d: ttl_micros %d outside 0..%d", ErrInvalidArgument, i, us, int64(MaxTTL/time.Microsecond))
			} else {
				(*b.out)[i].TTL = time.Duration(us) * time.Microsecond
			}
		}
	}
	return tr, bad
}
