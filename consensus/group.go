package consensus

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"sync/atomic"
	"time"

	"github.com/hashicorp/raft"
	"golang.org/x/sync/semaphore"

	"github.com/ringkv/ringkv/replica"
)

// Group is one partition's Raft group on this node. Its methods that
// change or read data at the linearizable level must run on the leader;
// elsewhere they return a *NotLeaderError naming the leader when known.
// Safe for concurrent use.
type Group struct {
	id     uint32
	nodeID string
	raft   *raft.Raft
	trans  raft.Transport
	fsm    *fsm
	logs   raft.LogStore
	// cachedLogs is logs behind the raft.LogCache raft uses: the newest
	// entries from memory.
	cachedLogs raft.LogStore
	stable     raft.StableStore
	store      Store
	clock      *replica.Clock
	log        *slog.Logger
	m          *metrics
	// features, if set, says whether every member applies the commands
	// of a wire version (Txn proposes opBatch only then).
	features Features
	// confirmWire caches whether every member speaks ConfirmWireVersion
	// (speaksConfirm): ok, until unix nanoseconds.
	confirmWire struct {
		until atomic.Int64
		ok    atomic.Bool
	}
	// ignoreIntents is Config.UnsafeIgnoreIntents (broken, tests only).
	ignoreIntents bool
	// ring, if set, places keys and records in partitions (ownsKey,
	// ownsRecord); nil: every key is the group's.
	ring RingSource
	// afterReady, set only by tests, runs right after leaderReady passes
	// in ReadIndex and update: where a leader can be deposed and elected
	// again before it reads its state (TestReelectedLeaderRefuses).
	afterReady func()

	latches latchSet
	reads   readBatcher
	// proposals bounds the proposals queued in raft and not yet applied
	// (Config.MaxPendingProposals); nil: no bound.
	proposals *semaphore.Weighted
	// refusals feeds the Manager's watchdog (watchdog.go).
	refusals refusalStreak
	// timeouts are the group's normal raft timeouts, which a transfer
	// restores; nil when leaders keep them (no QuietHeartbeatTimeout).
	timeouts *groupTimeouts

	// fence orders proposals against leadership transfers: propose holds
	// it shared around raft.Apply, transferLeadership exclusively to set
	// transferring. A proposal is therefore either enqueued before the
	// transfer's barrier (and committed before leadership moves) or
	// refused as not-the-leader, which is safe to retry; none is left in
	// flight to fail with "leadership lost" (an unknown outcome).
	fence        sync.RWMutex
	transferring bool // guarded by fence
	// transferred is closed when the running transfer ends; made with
	// transferring set. Guarded by fence.
	transferred chan struct{}
	// transfer is held by the one transferLeadership running (the
	// reconcile loop's or a drain's); others give up at once.
	transfer sync.Mutex

	mu struct {
		sync.Mutex
		// barrier is the current term's leader barrier (see leaderReady).
		barrier *barrier
	}
}

// ID returns the group id (the partition).
func (g *Group) ID() uint32 { return g.id }

// Raft returns the underlying raft instance, for status and membership.
func (g *Group) Raft() *raft.Raft { return g.raft }

// LogBounds returns the first and last index held in the group's raft log
// on this node (0, 0 when empty): its length shows that snapshots compact
// it.
func (g *Group) LogBounds() (first, last uint64, err error) {
	if first, err = g.logs.FirstIndex(); err != nil {
		return 0, 0, fmt.Errorf("consensus: log first index: %w", err)
	}
	if last, err = g.logs.LastIndex(); err != nil {
		return 0, 0, fmt.Errorf("consensus: log last index: %w", err)
	}
	return first, last, nil
}

// Now returns the physical time of the node's clock: what this group,
// leading, judges expiry by (an expired record is absent to Get's callers
// and to CompareAndSet).
func (g *Group) Now() time.Time { return g.clock.Physical() }

// Leader returns the id of the group's current leader, "" if unknown.
func (g *Group) Leader() string {
	_, id := g.raft.LeaderWithID()
	return string(id)
}

func (g *Group) notLeader() error {
	return &NotLeaderError{Group: g.id, Leader: g.Leader()}
}

// timeout turns ctx's deadline into the timeout raft takes (the one place
// this translation happens). No deadline: 10s.
func timeout(ctx context.Context) time.Duration {
	if d, ok := ctx.Deadline(); ok {
		if t := time.Until(d); t > 0 {
			return t
		}
		return time.Millisecond
	}
	return 10 * time.Second
}

