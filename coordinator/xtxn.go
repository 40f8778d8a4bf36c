package coordinator

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"slices"
	"sync"
	"time"

	"github.com/ringkv/ringkv/consensus"
	"github.com/ringkv/ringkv/replica"
	"github.com/ringkv/ringkv/ring"
)

// The coordinator's side of transactions across partitions
// (docs/ARCHITECTURE.md, "Transactions across partitions"): prepare on
// every participant's leader in parallel, wound-wait on the intents met,
// the commit point on the anchor, then resolve and forget on a context of
// the transaction's own. The groups' steps are consensus.Group's
// (xtxn_group.go there); this file strings them together.

const (
	// xtxnMaxAttempts bounds the attempts of one transaction: after them
	// it fails with ErrConflict (nothing applied).
	xtxnMaxAttempts = 10
	// xtxnFinishGrace is how long past an attempt's deadline its
	// coordinator keeps finishing it (deciding, resolving, forgetting);
	// what is left then is the sweep's.
	xtxnFinishGrace = 5 * time.Second
)

// errTxnStopped is returned by a transaction a test hook stopped midway
// (the coordinator "killed").
var errTxnStopped = errors.New("coordinator: transaction stopped by a test hook")

// xtxnHooks stop the protocol midway, as a coordinator dying there would:
// tests only. Each returns true to stop.
type xtxnHooks struct {
	afterPrepare func(consensus.TxnID) bool
	afterCommit  func(consensus.TxnID) bool
	// snapshotRead runs before (after false) and after each key's read
	// in pass (1, 2, ...) of a double read.
	snapshotRead func(pass int, key []byte, after bool)
}

// xtxnPart is one participant partition's share of a transaction.
type xtxnPart struct {
	p        uint32   // the partition's id (ring.Ring.IDOf)
	keys     [][]byte // sorted, distinct
	compares []consensus.Compare
}

// isTxnAnswer reports whether err is an answer of the protocol that
// asking again cannot change: onTxnLeader returns those at once.
func isTxnAnswer(err error) bool {
	var ie *consensus.IntentError
	return errors.As(err, &ie) || errors.Is(err, consensus.ErrTxnAborted) || errors.Is(err, consensus.ErrTxnCommitted) ||
		errors.Is(err, consensus.ErrInvalidTxn) || errors.Is(err, ErrConflict)
}

func asIntentError(err error) (*consensus.IntentError, bool) {
	var ie *consensus.IntentError
	ok := errors.As(err, &ie)
	return ie, ok
}

// onTxnLeader runs run on the leader of the partition with id p
// (onPartitionLeader), returning the protocol's answers (isTxnAnswer) at
// once.
func (c *Coordinator) onTxnLeader(ctx context.Context, op string, p uint32, run func(ctx context.Context, node string, g *consensus.Group) error) error {
	if c.deps.Groups == nil {
		return &UnavailableError{Op: op, Level: Linearizable, Required: 1, Cause: errors.New("this node runs no raft groups")}
	}
	r := c.deps.Ring.Ring()
	if r == nil {
		return &UnavailableError{Op: op, Level: Linearizable, Required: 1, Cause: errors.New("node has not joined a ring yet")}
	}
	var answer error
	err := c.onPartitionLeader(ctx, op, p, r.ReplicasOf(p), func(ctx context.Context, node string, _ uint32, g *consensus.Group) error {
		err := run(ctx, node, g)
		if isTxnAnswer(err) {
			answer = err
			return nil
		}
		return err
	})
	if err == nil {
		err = answer
	}
	return err
}

func (c *Coordinator) prepareOn(ctx context.Context, p uint32, req *consensus.PrepareRequest) (res consensus.PrepareResult, err error) {
	err = c.onTxnLeader(ctx, "prepare", p, func(ctx context.Context, node string, g *consensus.Group) error {
		var err error
		if g != nil {
			res, err = g.Prepare(ctx, req)
		} else {
			res, err = c.deps.Lin.LinPrepare(ctx, node, p, req)
		}
		return err //nolint:wrapcheck // classified by onTxnLeader
	})
	return res, err
}

