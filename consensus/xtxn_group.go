package consensus

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/hashicorp/raft"

	"github.com/ringkv/ringkv/replica"
)

// The Group's side of transactions across partitions (docs/ARCHITECTURE.md,
// "Transactions across partitions"): the participant's prepare and
// resolve, the anchor's decision, status and forgetting, and the reads the
// recovery sweep needs. Each runs on the group's leader, under the latches
// of the keys it touches, and proposes at most one opBatch command; the
// protocol that strings them together across groups is the coordinator's.

// XTxnWireVersion is the wire protocol version that brings transactions
// across partitions: a leader writes intents (Prepare) only while every
// member speaks it, because a leader of an older release would serve
// reads without reading through them. Their resolution and decision are
// gated alike.
const XTxnWireVersion = 3

// errNotUpgradedXTxn is ErrNotUpgraded for transactions across partitions.
var errNotUpgradedXTxn = fmt.Errorf("%w (transactions across partitions need wire version %d)", ErrNotUpgraded, XTxnWireVersion)

// speaksXTxn reports whether every member speaks XTxnWireVersion.
func (g *Group) speaksXTxn() bool {
	return g.features == nil || g.features.SpeaksWire(XTxnWireVersion)
}

// TxnTimeout is how long an attempt may stay PENDING: its intents' and
// record's deadline is its start plus TxnTimeout. After it, anyone may
// abort it.
const TxnTimeout = 5 * time.Second

// KeyIntent is an intent found on a key. For Get, Found and Record are the
// key's record under the intent (Found false: none), the value a reader
// answers while the transaction is not committed.
type KeyIntent struct {
	Key    []byte
	Intent Intent
	Found  bool
	Record replica.Record
}

// IntentError says that keys hold other transactions' intents: the
// operation wrote nothing. The caller finds the holders' status on their
// anchors and resolves, waits or aborts (the coordinator's business).
type IntentError struct {
	Group   uint32
	Intents []KeyIntent
}

func (e *IntentError) Error() string {
	if len(e.Intents) == 0 {
		return fmt.Sprintf("consensus: group %d: keys hold intents", e.Group)
	}
	in := e.Intents[0]
	more := ""
	if len(e.Intents) > 1 {
		more = fmt.Sprintf(" (and %d more keys)", len(e.Intents)-1)
	}
	return fmt.Sprintf("consensus: group %d: key %q holds transaction %s's intent%s", e.Group, truncateKey(in.Key), in.Intent.ID, more)
}

// PrepareRequest is one partition's part of a transaction's prepare.
type PrepareRequest struct {
	ID       TxnID
	Anchor   uint32    // the partition of the transaction record
	Deadline time.Time // the attempt's deadline (start + TxnTimeout)
	// Participants are every partition of the transaction; the anchor's
	// prepare records them in the PENDING record.
	Participants []uint32
	// Keys are the transaction's keys in this partition (compares and
	// both branches), sorted and distinct.
	Keys [][]byte
	// Compares are the transaction's compares on these keys.
	Compares []Compare
}

// KeyRead is a key as a prepare read it: Found says its record is live by
// the leader's clock (not a tombstone, not expired).
type KeyRead struct {
	Found  bool
	Record replica.Record
}

// PrepareResult is a partition's answer to a prepare.
type PrepareResult struct {
	// Holds says every compare of the request held.
	Holds bool
	// Reads are the keys' records, one per PrepareRequest.Keys.
	Reads []KeyRead
	// MaxTimestamp is the greatest timestamp among the keys' records,
	// tombstones and expired ones included: the commit timestamp must be
	// above it.
	MaxTimestamp replica.Timestamp
}

