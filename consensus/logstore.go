package consensus

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"math"
	"sync"
	"sync/atomic"
	"time"

	"github.com/ringkv/ringkv/internal/crc"
	"github.com/ringkv/ringkv/internal/raftwal"
	"github.com/ringkv/ringkv/internal/varint"

	"github.com/hashicorp/raft"

	"github.com/ringkv/ringkv/replica"
)

// Sentinels of LogStore. They live here, with the one type that returns
// them, rather than in errors.go.
var (
	// ErrKeyNotFound is returned, never wrapped, by LogStore.Get and
	// LogStore.GetUint64 for a stable-store key that was never set. Its text
	// is exactly "not found", without the package prefix: hashicorp/raft
	// tells a missing key from a failure by err.Error() == "not found" (the
	// contract of raft-boltdb, which raft's own code follows), for example
	// for CurrentTerm on first boot.
	ErrKeyNotFound = errors.New("not found")
	// ErrLogStoreBroken is returned (joined with the original failure) by
	// StoreLog, StoreLogs, DeleteRange, FirstIndex and LastIndex after a log
	// write failed in a way that may have applied part of it: the cached
	// first and last index may no longer match the store. A new LogStore on
	// the same store (NewLogStore reloads the indexes) recovers.
	ErrLogStoreBroken = errors.New("consensus: log store broken by a failed write; reopen it")
	// ErrCorruptLog marks a stored log entry, log key or stable-store value
	// that fails to decode (returned wrapped).
	ErrCorruptLog = errors.New("consensus: corrupt raft log or stable store")
	// ErrSyncStalled is returned (wrapped) by StoreLogs, with nothing
	// stored, while the store's fsync in progress has run longer than the
	// limit set by SetSyncStallLimit. A leader that gets it from its log
	// store steps down at once (hashicorp/raft does so on any log store
	// error), so the group elects a leader whose disk keeps up; a follower
	// fails the append and the leader retries it.
	ErrSyncStalled = errors.New("consensus: raft log append refused: the disk's fsync is stalled")
)

// StallReporter is the optional ability of a RawStore to tell how long
// its fsync in progress has run (0 when none runs); replica.Store has it.
type StallReporter interface {
	SyncStall() time.Duration
}

// RawStore is what LogStore needs from the node's store; replica.Store
// implements it. Writes must be durable when WriteRaw returns nil.
type RawStore interface {
	WriteRaw(ctx context.Context, sets []replica.KV, deleteRanges []replica.KeyRange) error
	// WriteRawAsync returns once the writes are visible and calls durable
	// (without blocking) once they are fsynced, or with the error that
	// kept them from being.
	WriteRawAsync(ctx context.Context, sets []replica.KV, deleteRanges []replica.KeyRange, durable func(error)) error
	GetRaw(key []byte) ([]byte, error)
	ScanRaw(prefix, start []byte, fn func(key, value []byte) bool) error
	LastRaw(prefix []byte) (key, value []byte, err error)
}

// diskStater is what LogStore asks of a store whose disk may fill up;
// replica.Store has it.
type diskStater interface {
	DiskState() replica.DiskState
}

var (
	_ RawStore         = (*replica.Store)(nil)
	_ diskStater       = (*replica.Store)(nil)
	_ StallReporter    = (*raftwal.WAL)(nil)
	_ raft.LogStore    = (*LogStore)(nil)
	_ raft.StableStore = (*LogStore)(nil)
)

