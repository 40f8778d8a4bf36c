package coordinator

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"slices"
	"sort"
	"sync"
	"sync/atomic"
	"time"

	"github.com/ringkv/ringkv/auth"
	"github.com/ringkv/ringkv/internal/workgroup"
	"github.com/ringkv/ringkv/replica"
	"github.com/ringkv/ringkv/ring"
)

// Coordinator serves client requests on one node: it places each key with
// the ring, fans the request out to the key's replicas and answers once the
// consistency level is met. It is safe for concurrent use.
type Coordinator struct {
	cfg     Config
	deps    Deps
	log     *slog.Logger
	metrics *metrics
	hints   *handoff // nil when HintedHandoff is off

	// lifetime bounds background work (replica writes beyond W, read
	// repair); cancelled by Close.
	lifetime context.Context
	cancel   context.CancelFunc
	// bg counts that background work; Close refuses more and waits for it.
	bg     workgroup.Group
	closed atomic.Bool
	// gate refuses client requests while draining and counts those in
	// flight (drain.go).
	gate drainGate
	// adm bounds the requests in flight (admission.go).
	adm *admission
	// rates bounds the rate of operations per prefix and per user
	// (ratelimit.go); nil without rules.
	rates *rateLimits

	// hooks stop transactions across partitions midway (tests only; set
	// before use).
	hooks xtxnHooks
	// batchHooks stop logged batches midway (tests only; set before use).
	batchHooks batchHooks
	// rng jitters the backoff of transactions' retries.
	rngMu sync.Mutex
	rng   *rand.Rand
}

// New returns a Coordinator. It returns an error if cfg or deps is invalid.
func New(cfg Config, deps Deps) (*Coordinator, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	if err := deps.validate(); err != nil {
		return nil, err
	}
	log := cfg.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	m, err := newMetrics(deps.Registerer)
	if err != nil {
		return nil, err
	}
	adm, err := newAdmission(cfg, deps.Registerer)
	if err != nil {
		return nil, err
	}
	adm.busy = deps.Busy
	names, _ := deps.Auth.(CallerNamer)
	rates, err := newRateLimits(cfg.RateLimits, names, deps.Registerer)
	if err != nil {
		return nil, err
	}
	var hints *handoff
	if cfg.HintedHandoff {
		if hints, err = newHandoff(cfg, deps, log); err != nil {
			return nil, err
		}
	}
	ctx, cancel := context.WithCancel(context.Background())
	c := &Coordinator{
		cfg:      cfg,
		deps:     deps,
		log:      log, // the embedding node adds node_id
		metrics:  m,
		hints:    hints,
		adm:      adm,
		rates:    rates,
		lifetime: ctx,
		cancel:   cancel,
		rng:      rand.New(rand.NewPCG(uint64(time.Now().UnixNano()), uint64(len(cfg.NodeID)))), //nolint:gosec // jitter, not secrets
	}
	if hints != nil {
		c.bg.Go(func() { hints.run(ctx) })
	}
	if deps.Groups != nil {
		c.bg.Go(func() { c.sweep(ctx) })
	}
	c.bg.Go(func() { c.replayBatches(ctx) })
	if adm.adaptive() {
		c.bg.Go(func() { adm.adapt(ctx) })
	}
	return c, nil
}

// Close cancels background replica writes and repairs and waits for them.
// Requests made after Close return ErrClosed.
func (c *Coordinator) Close() error {
	if c.closed.Swap(true) {
		return nil
	}
	c.cancel()
	c.bg.Close()
	return nil
}

// Pair is one live key and its value, as returned by List.
type Pair struct {
	Key   []byte
	Value []byte
}

