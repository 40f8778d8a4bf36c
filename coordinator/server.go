package coordinator

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"google.golang.org/protobuf/proto"

	"github.com/ringkv/ringkv/internal/loglimit"
	"github.com/ringkv/ringkv/proto/kvpb"
	"github.com/ringkv/ringkv/replica"
	"github.com/ringkv/ringkv/ring"
)

// ReplicaServer serves this node's replica store to other nodes'
// coordinators over drpc (kvpb.DRPCReplicaServer). It is safe for
// concurrent use; concurrent Merge calls share the store's group commit.
type ReplicaServer struct {
	store *replica.Store
	clock *replica.Clock
	opts  ReplicaServerOptions
	// refused counts refused merges by reason (refuseClock,
	// refuseNotReplica, refuseInvalid).
	refused *prometheus.CounterVec
	logs    loglimit.Limiter // one warning a minute per reason
	// adm admits calls into the peer budget (SetAdmission); nil: no
	// bound.
	adm atomic.Pointer[Coordinator]
}

// SetAdmission makes the server take each call from c's peer budget
// (Config.MaxPeerInflight, MaxPeerInflightBytes) and refuse it at once,
// with ErrOverloaded, when that budget is full. Safe to call while
// serving.
func (s *ReplicaServer) SetAdmission(c *Coordinator) { s.adm.Store(c) }

// admit takes one call of n bytes from the peer budget.
func (s *ReplicaServer) admit(n int) (func(), error) {
	c := s.adm.Load()
	if c == nil {
		return func() {}, nil
	}
	release, err := c.Admit(PlanePeer, int64(n))
	if err != nil {
		return nil, rpcError(err)
	}
	return release, nil
}

// ReplicaServerOptions configure a ReplicaServer. The zero value serves
// every merge whose timestamps are within the clock's offset, for any
// partition (tests of the transport alone).
type ReplicaServerOptions struct {
	// NodeID and Ring let Merge refuse records of partitions this node
	// does not replicate in the ring it holds (ErrNotReplica), or named
	// by a partition id their key does not belong to (ErrInvalidArgument).
	// Either empty disables those checks, as does a ring with no active
	// member (a node that has not joined yet).
	NodeID string
	Ring   RingSource
	// Logger; nil discards.
	Logger *slog.Logger
	// Registerer receives ringkv_coordinator_replica_merges_refused_total;
	// nil keeps it private.
	Registerer prometheus.Registerer
}

// Reasons a Merge is refused (the reason label of
// ringkv_coordinator_replica_merges_refused_total).
const (
	refuseClock      = "clock_offset" // a record stamped beyond the clock's maximum offset
	refuseNotReplica = "not_replica"  // a partition this node does not replicate
	refuseInvalid    = "invalid"      // no key or record, or a partition id not the key's
)

// NewReplicaServer returns a server over store. clock observes the
// timestamps of merged records so this node's writes stamp after them. It
// fails only when the metric cannot be registered.
func NewReplicaServer(store *replica.Store, clock *replica.Clock, opts ReplicaServerOptions) (*ReplicaServer, error) {
	if opts.Logger == nil {
		opts.Logger = slog.New(slog.DiscardHandler)
	}
	reg := opts.Registerer
	if reg == nil {
		reg = prometheus.NewRegistry()
	}
	refused := prometheus.NewCounterVec(prometheus.CounterOpts{
		Namespace: "ringkv", Subsystem: "coordinator", Name: "replica_merges_refused_total",
		Help: "Replica Merge requests refused whole, by reason: clock_offset (a record stamped further ahead than the maximum clock offset), not_replica (a partition this node does not replicate), invalid.",
	}, []string{"reason"})
	if err := reg.Register(refused); err != nil {
		return nil, fmt.Errorf("coordinator: register replica server metrics: %w", err)
	}
	for _, r := range []string{refuseClock, refuseNotReplica, refuseInvalid} {
		refused.WithLabelValues(r)
	}
	return &ReplicaServer{store: store, clock: clock, opts: opts, refused: refused}, nil
}