func (c *Coordinator) decideOn(ctx context.Context, anchor uint32, id consensus.TxnID, commit bool, ts replica.Timestamp, writes []replica.Entry) (rec *consensus.TxnRecord, err error) {
	err = c.onRecordLeader(ctx, "decide", anchor, id, func(ctx context.Context, node string, p uint32, g *consensus.Group) error {
		var err error
		if g != nil {
			rec, err = g.DecideTxn(ctx, id, commit, ts, writes)
		} else {
			rec, err = c.deps.Lin.LinDecide(ctx, node, p, id, commit, ts, writes)
		}
		return err //nolint:wrapcheck // classified by onTxnLeader
	})
	return rec, err
}

// statusOn reads id's record on its anchor's leader (nil: none).
func (c *Coordinator) statusOn(ctx context.Context, anchor uint32, id consensus.TxnID) (rec *consensus.TxnRecord, err error) {
	err = c.onRecordLeader(ctx, "txn_status", anchor, id, func(ctx context.Context, node string, p uint32, g *consensus.Group) error {
		var err error
		if g != nil {
			rec, err = g.TxnStatus(ctx, id)
		} else {
			rec, err = c.deps.Lin.LinTxnStatus(ctx, node, p, id)
		}
		return err //nolint:wrapcheck // classified by onTxnLeader
	})
	return rec, err
}

// onRecordLeader runs run on the leader of the partition that owns id's
// record, anchored at anchor: the anchor itself until a split, then the
// child ring.Ring.RecordOwner names, placed again under the ring that
// split it when the anchor answers ErrSplit.
func (c *Coordinator) onRecordLeader(ctx context.Context, op string, anchor uint32, id consensus.TxnID, run func(ctx context.Context, node string, p uint32, g *consensus.Group) error) error {
	key := consensus.TxnRecordKey(id)
	for {
		r := c.deps.Ring.Ring()
		p := anchor
		if r != nil {
			p = r.RecordOwner(anchor, key)
		}
		err := c.onTxnLeader(ctx, op, p, func(ctx context.Context, node string, g *consensus.Group) error { return run(ctx, node, p, g) })
		if !errors.Is(err, consensus.ErrSplit) {
			return err
		}
		if err := c.awaitSplitRing(ctx, op, r, err); err != nil {
			return err
		}
	}
}

// resolveOn clears id's intents in partition p (merging its writes when
// commit), counting them as resolved by by. A p that has split is
// resolved in each of its partitions under the ring that split it (each
// group takes the writes of its own keys).
func (c *Coordinator) resolveOn(ctx context.Context, p uint32, id consensus.TxnID, commit bool, ts replica.Timestamp, writes []replica.Entry, by string) error {
	for {
		r := c.deps.Ring.Ring()
		targets := []uint32{p}
		if r != nil {
			targets = descendants(r, p)
		}
		var errs []error
		for _, t := range targets {
			n := 0
			err := c.onTxnLeader(ctx, "resolve", t, func(ctx context.Context, node string, g *consensus.Group) error {
				var err error
				if g != nil {
					n, err = g.ResolveTxn(ctx, id, commit, ts, writes)
				} else {
					n, err = c.deps.Lin.LinResolve(ctx, node, t, id, commit, ts, writes)
				}
				return err //nolint:wrapcheck // classified by onTxnLeader
			})
			if n > 0 {
				c.metrics.intentsResolved.WithLabelValues(by).Add(float64(n))
			}
			if err != nil {
				errs = append(errs, err)
			}
		}
		err := errors.Join(errs...)
		if !errors.Is(err, consensus.ErrSplit) {
			return err
		}
		if err := c.awaitSplitRing(ctx, "resolve", r, err); err != nil {
			return err
		}
	}
}

// descendants returns the ids under r of the partitions that partition p
// (of r's level or an earlier one) has split into: p itself at r's level.
func descendants(r *ring.Ring, p uint32) []uint32 {
	out := []uint32{p}
	for {
		lvl := r.LevelOf(out[0])
		if lvl == 0 || lvl >= r.Partitions() {
			return out
		}
		next := make([]uint32, 0, 2*len(out))
		for _, q := range out {
			c := r.ChildIDs(q)
			next = append(next, c[0], c[1])
		}
		out = next
	}
}

func (c *Coordinator) forgetOn(ctx context.Context, anchor uint32, id consensus.TxnID) error {
	return c.onRecordLeader(ctx, "forget", anchor, id, func(ctx context.Context, node string, p uint32, g *consensus.Group) error {
		if g != nil {
			return g.ForgetTxn(ctx, id) //nolint:wrapcheck // classified by onTxnLeader
		}
		return c.deps.Lin.LinForget(ctx, node, p, id) //nolint:wrapcheck // classified by onTxnLeader
	})
}