// Set stores value under key at level; WithTTL or WithExpiresAt makes it
// expire (see ttl.go). It returns an error wrapping ErrInvalidArgument for
// bad input (a bad TTL included) and an *UnavailableError when fewer than
// the level's replicas acknowledged before ctx ended; in that case the
// write may still have reached some replicas.
func (c *Coordinator) Set(ctx context.Context, key, value []byte, level Level, opts ...WriteOption) error {
	start := time.Now()
	wo, err := applyWriteOptions(opts)
	if err == nil {
		err = c.checkKey(ctx, key)
	}
	if err == nil && len(value) > c.cfg.MaxValueBytes {
		err = fmt.Errorf("%w: value is %d bytes, limit %d", ErrInvalidArgument, len(value), c.cfg.MaxValueBytes)
	}
	if err == nil {
		err = c.allow(ctx, auth.OpWrite, key)
	}
	switch {
	case err != nil:
	case level == Linearizable:
		err = c.linPut(ctx, key, value, false, wo.expiry(c.deps.Clock.Now()))
	default:
		err = c.write(ctx, "set", key, replica.Record{Value: value}, level, wo)
	}
	c.metrics.observe("set", level, start, err)
	return err
}

// Delete removes key at level by writing a tombstone. Errors are as for Set.
// Deleting an absent key succeeds.
func (c *Coordinator) Delete(ctx context.Context, key []byte, level Level) error {
	start := time.Now()
	err := c.checkKey(ctx, key)
	if err == nil {
		err = c.allow(ctx, auth.OpWrite, key)
	}
	switch {
	case err != nil:
	case level == Linearizable:
		err = c.linPut(ctx, key, nil, true, time.Time{})
	default:
		err = c.write(ctx, "delete", key, replica.Record{Tombstone: true}, level)
	}
	c.metrics.observe("delete", level, start, err)
	return err
}

// Get returns key's value at level and whether it exists. Replicas that
// answered with an older record are repaired before Get returns. Errors:
// ErrInvalidArgument, *UnavailableError, ErrCorrupt.
func (c *Coordinator) Get(ctx context.Context, key []byte, level Level) (value []byte, found bool, err error) {
	rec, found, err := c.get(ctx, key, level)
	if err != nil || !found {
		return nil, false, err
	}
	return rec.Value, true, nil
}

// get is Get returning the live record.
func (c *Coordinator) get(ctx context.Context, key []byte, level Level) (rec replica.Record, found bool, err error) {
	start := time.Now()
	defer func() { c.metrics.observe("get", level, start, err) }()
	if err := c.checkKey(ctx, key); err != nil {
		return rec, false, err
	}
	if err := c.allow(ctx, auth.OpRead, key); err != nil {
		return rec, false, err
	}
	if level == Linearizable {
		return c.linGet(ctx, key)
	}
	return c.read(ctx, key, level)
}

// now is the node's physical time, by which this coordinator judges
// expiry (Deps.Clock's).
func (c *Coordinator) now() time.Time { return c.deps.Clock.Physical() }

func (c *Coordinator) checkKey(ctx context.Context, key []byte) error {
	switch {
	case c.closed.Load():
		return ErrClosed
	case len(key) == 0:
		return fmt.Errorf("%w: key is empty", ErrInvalidArgument)
	case len(key) > c.cfg.MaxKeyBytes:
		return fmt.Errorf("%w: key is %d bytes, limit %d", ErrInvalidArgument, len(key), c.cfg.MaxKeyBytes)
	case IsReserved(key) && !isSystem(ctx):
		return errReservedKey
	}
	return nil
}

func (c *Coordinator) withTimeout(ctx context.Context) (context.Context, context.CancelFunc) {
	if _, ok := ctx.Deadline(); ok {
		return context.WithCancel(ctx)
	}
	return context.WithTimeout(ctx, c.cfg.RequestTimeout)
}

// placement returns the id of key's partition (ring.Ring.IDOf) and its
// preference list.
func (c *Coordinator) placement(op string, key []byte, level Level) (uint32, []string, error) {
	r := c.deps.Ring.Ring()
	if r == nil || r.ActiveCount() == 0 {
		return 0, nil, &UnavailableError{Op: op, Level: level, Required: 1, Cause: errors.New("node has not joined a ring yet")}
	}
	id := r.IDOf(key)
	return id, r.ReplicasOf(id), nil
}