// checkPrepare validates a prepare request.
func checkPrepare(req *PrepareRequest) error {
	switch {
	case req.ID.Node == "" || req.ID.Start == 0:
		return fmt.Errorf("%w: prepare without a transaction id", ErrInvalidTxn)
	case req.Deadline.IsZero():
		return fmt.Errorf("%w: prepare without a deadline", ErrInvalidTxn)
	case len(req.Keys) == 0:
		return fmt.Errorf("%w: prepare without keys", ErrInvalidTxn)
	case len(req.Keys) > MaxTxnKeys:
		return fmt.Errorf("%w: %d keys, limit %d", ErrInvalidTxn, len(req.Keys), MaxTxnKeys)
	}
	for i, k := range req.Keys {
		if len(k) == 0 {
			return fmt.Errorf("%w: prepare key %d is empty", ErrInvalidTxn, i)
		}
		if i > 0 && bytes.Compare(req.Keys[i-1], k) >= 0 {
			return fmt.Errorf("%w: prepare keys not sorted and distinct at %d", ErrInvalidTxn, i)
		}
	}
	for i, c := range req.Compares {
		if c.Kind < CompareValue || c.Kind > CompareTTLAtLeast {
			return fmt.Errorf("%w: compare %d: unknown kind %d", ErrInvalidTxn, i, c.Kind)
		}
		if _, ok := slices.BinarySearchFunc(req.Keys, c.Key, bytes.Compare); !ok {
			return fmt.Errorf("%w: compare %d on key %q not among the prepared keys", ErrInvalidTxn, i, truncateKey(c.Key))
		}
	}
	return nil
}

// lockKeys takes the latches of keys (sorted) and returns their release.
func (g *Group) lockKeys(ctx context.Context, keys []string) (func(), error) {
	var held []func()
	release := func() {
		for i := len(held) - 1; i >= 0; i-- {
			held[i]()
		}
	}
	for _, k := range keys {
		r, err := g.latches.acquire(ctx, k)
		if err != nil {
			release()
			return nil, fmt.Errorf("consensus: key latch: %w", err)
		}
		held = append(held, r)
	}
	return release, nil
}

// readIntent reads the intent on key from this node's store: nil when
// there is none (never written, or cleared).
func (g *Group) readIntent(key []byte) (*Intent, replica.Record, bool, error) {
	if g.ignoreIntents {
		// Broken on purpose (Config.UnsafeIgnoreIntents): readers,
		// writers and prepares see no intent (resolve still does).
		return nil, replica.Record{}, false, nil
	}
	if g.fsm.intents.none() {
		// No intent can be live here (intentWatch): skip the store read.
		// Only the intent is answered: the record and found say nothing.
		return nil, replica.Record{}, false, nil
	}
	return g.readIntentRaw(key)
}

// readIntentRaw is readIntent whatever Config.UnsafeIgnoreIntents says,
// and always reads the store: its callers stamp above the stored record,
// a cleared intent's tombstone included.
func (g *Group) readIntentRaw(key []byte) (*Intent, replica.Record, bool, error) {
	rec, err := g.store.Get(g.id, intentKey(key))
	switch {
	case errors.Is(err, replica.ErrNotFound):
		return nil, rec, false, nil
	case err != nil:
		return nil, rec, false, fmt.Errorf("consensus: read intent: %w", err)
	case rec.Tombstone:
		return nil, rec, true, nil
	}
	in, err := decodeIntent(rec.Value)
	if err != nil {
		return nil, rec, true, fmt.Errorf("consensus: intent on %q: %w", truncateKey(key), err)
	}
	return &in, rec, true, nil
}

// foreignIntents returns the intents on keys held by a transaction other
// than self (any attempt but self's counts as other: an earlier attempt
// of the same transaction was aborted).
func (g *Group) foreignIntents(keys [][]byte, self *TxnID) ([]KeyIntent, error) {
	var out []KeyIntent
	for _, k := range keys {
		in, _, _, err := g.readIntent(k)
		if err != nil {
			return nil, err
		}
		if in != nil && (self == nil || in.ID != *self) {
			out = append(out, KeyIntent{Key: k, Intent: *in})
		}
	}
	return out, nil
}

// checkIntents is the intent check of Put, CompareAndSet and Txn, which
// hold the keys' latches: an *IntentError when any key holds an intent.
func (g *Group) checkIntents(keys [][]byte) error {
	found, err := g.foreignIntents(keys, nil)
	if err != nil {
		return err
	}
	if len(found) > 0 {
		return &IntentError{Group: g.id, Intents: found}
	}
	return nil
}