// resolveAll resolves id on every partition of parts in parallel.
func (c *Coordinator) resolveAll(ctx context.Context, parts []uint32, id consensus.TxnID, commit bool, ts replica.Timestamp, writes []replica.Entry, by string) error {
	errs := make([]error, len(parts))
	var wg sync.WaitGroup
	for i, p := range parts {
		wg.Add(1)
		go func() {
			defer wg.Done()
			errs[i] = c.resolveOn(ctx, p, id, commit, ts, writes, by)
		}()
	}
	wg.Wait()
	return errors.Join(errs...)
}

// finishLater resolves a decided record on every participant and then,
// when forget is set, forgets it, in the background (bounded by
// xtxnFinishGrace past the deadline, at least that long from now): the
// sweep does what it leaves.
func (c *Coordinator) finishLater(anchor uint32, rec *consensus.TxnRecord, forget bool, by string) {
	c.bg.Go(func() {
		ctx, cancel := context.WithDeadline(c.lifetime, later(rec.Deadline, time.Now()).Add(xtxnFinishGrace))
		defer cancel()
		c.finish(ctx, anchor, rec, forget, by)
	})
}

// finish resolves a decided record on every participant and then, when
// forget is set, forgets it; failures are left to the sweep.
func (c *Coordinator) finish(ctx context.Context, anchor uint32, rec *consensus.TxnRecord, forget bool, by string) {
	commit := rec.Status == consensus.TxnCommitted
	if err := c.resolveAll(ctx, rec.Participants, rec.ID, commit, rec.CommitTS, rec.Writes, by); err != nil {
		c.log.Debug("transaction resolve left to the sweep", "txn", rec.ID.String(), "err", err)
		return
	}
	if !forget {
		return
	}
	if err := c.forgetOn(ctx, anchor, rec.ID); err != nil {
		c.log.Debug("transaction forget left to the sweep", "txn", rec.ID.String(), "err", err)
	}
}

func later(a, b time.Time) time.Time {
	if a.After(b) {
		return a
	}
	return b
}

// splitTxn groups t's keys and compares by partition id; the anchor is
// the id of the smallest key's partition.
func splitTxn(r *ring.Ring, t *consensus.Txn) (anchor uint32, parts []*xtxnPart) {
	keys := t.Keys() // sorted
	byP := map[uint32]*xtxnPart{}
	for _, k := range keys {
		p := r.IDOf(k)
		xp := byP[p]
		if xp == nil {
			xp = &xtxnPart{p: p}
			byP[p] = xp
			parts = append(parts, xp)
		}
		xp.keys = append(xp.keys, k)
	}
	for _, cmp := range t.Compares {
		xp := byP[r.IDOf(cmp.Key)]
		xp.compares = append(xp.compares, cmp)
	}
	slices.SortFunc(parts, func(a, b *xtxnPart) int { return int(a.p) - int(b.p) })
	return r.IDOf(keys[0]), parts
}

// xtxn runs t, whose keys span several partitions, as a transaction
// across partitions: attempts of prepare, decide and (in the background)
// resolve, retried with the same priority after wound-wait aborts it.
// Errors: ErrConflict (every attempt lost; nothing applied),
// consensus.ErrAmbiguous (the decision's outcome is unknown),
// *UnavailableError and ErrNotUpgraded (nothing applied), ErrInvalidArgument.
func (c *Coordinator) xtxn(ctx context.Context, r *ring.Ring, t *consensus.Txn) (consensus.TxnResult, error) {
	if t.ReadOnly() {
		// No locks for a read: a double read (xtxn_read.go), unless
		// writes keep landing between its passes.
		if res, ok, err := c.snapshotTxn(ctx, t); ok || err != nil {
			return res, err
		}
	}
	anchor, parts := splitTxn(r, t)
	participants := make([]uint32, len(parts))
	for i, xp := range parts {
		participants[i] = xp.p
	}
	id := consensus.TxnID{Start: c.deps.Clock.Now(), Node: c.cfg.NodeID}
	backoff := 2 * time.Millisecond
	var last error
	next := uint32(0) // the attempt number of the next attempt's id
	for attempt := range xtxnMaxAttempts {
		id.Attempt, next = ownedAttempt(r, anchor, id, next)
		res, retry, err := c.xtxnAttempt(ctx, r, t, id, anchor, parts, participants)
		if !retry {
			return res, err
		}
		last = err
		if ctx.Err() != nil || attempt == xtxnMaxAttempts-1 {
			break
		}
		var de *dieError
		if errors.As(err, &de) {
			// The wait of wound-wait, holding nothing: until the older
			// transaction that made this one die is decided, then at once
			// (retrying blindly meanwhile only meets its intents again),
			// but no longer than dieWait, so that attempts still run out
			// against a holder that is stuck.
			if err := c.awaitHolder(ctx, de.holder, dieWait); err != nil {
				break
			}
			continue
		}
		if err := c.sleep(ctx, c.jitter(backoff)); err != nil {
			break
		}
		backoff = min(2*backoff, 200*time.Millisecond)
	}
	return consensus.TxnResult{}, fmt.Errorf("%w: transaction %s gave up: %w", ErrConflict, id, last)
}