// write stamps rec with a fresh HLC timestamp (and, given a TTL in opts,
// the expiry that timestamp's wall time plus the TTL makes) and merges it
// into every replica of key's partition, answering after level's count of
// acks. The replicas beyond that count keep receiving the write in the
// background, bounded by ReplicaWriteTimeout. A replica whose merge fails (or times
// out) gets a hint (hints.go), which does not count as an ack.
func (c *Coordinator) write(ctx context.Context, op string, key []byte, rec replica.Record, level Level, opts ...writeOptions) error {
	p, replicas, err := c.placement(op, key, level)
	if err != nil {
		return err
	}
	rec.Timestamp = c.deps.Clock.Now()
	for _, o := range opts {
		rec.ExpiresAt = o.expiry(rec.Timestamp)
	}
	rec.NodeID = c.cfg.NodeID
	return c.writeEntry(ctx, op, replicas, replica.Entry{Partition: p, Key: key, Record: rec}, level)
}

// writeEntry merges e, already stamped, into every replica in replicas,
// answering after level's count of acks (see write). Merging the same
// entry again is harmless: a logged batch's replay relies on it.
func (c *Coordinator) writeEntry(ctx context.Context, op string, replicas []string, e replica.Entry, level Level) error {
	entry := []replica.Entry{e}
	need := level.required(len(replicas))

	ctx, cancel := c.withTimeout(ctx)
	defer cancel()
	// The replica writes outlive the request: a slow replica still gets the
	// write after W acks have answered the client. Each replica's answer
	// comes back through a callback (no goroutine per replica); the last
	// one releases bg.
	bg, bgCancel := context.WithTimeout(c.lifetime, c.cfg.ReplicaWriteTimeout)
	fan := &fanOut{results: make(chan error, len(replicas)), release: bgCancel}
	fan.pending.Store(int32(len(replicas)))
	if !c.bg.Add(len(replicas)) {
		bgCancel()
		return ErrClosed
	}
	// Remote replicas first: handing the local merge to the store's
	// committer may wait for the batch it is committing.
	first := localIndex(replicas, c.cfg.NodeID) + 1
	for i := range replicas {
		node := replicas[(first+i)%len(replicas)]
		c.mergeAsync(bg, node, entry, func(err error) {
			fan.results <- err
			if err != nil && node != c.cfg.NodeID && c.hints != nil {
				// Stores durably: not on the caller's goroutine. Refused
				// once Close has begun (the replica's miss is then left
				// to anti-entropy).
				c.bg.Go(func() { c.hint(node, entry) })
			}
			if fan.pending.Add(-1) == 0 {
				fan.release()
			}
			c.bg.Done()
		})
	}

	// Collect until W acks, or every replica answered (so the error can say
	// how many acked), or the deadline.
	acked, failed := 0, 0
	var last error
	for acked < need && acked+failed < len(replicas) {
		select {
		case err := <-fan.results:
			if err != nil {
				failed++
				last = err
				c.log.Debug("replica write failed", "op", op, "err", err)
				continue
			}
			acked++
		case <-ctx.Done():
			last = ctx.Err()
			return &UnavailableError{Op: op, Level: level, Required: need, Answered: acked, Replicas: len(replicas), Cause: last}
		}
	}
	if acked < need {
		return &UnavailableError{Op: op, Level: level, Required: need, Answered: acked, Replicas: len(replicas), Cause: last}
	}
	return nil
}

// fanOut gathers the answers of one write's replicas. results has room
// for every answer; release ends the replica writes' context once all
// have answered.
type fanOut struct {
	results chan error
	pending atomic.Int32
	release context.CancelFunc
}

// localIndex returns the index of self in nodes, or -1.
func localIndex(nodes []string, self string) int {
	for i, n := range nodes {
		if n == self {
			return i
		}
	}
	return -1
}

// asyncMerger is a Transport that can merge without a goroutine per call
// (RPCTransport.MergeAsync).
type asyncMerger interface {
	MergeAsync(ctx context.Context, node string, entries []replica.Entry, done func(error)) error
}

