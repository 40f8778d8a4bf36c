package resp

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"
	"time"

	"github.com/tidwall/redcon"

	"github.com/ringkv/ringkv/consensus"
	"github.com/ringkv/ringkv/coordinator"
	"github.com/ringkv/ringkv/replica"
)

// MULTI / EXEC / DISCARD / WATCH / UNWATCH.
//
// A queue of commands runs as one linearizable transaction, whatever the
// connection's consistency level, with optimistic concurrency:
//
//  1. The queue runs against a snapshot (execStore): the keys it reads
//     before writing them are read at linearizable, as one read-only
//     transaction together with the WATCHed keys. The commands run as
//     they do outside MULTI (the same code), their writes kept in the
//     execStore, so a queue may name a key many times: a GET after a
//     SET of the same key answers the value set, an INCR after another
//     counts from it, and only each key's final state is written.
//  2. If the queue wrote nothing, the snapshot is the answer. Otherwise
//     one transaction writes every key's final state if every key read
//     and every WATCHed key still has the version the snapshot (or WATCH)
//     saw; else it reads them again (its failure branch) and step 1
//     starts over on the new snapshot, at most Config.CASRetries times.
//  3. A WATCHed key whose version changed since WATCH aborts EXEC with a
//     null reply, as in Redis.
//
// The answer is every command's reply as if the queue ran alone at the
// transaction's commit point: strictly serializable with other
// transactions and linearizable operations. As in Redis, a command that
// fails when it runs (INCR of a word) answers its error and the others
// still take effect, and a command refused while queueing (unknown, wrong
// arity, or not a data command) discards the whole transaction at EXEC
// (EXECABORT). Commands that scan (SCAN, KEYS, DBSIZE) and connection
// commands are refused inside MULTI. Expiries keep their deadline as a
// duration from when the transaction is sent (the transaction's sets
// carry a TTL).

// Bounds on one connection's queue, so that MULTI cannot hold unbounded
// memory.
const (
	maxQueued = 1024
)

// multiState is a connection's transaction state; only its connection's
// goroutine touches it.
type multiState struct {
	active  bool
	dirty   bool // a command was refused while queueing: EXEC aborts
	queue   []redcon.Command
	bytes   int
	watched map[string]replica.Timestamp // WATCHed key -> version seen (0: absent)
}

func (m *multiState) reset() {
	m.active, m.dirty, m.queue, m.bytes = false, false, nil, 0
}

func (m *multiState) unwatch() { m.watched = nil }

// queueing answers cmd when the connection is inside MULTI: it reports
// false for the commands that run at once (EXEC, DISCARD, MULTI, WATCH,
// UNWATCH, QUIT) and queues any other, answering QUEUED or, for a command
// that cannot be queued, an error that dooms the transaction.
func (s *Server) queueing(c redcon.Conn, sess *session, name string, cmd redcon.Command) bool {
	if !sess.multi.active {
		return false
	}
	switch name {
	case "exec", "discard", "multi", "watch", "unwatch", "quit":
		return false
	}
	def, ok := s.commands[name]
	switch {
	case !ok:
		sess.multi.dirty = true
		return false // dispatch answers "unknown command"
	case (def.arity > 0 && len(cmd.Args) != def.arity) || (def.arity < 0 && len(cmd.Args) < -def.arity):
		sess.multi.dirty = true
		return false // dispatch answers the arity error
	case !def.data:
		sess.multi.dirty = true
		c.WriteError("ERR ringkv: '" + name + "' is not supported inside MULTI (only commands on keys are)")
		return true
	}
	size := 0
	for _, a := range cmd.Args {
		size += len(a)
	}
	if len(sess.multi.queue) >= maxQueued || sess.multi.bytes+size > s.cfg.MaxRequestBytes {
		sess.multi.dirty = true
		c.WriteError(fmt.Sprintf("ERR ringkv: a transaction holds at most %d commands and %d bytes", maxQueued, s.cfg.MaxRequestBytes))
		return true
	}
	args := make([][]byte, len(cmd.Args))
	for i, a := range cmd.Args {
		args[i] = bytes.Clone(a) // redcon reuses its read buffer
	}
	sess.multi.queue = append(sess.multi.queue, redcon.Command{Args: args})
	sess.multi.bytes += size
	c.WriteString("QUEUED")
	return true
}