// Prepare is a participant's prepare of a transaction over several
// partitions: under the latches of its keys (and, on the anchor, of the
// transaction record), after the term's barrier, it fails with an
// *IntentError if another transaction holds an intent on any key
// (nothing written; the transaction's own intent from an earlier call is
// fine), else reads the keys, judges the compares by this leader's clock
// and proposes one command writing an intent on every key and, when
// this group is the anchor, the PENDING transaction record. It answers
// once that command is applied here.
//
// Errors: ErrInvalidTxn, *IntentError, ErrTxnAborted (the attempt's
// deadline has passed by this leader's clock, or the anchor already holds
// a record of it other than its PENDING one: it was decided, or
// forgotten), ErrNotUpgraded, *NotLeaderError (nothing written),
// ErrAmbiguous (may have been written).
func (g *Group) Prepare(ctx context.Context, req *PrepareRequest) (PrepareResult, error) {
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
	start := time.Now()
	defer g.m.observe("prepare", start)
	if err := checkPrepare(req); err != nil {
		return PrepareResult{}, err
	}
	anchor := req.Anchor == g.id
	latched := make([]string, 0, len(req.Keys)+1)
	if anchor {
		// Reserved keys sort before every user key: key order holds.
		latched = append(latched, string(txnRecordKey(req.ID)))
	}
	for _, k := range req.Keys {
		latched = append(latched, string(k))
	}
	release, err := g.lockKeys(ctx, latched)
	if err != nil {
		return PrepareResult{}, err
	}
	held = append(held, release)
	term, err := g.leaderReady(ctx)
	if err != nil {
		return PrepareResult{}, err
	}
	now := g.Now()
	if !now.Before(req.Deadline) {
		return PrepareResult{}, fmt.Errorf("%w: %s's deadline passed before its prepare", ErrTxnAborted, req.ID)
	}
	var entries []replica.Entry
	if anchor {
		e, err := g.pendingRecord(req)
		if err != nil {
			return PrepareResult{}, err
		}
		entries = append(entries, e)
	}
	if found, err := g.foreignIntents(req.Keys, &req.ID); err != nil {
		return PrepareResult{}, err
	} else if len(found) > 0 {
		return PrepareResult{}, &IntentError{Group: g.id, Intents: found}
	}
	res := PrepareResult{Holds: true, Reads: make([]KeyRead, len(req.Keys))}
	cur := make(map[string]current, len(req.Keys))
	for i, k := range req.Keys {
		rec, err := g.store.Get(g.id, k)
		switch {
		case err == nil:
			cur[string(k)] = current{rec: rec, found: true}
			res.Reads[i] = KeyRead{Found: rec.Live(now), Record: rec}
			res.MaxTimestamp = max(res.MaxTimestamp, rec.Timestamp)
		case errors.Is(err, replica.ErrNotFound), errors.Is(err, replica.ErrCorrupt):
			// Absent; a corrupt record is repaired by anti-entropy.
		default:
			return PrepareResult{}, fmt.Errorf("consensus: read current: %w", err)
		}
	}
	for _, c := range req.Compares {
		k := cur[string(c.Key)]
		if !c.Holds(k.rec, k.found, now) {
			res.Holds = false
			break
		}
	}
	if !g.speaksXTxn() {
		return PrepareResult{}, errNotUpgradedXTxn
	}
	in := Intent{ID: req.ID, Anchor: req.Anchor, Deadline: req.Deadline}
	value := in.appendBinary(nil)
	for _, k := range req.Keys {
		ik := intentKey(k)
		_, stored, found, err := g.readIntentRaw(k)
		if err != nil {
			return PrepareResult{}, err
		}
		rec := replica.Record{Value: value}
		g.stamp(&rec, stored, found)
		entries = append(entries, replica.Entry{Partition: g.id, Key: ik, Record: rec})
	}
	handed = true
	if err := g.proposeLatched(ctx, term, encodeBatch(entries), unlatch); err != nil {
		return PrepareResult{}, err
	}
	return res, nil
}