// mergeAsync merges entries into node's replica and calls done exactly once
// with the outcome mergeInto would return. done must not block: it may run
// on the store's or the transport's goroutines, or on the caller's.
func (c *Coordinator) mergeAsync(ctx context.Context, node string, entries []replica.Entry, done func(error)) {
	var label string
	var submit func(ctx context.Context, entries []replica.Entry, done func(error)) error
	if node == c.cfg.NodeID {
		label, submit = "local merge", c.deps.Store.MergeAsync
	} else if am, ok := c.deps.Transport.(asyncMerger); ok {
		label = "merge on " + node
		submit = func(ctx context.Context, entries []replica.Entry, done func(error)) error {
			return am.MergeAsync(ctx, node, entries, done)
		}
	} else {
		go func() { done(c.mergeInto(ctx, node, entries)) }()
		return
	}
	wrapped := func(err error) {
		if err != nil {
			err = fmt.Errorf("%s: %w", label, err) // as mergeInto words it
		}
		done(err)
	}
	if err := submit(ctx, entries, wrapped); err != nil {
		wrapped(err)
	}
}

func (c *Coordinator) mergeInto(ctx context.Context, node string, entries []replica.Entry) error {
	if node == c.cfg.NodeID {
		if err := c.deps.Store.Merge(ctx, entries); err != nil {
			return fmt.Errorf("local merge: %w", err)
		}
		return nil
	}
	if err := c.deps.Transport.Merge(ctx, node, entries); err != nil {
		return fmt.Errorf("merge on %s: %w", node, err)
	}
	return nil
}

func (c *Coordinator) readFrom(ctx context.Context, node string, p uint32, key []byte) (replica.Record, error) {
	if node == c.cfg.NodeID {
		rec, err := c.deps.Store.Get(p, key)
		if err != nil {
			return rec, fmt.Errorf("local read: %w", err)
		}
		return rec, nil
	}
	rec, err := c.deps.Transport.Read(ctx, node, p, key)
	if err != nil {
		return rec, fmt.Errorf("read on %s: %w", node, err)
	}
	return rec, nil
}

// readOrder orders a preference list for reads: this node first (no network
// hop), then members believed alive, those that drain (Liveness with a
// Draining method) after the others, then the rest, each in preference
// order.
func (c *Coordinator) readOrder(replicas []string) []string {
	out := make([]string, 0, len(replicas))
	var draining, dead []string
	ds, _ := c.deps.Liveness.(drainingSource)
	for _, n := range replicas {
		if n == c.cfg.NodeID {
			out = append(out, n)
		}
	}
	for _, n := range replicas {
		switch {
		case n == c.cfg.NodeID:
		case c.deps.Liveness != nil && !c.deps.Liveness.Alive(n):
			dead = append(dead, n)
		case ds != nil && ds.Draining(n):
			draining = append(draining, n)
		default:
			out = append(out, n)
		}
	}
	return append(append(out, draining...), dead...)
}

// drainingSource is an optional ability of Deps.Liveness: it tells which
// members drain (they stop soon), so that reads ask them last.
type drainingSource interface {
	Draining(nodeID string) bool
}

type readReply struct {
	node  string
	rec   replica.Record
	found bool
	err   error
}