func cmdMulti(_ *Server, c redcon.Conn, sess *session, _ [][]byte) {
	if sess.multi.active {
		c.WriteError("ERR MULTI calls can not be nested")
		return
	}
	sess.multi.active = true
	c.WriteString("OK")
}

func cmdDiscard(_ *Server, c redcon.Conn, sess *session, _ [][]byte) {
	if !sess.multi.active {
		c.WriteError("ERR DISCARD without MULTI")
		return
	}
	sess.multi.reset()
	sess.multi.unwatch()
	c.WriteString("OK")
}

func cmdUnwatch(_ *Server, c redcon.Conn, sess *session, _ [][]byte) {
	sess.multi.unwatch()
	c.WriteString("OK")
}

// cmdWatch reads the keys' versions at linearizable (one read-only
// transaction); a key already watched keeps the version first seen.
func cmdWatch(s *Server, c redcon.Conn, sess *session, args [][]byte) {
	if sess.multi.active {
		c.WriteError("ERR WATCH inside MULTI is not allowed")
		return
	}
	var keys [][]byte
	for _, k := range args {
		if _, ok := sess.multi.watched[string(k)]; !ok {
			keys = append(keys, k)
		}
	}
	if len(sess.multi.watched)+len(keys) > consensus.MaxTxnKeys {
		c.WriteError(fmt.Sprintf("ERR ringkv: at most %d keys may be watched", consensus.MaxTxnKeys))
		return
	}
	ctx, cancel := s.ctx(sess)
	defer cancel()
	snap, err := s.readSnapshot(ctx, keys)
	if err != nil {
		writeErr(c, err)
		return
	}
	if sess.multi.watched == nil {
		sess.multi.watched = make(map[string]replica.Timestamp, len(keys))
	}
	for k, v := range snap {
		if _, ok := sess.multi.watched[k]; !ok {
			sess.multi.watched[k] = v.version
		}
	}
	c.WriteString("OK")
}

// snapItem is a key as a snapshot read it.
type snapItem struct {
	item    coordinator.Item
	found   bool // live
	version replica.Timestamp
}

// readSnapshot reads keys at linearizable, as one read-only transaction.
func (s *Server) readSnapshot(ctx context.Context, keys [][]byte) (map[string]snapItem, error) {
	out := make(map[string]snapItem, len(keys))
	if len(keys) == 0 {
		return out, nil
	}
	req := &coordinator.TxnRequest{Success: make([]coordinator.TxnOp, 0, len(keys))}
	seen := make(map[string]bool, len(keys))
	for _, k := range keys {
		if !seen[string(k)] {
			seen[string(k)] = true
			req.Success = append(req.Success, coordinator.TxnOp{Kind: consensus.OpGet, Key: k})
		}
	}
	res, err := s.deps.Store.Txn(ctx, req)
	if err != nil {
		return nil, err //nolint:wrapcheck // the store's errors are answered as they are
	}
	if len(res.Results) != len(req.Success) {
		return nil, fmt.Errorf("ringkv: a read of %d keys answered %d results", len(req.Success), len(res.Results))
	}
	fillSnapshot(out, req.Success, res.Results, time.Now())
	return out, nil
}

// fillSnapshot records the gets ops answered by results into snap.
func fillSnapshot(snap map[string]snapItem, ops []coordinator.TxnOp, results []consensus.OpResult, now time.Time) {
	for i, op := range ops {
		r := results[i]
		it := snapItem{}
		if r.Found && r.Record.Live(now) {
			it = snapItem{item: coordinator.Item{Value: r.Record.Value, ExpiresAt: r.Record.ExpiresAt}, found: true, version: r.Record.Timestamp}
		}
		snap[string(op.Key)] = it
	}
}

// errWatchedChanged ends an EXEC whose WATCHed key changed.
var errWatchedChanged = errors.New("resp: a watched key changed")