// LogStore is one Raft group's log and stable store, kept in the node's
// shared store (the replica.Store, whose key layout lists these namespaces):
//
//	'l' | group uint32 BE | index uint64 BE -> log entry (encoding below)
//	's' | group uint32 BE | name            -> stable-store value
//
// It implements raft.LogStore and raft.StableStore (hashicorp/raft v1.8.0).
// Every write is durable before it returns: it goes through the store's
// committer, whose fsync it shares with the writes of every other group and
// with replica merges (group commit). The log may have gaps (it does not
// implement raft.MonotonicLogStore); FirstIndex and LastIndex are the
// smallest and largest stored index, as in raft-boltdb.
//
// hashicorp/raft has no context, so LogStore writes with
// context.Background(): raft calls its stores synchronously and waits for
// them by contract, and a write cannot hang past the store's Close (the
// committer answers every request it took; the rest get replica.ErrClosed).
// This is the one place a ctx is made up.
//
// Appends the store refuses for lack of space (replica.ErrDiskFull) or
// that SetSyncStallLimit refuses while the store's fsync stalls
// (ErrSyncStalled) store nothing and leave the LogStore usable; raft
// retries them, or a leader steps down.
//
// LogStore is safe for concurrent use (raft calls it from its main loop and
// its snapshot goroutine). Log writes (StoreLogs, DeleteRange) are
// serialized; reads and stable-store calls are not.
type LogStore struct {
	store      RawStore
	wal        *raftwal.WAL // if set, the log's entries are here, not in store
	group      uint32
	logPrefix  []byte // 'l' | group
	stablePref []byte // 's' | group

	// writeMu serializes log writes, held across the store write so that
	// the cached indexes change in the order the writes commit. It guards
	// first, last and broken against other writers; readers load them
	// without it. It is the one lock here held across I/O: the order is the
	// point, and only this group's log writers wait on it.
	writeMu sync.Mutex
	first   atomic.Uint64         // smallest stored index; 0 if the log is empty
	last    atomic.Uint64         // largest stored index; 0 if the log is empty
	broken  atomic.Pointer[error] // set by a write that may have partly applied

	// stallLimit (nanoseconds; 0: none) is SetSyncStallLimit's; stalls is
	// the store as a StallReporter, nil if it is not one.
	stallLimit atomic.Int64
	stalls     StallReporter
	// disk is the store as a diskStater, nil if it is not one: appends to
	// a WAL are refused while the store's disk is full, as the store
	// refuses its own log writes.
	disk diskStater

	// dur tracks durability: StoreLogs returns once its entries are
	// visible, and the store reports later when they are fsynced.
	dur struct {
		sync.Mutex
		index   uint64        // every stored entry at or below it is fsynced
		err     error         // a failed fsync or write: sticky
		changed chan struct{} // closed and replaced when index or err changes
	}
}

// NewLogStore returns the log and stable store of group in store, loading
// its first and last log index. It returns a wrapped ErrCorruptLog for a
// malformed log key, or the store's error.
func NewLogStore(store RawStore, group uint32) (*LogStore, error) {
	return newLogStore(store, nil, group)
}

// NewWALLogStore is NewLogStore with the log's entries in wal, the
// write-ahead log the node's groups share, instead of in store (which
// keeps the stable store): a node's groups then share one fdatasync of
// the WAL, and their entries stay out of Badger. The entries are encoded
// as in store. A node's log stores are all of one kind (the data
// directory's format says which; MigrateLogs moves a directory's
// logs into the WAL).
func NewWALLogStore(store RawStore, wal *raftwal.WAL, group uint32) (*LogStore, error) {
	return newLogStore(store, wal, group)
}

func newLogStore(store RawStore, wal *raftwal.WAL, group uint32) (*LogStore, error) {
	s := &LogStore{
		store:      store,
		wal:        wal,
		group:      group,
		logPrefix:  binary.BigEndian.AppendUint32([]byte{nsRaftLog}, group),
		stablePref: binary.BigEndian.AppendUint32([]byte{nsRaftStable}, group),
	}
	s.stalls, _ = store.(StallReporter)
	s.disk, _ = store.(diskStater)
	if wal != nil {
		s.stalls = wal
	}
	if err := s.loadIndexesLocked(); err != nil {
		return nil, err
	}
	// The store fsyncs what it recovered before it opens: all of it is durable.
	s.dur.index = s.last.Load()
	s.dur.changed = make(chan struct{})
	return s, nil
}