// read asks replicas for key until level's count have answered, asking one
// more replica whenever one fails or SpeculativeDelay passes without enough
// answers. It returns the newest record among the answers (found is false
// when there is none, or it is a tombstone or expired) after repairing the
// answering replicas that were behind; replicas that answer after that are
// repaired in the background.
func (c *Coordinator) read(ctx context.Context, key []byte, level Level) (replica.Record, bool, error) {
	p, replicas, err := c.placement("get", key, level)
	if err != nil {
		return replica.Record{}, false, err
	}
	need := level.required(len(replicas))
	if need == 1 && c.deps.Store != nil && slices.Contains(replicas, c.cfg.NodeID) {
		// One answer, and this node holds a replica: the path below would
		// ask it first and return its answer alone; read it in place,
		// without that path's contexts, timer, channel and goroutine.
		rec, err := c.deps.Store.Get(p, key)
		switch {
		case errors.Is(err, replica.ErrNotFound):
			return replica.Record{}, false, nil
		case err == nil:
			return rec, rec.Live(c.now()), nil
		}
		// The local replica failed (corrupt, closing): ask the others
		// below, as the general path does after a failed answer.
	}
	order := c.readOrder(replicas)

	ctx, cancel := c.withTimeout(ctx)
	defer cancel()
	// Replica reads outlive the request (bounded by ReplicaWriteTimeout) so
	// that replicas answering after the level is met are still repaired.
	bg, bgCancel := context.WithTimeout(c.lifetime, c.cfg.ReplicaWriteTimeout)
	handedOff := false
	defer func() {
		if !handedOff {
			bgCancel()
		}
	}()
	replies := make(chan readReply, len(order)) // one send per asked replica, never blocks
	next, inflight := 0, 0
	ask := func() {
		node := order[next]
		next++
		inflight++
		if !c.bg.Go(func() {
			rec, err := c.readFrom(bg, node, p, key)
			if errors.Is(err, replica.ErrNotFound) {
				replies <- readReply{node: node}
				return
			}
			replies <- readReply{node: node, rec: rec, found: err == nil, err: err}
		}) {
			replies <- readReply{node: node, err: ErrClosed}
		}
	}
	for next < need {
		ask()
	}
	timer := time.NewTimer(c.cfg.SpeculativeDelay)
	defer timer.Stop()

	var answers []readReply
	corrupt := 0
	var last error
	for len(answers) < need {
		if inflight == 0 && next == len(order) {
			break
		}
		select {
		case r := <-replies:
			inflight--
			if r.err != nil {
				last = r.err
				if errors.Is(r.err, replica.ErrCorrupt) {
					corrupt++
				}
				if next < len(order) {
					ask()
				}
				continue
			}
			answers = append(answers, r)
		case <-timer.C:
			if next < len(order) {
				ask()
				timer.Reset(c.cfg.SpeculativeDelay)
			}
		case <-ctx.Done():
			last = ctx.Err()
			next = len(order)
			inflight = 0
		}
	}
	late := inflight // replies still to come
	if len(answers) < need {
		if corrupt > 0 && corrupt+len(answers) == len(order) && len(answers) == 0 {
			return replica.Record{}, false, fmt.Errorf("get: %w", ErrCorrupt)
		}
		return replica.Record{}, false, &UnavailableError{Op: "get", Level: level, Required: need, Answered: len(answers), Replicas: len(replicas), Cause: last}
	}

	var newest replica.Record
	have := false
	for _, a := range answers {
		if a.found && (!have || a.rec.Newer(newest)) {
			newest, have = a.rec, true
		}
	}
	if !have {
		return replica.Record{}, false, nil
	}
	c.repair(ctx, p, key, newest, answers)
	if late > 0 {
		handedOff = c.bg.Go(func() {
			defer bgCancel()
			for range late {
				r := <-replies
				if r.err == nil {
					c.repair(bg, p, key, newest, []readReply{r})
				}
			}
		})
	}
	return newest, newest.Live(c.now()), nil
}

// repair merges newest into every answering replica that was behind and
// waits for those merges (bounded by ctx), so that a read at this level
// followed by another never goes backwards. Repair failures are logged, not
// returned: the read itself succeeded.
func (c *Coordinator) repair(ctx context.Context, p uint32, key []byte, newest replica.Record, answers []readReply) {
	var stale []string
	for _, a := range answers {
		if !a.found || newest.Newer(a.rec) {
			stale = append(stale, a.node)
		}
	}
	if len(stale) == 0 {
		return
	}
	entry := []replica.Entry{{Partition: p, Key: key, Record: newest}}
	var wg sync.WaitGroup
	for _, node := range stale {
		wg.Add(1)
		if !c.bg.Go(func() {
			defer wg.Done()
			if err := c.mergeInto(ctx, node, entry); err != nil {
				c.metrics.readRepairs.WithLabelValues("failed").Inc()
				c.log.Debug("read repair failed", "peer", node, "partition", p, "err", err)
				return
			}
			c.metrics.readRepairs.WithLabelValues("repaired").Inc()
		}) {
			wg.Done() // closing: the repair is left to anti-entropy
		}
	}
	wg.Wait()
}