// pendingRecord is the anchor's PENDING record of req, stamped above any
// stored one; ErrTxnAborted if a record of the attempt other than its
// PENDING one is stored (decided, or forgotten: a tombstone).
func (g *Group) pendingRecord(req *PrepareRequest) (replica.Entry, error) {
	key := txnRecordKey(req.ID)
	stored, err := g.store.Get(g.id, key)
	found := err == nil
	switch {
	case errors.Is(err, replica.ErrNotFound):
	case err != nil:
		return replica.Entry{}, fmt.Errorf("consensus: read transaction record: %w", err)
	case stored.Tombstone:
		return replica.Entry{}, fmt.Errorf("%w: %s was already decided and forgotten", ErrTxnAborted, req.ID)
	default:
		r, err := decodeTxnRecord(stored.Value)
		if err != nil {
			return replica.Entry{}, err
		}
		if r.Status != TxnPending {
			return replica.Entry{}, fmt.Errorf("%w: %s is already %s", ErrTxnAborted, req.ID, r.Status)
		}
	}
	r := TxnRecord{ID: req.ID, Status: TxnPending, Deadline: req.Deadline, Participants: slices.Clone(req.Participants)}
	if !slices.Contains(r.Participants, g.id) {
		r.Participants = append(r.Participants, g.id)
	}
	slices.Sort(r.Participants)
	r.Participants = slices.Compact(r.Participants)
	rec := replica.Record{Value: r.appendBinary(nil)}
	g.stamp(&rec, stored, found)
	return replica.Entry{Partition: g.id, Key: key, Record: rec}, nil
}

// DecideTxn makes id's decision on this node, the leader of its anchor
// partition: commit (with the commit timestamp and every partition's
// writes) or abort. A commit needs the PENDING record; an abort also
// stands for a record never written, so a late prepare cannot create it.
// Deciding again what was decided is a no-op. The Raft commit of a
// COMMITTED decision is the transaction's commit point. It returns the
// record as it stands after the call.
//
// Errors: ErrTxnAborted / ErrTxnCommitted (the other decision came
// first), *NotLeaderError, ErrAmbiguous, ErrNotUpgraded.
func (g *Group) DecideTxn(ctx context.Context, id TxnID, commit bool, commitTS replica.Timestamp, writes []replica.Entry) (*TxnRecord, error) {
	start := time.Now()
	defer g.m.observe("decide", start)
	want := TxnAborted
	if commit {
		want = TxnCommitted
	}
	return g.decideTxn(ctx, id, want, commitTS, writes)
}

// TxnStatus reads id's record on this node, the leader of its anchor
// partition, linearizably: nil when there is none (never written, or
// forgotten after every participant was resolved).
func (g *Group) TxnStatus(ctx context.Context, id TxnID) (*TxnRecord, error) {
	start := time.Now()
	defer g.m.observe("txn_status", start)
	if err := g.ReadIndex(ctx); err != nil {
		return nil, err
	}
	return g.readTxnRecord(id)
}

// ResolveTxn finishes id on this node, the leader of a participant: for
// every key of the partition that holds id's intent it clears the intent
// and, when commit is set, merges the key's write among writes (those of
// this partition: Entry.Partition) stamped at commitTS, or just above the
// key's record if that is newer (an eventual write came in meanwhile).
// Keys not holding id's intent are left alone, so resolving twice, or
// after another resolver, changes nothing. It returns the number of
// intents cleared.
//
// Errors: *NotLeaderError, ErrAmbiguous, ErrNotUpgraded.
func (g *Group) ResolveTxn(ctx context.Context, id TxnID, commit bool, commitTS replica.Timestamp, writes []replica.Entry) (int, error) {
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
	start := time.Now()
	defer g.m.observe("resolve", start)
	term, err := g.leaderReady(ctx)
	if err != nil {
		return 0, err
	}
	keys, err := g.intentKeysOf(id)
	if err != nil {
		return 0, err
	}
	if len(keys) == 0 {
		// Nothing here, by this node's state: answer only while still
		// the leader, so that a deposed leader never reports a
		// participant resolved that its successor is not.
		if err := g.verifyIn(ctx, term); err != nil {
			return 0, err
		}
		return 0, nil
	}
	release, err := g.lockKeys(ctx, keys) // the scan returns them sorted
	if err != nil {
		return 0, err
	}
	held = append(held, release)
	// Still in the term whose applied state found keys.
	if again, err := g.leaderReady(ctx); err != nil {
		return 0, err
	} else if again != term {
		return 0, g.notLeader()
	}
	entries, err := g.resolveEntries(id, keys, commit, commitTS, writes)
	if err != nil || len(entries) == 0 {
		return 0, err
	}
	if !g.speaksXTxn() {
		return 0, errNotUpgradedXTxn
	}
	handed = true
	if err := g.proposeLatched(ctx, term, encodeBatch(entries), unlatch); err != nil {
		return 0, err
	}
	return clearedIntents(entries), nil
}