// leaderReady waits until this node leads the group and has applied
// everything committed before its term (so its applied state is current),
// and returns that term. One Barrier per term is shared by every caller; a
// failed one is reported to those waiting on it and retried by the next
// caller.
//
// The applied state is current only while the node stays in that term: a
// caller that goes on to read it must check inTerm after confirming
// leadership (verifyIn) or before proposing a decision made on it
// (proposeLatched's term). A leader deposed and elected again between
// leaderReady and its read would otherwise confirm leadership in the new
// term while its applied state lacks what the term between committed, and
// answer, or decide, on it.
func (g *Group) leaderReady(ctx context.Context) (uint64, error) {
	if _, split := g.Split(); split {
		return 0, fmt.Errorf("consensus: group %d: %w", g.id, ErrSplit)
	}
	if g.raft.State() != raft.Leader {
		return 0, g.notLeader()
	}
	term := g.raft.CurrentTerm()
	g.mu.Lock()
	b := g.mu.barrier
	if b == nil || b.term != term || (b.done() && b.err != nil) {
		b = &barrier{term: term, ch: make(chan struct{})}
		g.mu.barrier = b
		go func() {
			// A barrier commits an entry of this term and waits until
			// everything before it is applied.
			err := g.raftOutcome(g.raft.Barrier(10 * time.Second).Error())
			if err != nil {
				err = fmt.Errorf("consensus: group %d leader barrier: %w", g.id, err)
			}
			b.err = err
			close(b.ch)
		}()
	}
	g.mu.Unlock()
	select {
	case <-b.ch:
		if b.err != nil {
			return 0, g.notLeader() // not applied; the caller retries
		}
		return term, nil
	case <-ctx.Done():
		return 0, fmt.Errorf("consensus: group %d leader not ready: %w", g.id, ctx.Err())
	}
}

// inTerm answers not-the-leader unless this node is still in term, the
// one leaderReady returned. A node leads at most once per term, so a
// leadership confirmed after this check and in the same term (verifyIn)
// is the leadership the barrier made current.
func (g *Group) inTerm(term uint64) error {
	if g.raft.CurrentTerm() != term {
		return g.notLeader()
	}
	return nil
}

// verifyIn confirms leadership in a round begun after the call: the
// node-level round its transport runs for every group with reads waiting
// (confirm.go), or, when that leaves it unconfirmed or the transport has
// none, raft's heartbeat round (shared, as readBatcher does); then that
// the node is still in term.
func (g *Group) verifyIn(ctx context.Context, term uint64) error {
	if c, ok := g.trans.(leaderConfirmer); ok && g.speaksConfirm() {
		err := c.ConfirmLeadership(ctx, term, g.raft.GetConfiguration().Configuration().Servers)
		switch {
		case err == nil:
			return g.inTerm(term)
		case !errors.Is(err, errUnconfirmed):
			return err
		}
		// Not confirmed by the node's round: raft's heartbeat round
		// settles it (and makes a deposed leader step down).
	}
	if err := g.reads.verify(ctx, g); err != nil {
		return err
	}
	return g.inTerm(term)
}

// barrier is one term's leader barrier: err is set before ch is closed.
type barrier struct {
	term uint64
	ch   chan struct{}
	err  error
}

func (b *barrier) done() bool {
	select {
	case <-b.ch:
		return true
	default:
		return false
	}
}

// ReadIndex returns once this node's applied state reflects every write
// committed before the call: it captures the commit index, confirms
// leadership with one heartbeat round (shared by every read waiting at that
// moment) and waits until that index is applied. No log entry is written.
func (g *Group) ReadIndex(ctx context.Context) error {
	term, err := g.leaderReady(ctx)
	if err != nil {
		return err
	}
	if g.afterReady != nil {
		g.afterReady()
	}
	index := g.raft.CommitIndex()
	if err := g.verifyIn(ctx, term); err != nil {
		return err
	}
	if err := g.fsm.waitApplied(ctx, g.raft, index); err != nil {
		return fmt.Errorf("consensus: group %d wait for apply: %w", g.id, err)
	}
	if _, split := g.Split(); split {
		// The split is at or below index: the children answer now.
		return fmt.Errorf("consensus: group %d: %w", g.id, ErrSplit)
	}
	return nil
}

