package antientropy

import (
	"context"
	"errors"
	"fmt"

	"google.golang.org/protobuf/proto"
	"storj.io/drpc/drpcerr"

	"github.com/ringkv/ringkv/proto/kvpb"
)

// drpc error codes of the Repair service: codeFor and errorFor are the one
// table mapping errors across the RPC boundary, in both directions.
const (
	codeInternal uint64 = 1
	codeNotReady uint64 = 2
	codeBad      uint64 = 3
)

func codeFor(err error) uint64 {
	switch {
	case errors.Is(err, ErrNotReady):
		return codeNotReady
	case errors.Is(err, ErrBadRequest):
		return codeBad
	default:
		return codeInternal
	}
}

func errorFor(err error) error {
	switch drpcerr.Code(err) {
	case codeNotReady:
		return fmt.Errorf("%w: %w", ErrNotReady, err)
	case codeBad:
		return fmt.Errorf("%w: %w", ErrBadRequest, err)
	default:
		return fmt.Errorf("antientropy: peer: %w", err)
	}
}

func checkShape(fanout, depth uint32) error {
	if fanout != Fanout || depth != Depth {
		return fmt.Errorf("%w: tree shape %dx%d, this node uses %dx%d", ErrBadRequest, fanout, depth, Fanout, Depth)
	}
	return nil
}

// Tree serves nodes of this node's tree of a partition (kvpb.DRPCRepairServer).
func (s *Service) Tree(_ context.Context, req *kvpb.TreeRequest) (*kvpb.TreeResponse, error) {
	if err := checkShape(req.GetFanout(), req.GetDepth()); err != nil {
		return nil, drpcerr.WithCode(err, codeBad)
	}
	hashes, err := s.deps.Trees.Nodes(req.GetPartition(), int(req.GetLevel()), req.GetNodes())
	if err != nil {
		return nil, drpcerr.WithCode(err, codeFor(err))
	}
	return &kvpb.TreeResponse{Hashes: hashes}, nil
}

// Fetch serves a page of this node's records of some leaf buckets of a
// partition (kvpb.DRPCRepairServer).
func (s *Service) Fetch(_ context.Context, req *kvpb.FetchRequest) (*kvpb.FetchResponse, error) {
	if err := checkShape(req.GetFanout(), req.GetDepth()); err != nil {
		return nil, drpcerr.WithCode(err, codeBad)
	}
	var set bucketSet
	for _, b := range req.GetBuckets() {
		if b >= Leaves {
			return nil, drpcerr.WithCode(fmt.Errorf("%w: bucket %d of %d", ErrBadRequest, b, Leaves), codeBad)
		}
		set.add(b)
	}
	maxRecords := int(req.GetMaxRecords())
	if maxRecords <= 0 {
		maxRecords = s.cfg.PageRecords
	}
	maxBytes := int(req.GetMaxBytes())
	if maxBytes <= 0 {
		maxBytes = 1 << 20
	}
	resp := &kvpb.FetchResponse{}
	size := 0
	err := s.deps.Store.Records(req.GetPartition(), req.GetStart(), func(key []byte, hash uint64, rec *kvpb.Record) bool {
		if !set.hasKey(key) {
			return true
		}
		if len(resp.Records) >= maxRecords || (size >= maxBytes && len(resp.Records) > 0) {
			resp.Next = key
			return false
		}
		hr := &kvpb.HashedRecord{Key: key, Record: rec, Hash: hash}
		resp.Records = append(resp.Records, hr)
		size += proto.Size(hr)
		return true
	})
	if err != nil {
		return nil, drpcerr.WithCode(fmt.Errorf("fetch: %w", err), codeInternal)
	}
	return resp, nil
}