func cmdExec(s *Server, c redcon.Conn, sess *session, _ [][]byte) {
	if !sess.multi.active {
		c.WriteError("ERR EXEC without MULTI")
		return
	}
	queue, dirty, watched := sess.multi.queue, sess.multi.dirty, sess.multi.watched
	sess.multi.reset()
	sess.multi.unwatch()
	if dirty {
		c.WriteError("EXECABORT Transaction discarded because of previous errors.")
		return
	}
	ctx, cancel := s.ctx(sess)
	defer cancel()
	out, err := s.exec(ctx, c, sess, queue, watched)
	switch {
	case errors.Is(err, errWatchedChanged):
		if sess.resp3 {
			c.WriteRaw([]byte("_\r\n"))
		} else {
			c.WriteRaw([]byte("*-1\r\n"))
		}
	case err != nil:
		writeErr(c, err)
	default:
		c.WriteArray(len(queue))
		c.WriteRaw(out)
	}
}

// exec runs queue as one transaction and returns the replies' bytes.
func (s *Server) exec(ctx context.Context, c redcon.Conn, sess *session, queue []redcon.Command, watched map[string]replica.Timestamp) ([]byte, error) {
	snap := make(map[string]snapItem)
	// The WATCHed keys are read with the queue's first reads: a version
	// changed since WATCH aborts even a queue that reads nothing.
	var missing [][]byte
	for k := range watched {
		missing = append(missing, []byte(k))
	}
	for attempt := 0; ; attempt++ {
		if attempt > 0 {
			if attempt >= s.cfg.CASRetries {
				return nil, errContended
			}
			if err := backoff(ctx, attempt-1); err != nil {
				return nil, err
			}
		}
		if len(missing) > 0 {
			got, err := s.readSnapshot(ctx, missing)
			if retryable(err) {
				continue
			}
			if err != nil {
				return nil, err
			}
			for k, v := range got {
				snap[k] = v
			}
		}
		for k, v := range watched {
			if it, ok := snap[k]; ok && it.version != v {
				return nil, errWatchedChanged
			}
		}
		st := newExecStore(snap)
		out := s.runQueue(st, c, sess, queue)
		if missing = st.missingKeys(); len(missing) > 0 {
			attempt-- // not a lost round: read them and run the queue again
			continue
		}
		req := st.commit(watched)
		if req == nil {
			return out, nil // nothing written: the snapshot is the answer
		}
		res, err := s.deps.Store.Txn(ctx, req)
		switch {
		case retryable(err):
			continue // nothing written: try again, within the command's timeout
		case err != nil:
			return nil, err //nolint:wrapcheck // the store's errors are answered as they are
		case res.Succeeded:
			return out, nil
		case len(res.Results) != len(req.Failure):
			return nil, fmt.Errorf("ringkv: a transaction's failure branch of %d gets answered %d results", len(req.Failure), len(res.Results))
		}
		fillSnapshot(snap, req.Failure, res.Results, time.Now())
	}
}

// retryable reports a transaction's error that promises nothing was
// applied and may pass: it lost to other transactions (ErrConflict), or
// no leader answered in time (an UnavailableError).
func retryable(err error) bool {
	var unavailable *coordinator.UnavailableError
	return errors.Is(err, coordinator.ErrConflict) || errors.As(err, &unavailable)
}

// runQueue runs every queued command against st (the commands' own code,
// on a Server whose store is st) and returns their replies.
func (s *Server) runQueue(st *execStore, c redcon.Conn, sess *session, queue []redcon.Command) []byte {
	ex := &Server{cfg: s.cfg, deps: Deps{Store: st}, log: s.log, commands: s.commands, lifetime: s.lifetime}
	w := &bufConn{Conn: c, w: redcon.NewWriter(nil)}
	for _, cmd := range queue {
		def := s.commands[strings.ToLower(string(cmd.Args[0]))]
		def.run(ex, w, sess, cmd.Args[1:])
	}
	return w.w.Buffer()
}

// pendingWrite is a key's state after the queue's writes.
type pendingWrite struct {
	value     []byte
	expiresAt time.Time // zero: never
	deleted   bool
}

// execStore is the Store EXEC's commands run against: reads come from
// the snapshot (or from the queue's own earlier writes), writes stay in
// memory until commit. A read of a key the snapshot lacks answers absent
// and is noted, so that EXEC reads it and runs the queue again. The
// commands of one queue run one at a time, but MGET, MSET and DEL fan
// out over goroutines, hence the mutex.
type execStore struct {
	mu      sync.Mutex
	now     time.Time
	snap    map[string]snapItem
	read    map[string]bool // keys read before the queue wrote them
	missing map[string]bool
	writes  map[string]*pendingWrite
	order   []string // written keys, first write first
}