// Get returns the key's record at the linearizable level: ErrNotFound when
// absent (the caller checks Live for tombstones and expiry). When a
// transaction holds an intent on the key it returns an *IntentError whose
// one KeyIntent carries the record under the intent: the caller asks the
// transaction's anchor what to answer (docs/ARCHITECTURE.md, "Readers and
// intents"). The intent is read before the key, so a resolve landing
// between the two reads shows as an intent whose transaction committed.
func (g *Group) Get(ctx context.Context, key []byte) (replica.Record, error) {
	start := time.Now()
	defer g.m.observe("get", start)
	if err := g.ReadIndex(ctx); err != nil {
		return replica.Record{}, err
	}
	in, _, _, err := g.readIntent(key)
	if err != nil {
		return replica.Record{}, err
	}
	rec, err := g.store.Get(g.id, key)
	if in != nil {
		ki := KeyIntent{Key: key, Intent: *in}
		switch {
		case err == nil:
			ki.Found, ki.Record = true, rec
		case !errors.Is(err, replica.ErrNotFound):
			return rec, fmt.Errorf("consensus: read: %w", err)
		}
		return rec, &IntentError{Group: g.id, Intents: []KeyIntent{ki}}
	}
	if err != nil {
		return rec, fmt.Errorf("consensus: read: %w", err)
	}
	return rec, nil
}

// Scan reads linearizably up to limit records (tombstones included) of
// the partition whose keys have prefix, from start on, in key order:
// like Get, it confirms leadership and waits until applied, then reads
// the local state. truncated says more records follow the last one.
// Errors as for Get.
func (g *Group) Scan(ctx context.Context, prefix, start []byte, limit int) (keys [][]byte, recs []replica.Record, truncated bool, err error) {
	begin := time.Now()
	defer g.m.observe("scan", begin)
	if err := g.ReadIndex(ctx); err != nil {
		return nil, nil, false, err
	}
	err = g.store.Scan(g.id, prefix, start, func(key []byte, rec replica.Record) bool {
		if limit > 0 && len(keys) == limit {
			truncated = true
			return false
		}
		keys = append(keys, key)
		recs = append(recs, rec)
		return true
	})
	if err != nil {
		return nil, nil, false, fmt.Errorf("consensus: scan: %w", err)
	}
	return keys, recs, truncated, nil
}

// Put writes value (Tombstone: a delete) linearizably, expiring at
// expiresAt (zero: never). The record's timestamp is above any this node
// has seen for the key, so it also wins over older eventual writes.
// Errors: *IntentError (a transaction holds the key; not applied),
// *NotLeaderError (not applied), ErrAmbiguous (may have applied).
func (g *Group) Put(ctx context.Context, key, value []byte, tombstone bool, expiresAt time.Time) error {
	start := time.Now()
	defer g.m.observe("put", start)
	_, _, _, err := g.update(ctx, key, func(replica.Record, bool) (replica.Record, bool) {
		return replica.Record{Value: value, Tombstone: tombstone, ExpiresAt: expiresAt}, true
	})
	return err
}

// CompareAndSet sets key to value, expiring at expiresAt (zero: never), if
// its current live value equals *expected, or, with expected nil, if the
// key is absent (put-if-absent). A key whose record has expired by this
// leader's clock is absent: a lock that timed out can be taken. It returns
// whether it swapped, and the current value when it did not (found false
// when the key is absent). Errors as for Put.
func (g *Group) CompareAndSet(ctx context.Context, key []byte, expected *[]byte, value []byte, expiresAt time.Time) (swapped bool, current []byte, found bool, err error) {
	start := time.Now()
	defer g.m.observe("cas", start)
	return g.update(ctx, key, func(cur replica.Record, live bool) (replica.Record, bool) {
		switch {
		case expected == nil && !live:
		case expected != nil && live && bytes.Equal(cur.Value, *expected):
		default:
			return replica.Record{}, false
		}
		return replica.Record{Value: value, ExpiresAt: expiresAt}, true
	})
}

