package gossip

import (
	"bytes"
	"context"
	crand "crypto/rand"
	"fmt"
	"math/rand/v2"
	"time"

	"github.com/ringkv/ringkv/ring"
)

// Store is the register on which ring changes are decided. The node backs
// it with a reserved key read and written at the linearizable level, so
// that every change, on whichever node it is made, is decided against the
// newest ring. The Gossip owns the register's encoding.
type Store interface {
	// Get reads the register linearizably; found is false while it has
	// never been set.
	Get(ctx context.Context) (value []byte, found bool, err error)
	// CompareAndSet sets the register to value iff it holds *expected
	// (expected nil: iff it was never set), and reports whether it did.
	// An error leaves the outcome unknown: the decider reads the register
	// again to learn it.
	CompareAndSet(ctx context.Context, expected *[]byte, value []byte) (swapped bool, err error)
}

// Op is an operator's change of one member's ring status.
type Op int

const (
	// OpLeave marks a Joined member Leaving: its partitions move to the
	// other Joined members, and it keeps serving until it is removed.
	OpLeave Op = iota + 1
	// OpRemove marks a Joined or Leaving member Removed: it leaves every
	// preference list and the claimant never joins it again by itself.
	OpRemove
	// OpAdmit makes a Leaving or Removed member, or an alive node absent
	// from the ring, Joined now.
	OpAdmit
	// OpSplit doubles the ring's partitions (ring.Ring.Split): every
	// partition becomes two children with its replicas. It names no
	// member (Change.ID must be empty). Nothing in a node acts on a split
	// ring yet (docs/ARCHITECTURE.md, "Partition split", steps 3-5), so
	// no command proposes one.
	OpSplit
	// opClaim is the claimant's change: it joins every alive node absent
	// from the ring.
	opClaim
)

// String returns "leave", "remove", "admit", "split" or "claim".
func (o Op) String() string {
	switch o {
	case OpLeave:
		return "leave"
	case OpRemove:
		return "remove"
	case OpAdmit:
		return "admit"
	case OpSplit:
		return "split"
	case opClaim:
		return "claim"
	default:
		return fmt.Sprintf("Op(%d)", int(o))
	}
}

// Change is one ring change asked for by an operator.
type Change struct {
	Op Op
	// ID is the member the change is about; empty for OpSplit.
	ID string
	// Check, if set, is called with the ring the change would make, built
	// from the newest ring, before that ring is proposed; an error refuses
	// the change and Change returns it as it is. It must not block.
	Check func(next *ring.Ring) error
}

// Result is the outcome of a change that was not refused.
type Result struct {
	// Version is the ring version the change made or, for a no-op, the
	// version of the ring it was judged against.
	Version uint64
	// Noop is true when the ring already was as the change asked (an
	// admit of a Joined member); Detail says so in words.
	Noop   bool
	Detail string
}

// Change decides c against the newest ring of the cluster and, unless it
// is refused or a no-op, makes it: the new ring is set in the Store by
// compare-and-set from the ring it was built on, then adopted here and
// pushed to every alive member. Change returns only once the change is in
// the register, so every later change, on any node, builds on it.
//
// Errors: ErrConflict (wrapped, saying with what) when the member's status
// does not allow the change; ErrNotAlive for an admit of a node memberlist
// does not report alive; whatever Check returned; ErrNotReady before
// SetStore or while this node holds no ring; ErrOutcomeUnknown when a
// proposal may or may not have been made and ctx ended before that could
// be learned; ErrClosed; ctx.Err(). Safe for concurrent use: the changes
// of one node are decided one at a time.
func (g *Gossip) Change(ctx context.Context, c Change) (Result, error) {
	switch c.Op {
	case OpSplit:
		if c.ID != "" {
			return Result{}, fmt.Errorf("%w: split names no member, got %q", ErrConflict, c.ID)
		}
		return g.decide(ctx, c)
	case OpLeave, OpRemove, OpAdmit:
	default:
		return Result{}, fmt.Errorf("%w: unknown op %v", ErrConflict, c.Op)
	}
	if c.ID == "" {
		return Result{}, fmt.Errorf("%w: %s of an empty member id", ErrConflict, c.Op)
	}
	return g.decide(ctx, c)
}

// SetStore sets the register that ring changes are decided on. Until it is
// called, Change returns ErrNotReady and the claimant joins nobody. Call it
// once, before changes are expected.
func (g *Gossip) SetStore(s Store) {
	g.store.Store(&s)
	g.wakeRun()
}

