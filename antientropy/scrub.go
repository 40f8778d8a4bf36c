package antientropy

import (
	"context"
	"fmt"
	"time"

	"github.com/ringkv/ringkv/proto/kvpb"
)

// runScrubber re-reads every stored record, partition by partition, at
// ScrubPerSec records and ScrubBytesPerSec bytes, and repairs each that
// fails its checksum (see repairCorrupt). It scrubs every partition id of
// the ring, replicated here or not: a record is verified wherever it is
// stored (the ids of one ring cover every key once).
func (s *Service) runScrubber(ctx context.Context) {
	r := s.ringNow(ctx)
	if r == nil {
		return
	}
	page := max(1, min(s.cfg.PageRecords, s.scrubKeys.Burst()))
	for ctx.Err() == nil {
		passStart := time.Now()
		ids := s.deps.Ring.Ring().IDs()
		for _, p := range ids {
			var start []byte
			for {
				var corrupt [][]byte
				next, checked, n, err := s.deps.Scrub.Verify(p, start, page, func(key []byte) { corrupt = append(corrupt, key) })
				if err != nil {
					if ctx.Err() == nil {
						s.log.Warn("scrub failed", "partition", p, "err", err)
					}
					if !wait(ctx, time.Second) {
						return
					}
					break
				}
				s.metrics.scrubbed.Add(float64(checked))
				// Records are paid for once read, so an empty partition
				// costs one token, not a page of them.
				if err := s.scrubKeys.WaitN(ctx, max(1, min(checked, s.scrubKeys.Burst()))); err != nil {
					return
				}
				for _, key := range corrupt {
					s.repairCorrupt(ctx, p, key)
				}
				if err := s.scrubBytes.WaitN(ctx, int(min(n, int64(s.scrubBytes.Burst())))); err != nil {
					return
				}
				if next == nil {
					break
				}
				start = next
			}
		}
		s.metrics.scrubPasses.Inc()
		took := time.Since(passStart)
		s.log.Debug("scrub pass done", "partitions", len(ids), "took", took)
		if rest := s.cfg.ScrubPassInterval - took; rest > 0 && !wait(ctx, rest) {
			return
		}
	}
}

// repairCorrupt quarantines key's corrupt record (it then reads as
// missing) and merges in whatever the other live replicas of key's
// partition hold for the key; the merge keeps the newest of those. If no
// replica answers with a record the key stays missing here until one does
// (the next exchange compares it again). p is the id the scrubber found
// key under.
func (s *Service) repairCorrupt(ctx context.Context, p uint32, key []byte) {
	removed, err := s.deps.Scrub.Quarantine(ctx, p, key)
	if err != nil {
		s.log.Warn("quarantine failed", "partition", p, "err", err)
		return
	}
	if !removed {
		return // repaired meanwhile (a merge replaced it)
	}
	s.metrics.scrubCorrupt.Inc()
	recs := s.readPeers(ctx, key)
	if len(recs) == 0 {
		s.log.Warn("corrupt record quarantined with no healthy replica to repair it from", "partition", p)
		return
	}
	if err := s.deps.Store.Merge(ctx, recs); err != nil {
		s.log.Warn("repairing quarantined record failed", "partition", p, "err", err)
		return
	}
	s.metrics.scrubRepaired.Inc()
}

// readPeers returns the records the other live replicas of key's partition
// hold for key, asked under its id in the ring held now (which may have
// split since the scrubber's pass began).
func (s *Service) readPeers(ctx context.Context, key []byte) []*kvpb.KeyedRecord {
	r := s.deps.Ring.Ring()
	p := r.IDOf(key)
	var out []*kvpb.KeyedRecord
	for _, peer := range r.ReplicasOf(p) {
		if peer == s.cfg.NodeID || (s.deps.Liveness != nil && !s.deps.Liveness.Alive(peer)) {
			continue
		}
		res, err := s.read(ctx, peer, []*kvpb.ReadKey{{Partition: p, Key: key}})
		if err != nil || len(res) != 1 {
			continue
		}
		if res[0].GetStatus() == kvpb.ReadResult_STATUS_FOUND {
			out = append(out, &kvpb.KeyedRecord{Partition: p, Key: key, Record: res[0].GetRecord()})
		}
	}
	return out
}

func (s *Service) read(ctx context.Context, peer string, keys []*kvpb.ReadKey) ([]*kvpb.ReadResult, error) {
	ctx, cancel := context.WithTimeout(ctx, s.cfg.RPCTimeout)
	defer cancel()
	res, err := s.deps.Peers.Read(ctx, peer, keys)
	if err != nil {
		return nil, fmt.Errorf("read %d keys on %s: %w", len(keys), peer, err)
	}
	if len(res) != len(keys) {
		return nil, fmt.Errorf("%w: %s answered %d results for %d keys", ErrBadRequest, peer, len(res), len(keys))
	}
	return res, nil
}