// List returns up to limit live pairs whose keys have prefix, sorted by key,
// gathered from every partition at level (each partition read from level's
// count of its replicas, newest record per key winning). limit 0 means
// DefaultListLimit. Errors: ErrInvalidArgument, *UnavailableError.
func (c *Coordinator) List(ctx context.Context, prefix []byte, limit int, level Level) (pairs []Pair, err error) {
	return c.ListFrom(ctx, prefix, nil, limit, level)
}

// ListFrom is List starting at key start (inclusive) instead of at
// prefix's first key: a start before prefix is prefix, a start that does
// not have prefix after it ends the list. Paging with start set to the
// last key returned plus a zero byte visits every key once, whatever the
// ring does meanwhile (the position is a key, not a partition). Errors as
// for List.
func (c *Coordinator) ListFrom(ctx context.Context, prefix, from []byte, limit int, level Level) (pairs []Pair, err error) {
	start := time.Now()
	defer func() { c.metrics.observe("list", level, start, err) }()
	switch {
	case c.closed.Load():
		return nil, ErrClosed
	case limit < 0 || limit > c.cfg.MaxListLimit:
		return nil, fmt.Errorf("%w: limit %d outside 0..%d", ErrInvalidArgument, limit, c.cfg.MaxListLimit)
	case len(prefix) > c.cfg.MaxKeyBytes:
		return nil, fmt.Errorf("%w: prefix is %d bytes, limit %d", ErrInvalidArgument, len(prefix), c.cfg.MaxKeyBytes)
	case len(from) > c.cfg.MaxKeyBytes+1:
		return nil, fmt.Errorf("%w: start is %d bytes, limit %d", ErrInvalidArgument, len(from), c.cfg.MaxKeyBytes+1)
	case IsReserved(prefix) && !isSystem(ctx):
		return nil, errReservedKey
	case limit == 0:
		limit = c.cfg.DefaultListLimit
	}
	if err := c.allow(ctx, auth.OpList, prefix); err != nil {
		return nil, err
	}
	r := c.deps.Ring.Ring()
	if r == nil || r.ActiveCount() == 0 {
		return nil, &UnavailableError{Op: "list", Level: level, Required: 1, Cause: errors.New("node has not joined a ring yet")}
	}
	page := func(ctx context.Context, from []byte) ([]keyedRecord, []byte, error) {
		return c.listPage(ctx, r, prefix, from, level)
	}
	if level == Linearizable {
		if c.deps.Groups == nil || c.deps.Lin == nil {
			return nil, &UnavailableError{Op: "list", Level: level, Required: 1, Cause: errors.New("this node runs no raft groups")}
		}
		page = func(ctx context.Context, from []byte) ([]keyedRecord, []byte, error) {
			return c.linListPage(ctx, r, prefix, from)
		}
	}
	if bytes.Compare(from, prefix) < 0 {
		from = prefix
	}
	if !bytes.HasPrefix(from, prefix) {
		return nil, nil // every key with prefix sorts before from
	}
	return c.listPages(ctx, from, limit, page)
}

// listPages runs List's rounds: page returns the records of one round
// from `from` on, in key order up to its cutoff (nil: the scan is done);
// live pairs are collected until limit.
func (c *Coordinator) listPages(ctx context.Context, from []byte, limit int, page func(ctx context.Context, from []byte) ([]keyedRecord, []byte, error)) (pairs []Pair, err error) {
	ctx, cancel := c.withTimeout(ctx)
	defer cancel()
	now := c.now()
	hideReserved := !isSystem(ctx)
	for len(pairs) < limit {
		recs, cutoff, err := page(ctx, from)
		if err != nil {
			return nil, err
		}
		for _, kr := range recs {
			if kr.rec.Live(now) && (!hideReserved || !IsReserved(kr.key)) {
				pairs = append(pairs, Pair{Key: kr.key, Value: kr.rec.Value})
				if len(pairs) == limit {
					break
				}
			}
		}
		if cutoff == nil {
			break
		}
		from = append(bytes.Clone(cutoff), 0) // the smallest key after cutoff
	}
	return pairs, nil
}