func newExecStore(snap map[string]snapItem) *execStore {
	return &execStore{now: time.Now(), snap: snap, read: map[string]bool{}, missing: map[string]bool{}, writes: map[string]*pendingWrite{}}
}

// errNotInTxn answers a store call the commands allowed in MULTI never
// make.
var errNotInTxn = errors.New("ringkv: not supported inside MULTI")

// lookup returns key's current item; st.mu is held.
func (st *execStore) lookup(key []byte) (coordinator.Item, bool) {
	if w, ok := st.writes[string(key)]; ok {
		if w.deleted || (!w.expiresAt.IsZero() && !st.now.Before(w.expiresAt)) {
			return coordinator.Item{}, false
		}
		return coordinator.Item{Value: w.value, ExpiresAt: w.expiresAt}, true
	}
	st.read[string(key)] = true
	it, ok := st.snap[string(key)]
	if !ok {
		st.missing[string(key)] = true
		return coordinator.Item{}, false
	}
	return it.item, it.found
}

// write records key's new state; st.mu is held.
func (st *execStore) write(key, value []byte, expiresAt time.Time, deleted bool) {
	k := string(key)
	if _, ok := st.writes[k]; !ok {
		st.order = append(st.order, k)
	}
	st.writes[k] = &pendingWrite{value: bytes.Clone(value), expiresAt: expiresAt, deleted: deleted}
}

func (st *execStore) deadline(e Expiry) time.Time {
	switch {
	case !e.At.IsZero():
		return e.At
	case e.TTL > 0:
		return st.now.Add(e.TTL)
	default:
		return time.Time{}
	}
}

func (st *execStore) missingKeys() [][]byte {
	var out [][]byte
	for k := range st.missing {
		out = append(out, []byte(k))
	}
	return out
}

// commit returns the transaction that writes the queue's final states if
// every key read and every watched key is unchanged (its failure branch
// reads them again), or nil when the queue wrote nothing.
func (st *execStore) commit(watched map[string]replica.Timestamp) *coordinator.TxnRequest {
	if len(st.order) == 0 {
		return nil
	}
	req := &coordinator.TxnRequest{}
	compared := make(map[string]bool)
	compare := func(k string, v replica.Timestamp) {
		if compared[k] {
			return
		}
		compared[k] = true
		req.Compares = append(req.Compares, consensus.Compare{Kind: consensus.CompareVersion, Key: []byte(k), Version: v})
		req.Failure = append(req.Failure, coordinator.TxnOp{Kind: consensus.OpGet, Key: []byte(k)})
	}
	for k := range st.read {
		compare(k, st.snap[k].version)
	}
	for k, v := range watched {
		compare(k, v)
	}
	now := time.Now()
	for _, k := range st.order {
		w := st.writes[k]
		switch {
		case w.deleted || (!w.expiresAt.IsZero() && !now.Before(w.expiresAt)):
			req.Success = append(req.Success, coordinator.TxnOp{Kind: consensus.OpDelete, Key: []byte(k)})
		case w.expiresAt.IsZero():
			req.Success = append(req.Success, coordinator.TxnOp{Kind: consensus.OpSet, Key: []byte(k), Value: w.value})
		default:
			req.Success = append(req.Success, coordinator.TxnOp{Kind: consensus.OpSet, Key: []byte(k), Value: w.value, TTL: w.expiresAt.Sub(now)})
		}
	}
	return req
}

// ---- Store ----

func (st *execStore) GetItem(_ context.Context, key []byte, _ coordinator.Level) (coordinator.Item, bool, error) {
	st.mu.Lock()
	defer st.mu.Unlock()
	it, ok := st.lookup(key)
	return it, ok, nil
}

func (st *execStore) Set(_ context.Context, key, value []byte, _ coordinator.Level, e Expiry) error {
	st.mu.Lock()
	defer st.mu.Unlock()
	st.write(key, value, st.deadline(e), false)
	return nil
}

