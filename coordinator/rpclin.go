package coordinator

import (
	"context"
	"errors"
	"fmt"
	"math"
	"time"

	"storj.io/drpc/drpcerr"

	"github.com/ringkv/ringkv/consensus"
	"github.com/ringkv/ringkv/internal/rpcconn"
	"github.com/ringkv/ringkv/proto/kvpb"
	"github.com/ringkv/ringkv/replica"
)

func drpcerrCode(err error) uint64 { return drpcerr.Code(err) }

// invoke runs fn on one of node's pooled connections and returns its
// response. fn's response travels back through the call's result, never
// through a variable the caller shares: a caller that stops waiting
// returns while fn may still be running. A caller that stopped waiting
// after the request left gets an error wrapping errMaybeSent;
// invokeWrite turns that into consensus.ErrAmbiguous.
func invoke[T any](ctx context.Context, t *RPCTransport, node string, fn func(ctx context.Context, c kvpb.DRPCLinearizableClient) (T, error)) (T, error) {
	res := t.do(ctx, node, &call{kind: callInvoke, invoke: func(ctx context.Context, conn *rpcconn.Conn) (any, error) {
		return fn(ctx, kvpb.NewDRPCLinearizableClient(conn))
	}})
	var zero T
	if res.err != nil {
		return zero, res.err
	}
	v, ok := res.val.(T)
	if !ok {
		return zero, fmt.Errorf("coordinator: invoke answered %T, want %T", res.val, zero)
	}
	return v, nil
}

// invokeWrite is invoke for a call that changes state: once the request
// may have reached node, a failure to hear back is an unknown outcome,
// never "not applied".
func invokeWrite[T any](ctx context.Context, t *RPCTransport, node string, fn func(ctx context.Context, c kvpb.DRPCLinearizableClient) (T, error)) (T, error) {
	v, err := invoke(ctx, t, node, fn)
	if errors.Is(err, errMaybeSent) && !errors.Is(err, consensus.ErrAmbiguous) {
		return v, fmt.Errorf("%w: %w", consensus.ErrAmbiguous, err)
	}
	return v, err
}

// sentWriteError classifies the error of a write RPC: answers from the
// server keep their meaning; anything else happened after the request may
// have been delivered, so the outcome is unknown.
func sentWriteError(err error) error {
	if drpcerr.Code(err) != 0 {
		return errorFor(err)
	}
	return fmt.Errorf("%w: %w", consensus.ErrAmbiguous, err)
}

func redirectError(p uint32, r *kvpb.Redirect) error {
	if r.GetNotLeader() {
		return &consensus.NotLeaderError{Group: p, Leader: r.GetLeader()}
	}
	return nil
}

// LinGet implements LinTransport.
func (t *RPCTransport) LinGet(ctx context.Context, node string, p uint32, key []byte) (replica.Record, bool, error) {
	resp, err := invoke(ctx, t, node, func(ctx context.Context, c kvpb.DRPCLinearizableClient) (*kvpb.LinGetResponse, error) {
		resp, err := c.Get(ctx, &kvpb.LinGetRequest{Partition: p, Key: key})
		if err != nil {
			return nil, errorFor(err)
		}
		return resp, nil
	})
	if err != nil {
		return replica.Record{}, false, err
	}
	return linGetAnswer(p, resp)
}

// linGetAnswer decodes the answer to a Linearizable.Get of a key in
// partition p: the redirect as an error, else the record and whether the
// key is present. An absent key's record, when the leader sent one
// (absentToWire), carries only its version.
func linGetAnswer(p uint32, resp *kvpb.LinGetResponse) (replica.Record, bool, error) {
	if err := redirectError(p, resp.GetRedirect()); err != nil {
		return replica.Record{}, false, err
	}
	if !resp.GetFound() {
		if w := resp.GetRecord(); w != nil {
			return recordFromWire(w), false, nil
		}
		return replica.Record{}, false, nil
	}
	return recordFromWire(resp.GetRecord()), true, nil
}