// Merge durably merges the request's records, answering after fsync. The
// whole request is refused, nothing merged, when a record:
//   - has no key or no record, or names a partition id its key does not
//     belong to, at any level of the cluster's splits (ErrInvalidArgument);
//   - has a key whose partition this node does not replicate in the ring
//     it holds (ErrNotReplica): a hint or repair of a ring this node does
//     not share (the sender retries once the rings agree, or drops its
//     hints);
//   - is stamped further ahead of this node's clock than the allowed
//     offset (replica.ErrClockOffset): an LWW timestamp from the future
//     would otherwise win over every write for as long as it is ahead.
//
// Each refusal is counted by reason and logged (one line a minute per
// reason). Beyond the peer budget (SetAdmission) a call is refused at
// once, coded as ErrOverloaded, and merges nothing.
func (s *ReplicaServer) Merge(ctx context.Context, req *kvpb.MergeRequest) (*kvpb.MergeResponse, error) {
	release, err := s.admit(proto.Size(req))
	if err != nil {
		return nil, err
	}
	defer release()
	r := s.ring()
	entries := make([]replica.Entry, len(req.GetRecords()))
	for i, kr := range req.GetRecords() {
		if len(kr.GetKey()) == 0 || kr.GetRecord() == nil {
			return nil, s.refuse(refuseInvalid, fmt.Errorf("%w: record %d has no key or no record", ErrInvalidArgument, i))
		}
		if err := s.checkPlacement(r, kr.GetPartition(), kr.GetKey()); err != nil {
			reason := refuseInvalid
			if errors.Is(err, ErrNotReplica) {
				reason = refuseNotReplica
			}
			return nil, s.refuse(reason, fmt.Errorf("merge record %d: %w", i, err))
		}
		rec := recordFromWire(kr.GetRecord())
		if err := s.clock.Update(rec.Timestamp); err != nil {
			return nil, s.refuse(refuseClock, fmt.Errorf("merge: %w", err))
		}
		entries[i] = replica.Entry{Partition: kr.GetPartition(), Key: kr.GetKey(), Record: rec}
	}
	if err := s.store.Merge(ctx, entries); err != nil {
		return nil, rpcError(fmt.Errorf("merge: %w", err))
	}
	return &kvpb.MergeResponse{}, nil
}

// ring returns the ring placement is checked against, or nil when the
// checks are off (no NodeID or Ring, or a ring with no active member).
func (s *ReplicaServer) ring() *ring.Ring {
	if s.opts.NodeID == "" || s.opts.Ring == nil {
		return nil
	}
	r := s.opts.Ring.Ring()
	if r == nil || r.Partitions() == 0 || r.ActiveCount() == 0 {
		return nil
	}
	return r
}

// checkPlacement returns nil when r is nil or key belongs in the partition
// with id and this node replicates key's partition in r. The sender's ring
// may be a split behind or ahead of r, so id may be of another level than
// r's P: any id whose partition holds the key is accepted (ring.Ring.KeyIn),
// and replication is judged by the key's partition in r.
func (s *ReplicaServer) checkPlacement(r *ring.Ring, id uint32, key []byte) error {
	if r == nil {
		return nil
	}
	kid := r.IDOf(key)
	if !r.KeyIn(id, key) {
		return fmt.Errorf("%w: the key belongs to partition %d (ring version %d, %d partitions), not %d", ErrInvalidArgument, kid, r.Version(), r.Partitions(), id)
	}
	if replicas := r.ReplicasOf(kid); !slices.Contains(replicas, s.opts.NodeID) {
		return fmt.Errorf("%w: partition %d (of the key addressed to %d) is replicated by %v in ring version %d, not by %s", ErrNotReplica, kid, id, replicas, r.Version(), s.opts.NodeID)
	}
	return nil
}

// refuse counts and logs a refused merge and returns err with its code.
func (s *ReplicaServer) refuse(reason string, err error) error {
	s.refused.WithLabelValues(reason).Inc()
	if s.logs.Allow(reason, time.Now()) {
		s.opts.Logger.Warn("refused a replica merge (one line a minute per reason; ringkv_coordinator_replica_merges_refused_total counts them)", "reason", reason, "err", err)
	}
	return rpcError(err)
}

// Read returns one result per requested key, in order. A record that fails
// its checksum is reported as STATUS_CORRUPT, never returned.
func (s *ReplicaServer) Read(_ context.Context, req *kvpb.ReadRequest) (*kvpb.ReadResponse, error) {
	release, err := s.admit(proto.Size(req))
	if err != nil {
		return nil, err
	}
	defer release()
	out := make([]*kvpb.ReadResult, len(req.GetKeys()))
	for i, k := range req.GetKeys() {
		rec, err := s.store.Get(k.GetPartition(), k.GetKey())
		switch {
		case err == nil:
			out[i] = &kvpb.ReadResult{Status: kvpb.ReadResult_STATUS_FOUND, Record: recordToWire(rec)}
		case errors.Is(err, replica.ErrNotFound):
			out[i] = &kvpb.ReadResult{Status: kvpb.ReadResult_STATUS_NOT_FOUND}
		case errors.Is(err, replica.ErrCorrupt):
			s.opts.Logger.Warn("read found corrupt record", "partition", k.GetPartition(), "err", err)
			out[i] = &kvpb.ReadResult{Status: kvpb.ReadResult_STATUS_CORRUPT}
		default:
			return nil, rpcError(fmt.Errorf("read: %w", err))
		}
	}
	return &kvpb.ReadResponse{Results: out}, nil
}

// Scan answers a partition scan (see ScanRequest).
func (s *ReplicaServer) Scan(_ context.Context, req *kvpb.ScanRequest) (*kvpb.ScanResponse, error) {
	release, err := s.admit(proto.Size(req))
	if err != nil {
		return nil, err
	}
	defer release()
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
