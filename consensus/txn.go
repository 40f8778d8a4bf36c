package consensus

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"slices"
	"time"

	"github.com/ringkv/ringkv/replica"
)

// Transactions within one partition (docs/ARCHITECTURE.md,
// "Transactions"): the leader evaluates the compares against its applied
// state under every key's latch and proposes the chosen branch's records
// as one command (opBatch), applied in one store commit by every replica.

// Limits of one transaction, checked by ValidateTxn.
const (
	// MaxTxnKeys bounds the distinct keys of a transaction (compares and
	// both branches together).
	MaxTxnKeys = 128
	// MaxTxnBytes bounds the keys and values of a transaction's compares
	// and ops together, and the values its gets answer: a drpc message
	// holds at most 4 MiB.
	MaxTxnBytes = 2 << 20
	// TxnWireVersion is the wire protocol version that brings opBatch and
	// the Linearizable.Txn RPC: a leader proposes opBatch only while
	// every member speaks it (Deps.Features).
	TxnWireVersion = 2
)

// CompareKind says what a Compare checks.
type CompareKind uint8

// The compares. Each judges the key's live record (not a tombstone, not
// expired by the deciding leader's clock).
const (
	// CompareValue holds when the key is live with value Value.
	CompareValue CompareKind = iota + 1
	// CompareAbsent holds when the key has no live value.
	CompareAbsent
	// CompareVersion holds when the key's version (its live record's
	// timestamp; 0 when absent) is Version.
	CompareVersion
	// CompareTTLAtLeast holds when the key is live and never expires or
	// expires no sooner than TTL from now.
	CompareTTLAtLeast
)

func (k CompareKind) String() string {
	switch k {
	case CompareValue:
		return "value"
	case CompareAbsent:
		return "absent"
	case CompareVersion:
		return "version"
	case CompareTTLAtLeast:
		return "ttl_at_least"
	default:
		return fmt.Sprintf("CompareKind(%d)", uint8(k))
	}
}

// Compare is one condition of a transaction.
type Compare struct {
	Kind    CompareKind
	Key     []byte
	Value   []byte            // CompareValue
	Version replica.Timestamp // CompareVersion
	TTL     time.Duration     // CompareTTLAtLeast
}

// Holds judges c against the key's record (found false: none) at now,
// as a leader does: for a caller that evaluates a transaction over
// records of its own (RESP's EXEC runs queued commands on a snapshot).
func (c Compare) Holds(rec replica.Record, found bool, now time.Time) bool {
	live := found && rec.Live(now)
	switch c.Kind {
	case CompareValue:
		return live && bytes.Equal(rec.Value, c.Value)
	case CompareAbsent:
		return !live
	case CompareVersion:
		if !live {
			return c.Version == 0
		}
		return rec.Timestamp == c.Version
	case CompareTTLAtLeast:
		return live && (rec.ExpiresAt.IsZero() || !rec.ExpiresAt.Before(now.Add(c.TTL)))
	default:
		return false
	}
}

// OpKind says what an Op does.
type OpKind uint8

// The ops.
const (
	// OpGet reads the key as it was before the branch's writes.
	OpGet OpKind = iota + 1
	// OpSet writes Value, expiring at ExpiresAt (zero: never).
	OpSet
	// OpDelete deletes the key (a tombstone).
	OpDelete
)

func (k OpKind) String() string {
	switch k {
	case OpGet:
		return "get"
	case OpSet:
		return "set"
	case OpDelete:
		return "delete"
	default:
		return fmt.Sprintf("OpKind(%d)", uint8(k))
	}
}

// Op is one operation of a transaction's branch.
type Op struct {
	Kind      OpKind
	Key       []byte
	Value     []byte    // OpSet
	ExpiresAt time.Time // OpSet; zero: never
}

// Txn is a transaction: if every compare holds, Success runs, else
// Failure. Callers own the slices; Group.Txn does not keep them.
type Txn struct {
	Compares []Compare
	Success  []Op
	Failure  []Op
}

// TxnResult is a transaction's outcome: which branch ran, and one result
// per op of that branch, in order.
type TxnResult struct {
	Succeeded bool
	Results   []OpResult
}

// OpResult is an op's result. For a get: Found says the key is live, and
// Record is its record (Record.Timestamp is the key's version). Writes
// leave it zero.
type OpResult struct {
	Found  bool
	Record replica.Record
}