// intentKeysOf returns, sorted, the keys of the partition that hold id's
// intent in this node's store.
func (g *Group) intentKeysOf(id TxnID) ([]string, error) {
	var keys []string
	err := g.store.Scan(g.id, []byte(intentPrefix), nil, func(k []byte, rec replica.Record) bool {
		if rec.Tombstone || !g.ownsKey(k[len(intentPrefix):]) {
			return true
		}
		if in, err := decodeIntent(rec.Value); err == nil && in.ID == id {
			keys = append(keys, strings.TrimPrefix(string(k), intentPrefix))
		}
		return true
	})
	if err != nil {
		return nil, fmt.Errorf("consensus: scan intents: %w", err)
	}
	return keys, nil
}

// resolveEntries builds the records that resolve id on keys (the caller
// holds their latches, after leaderReady): for each key still holding
// id's intent, the intent's tombstone and, when commit is set and writes
// (those of this partition: Entry.Partition) have the key, its write
// stamped at commitTS, or just above the key's record if that is newer
// (an eventual write came in meanwhile).
func (g *Group) resolveEntries(id TxnID, keys []string, commit bool, commitTS replica.Timestamp, writes []replica.Entry) ([]replica.Entry, error) {
	byKey := make(map[string]replica.Record)
	if commit {
		for _, w := range writes {
			if g.ownsKey(w.Key) { // by key: w.Partition may name this partition's parent, before a split
				byKey[string(w.Key)] = w.Record
			}
		}
		if err := g.clock.Update(commitTS); err != nil {
			g.log.Warn("commit timestamp ahead of clock", "group_id", g.id, "txn", id.String(), "err", err)
		}
	}
	var entries []replica.Entry
	for _, k := range keys {
		key := []byte(k)
		in, stored, _, err := g.readIntentRaw(key)
		if err != nil {
			return nil, err
		}
		if in == nil || in.ID != id {
			continue // cleared meanwhile
		}
		tomb := replica.Record{Tombstone: true}
		g.stamp(&tomb, stored, true)
		entries = append(entries, replica.Entry{Partition: g.id, Key: intentKey(key), Record: tomb})
		w, ok := byKey[k]
		if !ok {
			continue
		}
		rec := replica.Record{Value: w.Value, Tombstone: w.Tombstone, ExpiresAt: w.ExpiresAt, Timestamp: commitTS, NodeID: id.Node}
		if cur, err := g.store.Get(g.id, key); err == nil && !rec.Newer(cur) {
			rec.Timestamp = cur.Timestamp + 1
		}
		entries = append(entries, replica.Entry{Partition: g.id, Key: key, Record: rec})
	}
	return entries, nil
}

// clearedIntents counts the intent tombstones among entries.
func clearedIntents(entries []replica.Entry) int {
	n := 0
	for _, e := range entries {
		if bytes.HasPrefix(e.Key, []byte(intentPrefix)) {
			n++
		}
	}
	return n
}

// ForgetTxn tombstones id's decided record on this node, the leader of its
// anchor, once every participant is resolved (the caller's duty: a
// participant still holding an intent would find no record and, past the
// deadline, abort what was committed). A missing record is fine; a
// PENDING one is refused (ErrInvalidTxn). The tombstone keeps a late
// prepare of the attempt from writing a new PENDING record.
func (g *Group) ForgetTxn(ctx context.Context, id TxnID) error {
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
	key := txnRecordKey(id)
	release, err := g.latches.acquire(ctx, string(key))
	if err != nil {
		return fmt.Errorf("consensus: record latch: %w", err)
	}
	held = append(held, release)
	term, err := g.leaderReady(ctx)
	if err != nil {
		return err
	}
	cur, err := g.readTxnRecord(id)
	switch {
	case err != nil:
		return err
	case cur == nil:
		return nil
	case cur.Status == TxnPending:
		return fmt.Errorf("%w: %s is still pending", ErrInvalidTxn, id)
	}
	stored, err := g.store.Get(g.id, key)
	if err != nil {
		return fmt.Errorf("consensus: read transaction record: %w", err)
	}
	tomb := replica.Record{Tombstone: true}
	g.stamp(&tomb, stored, true)
	handed = true
	return g.proposeLatched(ctx, term, encodeBatch([]replica.Entry{{Partition: g.id, Key: key, Record: tomb}}), unlatch)
}

