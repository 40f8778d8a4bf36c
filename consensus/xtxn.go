package consensus

import (
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"time"

	"github.com/ringkv/ringkv/internal/varint"
	"github.com/ringkv/ringkv/replica"
)

// The deterministic core of transactions across partitions
// (docs/ARCHITECTURE.md, "Transactions across partitions"): transaction
// ids and their priority, the transaction record and the intent as they
// are stored (each the value of a record under a reserved key, so that
// they replicate, snapshot and repair like data), and the decisions the
// anchor's and a participant's leaders take on them.
//
// The Group methods that propose them are in xtxn_group.go; the protocol
// that strings them together across groups is the coordinator's.

// Reserved key prefixes (first byte 0x00: coordinator.IsReserved) of the
// records transactions across partitions keep.
const (
	txnRecordPrefix = "\x00ringkv/txn/"
	intentPrefix    = "\x00ringkv/intent/"
)

// TxnID names one attempt of a transaction: the coordinating node, the
// HLC timestamp it took when the transaction first started, and the
// attempt. A retry keeps Start and Node and counts Attempt up, so an
// aborted attempt's record never stands in the way of the next, while
// the transaction keeps its priority: Start, older wins (wound-wait).
type TxnID struct {
	Start   replica.Timestamp
	Attempt uint32
	Node    string
}

// String is the id's stored form, which sorts by Start.
func (id TxnID) String() string {
	return fmt.Sprintf("%016x/%08x/%s", uint64(id.Start), id.Attempt, id.Node)
}

// ParseTxnID reads String's form.
func ParseTxnID(s string) (TxnID, error) {
	parts := strings.SplitN(s, "/", 3)
	if len(parts) != 3 || len(parts[0]) != 16 || len(parts[1]) != 8 || parts[2] == "" {
		return TxnID{}, fmt.Errorf("%w: transaction id %q", ErrCorruptCommand, s)
	}
	start, err := strconv.ParseUint(parts[0], 16, 64)
	if err != nil {
		return TxnID{}, fmt.Errorf("%w: transaction id %q: %w", ErrCorruptCommand, s, err)
	}
	attempt, err := strconv.ParseUint(parts[1], 16, 32)
	if err != nil {
		return TxnID{}, fmt.Errorf("%w: transaction id %q: %w", ErrCorruptCommand, s, err)
	}
	return TxnID{Start: replica.Timestamp(start), Attempt: uint32(attempt), Node: parts[2]}, nil
}

// Older reports whether id has priority over o: started earlier, or at
// the same instant on a smaller node id. Two attempts of one
// transaction are never older than each other (only one is live).
func (id TxnID) Older(o TxnID) bool {
	if id.Start != o.Start {
		return id.Start < o.Start
	}
	return id.Node < o.Node
}

// txnRecordKey is the key of id's transaction record, stored in the
// anchor partition whatever the key's hash.
func txnRecordKey(id TxnID) []byte { return []byte(txnRecordPrefix + id.String()) }

// intentKey is the key of the intent on key, stored in key's partition.
func intentKey(key []byte) []byte { return append([]byte(intentPrefix), key...) }

// TxnStatus is a transaction record's state. PENDING turns into
// COMMITTED or ABORTED once, on the anchor's leader, and never back.
type TxnStatus uint8

const (
	TxnPending TxnStatus = iota + 1
	TxnCommitted
	TxnAborted
)

func (s TxnStatus) String() string {
	switch s {
	case TxnPending:
		return "pending"
	case TxnCommitted:
		return "committed"
	case TxnAborted:
		return "aborted"
	default:
		return fmt.Sprintf("TxnStatus(%d)", uint8(s))
	}
}

// TxnRecord is the transaction record: the commit point is the Raft
// commit of its turn to COMMITTED. Once COMMITTED it holds everything
// needed to finish the transaction: the writes (records unstamped but
// for their values, expiries and tombstones) and the commit timestamp.
type TxnRecord struct {
	ID           TxnID
	Status       TxnStatus
	Deadline     time.Time // after it, a PENDING record may be aborted by anyone
	Participants []uint32  // partitions holding its intents
	CommitTS     replica.Timestamp
	Writes       []replica.Entry // COMMITTED only; Partition says where
}

// Encoding of a transaction record (the value of its record):
//
//	version (1) | status | uvarint start | uvarint attempt | uvarint len(node) | node |
//	varint deadline (Unix ns) | uvarint n | n x uvarint partition |
//	uvarint commit ts | uvarint m | m x (uvarint partition | uvarint len(key) | key | uvarint len(rec) | rec)
//
// The record around it carries the checksum.
const txnEncodingVersion = 1

