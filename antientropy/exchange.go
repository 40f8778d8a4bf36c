package antientropy

import (
	"context"
	"fmt"
	"time"

	"github.com/cespare/xxhash/v2"
	"google.golang.org/protobuf/proto"

	"github.com/ringkv/ringkv/proto/kvpb"
)

// exchangeResult is what one exchange found and moved.
type exchangeResult struct {
	differing      int
	pulled, pushed int
}

// bucketSet is a set of leaf buckets.
type bucketSet [Leaves / 64]uint64

func (b *bucketSet) add(i uint32)           { b[i/64] |= 1 << (i % 64) }
func (b *bucketSet) has(i uint32) bool      { return b[i/64]&(1<<(i%64)) != 0 }
func (b *bucketSet) hasKey(key []byte) bool { return b.has(Bucket(xxhash.Sum64(key))) }

// exchange compares the tree of partition id p with peer's tree of the
// same id, descending only where hashes differ, and merges the records of
// the differing leaf buckets both ways: the peer's records that differ
// from ours are merged here, ours that differ from the peer's are merged
// there. Records move under the keys and bytes budgets.
func (s *Service) exchange(ctx context.Context, p uint32, peer string) (exchangeResult, error) {
	var res exchangeResult
	idx := []uint32{0}
	for level := 0; level <= Depth; level++ {
		if level > 0 {
			idx = Children(idx)
		}
		local, err := s.nodes(p, level, idx)
		if err != nil {
			return res, err
		}
		remote, err := s.tree(ctx, peer, p, level, idx)
		if err != nil {
			return res, err
		}
		if len(remote) != len(idx) {
			return res, fmt.Errorf("%w: peer %s answered %d hashes for %d nodes", ErrBadRequest, peer, len(remote), len(idx))
		}
		if idx = Differing(idx, local, remote); len(idx) == 0 {
			return res, nil
		}
	}
	res.differing = len(idx)
	s.metrics.differing.Add(float64(len(idx)))
	var set bucketSet
	for _, b := range idx {
		set.add(b)
	}
	pulled, pushed, err := s.syncBuckets(ctx, p, peer, idx, &set)
	res.pulled, res.pushed = pulled, pushed
	return res, err
}

func (s *Service) tree(ctx context.Context, peer string, p uint32, level int, idx []uint32) ([]uint64, error) {
	ctx, cancel := context.WithTimeout(ctx, s.cfg.RPCTimeout)
	defer cancel()
	req := &kvpb.TreeRequest{Partition: p, Level: uint32(level), Fanout: Fanout, Depth: Depth}
	if level > 0 {
		req.Nodes = idx
	}
	hashes, err := s.deps.Peers.Tree(ctx, peer, req)
	s.metrics.bytes.Add(float64(proto.Size(req) + 8*len(hashes)))
	if err != nil {
		return nil, fmt.Errorf("tree of partition %d on %s: %w", p, peer, err)
	}
	return hashes, nil
}