// sleep waits d or until ctx ends.
func (c *Coordinator) sleep(ctx context.Context, d time.Duration) error {
	timer := time.NewTimer(d)
	defer timer.Stop()
	select {
	case <-timer.C:
		return nil
	case <-ctx.Done():
		return ctx.Err() //nolint:wrapcheck // the caller's own context
	}
}

// jitter spreads d over [d/2, 3d/2).
func (c *Coordinator) jitter(d time.Duration) time.Duration {
	c.rngMu.Lock()
	defer c.rngMu.Unlock()
	return d/2 + time.Duration(c.rng.Int64N(int64(d)+1))
}

// xtxnAttempt runs one attempt. retry says it was aborted (err says why)
// and may be tried again with the next attempt number.
func (c *Coordinator) xtxnAttempt(ctx context.Context, r *ring.Ring, t *consensus.Txn, id consensus.TxnID, anchor uint32, parts []*xtxnPart, participants []uint32) (res consensus.TxnResult, retry bool, err error) {
	deadline := c.now().Add(consensus.TxnTimeout)
	// Once anything may be prepared, the attempt is finished (decided and
	// cleaned) on a context of its own, whatever becomes of the client's.
	own, cancel := context.WithDeadline(context.WithoutCancel(ctx), deadline.Add(xtxnFinishGrace))
	defer cancel()
	// abort decides the attempt ABORTED and cleans its intents in the
	// background. When the abort fails, nothing was applied all the same
	// (the attempt never asked to commit): the sweep aborts and cleans it
	// past its deadline, and a retry's prepare wounds its intents.
	abort := func(cause string) {
		c.metrics.txnAborts.WithLabelValues(cause).Inc()
		rec, err := c.decideOn(own, anchor, id, false, 0, nil)
		if err != nil {
			c.log.Debug("transaction abort left to the sweep", "txn", id.String(), "err", err)
			return
		}
		// Clean every partition the attempt tried, whatever the record
		// lists: an abort before the anchor's prepare wrote a fence
		// without participants while others may hold intents. A fence
		// is not forgotten (the sweep does, later): it keeps the
		// anchor's prepare, if still on its way, from writing a record.
		done := *rec
		done.Participants, done.Deadline = participants, deadline
		c.finishLater(anchor, &done, !rec.Deadline.IsZero(), byCoordinator)
	}

	results := make([]consensus.PrepareResult, len(parts))
	pending := slices.Clone(parts)
	for len(pending) > 0 {
		errs := make([]error, len(pending))
		var wg sync.WaitGroup
		for i, xp := range pending {
			req := &consensus.PrepareRequest{ID: id, Anchor: anchor, Deadline: deadline, Participants: participants, Keys: xp.keys, Compares: xp.compares}
			wg.Add(1)
			go func() {
				defer wg.Done()
				var res consensus.PrepareResult
				res, errs[i] = c.prepareOn(ctx, xp.p, req)
				if errs[i] == nil {
					results[slices.Index(parts, xp)] = res
				}
			}()
		}
		wg.Wait()
		var again []*xtxnPart
		var conflicts []*consensus.IntentError
		for i, err := range errs {
			ie, ok := asIntentError(err)
			switch {
			case err == nil:
			case ok:
				conflicts = append(conflicts, ie)
				again = append(again, pending[i])
			case errors.Is(err, consensus.ErrTxnAborted):
				abort(abortExpired)
				return consensus.TxnResult{}, true, err
			case errors.Is(err, consensus.ErrAmbiguous):
				abort(abortAmbiguous)
				return consensus.TxnResult{}, true, err
			default:
				abort(abortUnavailable)
				return consensus.TxnResult{}, false, txnError(err)
			}
		}
		for _, ie := range conflicts {
			if err := c.woundWait(own, id, ie); err != nil {
				if errors.Is(err, errDie) {
					abort(abortDied)
					return consensus.TxnResult{}, true, err
				}
				abort(abortUnavailable)
				return consensus.TxnResult{}, false, err
			}
		}
		pending = again
	}
	if h := c.hooks.afterPrepare; h != nil && h(id) {
		return consensus.TxnResult{}, false, errTxnStopped
	}

	// Every partition prepared: pick the branch, answer the gets, build
	// the writes, and take the commit timestamp above all prepared.
	holds := true
	var maxTS replica.Timestamp
	reads := map[string]consensus.KeyRead{}
	for i, xp := range parts {
		holds = holds && results[i].Holds
		maxTS = max(maxTS, results[i].MaxTimestamp)
		for j, k := range xp.keys {
			if j < len(results[i].Reads) {
				reads[string(k)] = results[i].Reads[j]
			}
		}
	}
	branch := t.Failure
	if holds {
		branch = t.Success
	}
	res = consensus.TxnResult{Succeeded: holds, Results: make([]consensus.OpResult, len(branch))}
	var writes []replica.Entry
	answer := 0
	for i, op := range branch {
		switch op.Kind {
		case consensus.OpGet:
			if kr := reads[string(op.Key)]; kr.Found {
				res.Results[i] = consensus.OpResult{Found: true, Record: kr.Record}
				answer += len(op.Key) + len(kr.Record.Value)
			}
		case consensus.OpSet:
			writes = append(writes, replica.Entry{Partition: r.IDOf(op.Key), Key: op.Key, Record: replica.Record{Value: op.Value, ExpiresAt: op.ExpiresAt}})
		case consensus.OpDelete:
			writes = append(writes, replica.Entry{Partition: r.IDOf(op.Key), Key: op.Key, Record: replica.Record{Tombstone: true}})
		}
	}
	if answer > consensus.MaxTxnBytes {
		err := fmt.Errorf("%w: %w: the gets would answer %d bytes, limit %d", ErrInvalidArgument, consensus.ErrTxnTooLarge, answer, consensus.MaxTxnBytes)
		abort(abortUnavailable)
		return consensus.TxnResult{}, false, err
	}
	if err := c.deps.Clock.Update(maxTS); err != nil {
		c.log.Warn("prepared timestamp ahead of clock", "txn", id.String(), "err", err)
	}
	commitTS := c.deps.Clock.Now()

	// The commit point. An ambiguous answer is asked again (deciding is
	// idempotent) until it is known or the attempt's time is up.
	rec, err := c.decideOn(own, anchor, id, true, commitTS, writes)
	for wait := 10 * time.Millisecond; errors.Is(err, consensus.ErrAmbiguous) || errors.Is(err, ErrUnavailable); wait = min(2*wait, 200*time.Millisecond) {
		if own.Err() != nil || c.sleep(own, wait) != nil {
			return consensus.TxnResult{}, false, fmt.Errorf("%w: commit of %s: %w", consensus.ErrAmbiguous, id, err)
		}
		rec, err = c.decideOn(own, anchor, id, true, commitTS, writes)
	}
	switch {
	case errors.Is(err, consensus.ErrTxnAborted):
		c.metrics.txnAborts.WithLabelValues(abortWounded).Inc()
		c.finishLater(anchor, &consensus.TxnRecord{ID: id, Status: consensus.TxnAborted, Deadline: deadline, Participants: participants}, true, byCoordinator)
		return consensus.TxnResult{}, true, err
	case err != nil:
		return consensus.TxnResult{}, false, txnError(err)
	}
	if h := c.hooks.afterCommit; h != nil && h(id) {
		return res, false, nil
	}
	if rec == nil {
		rec = &consensus.TxnRecord{ID: id, Status: consensus.TxnCommitted, Deadline: deadline, Participants: participants, CommitTS: commitTS, Writes: writes}
	}
	c.finishLater(anchor, rec, true, byCoordinator)
	return res, false, nil
}