// update runs decide under the key's latch against the current applied
// record and, if it says so, proposes the record it returns. The leader
// alone decides whether the current record is live (by its own clock,
// once, here): the command it proposes is the resulting record, which
// every replica's FSM merges whole without looking at the time, so
// applying stays deterministic.
func (g *Group) update(ctx context.Context, key []byte, decide func(cur replica.Record, live bool) (replica.Record, bool)) (bool, []byte, bool, error) {
	release, err := g.latches.acquire(ctx, string(key))
	if err != nil {
		return false, nil, false, fmt.Errorf("consensus: key latch: %w", err)
	}
	handed := false // proposeLatched took the latch over
	defer func() {
		if !handed {
			release()
		}
	}()
	// No leadership round trip for a write: if this node was deposed, its
	// proposal cannot commit (the majority has seen a newer term), so a
	// decision made on its state is never applied (a decision to write
	// nothing is confirmed below). The barrier of leaderReady plus the
	// latch (held until the entry is applied here) make the applied state
	// current for this key.
	term, err := g.leaderReady(ctx)
	if err != nil {
		return false, nil, false, err
	}
	if g.afterReady != nil {
		g.afterReady()
	}
	// A transaction's intent locks the key: never write under it.
	if err := g.checkIntents([][]byte{key}); err != nil {
		return false, nil, false, err
	}
	cur, err := g.store.Get(g.id, key)
	found := err == nil
	if err != nil && !errors.Is(err, replica.ErrNotFound) && !errors.Is(err, replica.ErrCorrupt) {
		return false, nil, false, fmt.Errorf("consensus: read current: %w", err)
	}
	live := found && cur.Live(g.Now())
	next, ok := decide(cur, live)
	if !ok {
		// Nothing to propose: what it answers is a read of this node's
		// state, so answer only if still the leader (as a read-only
		// transaction does); a deposed leader that has not yet noticed
		// would otherwise answer a failed CAS with a stale value.
		if err := g.verifyIn(ctx, term); err != nil {
			return false, nil, false, err
		}
		if !live {
			return false, nil, false, nil
		}
		return false, cur.Value, true, nil
	}
	// Stamp above every timestamp seen for the key.
	g.stamp(&next, cur, found)
	handed = true
	if err := g.proposeLatched(ctx, term, encodeMerge(key, next), release); err != nil {
		return false, nil, false, err
	}
	return true, nil, false, nil
}

// transferLeadership hands the group's leadership to target (any voter
// raft picks when empty) without leaving a proposal in flight: new
// proposals are refused (not the leader, once the transfer is over, so
// that they name the next leader) from now on, a barrier waits
// until every earlier one is committed and applied, and only then does
// raft transfer. It returns the transfer's error, or the barrier's, or
// raft.ErrLeadershipTransferInProgress when another transfer runs.
func (g *Group) transferLeadership(target raft.ServerID) error {
	if !g.transfer.TryLock() {
		return fmt.Errorf("consensus: group %d: %w", g.id, raft.ErrLeadershipTransferInProgress)
	}
	defer g.transfer.Unlock()
	g.fence.Lock()
	g.transferring, g.transferred = true, make(chan struct{})
	g.fence.Unlock()
	defer func() {
		g.fence.Lock()
		g.transferring = false
		close(g.transferred)
		g.fence.Unlock()
	}()
	// A transfer times out after ElectionTimeout: the normal one, not a
	// quiet leader's (manager.go, QuietHeartbeatTimeout).
	if g.timeouts != nil {
		g.setTimeouts(g.timeouts.heartbeat, g.timeouts.election)
	}
	if err := g.raftOutcome(g.raft.Barrier(5 * time.Second).Error()); err != nil {
		return fmt.Errorf("barrier before leadership transfer: %w", err)
	}
	var f raft.Future
	if target == "" {
		f = g.raft.LeadershipTransfer()
	} else {
		f = g.raft.LeadershipTransferToServer(target, raft.ServerAddress(target))
	}
	return g.raftOutcome(wrapFuture(f, "leadership transfer"))
}

// releaseProposal gives back the place proposeData took in the group's
// queue of proposals.
func (g *Group) releaseProposal() {
	if g.proposals != nil {
		g.proposals.Release(1)
	}
}

// proposeData replicates a command (encodeMerge, encodeBatch) and waits
// until it is applied here.
func (g *Group) proposeData(ctx context.Context, data []byte) error {
	return g.proposeLatched(ctx, 0, data, nil)
}