func (st *execStore) Delete(_ context.Context, key []byte, _ coordinator.Level) error {
	st.mu.Lock()
	defer st.mu.Unlock()
	st.write(key, nil, time.Time{}, true)
	return nil
}

func (st *execStore) CompareAndSet(_ context.Context, key []byte, expected *[]byte, value []byte, e Expiry) (coordinator.CASResult, error) {
	st.mu.Lock()
	defer st.mu.Unlock()
	cur, ok := st.lookup(key)
	if (expected == nil && !ok) || (expected != nil && ok && bytes.Equal(*expected, cur.Value)) {
		st.write(key, value, st.deadline(e), false)
		return coordinator.CASResult{Swapped: true}, nil
	}
	return coordinator.CASResult{Found: ok, Current: cur.Value}, nil
}

func (st *execStore) Expire(_ context.Context, key []byte, ttl time.Duration, _ coordinator.Level) (bool, error) {
	st.mu.Lock()
	defer st.mu.Unlock()
	cur, ok := st.lookup(key)
	if ok {
		st.write(key, cur.Value, st.now.Add(ttl), false)
	}
	return ok, nil
}

func (st *execStore) Persist(_ context.Context, key []byte, _ coordinator.Level) (bool, error) {
	st.mu.Lock()
	defer st.mu.Unlock()
	cur, ok := st.lookup(key)
	if ok {
		st.write(key, cur.Value, time.Time{}, false)
	}
	return ok, nil
}

func (st *execStore) ListFrom(context.Context, []byte, []byte, int, coordinator.Level) ([]coordinator.Pair, error) {
	return nil, errNotInTxn
}

// Txn runs the one-key transactions of GETDEL and MSETNX on the
// snapshot: their compares judged as a leader judges them
// (consensus.Compare.Holds), then gets, sets and deletes.
func (st *execStore) Txn(_ context.Context, req *coordinator.TxnRequest) (coordinator.TxnResult, error) {
	st.mu.Lock()
	defer st.mu.Unlock()
	holds := true
	for _, cmp := range req.Compares {
		if cmp.Kind == consensus.CompareVersion {
			// The snapshot's own writes have no version yet.
			return coordinator.TxnResult{}, fmt.Errorf("%w: %v compare", errNotInTxn, cmp.Kind)
		}
		cur, ok := st.lookup(cmp.Key)
		holds = holds && cmp.Holds(replica.Record{Value: cur.Value, ExpiresAt: cur.ExpiresAt}, ok, st.now)
	}
	ops := req.Failure
	if holds {
		ops = req.Success
	}
	res := coordinator.TxnResult{Succeeded: holds, Results: make([]consensus.OpResult, len(ops))}
	for i, op := range ops {
		switch op.Kind {
		case consensus.OpGet:
			cur, ok := st.lookup(op.Key)
			res.Results[i] = consensus.OpResult{Found: ok, Record: replica.Record{Value: cur.Value, ExpiresAt: cur.ExpiresAt}}
		case consensus.OpSet:
			st.write(op.Key, op.Value, st.deadline(Expiry{TTL: op.TTL}), false)
		case consensus.OpDelete:
			st.write(op.Key, nil, time.Time{}, true)
		}
	}
	return res, nil
}

// MGet and MSet (MultiStore) run key by key in order, so that a key
// repeated in MSET takes its last value, as outside MULTI.
func (st *execStore) MGet(_ context.Context, keys [][]byte, _ coordinator.Level) ([]coordinator.MGetResult, error) {
	st.mu.Lock()
	defer st.mu.Unlock()
	out := make([]coordinator.MGetResult, len(keys))
	for i, k := range keys {
		it, ok := st.lookup(k)
		out[i] = coordinator.MGetResult{Key: k, Value: it.Value, Found: ok, ExpiresAt: it.ExpiresAt}
	}
	return out, nil
}

func (st *execStore) MSet(_ context.Context, pairs []coordinator.MSetPair, _ coordinator.Level) error {
	st.mu.Lock()
	defer st.mu.Unlock()
	for _, p := range pairs {
		st.write(p.Key, p.Value, st.deadline(Expiry{TTL: p.TTL}), false)
	}
	return nil
}