// evaluate judges c against base: it returns the ring c makes, or nil and
// why c is a no-op, or an error refusing it. alive is the set of nodes
// memberlist reports alive with valid metadata. It has no I/O.
func evaluate(self string, base *ring.Ring, c Change, alive map[string]meta) (next *ring.Ring, noop string, err error) {
	at := fmt.Sprintf("ring version %d", base.Version())
	m, inRing := base.Member(c.ID)
	conflict := func() (*ring.Ring, string, error) {
		return nil, "", &ConflictError{Op: c.Op, ID: c.ID, Status: m.Status, RingVersion: base.Version()}
	}
	switch c.Op {
	case OpLeave:
		if !inRing || m.Status != ring.Joined {
			return conflict()
		}
		next, err = base.Leave(c.ID)
	case OpRemove:
		if !inRing || m.Status == ring.Removed {
			return conflict()
		}
		next, err = base.Remove(c.ID)
	case OpAdmit:
		if inRing && m.Status == ring.Joined {
			return nil, fmt.Sprintf("%s is already joined (%s)", c.ID, at), nil
		}
		md, ok := alive[c.ID]
		if !ok {
			return nil, "", fmt.Errorf("admit %s: %w", c.ID, ErrNotAlive)
		}
		next, err = base.Join(ring.Member{ID: c.ID, Zone: md.Zone, Status: ring.Joined})
	case OpSplit:
		next, err = base.Split()
	case opClaim:
		var ids []string
		next, ids, err = claim(self, base, alive)
		if next == nil && err == nil {
			return nil, "nothing to join", nil
		}
		if next != nil {
			err = nil // join what could be joined; the rest waits for the next claim
			noop = fmt.Sprint(ids)
		}
	}
	if err != nil {
		return nil, "", fmt.Errorf("%s %s: %w", c.Op, c.ID, err)
	}
	if c.Check != nil {
		if err := c.Check(next); err != nil {
			return nil, "", err
		}
	}
	return next, noop, nil
}

// decide implements Change and the claimant's joins; see Change.
func (g *Gossip) decide(ctx context.Context, c Change) (Result, error) {
	sp := g.store.Load()
	if sp == nil {
		return Result{}, fmt.Errorf("%w: no store for ring changes yet", ErrNotReady)
	}
	st := *sp
	select {
	case <-g.stop:
		return Result{}, ErrClosed
	default:
	}
	select {
	case g.deciding <- struct{}{}:
		defer func() { <-g.deciding }()
	case <-ctx.Done():
		return Result{}, ctx.Err()
	case <-g.stop:
		return Result{}, ErrClosed
	}
	var id changeID
	_, _ = crand.Read(id[:]) // crypto/rand.Read never fails

	// An attempt whose compare-and-set ended in an error: the register it
	// expected, and the value it proposed.
	var pending *struct {
		found    bool
		expected []byte
		value    []byte
		version  uint64
	}
	var lastErr error // of the register, reported if ctx ends
	for attempt := 0; ; attempt++ {
		if attempt > 0 {
			if err := g.pause(ctx, attempt); err != nil {
				if lastErr != nil {
					err = fmt.Errorf("%w (last error from the ring register: %w)", err, lastErr)
				}
				if pending != nil {
					return Result{}, fmt.Errorf("%w: %s %s: the change to ring version %d may or may not have been made: %w",
						ErrOutcomeUnknown, c.Op, c.ID, pending.version, err)
				}
				return Result{}, fmt.Errorf("%s %s: %w", c.Op, c.ID, err)
			}
		}
		raw, found, err := st.Get(ctx)
		if err != nil {
			lastErr = err
			g.log.Debug("read ring record", "op", c.Op.String(), "err", err)
			continue
		}
		var rec record
		if found {
			if rec, err = decodeRecord(raw); err != nil {
				return Result{}, err
			}
			if err := g.adopt(ctx, rec.ring, false); err != nil {
				return Result{}, err
			}
		} else {
			local := g.Ring()
			if local.Version() == 0 {
				return Result{}, fmt.Errorf("%w: this node holds no ring yet", ErrNotReady)
			}
			// The first change of a cluster builds on the founder's
			// ring, which was never proposed.
			rec = record{ring: local}
		}

		var value []byte
		var next *ring.Ring
		var made string
		switch {
		case pending != nil && found == pending.found && bytes.Equal(raw, pending.expected):
			// The earlier proposal may still be on its way: propose the
			// same value again, never a different one.
			value, next = pending.value, nil
		case pending != nil:
			if v, ok := rec.made(id); ok {
				return Result{Version: v}, nil
			}
			if !rec.covers(pending.version) {
				return Result{}, fmt.Errorf("%w: %s %s: the register moved on too far to tell whether ring version %d was ours",
					ErrOutcomeUnknown, c.Op, c.ID, pending.version)
			}
			pending = nil // the register moved on without it: it can no longer be made
		}
		if value == nil {
			var noop string
			next, noop, err = evaluate(g.cfg.NodeID, rec.ring, c, g.vetted(ctx, rec.ring, c))
			if err != nil {
				return Result{Version: rec.ring.Version()}, err
			}
			if next == nil {
				return Result{Version: rec.ring.Version(), Noop: true, Detail: noop}, nil
			}
			made = noop
			if value, err = rec.with(next, id).encode(); err != nil {
				return Result{}, err
			}
		}
		var expected *[]byte
		if found {
			expected = &raw
		}
		swapped, err := st.CompareAndSet(ctx, expected, value)
		if err != nil {
			lastErr = err
			if pending == nil {
				pending = &struct {
					found    bool
					expected []byte
					value    []byte
					version  uint64
				}{found, raw, value, next.Version()}
			}
			g.log.Debug("propose ring", "op", c.Op.String(), "ring_version", pending.version, "err", err)
			continue
		}
		if !swapped {
			continue // another change came first: judge this one again against it
		}
		if next == nil { // a re-sent proposal
			dec, derr := decodeRecord(value)
			if derr != nil {
				return Result{}, derr
			}
			next = dec.ring
		}
		if err := g.adopt(ctx, next, true); err != nil {
			return Result{}, err
		}
		if c.Op == opClaim {
			g.log.Info("members joined", "members", made, "ring_version", next.Version())
		}
		return Result{Version: next.Version()}, nil
	}
}

