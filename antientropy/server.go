package antientropy

import (
	"context"
	"errors"
	"fmt"
	"time"

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
	codeNotOurs  uint64 = 4
)

func codeFor(err error) uint64 {
	switch {
	case errors.Is(err, ErrNotReady):
		return codeNotReady
	case errors.Is(err, ErrBadRequest):
		return codeBad
	case errors.Is(err, ErrNotReplica):
		return codeNotOurs
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
	case codeNotOurs:
		return fmt.Errorf("%w: %w", ErrNotReplica, err)
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

// checkOurs returns ErrNotReplica (counted and logged) unless this node
// replicates, in the ring it holds, keys of the partition with id p. p
// may be an id of another level than the ring's P (ring.Ring.Holds): a
// peer whose ring is one split ahead or behind is still served. A node
// with no ring yet answers as before (its trees are not ready).
func (s *Service) checkOurs(rpc string, p uint32) error {
	r := s.deps.Ring.Ring()
	if r == nil || r.Partitions() == 0 || r.ActiveCount() == 0 {
		return nil
	}
	if r.Holds(s.cfg.NodeID, p) {
		return nil
	}
	err := fmt.Errorf("%w: %s of partition id %d, which ring version %d does not place on %s", ErrNotReplica, rpc, p, r.Version(), s.cfg.NodeID)
	s.metrics.refused.Inc()
	now, last := time.Now().UnixNano(), s.lastRefusal.Load()
	if now-last >= int64(time.Minute) && s.lastRefusal.CompareAndSwap(last, now) {
		s.log.Warn("refused a repair request (one line a minute; ringkv_antientropy_requests_refused_total counts them)", "err", err)
	}
	return drpcerr.WithCode(err, codeNotOurs)
}

// nodes returns nodes of this node's tree of partition id p, as
// Trees.Nodes does, for an exchange or a peer. An id the ring does not
// have (one of the level before or after a split) has no tree to compare,
// ErrNotReady, even while its tree is not dropped yet: the store's
// observer reports its keys' changes under the ring's ids.
func (s *Service) nodes(p uint32, level int, idx []uint32) ([]uint64, error) {
	if r := s.deps.Ring.Ring(); r != nil {
		if _, ok := r.Index(p); !ok {
			return nil, fmt.Errorf("%w: partition id %d is not of ring version %d (%d partitions)", ErrNotReady, p, r.Version(), r.Partitions())
		}
	}
	return s.deps.Trees.Nodes(p, level, idx)
}

// Tree serves nodes of this node's tree of a partition (kvpb.DRPCRepairServer).
// It refuses another tree shape (ErrBadRequest) and a partition this node
// does not replicate (ErrNotReplica), and answers ErrNotReady for one
// whose tree is not built (being built, or of another ring's level).
func (s *Service) Tree(_ context.Context, req *kvpb.TreeRequest) (*kvpb.TreeResponse, error) {
	if err := checkShape(req.GetFanout(), req.GetDepth()); err != nil {
		return nil, drpcerr.WithCode(err, codeBad)
	}
	if err := s.checkOurs("tree", req.GetPartition()); err != nil {
		return nil, err
	}
	hashes, err := s.nodes(req.GetPartition(), int(req.GetLevel()), req.GetNodes())
	if err != nil {
		return nil, drpcerr.WithCode(err, codeFor(err))
	}
	return &kvpb.TreeResponse{Hashes: hashes}, nil
}

// Fetch serves a page of this node's records of some leaf buckets of a
// partition (kvpb.DRPCRepairServer). It refuses as Tree does.
func (s *Service) Fetch(_ context.Context, req *kvpb.FetchRequest) (*kvpb.FetchResponse, error) {
	if err := checkShape(req.GetFanout(), req.GetDepth()); err != nil {
		return nil, drpcerr.WithCode(err, codeBad)
	}
	if err := s.checkOurs("fetch", req.GetPartition()); err != nil {
		return nil, err
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