// LinPut implements LinTransport.
func (t *RPCTransport) LinPut(ctx context.Context, node string, p uint32, key, value []byte, tombstone bool, expiresAt time.Time) error {
	resp, err := invokeWrite(ctx, t, node, func(ctx context.Context, c kvpb.DRPCLinearizableClient) (*kvpb.LinPutResponse, error) {
		resp, err := c.Put(ctx, &kvpb.LinPutRequest{Partition: p, Key: key, Value: value, Tombstone: tombstone, ExpiresAtUnixNanos: expiryToWire(expiresAt)})
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

// LinCAS implements LinTransport.
func (t *RPCTransport) LinCAS(ctx context.Context, node string, p uint32, key []byte, expected *[]byte, value []byte, expiresAt time.Time) (CASResult, error) {
	req := &kvpb.LinCASRequest{Partition: p, Key: key, Value: value, ExpiresAtUnixNanos: expiryToWire(expiresAt)}
	if expected != nil {
		req.HasExpected, req.Expected = true, *expected
	}
	resp, err := invokeWrite(ctx, t, node, func(ctx context.Context, c kvpb.DRPCLinearizableClient) (*kvpb.LinCASResponse, error) {
		resp, err := c.CompareAndSet(ctx, req)
		if err != nil {
			return nil, sentWriteError(err)
		}
		return resp, nil
	})
	if err != nil {
		return CASResult{}, err
	}
	if err := redirectError(p, resp.GetRedirect()); err != nil {
		return CASResult{}, err
	}
	return CASResult{Swapped: resp.GetSwapped(), Found: resp.GetFound(), Current: resp.GetCurrent()}, nil
}

// LinScan implements LinTransport.
func (t *RPCTransport) LinScan(ctx context.Context, node string, partitions []uint32, prefix, start []byte, limit int) ([]LinScanPart, error) {
	resp, err := invoke(ctx, t, node, func(ctx context.Context, c kvpb.DRPCLinearizableClient) (*kvpb.LinScanResponse, error) {
		resp, err := c.Scan(ctx, &kvpb.LinScanRequest{Partitions: partitions, Prefix: prefix, Start: start, Limit: uint32(min(max(limit, 0), math.MaxUint32))})
		if err != nil {
			return nil, errorFor(err)
		}
		return resp, nil
	})
	if err != nil {
		return nil, err
	}
	return linScanFromWire(resp), nil
}

// linScanFromWire turns a LinScanResponse into parts: a redirect becomes
// a *consensus.NotLeaderError, any other failure an error.
func linScanFromWire(resp *kvpb.LinScanResponse) []LinScanPart {
	out := make([]LinScanPart, 0, len(resp.GetResults()))
	for _, r := range resp.GetResults() {
		part := LinScanPart{Result: ScanResult{Partition: r.GetPartition(), Truncated: r.GetTruncated()}}
		switch {
		case r.GetRedirect().GetNotLeader():
			part.Err = redirectError(r.GetPartition(), r.GetRedirect())
		case r.GetError() != "":
			part.Err = fmt.Errorf("scan of partition %d: %s", r.GetPartition(), r.GetError())
		}
		for _, kr := range r.GetRecords() {
			part.Result.Keys = append(part.Result.Keys, kr.GetKey())
			part.Result.Records = append(part.Result.Records, recordFromWire(kr.GetRecord()))
		}
		out = append(out, part)
	}
	return out
}

// AppliedIndex asks node how far its group of partition p has applied
// (consensus.Progress).
func (t *RPCTransport) AppliedIndex(ctx context.Context, node string, p uint32) (uint64, error) {
	return invoke(ctx, t, node, func(ctx context.Context, c kvpb.DRPCLinearizableClient) (uint64, error) {
		resp, err := c.Applied(ctx, &kvpb.AppliedRequest{Partition: p})
		if err != nil {
			return 0, errorFor(err)
		}
		return resp.GetAppliedIndex(), nil
	})
}