// Intents reads, linearizably on the leader, every intent held in the
// partition (for a linearizable list).
func (g *Group) Intents(ctx context.Context) ([]KeyIntent, error) {
	if err := g.ReadIndex(ctx); err != nil {
		return nil, err
	}
	return g.scanIntents()
}

// SweepIntents is Intents for the recovery sweep, which looks at every
// partition it leads each second: when this node's copy of the partition
// holds no intent it returns none at once, without a read-index round
// (an idle partition costs a local scan, not a heartbeat round); that
// answer may be stale, and the next sweep finds an intent written
// meanwhile. Otherwise it is Intents. Errors as for Intents, and
// *NotLeaderError when this node does not lead the group.
func (g *Group) SweepIntents(ctx context.Context) ([]KeyIntent, error) {
	if g.raft.State() != raft.Leader {
		return nil, g.notLeader()
	}
	out, err := g.scanIntents()
	if err != nil || len(out) == 0 {
		return nil, err
	}
	return g.Intents(ctx)
}

// scanIntents reads the live intents of the partition's keys from this
// node's store; finding none, it marks the group's intentWatch clean.
func (g *Group) scanIntents() ([]KeyIntent, error) {
	var out []KeyIntent
	var bad, err error
	g.fsm.intents.scan(func() bool {
		err = g.store.Scan(g.id, []byte(intentPrefix), nil, func(k []byte, rec replica.Record) bool {
			if rec.Tombstone || !g.ownsKey(k[len(intentPrefix):]) {
				return true
			}
			in, err := decodeIntent(rec.Value)
			if err != nil {
				bad = errors.Join(bad, err)
				return true
			}
			out = append(out, KeyIntent{Key: bytes.TrimPrefix(k, []byte(intentPrefix)), Intent: in})
			return true
		})
		return err != nil || bad != nil || len(out) > 0
	})
	if err != nil {
		return nil, fmt.Errorf("consensus: scan intents: %w", err)
	}
	if bad != nil {
		g.log.Warn("undecodable intents skipped", "group_id", g.id, "err", bad)
	}
	return out, nil
}

// TxnRecords reads, linearizably on the leader, every transaction record
// anchored in the partition.
func (g *Group) TxnRecords(ctx context.Context) ([]TxnRecord, error) {
	if err := g.ReadIndex(ctx); err != nil {
		return nil, err
	}
	return g.scanTxnRecords()
}

// SweepTxnRecords is TxnRecords for the recovery sweep, as SweepIntents
// is Intents: none held locally returns none at once (possibly stale),
// otherwise it is TxnRecords.
func (g *Group) SweepTxnRecords(ctx context.Context) ([]TxnRecord, error) {
	if g.raft.State() != raft.Leader {
		return nil, g.notLeader()
	}
	out, err := g.scanTxnRecords()
	if err != nil || len(out) == 0 {
		return nil, err
	}
	return g.TxnRecords(ctx)
}

func (g *Group) scanTxnRecords() ([]TxnRecord, error) {
	var out []TxnRecord
	var bad error
	err := g.store.Scan(g.id, []byte(txnRecordPrefix), nil, func(k []byte, rec replica.Record) bool {
		if rec.Tombstone || !g.ownsRecord(k) {
			return true
		}
		r, err := decodeTxnRecord(rec.Value)
		if err != nil {
			bad = errors.Join(bad, err)
			return true
		}
		out = append(out, r)
		return true
	})
	if err != nil {
		return nil, fmt.Errorf("consensus: scan transaction records: %w", err)
	}
	if bad != nil {
		g.log.Warn("undecodable transaction records skipped", "group_id", g.id, "err", bad)
	}
	return out, nil
}