func (r TxnRecord) appendBinary(b []byte) []byte {
	b = append(b, txnEncodingVersion, byte(r.Status))
	b = binary.AppendUvarint(b, uint64(r.ID.Start))
	b = binary.AppendUvarint(b, uint64(r.ID.Attempt))
	b = binary.AppendUvarint(b, uint64(len(r.ID.Node)))
	b = append(b, r.ID.Node...)
	b = binary.AppendVarint(b, deadlineNanos(r.Deadline))
	b = binary.AppendUvarint(b, uint64(len(r.Participants)))
	for _, p := range r.Participants {
		b = binary.AppendUvarint(b, uint64(p))
	}
	b = binary.AppendUvarint(b, uint64(r.CommitTS))
	b = binary.AppendUvarint(b, uint64(len(r.Writes)))
	var enc []byte
	for _, w := range r.Writes {
		b = binary.AppendUvarint(b, uint64(w.Partition))
		b = binary.AppendUvarint(b, uint64(len(w.Key)))
		b = append(b, w.Key...)
		enc = w.Record.AppendBinary(enc[:0])
		b = binary.AppendUvarint(b, uint64(len(enc)))
		b = append(b, enc...)
	}
	return b
}

// deadlineNanos encodes a deadline as Unix nanoseconds, the zero time
// (none: an ABORTED record written for a transaction never prepared) as
// 0; so the instant of the epoch reads back as none, as expiries do.
func deadlineNanos(t time.Time) int64 {
	if t.IsZero() {
		return 0
	}
	return t.UnixNano()
}

func deadlineFrom(ns int64) time.Time {
	if ns == 0 {
		return time.Time{}
	}
	return time.Unix(0, ns).UTC()
}

// decoder reads uvarints and byte strings, remembering the first error.
type decoder struct {
	b   []byte
	err error
}

func (d *decoder) uvarint() uint64 {
	if d.err != nil {
		return 0
	}
	v, n := varint.Uvarint(d.b)
	if n <= 0 {
		d.err = fmt.Errorf("%w: bad varint", ErrCorruptCommand)
		return 0
	}
	d.b = d.b[n:]
	return v
}

func (d *decoder) varint() int64 {
	if d.err != nil {
		return 0
	}
	v, n := varint.Varint(d.b)
	if n <= 0 {
		d.err = fmt.Errorf("%w: bad varint", ErrCorruptCommand)
		return 0
	}
	d.b = d.b[n:]
	return v
}

// uint32 reads a uvarint that must fit 32 bits.
func (d *decoder) uint32() uint32 {
	v := d.uvarint()
	if d.err == nil && v > 1<<32-1 {
		d.err = fmt.Errorf("%w: %d does not fit 32 bits", ErrCorruptCommand, v)
	}
	return uint32(v)
}

func (d *decoder) bytes() []byte {
	n := d.uvarint()
	if d.err != nil {
		return nil
	}
	if n > uint64(len(d.b)) {
		d.err = fmt.Errorf("%w: length %d beyond %d bytes", ErrCorruptCommand, n, len(d.b))
		return nil
	}
	out := bytes.Clone(d.b[:n])
	d.b = d.b[n:]
	return out
}

// count reads a count of items each taking at least min bytes.
func (d *decoder) count(minBytes int) int {
	n := d.uvarint()
	if d.err == nil && n > uint64(len(d.b)/minBytes) {
		d.err = fmt.Errorf("%w: count %d beyond the data", ErrCorruptCommand, n)
		return 0
	}
	return int(n)
}

func decodeTxnRecord(b []byte) (TxnRecord, error) {
	if len(b) < 2 || b[0] != txnEncodingVersion {
		return TxnRecord{}, fmt.Errorf("%w: transaction record header", ErrCorruptCommand)
	}
	r := TxnRecord{Status: TxnStatus(b[1])}
	if r.Status < TxnPending || r.Status > TxnAborted {
		return TxnRecord{}, fmt.Errorf("%w: transaction status %d", ErrCorruptCommand, b[1])
	}
	d := &decoder{b: b[2:]}
	r.ID.Start = replica.Timestamp(d.uvarint())
	r.ID.Attempt = d.uint32()
	r.ID.Node = string(d.bytes())
	r.Deadline = deadlineFrom(d.varint())
	if n := d.count(1); n > 0 {
		r.Participants = make([]uint32, n)
		for i := range r.Participants {
			p := d.uvarint()
			if p > 1<<32-1 {
				d.err = errors.Join(d.err, fmt.Errorf("%w: partition %d", ErrCorruptCommand, p))
			}
			r.Participants[i] = uint32(p)
		}
	}
	r.CommitTS = replica.Timestamp(d.uvarint())
	if n := d.count(4); n > 0 {
		r.Writes = make([]replica.Entry, n)
		for i := range r.Writes {
			p := d.uvarint()
			key := d.bytes()
			enc := d.bytes()
			if d.err != nil {
				break
			}
			rec, err := replica.DecodeRecord(enc)
			if err != nil {
				return TxnRecord{}, fmt.Errorf("%w: write %d: %w", ErrCorruptCommand, i, err)
			}
			r.Writes[i] = replica.Entry{Partition: uint32(min(p, 1<<32-1)), Key: key, Record: rec}
		}
	}
	if d.err == nil && len(d.b) != 0 {
		d.err = fmt.Errorf("%w: %d bytes after the transaction record", ErrCorruptCommand, len(d.b))
	}
	if d.err != nil {
		return TxnRecord{}, d.err
	}
	if r.ID.Node == "" {
		return TxnRecord{}, fmt.Errorf("%w: transaction record without a node", ErrCorruptCommand)
	}
	return r, nil
}