type keyedRecord struct {
	key []byte
	rec replica.Record
}

// listPage runs one round of List: every partition is scanned from `from` on
// level's count of replicas. It returns the merged records up to cutoff in
// key order, and cutoff: the largest key every replica's answer is complete
// up to (nil when no answer was truncated, i.e. the scan is done).
func (c *Coordinator) listPage(ctx context.Context, r *ring.Ring, prefix, from []byte, level Level) ([]keyedRecord, []byte, error) {
	ids := r.IDs()
	// per partition (by index in r): replicas in read order, how many
	// answered, how far we got
	type partState struct {
		order    []string
		next     int // next replica in order to ask
		answered int // replicas that answered
		asked    int // replicas asked in the current round
		need     int
	}
	states := make([]partState, len(ids))
	for p, id := range ids {
		reps := r.ReplicasOf(id)
		states[p] = partState{order: c.readOrder(reps), need: level.required(len(reps))}
	}
	merged := make(map[string]replica.Record)
	var cutoff []byte
	var last error
	for {
		// Assign each partition still short of answers to its next replicas.
		byNode := make(map[string][]uint32)
		for p := range states {
			s := &states[p]
			for s.asked = 0; s.answered+s.asked < s.need && s.next < len(s.order); s.next++ {
				byNode[s.order[s.next]] = append(byNode[s.order[s.next]], ids[p])
				s.asked++
			}
		}
		if len(byNode) == 0 {
			break
		}
		type scanReply struct {
			node    string
			results []ScanResult
			err     error
		}
		replies := make(chan scanReply, len(byNode)) // one send per node, never blocks
		for node, ps := range byNode {
			req := ScanRequest{Partitions: ps, Prefix: prefix, Start: from, Limit: c.cfg.ListPageSize}
			if !c.bg.Go(func() {
				res, err := c.scanOn(ctx, node, req)
				replies <- scanReply{node: node, results: res, err: err}
			}) {
				replies <- scanReply{node: node, err: ErrClosed}
			}
		}
		for range byNode {
			rep := <-replies
			if rep.err != nil {
				last = rep.err
				continue
			}
			for _, res := range rep.results {
				p, ok := r.Index(res.Partition)
				if !ok {
					continue // not a partition asked for: no answer
				}
				states[p].answered++
				for i, k := range res.Keys {
					if old, ok := merged[string(k)]; !ok || res.Records[i].Newer(old) {
						merged[string(k)] = res.Records[i]
					}
				}
				if res.Truncated && len(res.Keys) > 0 {
					lastKey := res.Keys[len(res.Keys)-1]
					if cutoff == nil || bytes.Compare(lastKey, cutoff) < 0 {
						cutoff = lastKey
					}
				}
			}
		}
	}
	for p := range states {
		if s := states[p]; s.answered < s.need {
			return nil, nil, &UnavailableError{Op: "list", Level: level, Required: s.need, Answered: s.answered, Replicas: len(s.order), Cause: last}
		}
	}
	out := make([]keyedRecord, 0, len(merged))
	for k, rec := range merged {
		if cutoff != nil && k > string(cutoff) {
			continue
		}
		out = append(out, keyedRecord{key: []byte(k), rec: rec})
	}
	sort.Slice(out, func(i, j int) bool { return bytes.Compare(out[i].key, out[j].key) < 0 })
	return out, cutoff, nil
}

func (c *Coordinator) scanOn(ctx context.Context, node string, req ScanRequest) ([]ScanResult, error) {
	if node == c.cfg.NodeID {
		return scanLocal(c.deps.Store, req)
	}
	res, err := c.deps.Transport.Scan(ctx, node, req)
	if err != nil {
		return nil, fmt.Errorf("scan on %s: %w", node, err)
	}
	return res, nil
}