// errDie says wound-wait decided this transaction must abort: an older
// one holds a key.
var errDie = errors.New("coordinator: an older transaction holds a key")

// dieError is errDie naming the older transaction (its intent) that
// holds key.
type dieError struct {
	holder consensus.Intent
	key    []byte
}

func (e *dieError) Error() string {
	return fmt.Sprintf("%v: %s holds %q", errDie, e.holder.ID, truncate(e.key))
}

func (e *dieError) Unwrap() error { return errDie }

// dieWait bounds one wait of a transaction that died for an older one.
const dieWait = 250 * time.Millisecond

// awaitHolder waits, polling its anchor (5 ms doubling to 50 ms), until
// the transaction of holder is no longer PENDING (decided, or its record
// gone), its deadline has passed or limit is up, or ctx ends (its error).
func (c *Coordinator) awaitHolder(ctx context.Context, holder consensus.Intent, limit time.Duration) error {
	wait := 5 * time.Millisecond
	until := c.now().Add(limit)
	for now := c.now(); now.Before(holder.Deadline) && now.Before(until); now = c.now() {
		if err := c.sleep(ctx, c.jitter(wait)); err != nil {
			return err
		}
		rec, err := c.statusOn(ctx, holder.Anchor, holder.ID)
		if err == nil && (rec == nil || rec.Status != consensus.TxnPending) {
			return nil
		}
		wait = min(2*wait, 50*time.Millisecond)
	}
	return nil
}