// proposeLatched is proposeData for a caller holding key latches: it
// takes over unlatch (may be nil) and calls it once raft has answered the
// proposal, not when ctx ends. A proposal given up on (ErrAmbiguous) may
// still be applied later; while it is in flight, the next update of its
// keys must not decide on the applied state, which lacks it (a CAS judged
// there would succeed against a value the pending write replaces).
//
// term, when not 0, is the term leaderReady returned to a caller that
// decided data on this node's applied state: the proposal is refused as
// not-the-leader unless the node is still in it. (What this does not
// close: a caller descheduled between this check and raft's dispatch of
// the entry for as long as a step-down and a new election take; raft
// answers entries queued while it is no leader with ErrNotLeader, so the
// entry must also miss that whole time.)
func (g *Group) proposeLatched(ctx context.Context, term uint64, data []byte, unlatch func()) error {
	handed := false
	defer func() {
		if !handed && unlatch != nil {
			unlatch()
		}
	}()
	if g.proposals != nil && !g.proposals.TryAcquire(1) {
		g.m.proposalsRefused.Inc()
		return fmt.Errorf("consensus: group %d: %w", g.id, ErrOverloaded)
	}
	release := g.releaseProposal // a method value, not a closure: the goroutine below stays proposeLatched.func2 (goleak's ignore list names it)
	g.fence.RLock()
	if g.transferring {
		done := g.transferred
		g.fence.RUnlock()
		release()
		// Not appended. Wait for the transfer, so that the error names
		// the next leader and the caller goes there at once.
		select {
		case <-done:
		case <-ctx.Done():
		}
		return g.notLeader()
	}
	if term != 0 && g.raft.CurrentTerm() != term {
		g.fence.RUnlock()
		release()
		return g.notLeader()
	}
	f := g.raft.Apply(data, timeout(ctx))
	g.fence.RUnlock()
	handed = true
	done := make(chan error, 1) // buffered: the waiter may leave on ctx
	go func() {
		// The proposal holds its place until raft answers, not until
		// ctx ends: it stays queued in raft until then.
		err := g.raftOutcome(f.Error())
		release()
		if unlatch != nil {
			unlatch()
		}
		done <- err
	}()
	var err error
	select {
	case err = <-done:
	case <-ctx.Done():
		return fmt.Errorf("%w: %w", ErrAmbiguous, ctx.Err())
	}
	switch {
	case err == nil:
	case errors.Is(err, raft.ErrNotLeader), errors.Is(err, raft.ErrLeadershipTransferInProgress):
		// Not appended: safe to retry on the (new) leader.
		return g.notLeader()
	case errors.Is(err, raft.ErrEnqueueTimeout):
		return fmt.Errorf("consensus: group %d busy: %w", g.id, context.DeadlineExceeded)
	case errors.Is(err, raft.ErrLeadershipLost):
		// Appended, then the leader stepped down: the entry's fate is
		// decided by the next leader. Learn it rather than answer an
		// unknown outcome.
		if settled, serr := g.settleLost(ctx, f.Index(), data); settled {
			return serr
		}
		return fmt.Errorf("%w: %w", ErrAmbiguous, err)
	default: // shutdown, restore: it may have committed
		return fmt.Errorf("%w: %w", ErrAmbiguous, err)
	}
	if resp, ok := f.Response().(error); ok && resp != nil {
		return resp
	}
	return nil
}

// maxSettleWait bounds how long settleLost waits for the group to
// commit past a lost proposal (an election and a catch-up take a few
// hundred milliseconds; a node cut off from the group never gets there).
const maxSettleWait = 5 * time.Second

// settleLost learns the fate of a proposal appended at index whose
// leader (this node) stepped down before it committed
// (raft.ErrLeadershipLost). It waits, within ctx and maxSettleWait, until
// this node, now a follower, has applied index, and reads its own log
// there: an index holds one entry and a committed entry is never
// replaced, so the proposal committed if and only if that entry is it.
// settled false: it cannot tell (ctx or the wait ended, the entry was
// compacted away, the group split before it). Otherwise err is nil when
// the proposal committed (and is applied here), or a *NotLeaderError
// when it did not, which is safe to retry.
func (g *Group) settleLost(ctx context.Context, index uint64, data []byte) (settled bool, err error) {
	if index == 0 {
		return false, nil
	}
	wctx, cancel := context.WithTimeout(ctx, maxSettleWait)
	defer cancel()
	if g.fsm.waitApplied(wctx, g.raft, index) != nil {
		return false, nil
	}
	if info := g.fsm.split.Load(); info != nil && info.index < index {
		return false, nil // the FSM refused it (ErrSplit) if it committed
	}
	var l raft.Log
	if g.logs.GetLog(index, &l) != nil {
		return false, nil
	}
	g.m.settled.Inc()
	if l.Type == raft.LogCommand && bytes.Equal(l.Data, data) {
		return true, nil
	}
	return true, g.notLeader()
}