// ValidateTxn checks t's shape and limits: at least one compare or op,
// known kinds, non-empty keys, a key at most once among the ops of a
// branch, at most MaxTxnKeys distinct keys and MaxTxnBytes of keys and
// values. Errors wrap ErrInvalidTxn.
func ValidateTxn(t *Txn) error {
	if len(t.Compares)+len(t.Success)+len(t.Failure) == 0 {
		return fmt.Errorf("%w: a transaction needs at least one compare or op", ErrInvalidTxn)
	}
	keys := make(map[string]struct{})
	size := 0
	for i, c := range t.Compares {
		if len(c.Key) == 0 {
			return fmt.Errorf("%w: compare %d has an empty key", ErrInvalidTxn, i)
		}
		if c.Kind < CompareValue || c.Kind > CompareTTLAtLeast {
			return fmt.Errorf("%w: compare %d: unknown kind %d", ErrInvalidTxn, i, c.Kind)
		}
		if c.Kind == CompareTTLAtLeast && c.TTL < 0 {
			return fmt.Errorf("%w: compare %d: negative ttl_at_least", ErrInvalidTxn, i)
		}
		keys[string(c.Key)] = struct{}{}
		size += len(c.Key) + len(c.Value)
	}
	for _, branch := range []struct {
		name string
		ops  []Op
	}{{"success", t.Success}, {"failure", t.Failure}} {
		seen := make(map[string]struct{}, len(branch.ops))
		for i, op := range branch.ops {
			if len(op.Key) == 0 {
				return fmt.Errorf("%w: %s op %d has an empty key", ErrInvalidTxn, branch.name, i)
			}
			if op.Kind < OpGet || op.Kind > OpDelete {
				return fmt.Errorf("%w: %s op %d: unknown kind %d", ErrInvalidTxn, branch.name, i, op.Kind)
			}
			if op.Kind != OpSet && len(op.Value) > 0 {
				return fmt.Errorf("%w: %s op %d: a %s carries no value", ErrInvalidTxn, branch.name, i, op.Kind)
			}
			if _, dup := seen[string(op.Key)]; dup {
				return fmt.Errorf("%w: %s op %d: key %q appears twice among the %s ops", ErrInvalidTxn, branch.name, i, truncateKey(op.Key), branch.name)
			}
			seen[string(op.Key)] = struct{}{}
			keys[string(op.Key)] = struct{}{}
			size += len(op.Key) + len(op.Value)
		}
	}
	if len(keys) > MaxTxnKeys {
		return fmt.Errorf("%w: %d distinct keys, limit %d", ErrInvalidTxn, len(keys), MaxTxnKeys)
	}
	if size > MaxTxnBytes {
		return fmt.Errorf("%w: %d bytes of keys and values, limit %d", ErrInvalidTxn, size, MaxTxnBytes)
	}
	return nil
}

// truncateKey shortens a key for an error message.
func truncateKey(k []byte) string {
	if len(k) > 64 {
		return string(k[:64]) + "..."
	}
	return string(k)
}

// Keys returns t's distinct keys in byte order: the order Group.Txn takes
// their latches in.
func (t *Txn) Keys() [][]byte {
	seen := make(map[string]struct{})
	var out [][]byte
	add := func(k []byte) {
		if _, ok := seen[string(k)]; !ok {
			seen[string(k)] = struct{}{}
			out = append(out, k)
		}
	}
	for _, c := range t.Compares {
		add(c.Key)
	}
	for _, op := range t.Success {
		add(op.Key)
	}
	for _, op := range t.Failure {
		add(op.Key)
	}
	slices.SortFunc(out, bytes.Compare)
	return out
}

// current is what the leader read for one key.
type current struct {
	rec   replica.Record
	found bool
}

// evaluate is the deterministic core of a transaction: against the
// records read (by key) and the leader's time now, it says which branch
// runs, the results of its ops, and the records its writes propose
// (unstamped: Timestamp and NodeID are the caller's). It fails with
// ErrTxnTooLarge when the gets would answer more than MaxTxnBytes.
func evaluate(t *Txn, cur map[string]current, now time.Time) (TxnResult, []replica.Entry, error) {
	ok := true
	for _, c := range t.Compares {
		k := cur[string(c.Key)]
		if !c.Holds(k.rec, k.found, now) {
			ok = false
			break
		}
	}
	branch := t.Failure
	if ok {
		branch = t.Success
	}
	res := TxnResult{Succeeded: ok, Results: make([]OpResult, len(branch))}
	var writes []replica.Entry
	answer := 0
	for i, op := range branch {
		switch op.Kind {
		case OpGet:
			k := cur[string(op.Key)]
			if k.found && k.rec.Live(now) {
				res.Results[i] = OpResult{Found: true, Record: k.rec}
				answer += len(op.Key) + len(k.rec.Value)
			}
		case OpSet:
			writes = append(writes, replica.Entry{Key: op.Key, Record: replica.Record{Value: op.Value, ExpiresAt: op.ExpiresAt}})
		case OpDelete:
			writes = append(writes, replica.Entry{Key: op.Key, Record: replica.Record{Tombstone: true}})
		}
	}
	if answer > MaxTxnBytes {
		return TxnResult{}, nil, fmt.Errorf("%w: the gets would answer %d bytes, limit %d", ErrTxnTooLarge, answer, MaxTxnBytes)
	}
	return res, writes, nil
}