// FirstIndex implements raft.LogStore: the smallest stored index, 0 if the
// log is empty. Errors: ErrLogStoreBroken.
// IsMonotonic tells raft (raft.MonotonicLogStore) to delete the whole
// log after installing a snapshot. Without it raft keeps TrailingLogs of
// the follower's own stale log below the snapshot, leaving a gap and a log
// longer than snapshot threshold plus trailing logs on a node that caught
// up by InstallSnapshot.
func (s *LogStore) IsMonotonic() bool { return true }

var _ raft.MonotonicLogStore = (*LogStore)(nil)

func (s *LogStore) FirstIndex() (uint64, error) {
	if err := s.brokenErr(); err != nil {
		return 0, err
	}
	return s.first.Load(), nil
}

// LastIndex implements raft.LogStore: the largest stored index, 0 if the log
// is empty. Errors: ErrLogStoreBroken.
func (s *LogStore) LastIndex() (uint64, error) {
	if err := s.brokenErr(); err != nil {
		return 0, err
	}
	return s.last.Load(), nil
}

// GetLog implements raft.LogStore: it fills log with the entry at index.
// log.Data and log.Extensions are the caller's (a private copy).
//
// Errors: raft.ErrLogNotFound (unwrapped: raft compares with ==) if there is
// no entry at index; a wrapped ErrCorruptLog if the stored entry fails to
// decode or carries another index; otherwise the store's error.
func (s *LogStore) GetLog(index uint64, log *raft.Log) error {
	var val []byte
	var err error
	if s.wal != nil {
		val, err = s.wal.Get(s.group, index)
	} else {
		val, err = s.store.GetRaw(s.logKey(index))
	}
	if errors.Is(err, replica.ErrNotFound) || errors.Is(err, raftwal.ErrNotFound) {
		return raft.ErrLogNotFound
	}
	if err != nil {
		return fmt.Errorf("get log %d of group %d: %w", index, s.group, err)
	}
	if err := decodeLog(val, log); err != nil {
		return fmt.Errorf("log %d of group %d: %w", index, s.group, err)
	}
	if log.Index != index {
		return fmt.Errorf("%w: log %d of group %d holds index %d", ErrCorruptLog, index, s.group, log.Index)
	}
	return nil
}

// StoreLog implements raft.LogStore; see StoreLogs.
func (s *LogStore) StoreLog(log *raft.Log) error {
	return s.StoreLogs([]*raft.Log{log})
}

// StoreLogs implements raft.LogStore: it stores logs, replacing any
// entries at the same indexes, and returns once they are visible, while the
// store fsyncs them; DurableIndex and WaitDurable tell when they are
// durable. It does not retain logs.
//
// Returning before the fsync is what lets the leader replicate an entry
// while its own fsync runs, and a follower take the next append while the
// last one syncs, as etcd does. Raft's safety needs an entry counted
// towards a commit only once durable where it was counted; the group's
// transport and state machine make up for raft counting early:
//   - a follower answers an append only once the entries are durable
//     (Transport, serving AppendEntries);
//   - the leader's commit index goes out to followers only as far as its
//     own log is durable (Transport, sending AppendEntries);
//   - an entry is applied, so seen by reads and answered to its writer,
//     only once the local log is durable through it (fsm.ApplyBatch).
//
// So a committed entry becomes visible only once the leader and a majority
// hold it on disk, which is what raft's log durability promises.
//
// Errors: ErrLogStoreBroken; a wrapped replica.ErrInvalidEntry if an entry is
// too large for the store, or a wrapped replica.ErrDiskFull while the
// node's disk is full (nothing is stored either way: raft retries, or a
// leader steps down); otherwise the store's error,
// after which the LogStore is broken (part of logs may be stored).
func (s *LogStore) StoreLogs(logs []*raft.Log) error {
	if len(logs) == 0 {
		return nil
	}
	lo, hi := uint64(math.MaxUint64), uint64(0)
	for _, l := range logs {
		lo, hi = min(lo, l.Index), max(hi, l.Index)
	}
	write, err := s.encodeLogs(logs, lo, hi)
	if err != nil {
		return err
	}
	if err := s.checkStall(); err != nil {
		return err
	}
	s.writeMu.Lock()
	defer s.writeMu.Unlock()
	if err := s.brokenErr(); err != nil {
		return err
	}
	if err := write(func(err error) { s.markDurable(hi, err) }); err != nil {
		return s.failLocked(fmt.Errorf("store logs %d-%d of group %d: %w", lo, hi, s.group, err))
	}
	if f := s.first.Load(); f == 0 || lo < f {
		s.first.Store(lo)
	}
	if hi > s.last.Load() {
		s.last.Store(hi)
	}
	return nil
}