// latchSet serializes updates per key on the leader.
type latchSet struct {
	mu      sync.Mutex
	latches map[string]chan struct{} // a held latch; closed on release
}

func (l *latchSet) acquire(ctx context.Context, key string) (func(), error) {
	for {
		l.mu.Lock()
		if l.latches == nil {
			l.latches = make(map[string]chan struct{})
		}
		held, busy := l.latches[key]
		if !busy {
			ch := make(chan struct{})
			l.latches[key] = ch
			l.mu.Unlock()
			return func() {
				l.mu.Lock()
				delete(l.latches, key)
				l.mu.Unlock()
				close(ch)
			}, nil
		}
		l.mu.Unlock()
		select {
		case <-held:
		case <-ctx.Done():
			return nil, ctx.Err()
		}
	}
}

// readBatcher shares VerifyLeader rounds among concurrent reads: at most
// one round is in flight; every read arriving meanwhile joins the next
// round, which starts when the current one ends.
type readBatcher struct {
	mu       sync.Mutex
	inflight bool
	next     *verifyRound // the round waiting to start; nil if none
}

type verifyRound struct {
	done chan struct{} // closed when err is set
	err  error
}

func (b *readBatcher) verify(ctx context.Context, g *Group) error {
	b.mu.Lock()
	if b.next == nil {
		b.next = &verifyRound{done: make(chan struct{})}
	}
	r := b.next
	if !b.inflight {
		b.inflight = true
		b.next = nil
		// The goroutine runs rounds until none is waiting; VerifyLeader
		// returns once raft shuts down, so it always exits.
		go b.run(g, r)
	}
	b.mu.Unlock()
	select {
	case <-r.done:
		return r.err
	case <-ctx.Done():
		return fmt.Errorf("consensus: verify leadership: %w", ctx.Err())
	}
}

// urgentTransport is a raft.Transport that can send a group's heartbeats
// without delay while it confirms leadership (Transport's groups can).
type urgentTransport interface{ BeginUrgent() (end func()) }

func (g *Group) beginUrgent() (end func()) {
	if u, ok := g.trans.(urgentTransport); ok {
		return u.BeginUrgent()
	}
	return func() {}
}

func (b *readBatcher) run(g *Group, r *verifyRound) {
	for r != nil {
		end := g.beginUrgent()
		err := g.raft.VerifyLeader().Error()
		end()
		if errors.Is(err, raft.ErrNotLeader) || errors.Is(err, raft.ErrLeadershipLost) {
			err = g.notLeader()
		} else if err != nil {
			err = fmt.Errorf("consensus: verify leadership of group %d: %w", g.id, err)
		}
		g.m.readRounds.Inc()
		r.err = err
		close(r.done)
		b.mu.Lock()
		r = b.next
		b.next = nil
		if r == nil {
			b.inflight = false
		}
		b.mu.Unlock()
	}
}

// shutdown shuts g's raft instance down and waits for it. It closes the
// group's transport right after starting the shutdown, not after raft's
// goroutines stopped (raft's own order, in the future's Error): a
// replication or heartbeat goroutine blocked handing an append to a stuck
// stream (a peer that is gone) would keep Error waiting for ever, and
// with it the caller: the reconcile loop restarting a stuck group (seen
// once in TestChaosHosts: the group never came back) or a node shutting
// down (seen once in an idle cluster stopped all at once: the last node
// hung after "shutting down"). Closed, the transport fails those calls and
// raft's goroutines see the shutdown.
func (g *Group) shutdown() error {
	f := g.raft.Shutdown()
	if c, ok := g.trans.(raft.WithClose); ok {
		if err := c.Close(); err != nil {
			g.log.Debug("close the transport of a group shutting down", "group_id", g.id, "err", err)
		}
	}
	if err := f.Error(); err != nil {
		return fmt.Errorf("consensus: shut down group %d: %w", g.id, err)
	}
	return nil
}
