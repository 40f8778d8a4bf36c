package coordinator

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"slices"
	"time"

	"github.com/ringkv/ringkv/consensus"
	"github.com/ringkv/ringkv/replica"
)

// Readers and writers that meet intents, and the sweep of abandoned
// transactions (docs/ARCHITECTURE.md, "Readers and intents", "Abandoned
// transactions"). They run on the leader the operation reached: this
// node's Coordinator for its own groups, and LinearizableServer (through
// its resolver, the node's Coordinator) for operations forwarded here.

const (
	// sweepInterval is how often the sweep looks at the partitions this
	// node leads.
	sweepInterval = time.Second
	// sweepRecordsEvery is how many sweeps pass between two looks at the
	// transaction records (each a linearizable read per partition led):
	// an abandoned PENDING record always has an intent in its own
	// partition (the anchor holds the smallest key), which every sweep
	// finds; the records pass is for forgetting decided records.
	sweepRecordsEvery = 10
	// sweepForgetAfter is how long past its deadline a decided record is
	// left to its coordinator before the sweep finishes and forgets it.
	sweepForgetAfter = 30 * time.Second
	// writerWaitMin and writerWaitMax bound a writer's backoff while a
	// PENDING intent holds its key.
	writerWaitMin = 10 * time.Millisecond
	writerWaitMax = 100 * time.Millisecond
	// readerRounds bounds how often a read goes round an intent before it
	// gives up (each round is the key read again after the holder was
	// resolved or found missing).
	readerRounds = 8
)

// getOn is a linearizable get on g, this node leading it: the record and
// whether it is live, reading through intents (readThrough).
func (c *Coordinator) getOn(ctx context.Context, g *consensus.Group, key []byte) (replica.Record, bool, error) {
	for range readerRounds {
		rec, err := g.Get(ctx, key)
		ie, ok := asIntentError(err)
		switch {
		case errors.Is(err, replica.ErrNotFound):
			return replica.Record{}, false, nil
		case ok:
			r, found, done, err := c.readThrough(ctx, g, key, ie)
			if done || err != nil {
				return r, found, err
			}
			continue // resolved or gone meanwhile: read again
		case err != nil:
			return rec, false, err //nolint:wrapcheck // classified by the caller
		}
		return rec, !rec.Tombstone && rec.Live(g.Now()), nil
	}
	return replica.Record{}, false, fmt.Errorf("%w: key %q kept changing hands between transactions", ErrConflict, truncate(key))
}

// readThrough answers a read of key that met an intent (ie, from g.Get,
// whose KeyIntent carries the record under it). The holder's status is
// read on its anchor after the key was read; commit is one-way, so:
// COMMITTED answers the transaction's write of the key (or the record
// under the intent if it only read the key) and resolves the partition in
// the background; PENDING within the deadline answers the record under
// the intent (the reader is ordered before the transaction); ABORTED
// answers it too, cleaning in the background; PENDING or none past the
// deadline is aborted, and the key read again (done false). No record
// within the deadline is either not yet written or forgotten after every
// intent was resolved: the key is read again to tell.
func (c *Coordinator) readThrough(ctx context.Context, g *consensus.Group, key []byte, ie *consensus.IntentError) (rec replica.Record, found, done bool, err error) {
	ki := ie.Intents[0]
	in := ki.Intent
	tx, err := c.statusOn(ctx, in.Anchor, in.ID)
	if err != nil {
		return rec, false, false, err
	}
	now := g.Now()
	under := ki.Record
	underFound := ki.Found && !under.Tombstone && under.Live(now)
	switch {
	case tx != nil && tx.Status == consensus.TxnCommitted:
		c.resolveLater(g.ID(), tx, byReader)
		for _, w := range tx.Writes {
			// By key alone: a transaction writes a key once, and
			// w.Partition names the key's partition when the transaction
			// ran, the parent of g's after a split.
			if bytes.Equal(w.Key, key) {
				w.Record.Timestamp, w.Record.NodeID = tx.CommitTS, tx.ID.Node
				return w.Record, !w.Record.Tombstone && w.Record.Live(now), true, nil
			}
		}
		return under, underFound, true, nil
	case tx != nil && tx.Status == consensus.TxnAborted:
		c.resolveLater(g.ID(), tx, byReader)
		return under, underFound, true, nil
	case !now.Before(in.Deadline):
		if _, err := c.settleIntent(ctx, g.ID(), in, tx, true, byReader); err != nil {
			return rec, false, false, err
		}
		return rec, false, false, nil
	case tx != nil: // PENDING within its deadline
		return under, underFound, true, nil
	}
	// No record within the deadline: if the intent is still there, the
	// record was not forgotten when read, so it did not exist: the
	// transaction had not committed when the key was read.
	_, err = g.Get(ctx, key)
	if ie2, ok := asIntentError(err); ok && ie2.Intents[0].Intent.ID == in.ID {
		return under, underFound, true, nil
	}
	return rec, false, false, nil
}