// encodeLogs encodes logs (indexes lo..hi) for where this LogStore keeps
// its entries and returns the write that stores them, answering
// durable once they are fsynced. A WAL's append is refused here while the
// store's disk is full, as the store refuses its own log writes.
func (s *LogStore) encodeLogs(logs []*raft.Log, lo, hi uint64) (write func(durable func(error)) error, err error) {
	size := 0
	for _, l := range logs {
		size += logKeyLen + encodedLogLen(l)
	}
	buf := make([]byte, 0, size)
	if s.wal != nil {
		if s.disk != nil {
			if st := s.disk.DiskState(); st.Full {
				return nil, fmt.Errorf("store logs %d-%d of group %d: %w: %s", lo, hi, s.group, replica.ErrDiskFull, st.Reason)
			}
		}
		entries := make([]raftwal.Entry, len(logs))
		for i, l := range logs {
			start := len(buf)
			buf = appendLog(buf, l)
			entries[i] = raftwal.Entry{Index: l.Index, Data: buf[start:len(buf):len(buf)]}
		}
		return func(durable func(error)) error { return s.wal.Append(s.group, entries, durable) }, nil
	}
	sets := make([]replica.KV, len(logs))
	for i, l := range logs {
		start := len(buf)
		buf = s.appendLogKey(buf, l.Index)
		key := buf[start:len(buf):len(buf)]
		start = len(buf)
		buf = appendLog(buf, l)
		sets[i] = replica.KV{Key: key, Value: buf[start:len(buf):len(buf)]}
	}
	return func(durable func(error)) error {
		return s.store.WriteRawAsync(context.Background(), sets, nil, durable) //nolint:wrapcheck // wrapped by StoreLogs
	}, nil
}

// DeleteRange implements raft.LogStore: it durably deletes the entries with
// index in [lo, hi] (inclusive; nothing if lo > hi).
//
// Errors: ErrLogStoreBroken; otherwise the store's error, after which the
// LogStore is broken (part of the range may be deleted).
func (s *LogStore) DeleteRange(lo, hi uint64) error {
	if lo > hi {
		return nil
	}
	// Log keys all have the same length, so logKey(hi)+0x00 is the next
	// possible key after logKey(hi).
	r := replica.KeyRange{Start: s.logKey(lo), End: append(s.logKey(hi), 0)}

	s.writeMu.Lock()
	defer s.writeMu.Unlock()
	if err := s.brokenErr(); err != nil {
		return err
	}
	suffix := hi >= s.last.Load() // a conflict truncation, not compaction
	var err error
	if s.wal != nil {
		err = s.wal.DeleteRange(s.group, lo, hi)
	} else {
		err = s.store.WriteRaw(context.Background(), nil, []replica.KeyRange{r})
	}
	if err != nil {
		return s.failLocked(fmt.Errorf("delete logs %d-%d of group %d: %w", lo, hi, s.group, err))
	}
	if suffix && lo > 0 {
		// The durable write above followed every earlier StoreLogs, so their
		// reports are in; entries stored at lo or above from now on are new.
		s.dur.Lock()
		s.dur.index = min(s.dur.index, lo-1)
		s.dur.Unlock()
	}
	// The range may have had gaps on either side: read the new bounds back.
	if err := s.loadIndexesLocked(); err != nil {
		return s.failLocked(err)
	}
	return nil
}

