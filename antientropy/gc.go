package antientropy

import (
	"context"

	"github.com/ringkv/ringkv/proto/kvpb"
)

// maxCollectPerPass bounds the tombstones one partition offers per pass.
const maxCollectPerPass = 4096

// runCollector looks for collectable tombstones every GCInterval.
func (s *Service) runCollector(ctx context.Context) {
	if s.ringNow(ctx) == nil {
		return
	}
	for wait(ctx, s.cfg.GCInterval) {
		s.CollectTombstones(ctx)
	}
}

// CollectTombstones removes, from this node's replicas, the tombstones
// older than TombstoneGrace, and the values that expired more than
// TombstoneGrace ago (collectable), that every other replica of their
// partition is confirmed to hold: asked now, each answers with that tombstone, a
// newer record, or no record at all. No replica then holds an older value
// that a later exchange could bring back. A partition with a replica that
// is not alive or does not answer keeps its tombstones. It returns how
// many tombstones it removed.
func (s *Service) CollectTombstones(ctx context.Context) int {
	r := s.deps.Ring.Ring()
	if r == nil || s.deps.Collect == nil || s.cfg.TombstoneGrace <= 0 {
		return 0
	}
	total := 0
	for _, p := range r.IDsOf(s.cfg.NodeID) {
		if ctx.Err() != nil {
			break
		}
		var keys []*kvpb.ReadKey
		var recs []*kvpb.Record
		err := s.deps.Store.Records(p, nil, func(key []byte, _ uint64, rec *kvpb.Record) bool {
			if s.collectable(rec) {
				keys = append(keys, &kvpb.ReadKey{Partition: p, Key: key})
				recs = append(recs, rec)
			}
			return len(keys) < maxCollectPerPass
		})
		if err != nil || len(keys) == 0 {
			continue
		}
		confirmed := make([]bool, len(keys))
		for i := range confirmed {
			confirmed[i] = true
		}
		ok := true
		for _, peer := range r.ReplicasOf(p) {
			if peer == s.cfg.NodeID {
				continue
			}
			if s.deps.Liveness != nil && !s.deps.Liveness.Alive(peer) {
				ok = false
				break
			}
			res, err := s.read(ctx, peer, keys)
			if err != nil {
				ok = false
				break
			}
			for i, rr := range res {
				switch rr.GetStatus() {
				case kvpb.ReadResult_STATUS_NOT_FOUND:
				case kvpb.ReadResult_STATUS_FOUND:
					if olderThan(rr.GetRecord(), recs[i]) {
						confirmed[i] = false
					}
				default:
					confirmed[i] = false
				}
			}
		}
		if !ok {
			continue
		}
		for i, k := range keys {
			if !confirmed[i] {
				continue
			}
			deleted, err := s.deps.Collect.DeleteIfEqual(ctx, p, k.GetKey(), recs[i])
			if err != nil {
				s.log.Warn("tombstone collection failed", "partition", p, "err", err)
				break
			}
			if deleted {
				total++
				s.metrics.collected.Inc()
			}
		}
	}
	return total
}