// Txn runs t atomically on this node, which must lead the group: under
// the latches of all its keys (taken in key order), after the term's
// barrier, it reads every key, evaluates the compares by this leader's
// clock, and, when the chosen branch writes, proposes all its records as
// one command, each stamped above the key's record, and waits until it
// is applied here. A branch that writes nothing confirms leadership
// (read-index) before answering. Every key must belong to this group's
// partition (the caller's duty).
//
// Errors: *IntentError (a transaction across partitions holds one of the
// keys; nothing applied), ErrInvalidTxn (t is malformed, see ValidateTxn), ErrTxnTooLarge
// (the answer would be too large; nothing applied), ErrNotUpgraded (some
// member cannot apply the command; nothing applied), *NotLeaderError (not
// applied), ErrAmbiguous (may have applied). Safe for concurrent use.
func (g *Group) Txn(ctx context.Context, t *Txn) (TxnResult, error) {
	start := time.Now()
	defer g.m.observe("txn", start)
	if err := ValidateTxn(t); err != nil {
		return TxnResult{}, err
	}
	keys := t.Keys()
	var held []func()
	unlatch := func() {
		for _, r := range held {
			r()
		}
	}
	handed := false // proposeLatched took the latches over
	defer func() {
		if !handed {
			unlatch()
		}
	}()
	for _, k := range keys {
		release, err := g.latches.acquire(ctx, string(k))
		if err != nil {
			return TxnResult{}, fmt.Errorf("consensus: key latch: %w", err)
		}
		held = append(held, release)
	}
	term, err := g.leaderReady(ctx)
	if err != nil {
		return TxnResult{}, err
	}
	// A cross-partition transaction's intent locks its keys for reads as
	// well as writes.
	if err := g.checkIntents(keys); err != nil {
		return TxnResult{}, err
	}
	cur := make(map[string]current, len(keys))
	for _, k := range keys {
		rec, err := g.store.Get(g.id, k)
		switch {
		case err == nil:
			cur[string(k)] = current{rec: rec, found: true}
		case errors.Is(err, replica.ErrNotFound), errors.Is(err, replica.ErrCorrupt):
			// Absent; a corrupt record is repaired by the next merge, as
			// in update.
		default:
			return TxnResult{}, fmt.Errorf("consensus: read current: %w", err)
		}
	}
	res, writes, err := evaluate(t, cur, g.Now())
	if err != nil {
		return TxnResult{}, err
	}
	if len(writes) == 0 {
		// Nothing to propose: answer only if still the leader, so that
		// a deposed leader never answers from its stale state.
		if err := g.verifyIn(ctx, term); err != nil {
			return TxnResult{}, err
		}
		return res, nil
	}
	if g.features != nil && !g.features.SpeaksWire(TxnWireVersion) {
		return TxnResult{}, ErrNotUpgraded
	}
	for i := range writes {
		w := &writes[i]
		w.Partition = g.id
		c := cur[string(w.Key)]
		g.stamp(&w.Record, c.rec, c.found)
	}
	handed = true
	if err := g.proposeLatched(ctx, term, encodeBatch(writes), unlatch); err != nil {
		return TxnResult{}, err
	}
	return res, nil
}

// stamp gives next this node's id and a timestamp from its clock above
// cur (when found), as update does for one key.
func (g *Group) stamp(next *replica.Record, cur replica.Record, found bool) {
	if found {
		if err := g.clock.Update(cur.Timestamp); err != nil {
			g.log.Warn("record timestamp ahead of clock", "group_id", g.id, "err", err)
		}
	}
	next.Timestamp = g.clock.Now()
	next.NodeID = g.nodeID
	if found && !next.Newer(cur) {
		// The clock could not pass a far-future record: step past it.
		next.Timestamp = cur.Timestamp + 1
	}
}

// EvaluateReads is evaluate for a coordinator that read every key of t
// itself (a read-only transaction answered from a snapshot of reads): it
// judges t's compares against reads (by key; Found: live as the reading
// leader judged it) at now and answers the branch that runs. It fails
// with ErrInvalidTxn if that branch writes: the caller may only answer
// read-only branches this way.
func EvaluateReads(t *Txn, reads map[string]KeyRead, now time.Time) (TxnResult, error) {
	cur := make(map[string]current, len(reads))
	for k, r := range reads {
		if r.Found {
			cur[k] = current{rec: r.Record, found: true}
		}
	}
	res, writes, err := evaluate(t, cur, now)
	if err != nil {
		return TxnResult{}, err
	}
	if len(writes) > 0 {
		return TxnResult{}, fmt.Errorf("%w: the branch that runs writes", ErrInvalidTxn)
	}
	return res, nil
}

// ReadOnly reports whether neither branch of t writes.
func (t *Txn) ReadOnly() bool {
	for _, ops := range [][]Op{t.Success, t.Failure} {
		for _, op := range ops {
			if op.Kind != OpGet {
				return false
			}
		}
	}
	return true
}