// loadIndexesLocked reads the first and last index from the store. writeMu
// must be held (or s not yet shared).
func (s *LogStore) loadIndexesLocked() error {
	if s.wal != nil {
		first, last := s.wal.Bounds(s.group)
		s.first.Store(first)
		s.last.Store(last)
		return nil
	}
	var first, last uint64
	var ferr error
	err := s.store.ScanRaw(s.logPrefix, nil, func(key, _ []byte) bool {
		first, ferr = s.indexOf(key)
		return false
	})
	if err == nil {
		err = ferr
	}
	if err != nil {
		return fmt.Errorf("load first log index of group %d: %w", s.group, err)
	}
	key, _, err := s.store.LastRaw(s.logPrefix)
	switch {
	case errors.Is(err, replica.ErrNotFound):
		last = 0
	case err != nil:
		return fmt.Errorf("load last log index of group %d: %w", s.group, err)
	default:
		if last, err = s.indexOf(key); err != nil {
			return fmt.Errorf("load last log index of group %d: %w", s.group, err)
		}
	}
	s.first.Store(first)
	s.last.Store(last)
	return nil
}

// SetSyncStallLimit makes StoreLogs refuse appends (ErrSyncStalled) while
// the store's fsync in progress has run longer than limit, if the store
// reports its stalls (StallReporter); 0 or negative: never. Safe for
// concurrent use.
func (s *LogStore) SetSyncStallLimit(limit time.Duration) { s.stallLimit.Store(int64(limit)) }

// checkStall returns ErrSyncStalled if the store's fsync stalls beyond the limit.
func (s *LogStore) checkStall() error {
	limit := time.Duration(s.stallLimit.Load())
	if limit <= 0 || s.stalls == nil {
		return nil
	}
	if d := s.stalls.SyncStall(); d > limit {
		return fmt.Errorf("store logs of group %d: %w (running for %v, over %v)", s.group, ErrSyncStalled, d.Round(time.Millisecond), limit)
	}
	return nil
}

// failLocked marks the LogStore broken unless err shows that nothing was
// applied, and returns err.
func (s *LogStore) failLocked(err error) error {
	if errors.Is(err, replica.ErrInvalidEntry) || errors.Is(err, replica.ErrClosed) || errors.Is(err, replica.ErrDiskFull) ||
		errors.Is(err, raftwal.ErrTooLarge) || errors.Is(err, raftwal.ErrClosed) || errors.Is(err, raftwal.ErrNotWritten) {
		return err // nothing applied: the cached indexes still hold
	}
	broken := errors.Join(ErrLogStoreBroken, err)
	s.broken.Store(&broken)
	s.markDurable(0, broken) // waiters give up
	return err
}

// markDurable records that every entry up to index is fsynced, or, with
// err, that durability failed (sticky), and wakes waiters.
func (s *LogStore) markDurable(index uint64, err error) {
	s.dur.Lock()
	defer s.dur.Unlock()
	switch {
	case s.dur.err != nil:
		return
	case err != nil:
		s.dur.err = fmt.Errorf("consensus: log of group %d not durable: %w", s.group, err)
	case index > s.dur.index:
		s.dur.index = index
	default:
		return
	}
	close(s.dur.changed)
	s.dur.changed = make(chan struct{})
}

// DurableIndex returns the index up to which every stored entry is fsynced.
func (s *LogStore) DurableIndex() uint64 {
	s.dur.Lock()
	defer s.dur.Unlock()
	return s.dur.index
}

// WaitDurable returns nil once every entry up to index is fsynced, the
// durability failure if one happened, or ctx's error.
func (s *LogStore) WaitDurable(ctx context.Context, index uint64) error {
	for {
		s.dur.Lock()
		done, err, ch := s.dur.index >= index, s.dur.err, s.dur.changed
		s.dur.Unlock()
		switch {
		case err != nil:
			return err
		case done:
			return nil
		}
		select {
		case <-ch:
		case <-ctx.Done():
			return ctx.Err() //nolint:wrapcheck // the caller's own ctx
		}
	}
}