// syncBuckets moves the differing records of the buckets in set.
func (s *Service) syncBuckets(ctx context.Context, p uint32, peer string, buckets []uint32, set *bucketSet) (pulled, pushed int, err error) {
	type held struct {
		hash uint64
		rec  *kvpb.Record
	}
	// Our records in the differing buckets, by key.
	local := map[string]held{}
	err = s.deps.Store.Records(p, nil, func(key []byte, hash uint64, rec *kvpb.Record) bool {
		if set.hasKey(key) {
			local[string(key)] = held{hash, rec}
		}
		return true
	})
	if err != nil {
		return 0, 0, fmt.Errorf("scan partition %d: %w", p, err)
	}
	// Pull: page through the peer's records of those buckets.
	remote := map[string]*kvpb.HashedRecord{}
	var start []byte
	for {
		rctx, cancel := context.WithTimeout(ctx, s.cfg.RPCTimeout)
		req := &kvpb.FetchRequest{Partition: p, Buckets: buckets, Start: start, MaxRecords: uint32(s.cfg.PageRecords),
			MaxBytes: uint64(s.bytes.Burst()), Fanout: Fanout, Depth: Depth}
		resp, err := s.deps.Peers.Fetch(rctx, peer, req)
		cancel()
		if err != nil {
			return pulled, pushed, fmt.Errorf("fetch partition %d from %s: %w", p, peer, err)
		}
		size := proto.Size(resp)
		s.metrics.bytes.Add(float64(proto.Size(req) + size))
		var merge []*kvpb.KeyedRecord
		for _, hr := range resp.GetRecords() {
			k := string(hr.GetKey())
			remote[k] = hr
			mine, ok := local[k]
			if ok && mine.hash == hr.GetHash() {
				continue
			}
			if !ok && s.collectable(hr.GetRecord()) {
				continue // a tombstone past its grace we do not hold: never revive it
			}
			merge = append(merge, &kvpb.KeyedRecord{Partition: p, Key: hr.GetKey(), Record: hr.GetRecord()})
		}
		if len(merge) > 0 {
			if err := s.budget(ctx, len(merge), size); err != nil {
				return pulled, pushed, err
			}
			if err := s.deps.Store.Merge(ctx, merge); err != nil {
				return pulled, pushed, fmt.Errorf("merge pulled records: %w", err)
			}
			pulled += len(merge)
			s.metrics.repaired.WithLabelValues("pulled").Add(float64(len(merge)))
		}
		if len(resp.GetNext()) == 0 {
			break
		}
		start = resp.GetNext()
	}
	// Push: ours that the peer lacks or holds older.
	var page []*kvpb.KeyedRecord
	pageBytes := 0
	flush := func() error {
		if len(page) == 0 {
			return nil
		}
		if err := s.budget(ctx, len(page), pageBytes); err != nil {
			return err
		}
		rctx, cancel := context.WithTimeout(ctx, s.cfg.RPCTimeout)
		defer cancel()
		if err := s.deps.Peers.Merge(rctx, peer, page); err != nil {
			return fmt.Errorf("push partition %d to %s: %w", p, peer, err)
		}
		s.metrics.bytes.Add(float64(pageBytes))
		pushed += len(page)
		s.metrics.repaired.WithLabelValues("pushed").Add(float64(len(page)))
		page, pageBytes = page[:0:0], 0
		return nil
	}
	for k, mine := range local {
		theirs, ok := remote[k]
		if ok && (theirs.GetHash() == mine.hash || olderThan(mine.rec, theirs.GetRecord())) {
			continue // equal, or the pull just replaced ours with theirs
		}
		if !ok && s.collectable(mine.rec) {
			continue
		}
		kr := &kvpb.KeyedRecord{Partition: p, Key: []byte(k), Record: mine.rec}
		page = append(page, kr)
		pageBytes += proto.Size(kr)
		if len(page) >= s.cfg.PageRecords || pageBytes >= s.bytes.Burst() {
			if err := flush(); err != nil {
				return pulled, pushed, err
			}
		}
	}
	if err := flush(); err != nil {
		return pulled, pushed, err
	}
	return pulled, pushed, nil
}

// collectable reports whether rec is a tombstone older than the grace
// period, or a value that expired more than the grace period ago (an
// expired value is a tombstone that carries its value: it still wins the
// merge against every older record, so it is kept, and collected, exactly
// like one): such a record is never transferred to a replica that holds
// no record of its key, so that one replica's collection is not undone by
// another that has not collected yet.
func (s *Service) collectable(rec *kvpb.Record) bool {
	if s.cfg.TombstoneGrace <= 0 {
		return false
	}
	horizon := s.cfg.Now().Add(-s.cfg.TombstoneGrace)
	if rec.GetTombstone() {
		return wallTime(rec.GetTimestamp()).Before(horizon)
	}
	// An expired value: both its expiry and its write are past the grace
	// (an expiry set in the past is older than the write).
	exp := rec.GetExpiresAtUnixNanos()
	return exp != 0 && time.Unix(0, exp).Before(horizon) && wallTime(rec.GetTimestamp()).Before(horizon)
}

// wallTime is the wall-clock part of an HLC timestamp (48 bits of
// milliseconds above 16 logical bits; see replica.Timestamp).
func wallTime(ts uint64) time.Time { return time.UnixMilli(int64(ts >> 16)) }

// olderThan reports whether a is below b in the records' (timestamp, node
// id) order. Ties on both (which correct writers never produce) are not
// older: such records are sent and the replica's full order decides.
func olderThan(a, b *kvpb.Record) bool {
	if a.GetTimestamp() != b.GetTimestamp() {
		return a.GetTimestamp() < b.GetTimestamp()
	}
	return a.GetNodeId() < b.GetNodeId()
}

// budget waits until n records of size bytes may move.
func (s *Service) budget(ctx context.Context, n, size int) error {
	if err := s.keys.WaitN(ctx, min(n, s.keys.Burst())); err != nil {
		return fmt.Errorf("keys budget: %w", err)
	}
	if err := s.bytes.WaitN(ctx, min(size, s.bytes.Burst())); err != nil {
		return fmt.Errorf("bytes budget: %w", err)
	}
	return nil
}