// woundWait settles the intents a prepare of id met (ie): a decided holder
// is finished, a younger or expired one aborted and cleaned; an older
// one, PENDING within its deadline, makes id die (errDie).
func (c *Coordinator) woundWait(ctx context.Context, id consensus.TxnID, ie *consensus.IntentError) error {
	seen := map[consensus.TxnID]bool{}
	for _, ki := range ie.Intents {
		other := ki.Intent
		if seen[other.ID] {
			continue
		}
		seen[other.ID] = true
		c.metrics.txnConflicts.Inc()
		rec, err := c.statusOn(ctx, other.Anchor, other.ID)
		if err != nil {
			return err
		}
		var status consensus.TxnStatus
		if rec != nil {
			status = rec.Status
		}
		action := consensus.OnConflict(id, other, status, c.now())
		if other.ID.Start == id.Start && other.ID.Node == id.Node {
			action = consensus.WoundOther // an earlier attempt of this transaction
		}
		if action == consensus.DieSelf {
			return &dieError{holder: other, key: ki.Key}
		}
		if _, err := c.settleIntent(ctx, ie.Group, other, rec, true, byCoordinator); err != nil {
			return err
		}
	}
	return nil
}

// settleIntent finishes the transaction holding intent in on partition p
// when it is decided (rec, its record as read: nil for none), or, when
// abort is set or its deadline has passed, aborts it on its anchor first
// (an abort finding it COMMITTED finishes it instead). It returns false,
// touching nothing, for a transaction PENDING (or without a record)
// within its deadline when abort is not set.
func (c *Coordinator) settleIntent(ctx context.Context, p uint32, in consensus.Intent, rec *consensus.TxnRecord, abort bool, by string) (bool, error) {
	if rec == nil || rec.Status == consensus.TxnPending {
		if !abort && c.now().Before(in.Deadline) {
			return false, nil
		}
		var err error
		rec, err = c.decideOn(ctx, in.Anchor, in.ID, false, 0, nil)
		if errors.Is(err, consensus.ErrTxnCommitted) {
			rec, err = c.statusOn(ctx, in.Anchor, in.ID)
		}
		if err != nil {
			return false, err
		}
		if rec == nil {
			// Committed and forgotten: forgetting follows every
			// participant's resolve, so the intent is gone already.
			return true, nil
		}
	}
	commit := rec.Status == consensus.TxnCommitted
	return true, c.resolveOn(ctx, p, in.ID, commit, rec.CommitTS, rec.Writes, by)
}

// truncate shortens a key for an error message.
func truncate(k []byte) []byte {
	if len(k) > 32 {
		return append(bytes.Clone(k[:32]), "..."...)
	}
	return k
}

// ownedAttempt returns the first attempt number from next on whose
// record the anchor owns (ring.Ring.RecordOwner: after a split, a
// record's owner is the child its key hashes into, and the anchor writes
// it in its prepare), and the number after it. Before a split every
// number is the anchor's; after k splits one in 2^k is, on average.
func ownedAttempt(r *ring.Ring, anchor uint32, id consensus.TxnID, next uint32) (attempt, after uint32) {
	for n := next; ; n++ {
		id.Attempt = n
		if r == nil || r.RecordOwner(anchor, consensus.TxnRecordKey(id)) == anchor || n-next >= 1<<16 {
			return n, n + 1
		}
	}
}