// pause waits before the next attempt of a decision: a few milliseconds
// with jitter, growing to 200ms, so that deciders racing for the register
// spread out. It returns ctx's error or ErrClosed if either ends first.
func (g *Gossip) pause(ctx context.Context, attempt int) error {
	d := min(time.Duration(1<<min(attempt, 8))*time.Millisecond, 200*time.Millisecond)
	d = d/2 + rand.N(d/2+1)
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	case <-g.stop:
		return ErrClosed
	}
}

// adopt hands r to run, which installs it if it is newer than the current
// ring (and, with push, pushes it to every alive member), and waits until
// run has done so.
func (g *Gossip) adopt(ctx context.Context, r *ring.Ring, push bool) error {
	if !r.Newer(g.Ring()) {
		return nil
	}
	req := installReq{r: r, push: push, done: make(chan error, 1)}
	select {
	case g.installs <- req:
	case <-ctx.Done():
		return ctx.Err()
	case <-g.stop:
		return ErrClosed
	}
	select {
	case err := <-req.done:
		return err
	case <-ctx.Done():
		return ctx.Err()
	case <-g.stop:
		return ErrClosed
	}
}

// installReq asks run to install a decided ring. done has buffer 1 so run
// never blocks on a decider that gave up.
type installReq struct {
	r    *ring.Ring
	push bool
	done chan error
}

// vetted returns the nodes alive in memberlist that may be joined: every
// one already in base, and those absent from it that Deps.Vet admits. Only
// the candidates the change can join are vetted: the claim's, or the
// member an admit names.
func (g *Gossip) vetted(ctx context.Context, base *ring.Ring, c Change) map[string]meta {
	alive := g.aliveNodes()
	if g.vet == nil {
		return alive
	}
	for id, md := range alive {
		if _, inRing := base.Member(id); inRing || (c.Op != opClaim && id != c.ID) {
			continue
		}
		if err := g.vet(ctx, id, md.RPCAddr); err != nil {
			delete(alive, id)
			if g.vetLog == nil {
				g.vetLog = make(map[string]time.Time)
			}
			if now := time.Now(); now.Sub(g.vetLog[id]) > time.Minute {
				g.vetLog[id] = now
				g.log.Warn("not joining a node that failed the check", "peer", id, "rpc_addr", md.RPCAddr, "err", err)
			}
		}
	}
	return alive
}