// intent is the lock a transaction holds on a key: who holds it, where
// its record is, and until when it may not be aborted by others.
type Intent struct {
	ID       TxnID
	Anchor   uint32
	Deadline time.Time
}

// Encoding of an intent (the value of its record):
//
//	version (1) | uvarint start | uvarint attempt | uvarint len(node) | node | uvarint anchor | varint deadline (Unix ns)
func (in Intent) appendBinary(b []byte) []byte {
	b = append(b, txnEncodingVersion)
	b = binary.AppendUvarint(b, uint64(in.ID.Start))
	b = binary.AppendUvarint(b, uint64(in.ID.Attempt))
	b = binary.AppendUvarint(b, uint64(len(in.ID.Node)))
	b = append(b, in.ID.Node...)
	b = binary.AppendUvarint(b, uint64(in.Anchor))
	return binary.AppendVarint(b, deadlineNanos(in.Deadline))
}

func decodeIntent(b []byte) (Intent, error) {
	if len(b) < 1 || b[0] != txnEncodingVersion {
		return Intent{}, fmt.Errorf("%w: intent header", ErrCorruptCommand)
	}
	d := &decoder{b: b[1:]}
	in := Intent{}
	in.ID.Start = replica.Timestamp(d.uvarint())
	in.ID.Attempt = d.uint32()
	in.ID.Node = string(d.bytes())
	anchor := d.uvarint()
	in.Deadline = deadlineFrom(d.varint())
	switch {
	case d.err != nil:
		return Intent{}, d.err
	case len(d.b) != 0:
		return Intent{}, fmt.Errorf("%w: %d bytes after the intent", ErrCorruptCommand, len(d.b))
	case in.ID.Node == "" || anchor > 1<<32-1:
		return Intent{}, fmt.Errorf("%w: intent without a node or with partition %d", ErrCorruptCommand, anchor)
	}
	in.Anchor = uint32(anchor)
	return in, nil
}

// Errors of decide.
var (
	// ErrTxnAborted: a commit found the record ABORTED (someone judged
	// the transaction abandoned, or an older one wounded it). The
	// coordinator cleans its intents and retries with the same id.
	ErrTxnAborted = errors.New("consensus: transaction aborted")
	// ErrTxnCommitted: an abort found the record COMMITTED: the
	// transaction happened; whoever asked must finish it instead.
	ErrTxnCommitted = errors.New("consensus: transaction committed")
)

// decide is the anchor leader's transition of id's record, under the
// record key's latch: cur is the stored record (nil: none). want is
// COMMITTED (with commitTS and writes) or ABORTED. It returns the record
// to propose, or nil when nothing changes (the same decision was already
// made: a retried commit or abort is idempotent), or an error saying
// the other decision was made first. A commit needs a PENDING record
// (written by the anchor's prepare); an abort also stands for a record
// never written, so that a late prepare can no longer create it.
func decide(cur *TxnRecord, id TxnID, want TxnStatus, commitTS replica.Timestamp, writes []replica.Entry) (*TxnRecord, error) {
	switch want {
	case TxnCommitted, TxnAborted:
	default:
		return nil, fmt.Errorf("consensus: decide %s: not a decision", want)
	}
	if cur == nil {
		if want == TxnCommitted {
			return nil, fmt.Errorf("%w: no record of %s (aborted before it was prepared)", ErrTxnAborted, id)
		}
		return &TxnRecord{ID: id, Status: TxnAborted}, nil
	}
	if cur.ID != id {
		return nil, fmt.Errorf("consensus: decide %s: the record is %s's", id, cur.ID)
	}
	if cur.Status == want {
		return nil, nil // nothing to propose: decided already
	}
	switch cur.Status {
	case TxnCommitted:
		return nil, ErrTxnCommitted
	case TxnAborted:
		return nil, ErrTxnAborted
	}
	next := *cur
	next.Status = want
	if want == TxnCommitted {
		next.CommitTS, next.Writes = commitTS, writes
	}
	return &next, nil
}

// ConflictAction is what a transaction's prepare does about another
// transaction's intent on one of its keys.
type ConflictAction int