func (s *LogStore) brokenErr() error {
	if p := s.broken.Load(); p != nil {
		return *p
	}
	return nil
}

// Set implements raft.StableStore: it durably stores val under key. It does
// not retain key or val. Errors: a wrapped replica.ErrInvalidEntry if key or
// val is too large; otherwise the store's error.
func (s *LogStore) Set(key, val []byte) error {
	err := s.store.WriteRaw(context.Background(), []replica.KV{{Key: s.stableKey(key), Value: val}}, nil)
	if err != nil {
		return fmt.Errorf("set stable key of group %d: %w", s.group, err)
	}
	return nil
}

// Get implements raft.StableStore: it returns a copy of the value stored
// under key (non-nil, even if empty).
//
// Errors: ErrKeyNotFound (unwrapped: raft matches its text) if key was never
// set; otherwise the store's error.
func (s *LogStore) Get(key []byte) ([]byte, error) {
	val, err := s.store.GetRaw(s.stableKey(key))
	if errors.Is(err, replica.ErrNotFound) {
		return nil, ErrKeyNotFound
	}
	if err != nil {
		return nil, fmt.Errorf("get stable key of group %d: %w", s.group, err)
	}
	return val, nil
}

// SetUint64 implements raft.StableStore: Set of val as 8 big-endian bytes.
func (s *LogStore) SetUint64(key []byte, val uint64) error {
	return s.Set(key, binary.BigEndian.AppendUint64(nil, val))
}

// GetUint64 implements raft.StableStore.
//
// Errors: (0, ErrKeyNotFound), unwrapped, if key was never set, as
// raft-boltdb does (raft treats it as 0); a wrapped ErrCorruptLog if the
// value is not 8 bytes; otherwise the store's error.
func (s *LogStore) GetUint64(key []byte) (uint64, error) {
	val, err := s.Get(key)
	if err != nil {
		return 0, err
	}
	if len(val) != 8 {
		return 0, fmt.Errorf("%w: stable uint64 of group %d has %d bytes, want 8", ErrCorruptLog, s.group, len(val))
	}
	return binary.BigEndian.Uint64(val), nil
}

// Namespaces of the node's store used here (see the replica package's key
// layout).
const (
	nsRaftLog    = 'l'
	nsRaftStable = 's'
	logKeyLen    = 1 + 4 + 8
)

func (s *LogStore) appendLogKey(dst []byte, index uint64) []byte {
	dst = append(dst, s.logPrefix...)
	return binary.BigEndian.AppendUint64(dst, index)
}

func (s *LogStore) logKey(index uint64) []byte {
	return s.appendLogKey(make([]byte, 0, logKeyLen+1), index) // +1: room for DeleteRange's 0x00
}

func (s *LogStore) stableKey(name []byte) []byte {
	return append(append(make([]byte, 0, len(s.stablePref)+len(name)), s.stablePref...), name...)
}

// indexOf returns the index in a log key of this group.
func (s *LogStore) indexOf(key []byte) (uint64, error) {
	if len(key) != logKeyLen {
		return 0, fmt.Errorf("%w: log key of %d bytes, want %d", ErrCorruptLog, len(key), logKeyLen)
	}
	return binary.BigEndian.Uint64(key[len(s.logPrefix):]), nil
}

// Log entry encoding, version 1:
//
//	version    byte (1)
//	type       byte (raft.LogType)
//	flags      byte (bit 0: AppendedAt is set; other bits 0)
//	index      uvarint
//	term       uvarint
//	appendedAt varint, Unix nanoseconds (only if flag bit 0)
//	data       uvarint length, bytes
//	extensions uvarint length, bytes
//	crc        uint32 BE, CRC-32C (Castagnoli) of everything before it
//
// AppendedAt round-trips as an instant (time.Unix(0, n)): its location and
// monotonic reading are not kept, and a zero AppendedAt stays zero.
const (
	logVersion      = 1
	logFlagAppended = 1 << 0
	logCRCLen       = 4
	logFixedLen     = 3 + logCRCLen
)

