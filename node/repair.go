package node

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"strconv"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/ringkv/ringkv/antientropy"
	"github.com/ringkv/ringkv/internal/loglimit"
	"github.com/ringkv/ringkv/proto/kvpb"
	"github.com/ringkv/ringkv/replica"
	"github.com/ringkv/ringkv/ring"
)

// aeStore adapts replica.Store to what antientropy reads and repairs
// (antientropy.Store, Scrubbable and Collector): antientropy sees records
// only in their wire form.
type aeStore struct {
	s *replica.Store
	// clock, when set, refuses pulled records stamped beyond its maximum
	// offset (Merge skips them and counts them in ahead).
	clock *replica.Clock
	ahead prometheus.Counter
	log   *slog.Logger
	logs  *loglimit.Limiter // one warning a minute
}

func (a aeStore) ScanSnapshot(ctx context.Context, p uint32, begin func(), fn func(keyHash, recHash uint64) bool) error {
	if err := a.s.ScanSnapshot(ctx, p, begin, fn); err != nil {
		return fmt.Errorf("snapshot: %w", err)
	}
	return nil
}

func (a aeStore) Records(p uint32, start []byte, fn func(key []byte, hash uint64, rec *kvpb.Record) bool) error {
	err := a.s.Scan(p, nil, start, func(key []byte, rec replica.Record) bool {
		return fn(key, replica.RecordHash(key, rec), recordToWire(rec))
	})
	if err != nil {
		return fmt.Errorf("records: %w", err)
	}
	return nil
}

// Merge merges records anti-entropy pulled from a peer or the scrubber
// repairs with. With a clock, a record stamped further ahead of it than
// its maximum offset is skipped (counted, and logged once a minute), as
// the Replica service refuses it: a timestamp from the future would win
// every compare of its key until the clocks reach it. The peer keeps it,
// and it is pulled once it is no longer ahead.
func (a aeStore) Merge(ctx context.Context, recs []*kvpb.KeyedRecord) error {
	entries := make([]replica.Entry, 0, len(recs))
	var skipped error
	for _, kr := range recs {
		rec := recordFromWire(kr.GetRecord())
		if a.clock != nil {
			if err := a.clock.Update(rec.Timestamp); err != nil {
				a.ahead.Inc()
				skipped = err
				continue
			}
		}
		entries = append(entries, replica.Entry{Partition: kr.GetPartition(), Key: kr.GetKey(), Record: rec})
	}
	if skipped != nil && a.logs.Allow("ahead", time.Now()) {
		a.log.Warn("anti-entropy skipped records stamped ahead of this node's clock", "records", len(recs)-len(entries), "err", skipped)
	}
	if len(entries) == 0 {
		return nil
	}
	if err := a.s.Merge(ctx, entries); err != nil {
		return fmt.Errorf("merge: %w", err)
	}
	return nil
}

func (a aeStore) Verify(p uint32, start []byte, limit int, corrupt func(key []byte)) ([]byte, int, int64, error) {
	next, checked, n, err := a.s.Verify(p, start, limit, corrupt)
	if err != nil {
		return nil, checked, n, fmt.Errorf("verify: %w", err)
	}
	return next, checked, n, nil
}

func (a aeStore) Quarantine(ctx context.Context, p uint32, key []byte) (bool, error) {
	ok, err := a.s.Quarantine(ctx, p, key)
	if err != nil {
		return false, fmt.Errorf("quarantine: %w", err)
	}
	return ok, nil
}

func (a aeStore) DeleteIfEqual(ctx context.Context, p uint32, key []byte, rec *kvpb.Record) (bool, error) {
	ok, err := a.s.DeleteIfEqual(ctx, p, key, recordFromWire(rec))
	if err != nil {
		return false, fmt.Errorf("delete: %w", err)
	}
	return ok, nil
}

// treeObserver feeds the replica store's committed changes to apply
// (the node's antientropy.Trees), each under the id of its key's partition
// in the ring ringNow returns, so that the trees follow the ring's ids
// through a split. ringNow returns nil while the node holds no decided
// ring: no split can have happened then, and the change's storage
// partition (its key's partition under the cluster's first P) is its id.
// It runs on the committer goroutine only, so buf needs no lock.
func treeObserver(apply func([]antientropy.Change), ringNow func() *ring.Ring) replica.Observer {
	var buf []antientropy.Change
	return func(cs []replica.Change) {
		r := ringNow()
		buf = buf[:0]
		for _, c := range cs {
			// c.Partition is the record's storage partition; its digest
			// belongs to the key's partition, or for one of the
			// cluster's own records stored away from its hash's
			// partition (an intent), to the first partition of that
			// storage partition, as the store's ScanSnapshot counts it.
			id := c.Partition
			if r != nil {
				id = r.DigestIDOf(c.Partition, c.KeyHash)
			}
			buf = append(buf, antientropy.Change{Partition: id, KeyHash: c.KeyHash, Old: c.Old, New: c.New, OldUnknown: c.OldUnknown})
		}
		apply(buf)
	}
}

func recordToWire(r replica.Record) *kvpb.Record {
	w := &kvpb.Record{Value: r.Value, Timestamp: uint64(r.Timestamp), NodeId: r.NodeID, Tombstone: r.Tombstone}
	if !r.ExpiresAt.IsZero() {
		w.ExpiresAtUnixNanos = r.ExpiresAt.UnixNano()
	}
	return w
}

func recordFromWire(w *kvpb.Record) replica.Record {
	r := replica.Record{Value: w.GetValue(), Timestamp: replica.Timestamp(w.GetTimestamp()), NodeID: w.GetNodeId(), Tombstone: w.GetTombstone()}
	if ns := w.GetExpiresAtUnixNanos(); ns != 0 {
		r.ExpiresAt = time.Unix(0, ns)
	}
	return r
}

// RepairResult is the body of POST /api/cluster/repair.
type RepairResult struct {
	NodeID string `json:"node_id"`
	antientropy.Report
}

// clusterRepair serves POST /api/cluster/repair[?partition=ID]: this node
// exchanges the partition with that id in its ring (every partition it
// replicates, without one) with every other live replica now, and answers
// when done.
func (n *Node) clusterRepair(w http.ResponseWriter, r *http.Request) {
	if !allowMethod(w, r, http.MethodPost) {
		return
	}
	var ids []uint32
	if s := r.URL.Query().Get("partition"); s != "" {
		id, err := repairPartition(n.gossip.Ring(), s)
		if err != nil {
			writeJSON(w, http.StatusBadRequest, map[string]string{"error": err.Error()})
			return
		}
		ids = []uint32{id}
	}
	rep, err := n.ae.Repair(r.Context(), ids)
	if err != nil {
		writeAdminError(w, err)
		return
	}
	writeJSON(w, http.StatusOK, RepairResult{NodeID: n.cfg.ID, Report: rep})
}

// errBadPartition marks a partition parameter that names no partition of
// the ring.
var errBadPartition = errors.New("bad partition")

// repairPartition parses the repair endpoint's partition parameter: the
// id of a partition of rg (rg.Index), which is its index until the
// cluster's first split, and P+index after one. The error says which ids
// are valid.
func repairPartition(rg *ring.Ring, s string) (uint32, error) {
	id, err := strconv.ParseUint(s, 10, 32)
	if err == nil {
		if _, ok := rg.Index(uint32(id)); ok {
			return uint32(id), nil
		}
	}
	ids := rg.IDs()
	return 0, fmt.Errorf("%w %q: want a partition id of ring version %d, %d..%d", errBadPartition, s, rg.Version(), ids[0], ids[len(ids)-1])
}