const (
	// FinishOther: the other transaction COMMITTED: resolve its writes
	// (a participant's resolve), then take the key.
	FinishOther ConflictAction = iota + 1
	// CleanOther: the other transaction is ABORTED: tombstone its
	// intent, then take the key.
	CleanOther
	// WoundOther: the other is PENDING and younger (or past its
	// deadline): abort it on its anchor (decide ABORTED), then clean.
	WoundOther
	// DieSelf: the other is PENDING, older and within its deadline:
	// abort this transaction, release its intents, retry later with the
	// same id (so that it ages and eventually wins).
	DieSelf
)

func (a ConflictAction) String() string {
	switch a {
	case FinishOther:
		return "finish"
	case CleanOther:
		return "clean"
	case WoundOther:
		return "wound"
	case DieSelf:
		return "die"
	default:
		return fmt.Sprintf("ConflictAction(%d)", int(a))
	}
}

// OnConflict is the wound-wait rule. status is the other transaction's
// record status as its anchor's leader reads it (0: no record yet, which
// counts as PENDING until its intent's deadline). No transaction ever
// waits on another while holding intents, so no cycle of waits forms;
// the oldest transaction always wins, so none starves.
func OnConflict(self TxnID, other Intent, status TxnStatus, now time.Time) ConflictAction {
	switch status {
	case TxnCommitted:
		return FinishOther
	case TxnAborted:
		return CleanOther
	}
	if self.Older(other.ID) || !now.Before(other.Deadline) {
		return WoundOther
	}
	return DieSelf
}

// readTxnRecord reads id's record from this node's store (nil: none).
// The caller holds the record key's latch on the leader after
// leaderReady, which makes the read current.
func (g *Group) readTxnRecord(id TxnID) (*TxnRecord, error) {
	rec, err := g.store.Get(g.id, txnRecordKey(id))
	switch {
	case errors.Is(err, replica.ErrNotFound):
		return nil, nil
	case err != nil:
		return nil, fmt.Errorf("consensus: read transaction record: %w", err)
	case rec.Tombstone:
		return nil, nil
	}
	r, err := decodeTxnRecord(rec.Value)
	if err != nil {
		return nil, err
	}
	return &r, nil
}

// decideTxn makes id's decision on this node, the leader of its anchor
// partition (DecideTxn): under the record
// key's latch, after the term's barrier, it applies decide to the stored
// record and proposes the result as one record, stamped above the stored
// one, in one command with the anchor's own resolve (resolveEntries,
// under its keys' latches): the anchor's intents of id are cleared, and
// on a commit its writes merged, by the decision itself. A COMMITTED decision's Raft commit is the transaction's commit
// point. It returns the record as it stands after the call. Errors:
// ErrTxnAborted / ErrTxnCommitted (the other decision came first),
// *NotLeaderError, ErrAmbiguous, ErrNotUpgraded.
func (g *Group) decideTxn(ctx context.Context, id TxnID, want TxnStatus, commitTS replica.Timestamp, writes []replica.Entry) (*TxnRecord, error) {
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
		return nil, fmt.Errorf("consensus: record latch: %w", err)
	}
	held = append(held, release)
	term, err := g.leaderReady(ctx)
	if err != nil {
		return nil, err
	}
	cur, err := g.readTxnRecord(id)
	if err != nil {
		return nil, err
	}
	next, err := decide(cur, id, want, commitTS, writes)
	if err != nil || next == nil {
		return cur, err
	}
	if !g.speaksXTxn() {
		return nil, errNotUpgradedXTxn
	}
	// The anchor's own share is resolved in the decision's entry: its
	// intents of id cleared and, on a commit, its writes merged. Their
	// latches come after the record key's (reserved keys sort first).
	keys, err := g.intentKeysOf(id)
	if err != nil {
		return nil, err
	}
	if len(keys) > 0 {
		releaseKeys, err := g.lockKeys(ctx, keys)
		if err != nil {
			return nil, err
		}
		held = append(held, releaseKeys)
		// Still in the term whose applied state decided next.
		if again, err := g.leaderReady(ctx); err != nil {
			return nil, err
		} else if again != term {
			return nil, g.notLeader()
		}
	}
	entries, err := g.resolveEntries(id, keys, next.Status == TxnCommitted, commitTS, writes)
	if err != nil {
		return nil, err
	}
	stored, serr := g.store.Get(g.id, key)
	found := serr == nil
	rec := replica.Record{Value: next.appendBinary(nil)}
	g.stamp(&rec, stored, found)
	entries = append(entries, replica.Entry{Partition: g.id, Key: key, Record: rec})
	handed = true
	if err := g.proposeLatched(ctx, term, encodeBatch(entries), unlatch); err != nil {
		return nil, err
	}
	return next, nil
}
