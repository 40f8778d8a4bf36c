package coordinator

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"sync/atomic"

	"github.com/ringkv/ringkv/consensus"
	"github.com/ringkv/ringkv/proto/kvpb"
	"github.com/ringkv/ringkv/replica"
)

// LinearizableServer serves linearizable operations forwarded by other
// nodes to this node's group leaders (kvpb.DRPCLinearizableServer), and
// the applied-index query leaders use to promote caught-up replicas.
type LinearizableServer struct {
	groups *consensus.Manager
	// resolver reads and writes through transactions' intents
	// (SetResolver); nil: an intent fails the operation.
	resolver atomic.Pointer[Coordinator]
}

// SetResolver makes the server read and write through intents of
// transactions across partitions with c, the node's Coordinator: a get
// answers by the holder's status, a write finishes, aborts or waits for
// the holder (docs/ARCHITECTURE.md, "Readers and intents"). Safe to call
// while serving.
func (s *LinearizableServer) SetResolver(c *Coordinator) { s.resolver.Store(c) }

// writeThrough runs write through intents when a resolver is set.
func (s *LinearizableServer) writeThrough(ctx context.Context, write func() error) error {
	if c := s.resolver.Load(); c != nil {
		return c.writeThrough(ctx, write)
	}
	return write()
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

// Get serves a linearizable read on the leader. A record that has expired
// by this leader's clock is absent (found false): the leader decides
// expiry at linearizable.
func (s *LinearizableServer) Get(ctx context.Context, req *kvpb.LinGetRequest) (*kvpb.LinGetResponse, error) {
	g, err := s.group(req.GetPartition())
	if err != nil {
		return nil, err
	}
	if c := s.resolver.Load(); c != nil {
		rec, found, err := c.getOn(ctx, g, req.GetKey())
		if err != nil {
			r, err := redirect(err)
			return &kvpb.LinGetResponse{Redirect: r}, err
		}
		if !found {
			return &kvpb.LinGetResponse{Record: absentToWire(rec)}, nil
		}
		return &kvpb.LinGetResponse{Found: true, Record: recordToWire(rec)}, nil
	}
	rec, err := g.Get(ctx, req.GetKey())
	switch {
	case err == nil && !rec.Tombstone && !rec.Live(g.Now()):
		return &kvpb.LinGetResponse{Record: absentToWire(rec)}, nil
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
	err = s.writeThrough(ctx, func() error {
		return g.Put(ctx, req.GetKey(), req.GetValue(), req.GetTombstone(), expiryFromWire(req.GetExpiresAtUnixNanos())) //nolint:wrapcheck // mapped below
	})
	if err != nil {
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
	var swapped, found bool
	var cur []byte
	err = s.writeThrough(ctx, func() error {
		var err error
		swapped, cur, found, err = g.CompareAndSet(ctx, req.GetKey(), expected, req.GetValue(), expiryFromWire(req.GetExpiresAtUnixNanos()))
		return err //nolint:wrapcheck // mapped below
	})
	if err != nil {
		r, err := redirect(err)
		return &kvpb.LinCASResponse{Redirect: r}, err
	}
	return &kvpb.LinCASResponse{Swapped: swapped, Found: found, Current: cur}, nil
}

// linScanParallelism bounds the partitions one Scan reads at once.
const linScanParallelism = 16

// Scan serves a page of a linearizable list: each requested partition is
// read on this node after a read-index round (Group.Scan), concurrently.
// A partition this node does not lead answers with a redirect, any other
// failure with its error, so the caller retries only those.
func (s *LinearizableServer) Scan(ctx context.Context, req *kvpb.LinScanRequest) (*kvpb.LinScanResponse, error) {
	parts := req.GetPartitions()
	resp := &kvpb.LinScanResponse{Results: make([]*kvpb.LinScanResult, len(parts))}
	sem := make(chan struct{}, linScanParallelism)
	var wg sync.WaitGroup
	for i, p := range parts {
		wg.Add(1)
		sem <- struct{}{}
		go func() {
			defer wg.Done()
			defer func() { <-sem }()
			resp.Results[i] = s.scanOne(ctx, p, req)
		}()
	}
	wg.Wait()
	return resp, nil
}

func (s *LinearizableServer) scanOne(ctx context.Context, p uint32, req *kvpb.LinScanRequest) *kvpb.LinScanResult {
	res := &kvpb.LinScanResult{Partition: p}
	g, ok := s.groups.Group(p)
	if !ok {
		res.Error = fmt.Sprintf("%v: %d", consensus.ErrNoGroup, p)
		return res
	}
	scan := g.Scan
	if c := s.resolver.Load(); c != nil {
		scan = func(ctx context.Context, prefix, start []byte, limit int) ([][]byte, []replica.Record, bool, error) {
			return c.scanThrough(ctx, g, prefix, start, limit)
		}
	}
	keys, recs, truncated, err := scan(ctx, req.GetPrefix(), req.GetStart(), int(req.GetLimit()))
	if err != nil {
		var nle *consensus.NotLeaderError
		if errors.As(err, &nle) {
			res.Redirect = &kvpb.Redirect{NotLeader: true, Leader: nle.Leader}
		} else {
			res.Error = err.Error()
		}
		return res
	}
	res.Truncated = truncated
	res.Records = make([]*kvpb.KeyedRecord, len(keys))
	for i, k := range keys {
		res.Records[i] = &kvpb.KeyedRecord{Partition: p, Key: k, Record: recordToWire(recs[i])}
	}
	return res
}

// Applied reports how far this node's group of the partition has applied.
func (s *LinearizableServer) Applied(_ context.Context, req *kvpb.AppliedRequest) (*kvpb.AppliedResponse, error) {
	idx, err := s.groups.AppliedIndex(req.GetPartition())
	if err != nil {
		return nil, rpcError(err)
	}
	return &kvpb.AppliedResponse{AppliedIndex: idx}, nil
}

// absentToWire is the record of a key a linearizable get finds absent (a
// tombstone, an expired record, or none: rec's zero value), without its
// value: nil when there is none. Its timestamp is the version the double
// read of a read-only transaction compares (xtxn_read.go): an absent key
// written and deleted between two reads has a new one. A node of an
// earlier version sends no record, and its absent keys compare as
// version 0.
func absentToWire(rec replica.Record) *kvpb.Record {
	if rec.Timestamp == 0 {
		return nil
	}
	rec.Value = nil
	return recordToWire(rec)
}