// encodedLogLen is an upper bound of the encoding of l.
func encodedLogLen(l *raft.Log) int {
	return logFixedLen + 5*binary.MaxVarintLen64 + len(l.Data) + len(l.Extensions)
}

// appendLog appends the encoding of l to dst.
func appendLog(dst []byte, l *raft.Log) []byte {
	start := len(dst)
	var flags byte
	if !l.AppendedAt.IsZero() {
		flags |= logFlagAppended
	}
	dst = append(dst, logVersion, byte(l.Type), flags)
	dst = binary.AppendUvarint(dst, l.Index)
	dst = binary.AppendUvarint(dst, l.Term)
	if flags&logFlagAppended != 0 {
		dst = binary.AppendVarint(dst, l.AppendedAt.UnixNano())
	}
	dst = binary.AppendUvarint(dst, uint64(len(l.Data)))
	dst = append(dst, l.Data...)
	dst = binary.AppendUvarint(dst, uint64(len(l.Extensions)))
	dst = append(dst, l.Extensions...)
	return binary.BigEndian.AppendUint32(dst, crc.Sum(dst[start:]))
}

// decodeLog decodes b into l, whose Data and Extensions then alias b (nil
// when empty). It returns a wrapped ErrCorruptLog for anything but a
// well-formed version-1 encoding with a matching checksum.
func decodeLog(b []byte, l *raft.Log) error {
	if len(b) < logFixedLen {
		return fmt.Errorf("%w: log entry of %d bytes is too short", ErrCorruptLog, len(b))
	}
	body := b[:len(b)-logCRCLen]
	if got, want := crc.Sum(body), binary.BigEndian.Uint32(b[len(body):]); got != want {
		return fmt.Errorf("%w: log entry checksum %08x, want %08x", ErrCorruptLog, got, want)
	}
	if body[0] != logVersion {
		return fmt.Errorf("%w: log entry version %d, want %d", ErrCorruptLog, body[0], logVersion)
	}
	typ, flags := body[1], body[2]
	if flags&^logFlagAppended != 0 {
		return fmt.Errorf("%w: log entry flags %#x", ErrCorruptLog, flags)
	}
	d := logDecoder{b: body[3:]}
	out := raft.Log{Type: raft.LogType(typ)}
	out.Index = d.uvarint()
	out.Term = d.uvarint()
	if flags&logFlagAppended != 0 {
		out.AppendedAt = time.Unix(0, d.varint())
	}
	out.Data = d.bytes()
	out.Extensions = d.bytes()
	if d.err != nil {
		return d.err
	}
	if len(d.b) != 0 {
		return fmt.Errorf("%w: %d bytes after the log entry", ErrCorruptLog, len(d.b))
	}
	*l = out
	return nil
}

// logDecoder reads the fields of a log entry; the first error sticks.
type logDecoder struct {
	b   []byte
	err error
}

func (d *logDecoder) uvarint() uint64 {
	if d.err != nil {
		return 0
	}
	v, n := varint.Uvarint(d.b)
	if n <= 0 {
		d.err = fmt.Errorf("%w: bad uvarint in log entry", ErrCorruptLog)
		return 0
	}
	d.b = d.b[n:]
	return v
}

func (d *logDecoder) varint() int64 {
	if d.err != nil {
		return 0
	}
	v, n := varint.Varint(d.b)
	if n <= 0 {
		d.err = fmt.Errorf("%w: bad varint in log entry", ErrCorruptLog)
		return 0
	}
	d.b = d.b[n:]
	return v
}

func (d *logDecoder) bytes() []byte {
	n := d.uvarint()
	if d.err != nil {
		return nil
	}
	if n > uint64(len(d.b)) {
		d.err = fmt.Errorf("%w: log entry field of %d bytes, %d left", ErrCorruptLog, n, len(d.b))
		return nil
	}
	if n == 0 {
		return nil
	}
	v := d.b[:n:n]
	d.b = d.b[n:]
	return v
}
