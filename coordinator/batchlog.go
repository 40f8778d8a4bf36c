package coordinator

import (
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"time"

	"github.com/ringkv/ringkv/internal/varint"
	"github.com/ringkv/ringkv/replica"
	"github.com/ringkv/ringkv/ring"
)

// Logged batches (docs/ARCHITECTURE.md, "Multi-key writes at eventual
// levels: logged batches"), Cassandra's logged BATCH:
//
//  1. every record is stamped with one HLC timestamp ts;
//  2. the batch (every entry, encoded) is written at quorum under the
//     reserved key batchPrefix + <ts as 16 hex digits> + "/" + <node id>;
//  3. each record is written at the requested level (up to 16 at once);
//  4. the batch entry is tombstoned (at one: a batch left behind is only
//     replayed once more, which is harmless).
//
// The replayer (replayBatches, one goroutine per coordinator, started by
// New and stopped by Close) scans, every BatchReplayInterval, the batch
// entries of the partitions this node is primary for (the first replica
// of the partition's preference list that Liveness believes alive) in its
// local store; a live entry older than BatchReplayAge is a batch whose
// coordinator died or failed between steps 2 and 4: each of its records
// is merged again into every replica (same stamps: idempotent; a replica
// that fails gets a hint as any write's does) and the entry is
// tombstoned, both at quorum. A batch entry reaches at least one replica
// that will be primary unless a quorum of its replicas is lost.

// batchPrefix begins every batch entry's key.
const batchPrefix = "\x00ringkv/batch/"

// batchVersion is the first byte of a batch entry's value.
const batchVersion byte = 1

// Batch events (ringkv_coordinator_batches_total{event}).
const (
	batchWritten  = "written"
	batchReplayed = "replayed"
)

// batchHooks stop a logged batch midway, as if its coordinator died
// (tests only). skipRecord, when set, is asked for each record's index:
// true leaves the record unwritten, and the batch then stops before
// clearing its entry, returning errBatchStopped.
type batchHooks struct {
	skipRecord func(i int) bool
}

// batchKey returns the key of the batch stamped ts by node.
func batchKey(ts replica.Timestamp, node string) []byte {
	return fmt.Appendf(nil, "%s%016x/%s", batchPrefix, uint64(ts), node)
}

// encodeBatch encodes entries: batchVersion, their count, then each one
// as a hint is encoded (with its own checksum), length-prefixed.
func encodeBatch(entries []replica.Entry) []byte {
	b := []byte{batchVersion}
	b = binary.AppendUvarint(b, uint64(len(entries)))
	var frame []byte
	for _, e := range entries {
		frame = appendHint(frame[:0], e)
		b = binary.AppendUvarint(b, uint64(len(frame)))
		b = append(b, frame...)
	}
	return b
}

// decodeBatch decodes encodeBatch's encoding. Any problem returns an
// error wrapping ErrCorrupt. The entries do not alias b.
func decodeBatch(b []byte) ([]replica.Entry, error) {
	if len(b) == 0 || b[0] != batchVersion {
		return nil, fmt.Errorf("%w: batch entry without version %d", ErrCorrupt, batchVersion)
	}
	b = b[1:]
	n, k := varint.Uvarint(b)
	if k <= 0 || n > uint64(len(b)) {
		return nil, fmt.Errorf("%w: batch entry count", ErrCorrupt)
	}
	b = b[k:]
	out := make([]replica.Entry, 0, n)
	for range n {
		l, k := varint.Uvarint(b)
		if k <= 0 || l > uint64(len(b)-k) {
			return nil, fmt.Errorf("%w: batch record length", ErrCorrupt)
		}
		e, err := decodeHint(b[k : k+int(l)])
		if err != nil {
			return nil, fmt.Errorf("batch record %d: %w", len(out), err)
		}
		out = append(out, e)
		b = b[k+int(l):]
	}
	if len(b) != 0 {
		return nil, fmt.Errorf("%w: %d bytes after the batch's records", ErrCorrupt, len(b))
	}
	return out, nil
}

// loggedBatch writes pairs (checked by MSet) as a logged batch at level.
func (c *Coordinator) loggedBatch(ctx context.Context, pairs []MSetPair, level Level) error {
	r := c.deps.Ring.Ring()
	if r == nil || r.ActiveCount() == 0 {
		return &UnavailableError{Op: "mset", Level: level, Required: 1, Cause: errors.New("node has not joined a ring yet")}
	}
	ctx, cancel := c.withTimeout(ctx)
	defer cancel()
	ts := c.deps.Clock.Now()
	entries := make([]replica.Entry, len(pairs))
	for i, p := range pairs {
		wo, err := applyWriteOptions(ttlOption(p.TTL))
		if err != nil {
			return err
		}
		entries[i] = replica.Entry{
			Partition: r.IDOf(p.Key),
			Key:       bytes.Clone(p.Key),
			Record:    replica.Record{Value: bytes.Clone(p.Value), Timestamp: ts, ExpiresAt: wo.expiry(ts), NodeID: c.cfg.NodeID},
		}
	}
	key := batchKey(ts, c.cfg.NodeID)
	if err := c.write(System(ctx), "mset", key, replica.Record{Value: encodeBatch(entries)}, Quorum); err != nil {
		return fmt.Errorf("log batch: %w", err)
	}
	c.metrics.batches.WithLabelValues(batchWritten).Inc()
	stopped := false
	var skip []bool
	if h := c.batchHooks.skipRecord; h != nil {
		skip = make([]bool, len(entries))
		for i := range entries {
			skip[i] = h(i)
			stopped = stopped || skip[i]
		}
	}
	err := c.writeEntries(ctx, r, entries, skip, level)
	switch {
	case err != nil:
		return err // the replayer finishes the batch
	case stopped:
		return errBatchStopped
	}
	if err := c.write(System(ctx), "mset", key, replica.Record{Tombstone: true}, One); err != nil {
		// Applied: only the entry stays, replayed once more later.
		c.log.Debug("clear logged batch", "err", err)
	}
	return nil
}

