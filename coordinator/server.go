package coordinator

import (
	"context"
	"errors"
	"fmt"
	"log/slog"

	"github.com/ringkv/ringkv/proto/kvpb"
	"github.com/ringkv/ringkv/replica"
)

// ReplicaServer serves this node's replica store to other nodes'
// coordinators over drpc (kvpb.DRPCReplicaServer). It is safe for
// concurrent use; concurrent Merge calls share the store's group commit.
type ReplicaServer struct {
	store *replica.Store
	clock *replica.Clock
	log   *slog.Logger
}

// NewReplicaServer returns a server over store. clock observes the
// timestamps of merged records so this node's writes stamp after them.
func NewReplicaServer(store *replica.Store, clock *replica.Clock, log *slog.Logger) *ReplicaServer {
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	return &ReplicaServer{store: store, clock: clock, log: log}
}

// Merge durably merges the request's records, answering after fsync. A
// record stamped further ahead of this node's clock than the allowed offset
// is refused (the whole request fails with an invalid-argument code).
func (s *ReplicaServer) Merge(ctx context.Context, req *kvpb.MergeRequest) (*kvpb.MergeResponse, error) {
	entries := make([]replica.Entry, len(req.GetRecords()))
	for i, kr := range req.GetRecords() {
		if len(kr.GetKey()) == 0 || kr.GetRecord() == nil {
			return nil, rpcError(fmt.Errorf("%w: record %d has no key or no record", ErrInvalidArgument, i))
		}
		rec := recordFromWire(kr.GetRecord())
		if err := s.clock.Update(rec.Timestamp); err != nil {
			return nil, rpcError(fmt.Errorf("merge: %w", err))
		}
		entries[i] = replica.Entry{Partition: kr.GetPartition(), Key: kr.GetKey(), Record: rec}
	}
	if err := s.store.Merge(ctx, entries); err != nil {
		return nil, rpcError(fmt.Errorf("merge: %w", err))
	}
	return &kvpb.MergeResponse{}, nil
}

// Read returns one result per requested key, in order. A record that fails
// its checksum is reported as STATUS_CORRUPT, never returned.
func (s *ReplicaServer) Read(_ context.Context, req *kvpb.ReadRequest) (*kvpb.ReadResponse, error) {
	out := make([]*kvpb.ReadResult, len(req.GetKeys()))
	for i, k := range req.GetKeys() {
		rec, err := s.store.Get(k.GetPartition(), k.GetKey())
		switch {
		case err == nil:
			out[i] = &kvpb.ReadResult{Status: kvpb.ReadResult_STATUS_FOUND, Record: recordToWire(rec)}
		case errors.Is(err, replica.ErrNotFound):
			out[i] = &kvpb.ReadResult{Status: kvpb.ReadResult_STATUS_NOT_FOUND}
		case errors.Is(err, replica.ErrCorrupt):
			s.log.Warn("read found corrupt record", "partition", k.GetPartition(), "err", err)
			out[i] = &kvpb.ReadResult{Status: kvpb.ReadResult_STATUS_CORRUPT}
		default:
			return nil, rpcError(fmt.Errorf("read: %w", err))
		}
	}
	return &kvpb.ReadResponse{Results: out}, nil
}

// Scan answers a partition scan (see ScanRequest).
func (s *ReplicaServer) Scan(_ context.Context, req *kvpb.ScanRequest) (*kvpb.ScanResponse, error) {
	res, err := scanLocal(s.store, ScanRequest{
		Partitions: req.GetPartitions(),
		Prefix:     req.GetPrefix(),
		Start:      req.GetStart(),
		Limit:      int(req.GetLimit()),
	})
	if err != nil {
		return nil, rpcError(err)
	}
	return &kvpb.ScanResponse{Results: scanResultsToWire(res)}, nil
}