// resolveLater resolves a decided transaction's intents in partition p in
// the background.
func (c *Coordinator) resolveLater(p uint32, tx *consensus.TxnRecord, by string) {
	c.bg.Go(func() {
		ctx, cancel := context.WithTimeout(c.lifetime, c.cfg.RequestTimeout)
		defer cancel()
		if err := c.resolveOn(ctx, p, tx.ID, tx.Status == consensus.TxnCommitted, tx.CommitTS, tx.Writes, by); err != nil {
			c.log.Debug("intent resolve left to the sweep", "txn", tx.ID.String(), "err", err)
		}
	})
}

// writeThrough runs write, a Put, CompareAndSet or single-partition Txn on
// a leader, until no intent stands in its way: a decided holder is
// finished, an expired one aborted and cleaned, and a PENDING one within
// its deadline waited for (backing off from writerWaitMin to
// writerWaitMax). Waiting ends with ctx: ErrConflict (nothing written).
func (c *Coordinator) writeThrough(ctx context.Context, write func() error) error {
	wait := writerWaitMin
	for {
		err := write()
		ie, ok := asIntentError(err)
		if !ok {
			return err
		}
		blocked := false
		for _, ki := range ie.Intents {
			tx, err := c.statusOn(ctx, ki.Intent.Anchor, ki.Intent.ID)
			if err != nil {
				return err
			}
			settled, err := c.settleIntent(ctx, ie.Group, ki.Intent, tx, false, byWriter)
			if err != nil {
				return err
			}
			blocked = blocked || !settled
		}
		if !blocked {
			continue
		}
		if err := c.sleep(ctx, c.jitter(wait)); err != nil {
			return fmt.Errorf("%w: waited for transaction %s: %w", ErrConflict, ie.Intents[0].Intent.ID, err)
		}
		wait = min(2*wait, writerWaitMax)
	}
}

// sweep runs every sweepInterval until ctx ends, finishing or aborting
// the abandoned transactions of the partitions this node leads.
func (c *Coordinator) sweep(ctx context.Context) {
	ticker := time.NewTicker(sweepInterval)
	defer ticker.Stop()
	fences := map[consensus.TxnID]time.Time{}
	for round := 0; ; round++ {
		select {
		case <-ctx.Done():
			return
		case <-ticker.C:
		}
		for _, p := range c.deps.Groups.Leading() {
			g, ok := c.deps.Groups.Group(p)
			if !ok {
				continue
			}
			if err := c.sweepGroup(ctx, g, round%sweepRecordsEvery == 0, fences); err != nil && ctx.Err() == nil {
				c.log.Debug("transaction sweep", "group_id", p, "err", err)
			}
		}
		for id, seen := range fences {
			if time.Since(seen) > 10*fenceKeep {
				delete(fences, id) // forgotten by another node meanwhile
			}
		}
	}
}

// fenceKeep is how long the sweep keeps an ABORTED record without a
// deadline (a fence: an abort of a transaction whose anchor had no record
// yet) after first seeing it. The fenced attempt held an intent when it
// was aborted, so it had started, and its deadline is at most TxnTimeout
// after the fence was written: past it no prepare of the attempt can
// write a PENDING record, and the fence may go.
const fenceKeep = consensus.TxnTimeout + sweepForgetAfter

