package coordinator

import (
	"context"
	"errors"
	"fmt"

	"github.com/ringkv/ringkv/consensus"
	"github.com/ringkv/ringkv/proto/kvpb"
	"github.com/ringkv/ringkv/replica"
)

// LinearizableServer serves linearizable operations forwarded by other
// nodes to this node's group leaders (kvpb.DRPCLinearizableServer), and
// the applied-index query leaders use to promote caught-up replicas.
type LinearizableServer struct {
	groups *consensus.Manager
}

// NewLinearizableServer returns a server over groups.
func NewLinearizableServer(groups *consensus.Manager) *LinearizableServer {
	return &LinearizableServer{groups: groups}
}

func (s *LinearizableServer) group(p uint32) (*consensus.Group, error) {
	g, ok := s.groups.Group(p)
	if !ok {
		return nil, rpcError(fmt.Errorf("%w: %d", consensus.ErrNoGroup, p))
	}
	return g, nil
}

// redirect turns a NotLeaderError into a Redirect; other errors go back
// as drpc errors.
func redirect(err error) (*kvpb.Redirect, error) {
	var nle *consensus.NotLeaderError
	if errors.As(err, &nle) {
		return &kvpb.Redirect{NotLeader: true, Leader: nle.Leader}, nil
	}
	return nil, rpcError(err)
}

// Get serves a linearizable read on the leader.
func (s *LinearizableServer) Get(ctx context.Context, req *kvpb.LinGetRequest) (*kvpb.LinGetResponse, error) {
	g, err := s.group(req.GetPartition())
	if err != nil {
		return nil, err
	}
	rec, err := g.Get(ctx, req.GetKey())
	switch {
	case err == nil:
		return &kvpb.LinGetResponse{Found: true, Record: recordToWire(rec)}, nil
	case errors.Is(err, replica.ErrNotFound):
		return &kvpb.LinGetResponse{}, nil
	}
	r, err := redirect(err)
	return &kvpb.LinGetResponse{Redirect: r}, err
}

// Put serves a linearizable write or delete on the leader.
func (s *LinearizableServer) Put(ctx context.Context, req *kvpb.LinPutRequest) (*kvpb.LinPutResponse, error) {
	g, err := s.group(req.GetPartition())
	if err != nil {
		return nil, err
	}
	if err := g.Put(ctx, req.GetKey(), req.GetValue(), req.GetTombstone()); err != nil {
		r, err := redirect(err)
		return &kvpb.LinPutResponse{Redirect: r}, err
	}
	return &kvpb.LinPutResponse{}, nil
}

// CompareAndSet serves a compare-and-set on the leader.
func (s *LinearizableServer) CompareAndSet(ctx context.Context, req *kvpb.LinCASRequest) (*kvpb.LinCASResponse, error) {
	g, err := s.group(req.GetPartition())
	if err != nil {
		return nil, err
	}
	var expected *[]byte
	if req.GetHasExpected() {
		e := req.GetExpected()
		if e == nil {
			e = []byte{}
		}
		expected = &e
	}
	swapped, cur, found, err := g.CompareAndSet(ctx, req.GetKey(), expected, req.GetValue())
	if err != nil {
		r, err := redirect(err)
		return &kvpb.LinCASResponse{Redirect: r}, err
	}
	return &kvpb.LinCASResponse{Swapped: swapped, Found: found, Current: cur}, nil
}

// Scan serves a linearizable scan of one partition on the leader.
func (s *LinearizableServer) Scan(ctx context.Context, req *kvpb.LinScanRequest) (*kvpb.LinScanResponse, error) {
	g, err := s.group(req.GetPartition())
	if err != nil {
		return nil, err
	}
	keys, recs, truncated, err := g.Scan(ctx, req.GetPrefix(), req.GetStart(), int(req.GetLimit()))
	if err != nil {
		r, err := redirect(err)
		return &kvpb.LinScanResponse{Redirect: r}, err
	}
	resp := &kvpb.LinScanResponse{Truncated: truncated, Records: make([]*kvpb.KeyedRecord, len(keys))}
	for i, k := range keys {
		resp.Records[i] = &kvpb.KeyedRecord{Partition: req.GetPartition(), Key: k, Record: recordToWire(recs[i])}
	}
	return resp, nil
}

// Applied reports how far this node's group of the partition has applied.
func (s *LinearizableServer) Applied(_ context.Context, req *kvpb.AppliedRequest) (*kvpb.AppliedResponse, error) {
	idx, err := s.groups.AppliedIndex(req.GetPartition())
	if err != nil {
		return nil, rpcError(err)
	}
	return &kvpb.AppliedResponse{AppliedIndex: idx}, nil
}