func ttlOption(ttl time.Duration) []WriteOption {
	if ttl == 0 {
		return nil
	}
	return []WriteOption{WithTTL(ttl)}
}

// writeEntries writes every entry (but those skip marks) into its
// key's partition's replicas in r at level, up to mgetParallel at once,
// and returns the first error. Entries are addressed by their key's id in
// r: a replayed batch may have been logged under a ring before a split.
func (c *Coordinator) writeEntries(ctx context.Context, r *ring.Ring, entries []replica.Entry, skip []bool, level Level) error {
	errs := make(chan error, len(entries)) // one send per entry, never blocks
	sem := make(chan struct{}, mgetParallel)
	started := 0
	for i, e := range entries {
		if skip != nil && skip[i] {
			continue
		}
		e.Partition = r.IDOf(e.Key)
		sem <- struct{}{} // every holder releases it without waiting
		started++
		if !c.bg.Go(func() {
			defer func() { <-sem }()
			errs <- c.writeEntry(ctx, "mset", r.ReplicasOf(e.Partition), e, level)
		}) {
			<-sem
			errs <- ErrClosed
		}
	}
	var first error
	for range started {
		if err := <-errs; err != nil && first == nil {
			first = err
		}
	}
	return first
}

// replayBatches is the replayer's loop; it returns when ctx ends.
func (c *Coordinator) replayBatches(ctx context.Context) {
	ticker := time.NewTicker(c.cfg.BatchReplayInterval)
	defer ticker.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-ticker.C:
		}
		if err := c.replayOnce(ctx); err != nil && ctx.Err() == nil {
			c.log.Debug("batch replay", "err", err)
		}
	}
}

// replayOnce replays the old batch entries of the partitions this node is
// primary for, and tombstones them.
func (c *Coordinator) replayOnce(ctx context.Context) error {
	r := c.deps.Ring.Ring()
	if r == nil || r.ActiveCount() == 0 {
		return nil
	}
	cutoff := c.deps.Clock.Physical().Add(-c.cfg.BatchReplayAge)
	var errs []error
	for _, p := range r.IDs() {
		if !c.isPrimary(r.ReplicasOf(p)) {
			continue
		}
		type old struct {
			key []byte
			rec replica.Record
		}
		var olds []old
		err := c.deps.Store.Scan(p, []byte(batchPrefix), nil, func(key []byte, rec replica.Record) bool {
			if !rec.Tombstone && rec.Timestamp.WallTime().Before(cutoff) {
				olds = append(olds, old{key: bytes.Clone(key), rec: rec})
			}
			return true
		})
		if err != nil {
			errs = append(errs, fmt.Errorf("scan partition %d: %w", p, err))
			continue
		}
		for _, o := range olds {
			if err := c.replay(ctx, r, o.key, o.rec); err != nil {
				errs = append(errs, err)
			}
		}
	}
	return errors.Join(errs...)
}

// isPrimary reports whether this node is the first of replicas that
// Liveness believes alive.
func (c *Coordinator) isPrimary(replicas []string) bool {
	for _, n := range replicas {
		if n == c.cfg.NodeID {
			return true
		}
		if c.deps.Liveness == nil || c.deps.Liveness.Alive(n) {
			return false
		}
	}
	return false
}

// replay writes the records of the batch entry rec (under key) again at
// quorum, then tombstones the entry.
func (c *Coordinator) replay(ctx context.Context, r *ring.Ring, key []byte, rec replica.Record) error {
	entries, err := decodeBatch(rec.Value)
	if err != nil {
		// Nothing to replay from a corrupt entry; anti-entropy repairs the
		// local copy from the others, which are replayed then.
		return fmt.Errorf("batch entry: %w", err)
	}
	ctx, cancel := context.WithTimeout(ctx, c.cfg.RequestTimeout)
	defer cancel()
	if err := c.writeEntries(ctx, r, entries, nil, Quorum); err != nil {
		return fmt.Errorf("replay batch: %w", err)
	}
	c.metrics.batches.WithLabelValues(batchReplayed).Inc()
	if err := c.write(System(ctx), "mset", key, replica.Record{Tombstone: true}, Quorum); err != nil {
		return fmt.Errorf("clear replayed batch: %w", err)
	}
	return nil
}