// sweepGroup is one sweep of g: intents past their deadline are settled
// through their anchors; withRecords, records anchored here are aborted
// when PENDING past their deadline, and finished and forgotten: ABORTED
// ones past their deadline, COMMITTED ones (whose coordinator finishes
// them) sweepForgetAfter past it, fences after fenceKeep.
func (c *Coordinator) sweepGroup(ctx context.Context, g *consensus.Group, withRecords bool, fences map[consensus.TxnID]time.Time) error {
	ctx, cancel := context.WithTimeout(ctx, c.cfg.RequestTimeout)
	defer cancel()
	intents, err := g.SweepIntents(ctx)
	if err != nil {
		return fmt.Errorf("intents: %w", err)
	}
	now := c.now()
	done := map[consensus.TxnID]bool{}
	var errs []error
	for _, ki := range intents {
		in := ki.Intent
		if done[in.ID] || now.Before(in.Deadline) {
			continue
		}
		done[in.ID] = true
		tx, err := c.statusOn(ctx, in.Anchor, in.ID)
		if err == nil {
			_, err = c.settleIntent(ctx, g.ID(), in, tx, true, bySweep)
		}
		if err != nil {
			errs = append(errs, err)
			continue
		}
		c.metrics.abandoned.Inc()
	}
	if !withRecords {
		return errors.Join(errs...)
	}
	records, err := g.SweepTxnRecords(ctx)
	if err != nil {
		return errors.Join(append(errs, fmt.Errorf("records: %w", err))...)
	}
	for i := range records {
		tx := &records[i]
		switch {
		case tx.Status == consensus.TxnPending && !now.Before(tx.Deadline):
			rec, err := c.decideOn(ctx, g.ID(), tx.ID, false, 0, nil)
			if errors.Is(err, consensus.ErrTxnCommitted) {
				rec, err = c.statusOn(ctx, g.ID(), tx.ID)
			}
			if err != nil || rec == nil {
				errs = append(errs, err)
				continue
			}
			if !done[tx.ID] {
				c.metrics.abandoned.Inc()
			}
			c.finish(ctx, g.ID(), rec, true, bySweep)
		case tx.Status != consensus.TxnPending && tx.Deadline.IsZero():
			seen, ok := fences[tx.ID]
			if !ok {
				fences[tx.ID] = time.Now()
			} else if time.Since(seen) >= fenceKeep {
				c.finish(ctx, g.ID(), tx, true, bySweep)
				delete(fences, tx.ID)
			}
		case tx.Status == consensus.TxnAborted && !now.Before(tx.Deadline),
			tx.Status == consensus.TxnCommitted && !now.Before(tx.Deadline.Add(sweepForgetAfter)):
			c.finish(ctx, g.ID(), tx, true, bySweep)
		}
	}
	return errors.Join(errs...)
}

// scanThrough is g.Scan read through intents: a page of a linearizable
// list, each key of the page's range that holds an intent read as getOn
// reads it (a committed transaction's write, or the record under a
// pending one's intent; absent keys a tombstone, so the list hides them).
// It costs one more linearizable read of the partition's intents, and a
// status read on the anchor per intent in range.
//
// The intents are read before the records: a resolve that lands between
// the two reads then shows as an intent whose key is read through
// (getOn), where in the other order the key would be in neither read (its
// intent gone, its record not yet there) and a list begun after a
// transaction was acknowledged could miss its writes (TestLinearizableAfterSplit,
// a linearizable list right after a linearizable multi-key write, failed
// 3 of 12 race runs in the other order, 0 of 20 in this one).
func (c *Coordinator) scanThrough(ctx context.Context, g *consensus.Group, prefix, start []byte, limit int) ([][]byte, []replica.Record, bool, error) {
	intents, err := g.Intents(ctx)
	if err != nil {
		return nil, nil, false, err //nolint:wrapcheck // classified by the caller
	}
	keys, recs, truncated, err := g.Scan(ctx, prefix, start, limit)
	if err != nil {
		return nil, nil, false, err //nolint:wrapcheck // classified by the caller
	}
	for _, ki := range intents {
		k := ki.Key
		switch {
		case !bytes.HasPrefix(k, prefix), bytes.Compare(k, start) < 0:
			continue
		case truncated && len(keys) > 0 && bytes.Compare(k, keys[len(keys)-1]) > 0:
			continue // beyond this page: the next one reads it
		}
		rec, found, err := c.getOn(ctx, g, k)
		if err != nil {
			return nil, nil, false, err
		}
		if !found {
			rec = replica.Record{Tombstone: true, Timestamp: rec.Timestamp, NodeID: rec.NodeID}
		}
		i, ok := slices.BinarySearchFunc(keys, k, bytes.Compare)
		switch {
		case ok:
			recs[i] = rec
		case found:
			keys, recs = slices.Insert(keys, i, k), slices.Insert(recs, i, rec)
		}
	}
	return keys, recs, truncated, nil
}
