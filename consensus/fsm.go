package consensus

import (
	"bufio"
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"sync"
	"sync/atomic"
	"time"

	"github.com/hashicorp/raft"

	"github.com/ringkv/ringkv/internal/varint"
	"github.com/ringkv/ringkv/replica"
)

// Store is what a group's state machine needs from the node's replica
// store (replica.Store implements it).
type Store interface {
	Merge(ctx context.Context, entries []replica.Entry) error
	// MergeUnsynced merges and returns once the entries are visible, before
	// they are fsynced; the FSM applies with it (see fsm).
	MergeUnsynced(ctx context.Context, entries []replica.Entry) error
	Get(partition uint32, key []byte) (replica.Record, error)
	Scan(partition uint32, prefix, start []byte, fn func(key []byte, rec replica.Record) bool) error
}

// Command encoding (the data of a raft.LogCommand entry):
//
//	version byte (1) | op byte | body
//	opMerge (1), every wire version:  uvarint len(key) | key | record (replica encoding, checksummed)
//	opBatch (2), wire version 2 on:   uvarint n | n x (uvarint len(key) | key | uvarint len(record) | record)
//
// An opBatch's records are applied together, in one store commit: a
// single-partition transaction (Group.Txn). A binary older than wire
// version 2 cannot decode opBatch (docs/ARCHITECTURE.md, "Transactions",
// on rolling back), so a leader proposes it only while every member
// speaks version 2.
const (
	commandVersion byte = 1
	opMerge        byte = 1
	opBatch        byte = 2
)

func encodeMerge(key []byte, rec replica.Record) []byte {
	b := make([]byte, 0, 2+binary.MaxVarintLen32+len(key)+len(rec.Value)+48)
	b = append(b, commandVersion, opMerge)
	b = binary.AppendUvarint(b, uint64(len(key)))
	b = append(b, key...)
	return rec.AppendBinary(b)
}

// encodeBatch encodes entries (their Partition is not encoded: the group's
// own) as one opBatch command.
func encodeBatch(entries []replica.Entry) []byte {
	n := 2 + binary.MaxVarintLen32
	for _, e := range entries {
		n += 2*binary.MaxVarintLen32 + len(e.Key) + len(e.Record.Value) + len(e.Record.NodeID) + 32
	}
	b := make([]byte, 0, n)
	b = append(b, commandVersion, opBatch)
	b = binary.AppendUvarint(b, uint64(len(entries)))
	var rec []byte
	for _, e := range entries {
		b = binary.AppendUvarint(b, uint64(len(e.Key)))
		b = append(b, e.Key...)
		rec = e.Record.AppendBinary(rec[:0])
		b = binary.AppendUvarint(b, uint64(len(rec)))
		b = append(b, rec...)
	}
	return b
}

func decodeMerge(b []byte) ([]byte, replica.Record, error) {
	if len(b) < 3 || b[0] != commandVersion || b[1] != opMerge {
		return nil, replica.Record{}, fmt.Errorf("%w: bad header", ErrCorruptCommand)
	}
	key, rest, err := decodeBytes(b[2:])
	if err != nil {
		return nil, replica.Record{}, err
	}
	rec, err := replica.DecodeRecord(rest)
	if err != nil {
		return nil, replica.Record{}, fmt.Errorf("%w: %w", ErrCorruptCommand, err)
	}
	return append([]byte(nil), key...), rec, nil
}

// decodeBytes reads a uvarint length and that many bytes from b; the
// result aliases b.
func decodeBytes(b []byte) (field, rest []byte, err error) {
	n, w := varint.Uvarint(b)
	if w <= 0 || n > uint64(len(b)-w) {
		return nil, nil, fmt.Errorf("%w: bad length", ErrCorruptCommand)
	}
	return b[w : w+int(n)], b[w+int(n):], nil
}

// decodeCommand decodes an opMerge or opBatch command into entries of
// partition group, appended to dst. The entries do not alias b.
func decodeCommand(dst []replica.Entry, group uint32, b []byte) ([]replica.Entry, error) {
	if len(b) < 3 || b[0] != commandVersion {
		return dst, fmt.Errorf("%w: bad header", ErrCorruptCommand)
	}
	switch b[1] {
	case opMerge:
		key, rec, err := decodeMerge(b)
		if err != nil {
			return dst, err
		}
		return append(dst, replica.Entry{Partition: group, Key: key, Record: rec}), nil
	case opBatch:
		n, w := varint.Uvarint(b[2:])
		// Every entry takes at least a key byte, two lengths and a record.
		if w <= 0 || n == 0 || n > uint64(len(b)) {
			return dst, fmt.Errorf("%w: bad batch count", ErrCorruptCommand)
		}
		rest := b[2+w:]
		out := dst
		for range n {
			var key, enc []byte
			var err error
			if key, rest, err = decodeBytes(rest); err != nil {
				return dst, err
			}
			if enc, rest, err = decodeBytes(rest); err != nil {
				return dst, err
			}
			rec, err := replica.DecodeRecord(enc)
			if err != nil {
				return dst, fmt.Errorf("%w: %w", ErrCorruptCommand, err)
			}
			out = append(out, replica.Entry{Partition: group, Key: bytes.Clone(key), Record: rec})
		}
		if len(rest) != 0 {
			return dst, fmt.Errorf("%w: %d bytes after the batch", ErrCorruptCommand, len(rest))
		}
		return out, nil
	default:
		return dst, fmt.Errorf("%w: unknown op %d", ErrCorruptCommand, b[1])
	}
}

// fsm applies a group's committed merges to the partition in the node's
// store. Applying is a merge, so replaying entries after a restart is
// harmless, and a snapshot restore merges rather than replaces: a follower
// keeps newer eventual writes it already holds.
//
// Applies are not fsynced (Store.MergeUnsynced): an entry is applied only
// after it is durable in the Raft log of a majority, and at start raft
// restores the latest snapshot and applies every entry after it again, so
// an apply lost to a machine crash comes back from the log. A snapshot is
// read from the store after raft has applied every entry it covers, and
// applied entries are visible at once, so a snapshot holds them and they
// may then leave the log. This takes the third fsync (after the leader's
// and a follower's log appends) off a write's path, as etcd applies
// without one.
type fsm struct {
	group uint32
	store Store
	// logs, if set, is the group's log durability: an entry is applied
	// only once the local log is durable through it (LogStore.StoreLogs).
	logs LogDurability
	// split is set once the group's opSplit entry is applied (split.go);
	// onSplit, if set, is told then, on the FSM goroutine.
	split   atomic.Pointer[splitInfo]
	onSplit func(info *splitInfo, via string)
	// intents tells the group's intent checks when this node's copy of
	// the partition can hold no intent (intentWatch).
	intents intentWatch

	mu struct {
		sync.Mutex
		changed chan struct{} // closed and replaced after every applied batch
	}
}

var _ raft.BatchingFSM = (*fsm)(nil)

// Apply implements raft.FSM.
func (f *fsm) Apply(l *raft.Log) any {
	return f.ApplyBatch([]*raft.Log{l})[0]
}

// ApplyBatch implements raft.BatchingFSM: every command of the batch is
// merged in one store call (one commit, no fsync: see fsm).
func (f *fsm) ApplyBatch(logs []*raft.Log) []any {
	out := make([]any, len(logs))
	if f.logs != nil && len(logs) > 0 {
		// Raft gives the FSM no context; the wait ends with the fsync (or
		// its failure), which the store always reports.
		if err := f.logs.WaitDurable(context.Background(), logs[len(logs)-1].Index); err != nil {
			err = fmt.Errorf("consensus: apply: %w", err)
			for i := range out {
				out[i] = err
			}
			return out
		}
	}
	entries := make([]replica.Entry, 0, len(logs))
	var slots []int
	writesIntent := false // an entry of entries writes a live intent
	merge := func() {
		if len(entries) == 0 {
			return
		}
		if writesIntent {
			f.intents.begin()
		}
		// Raft gives the FSM no context; applying must finish.
		if err := f.store.MergeUnsynced(context.Background(), entries); err != nil {
			err = fmt.Errorf("consensus: apply to store: %w", err)
			for _, i := range slots {
				out[i] = err
			}
		}
		if writesIntent {
			f.intents.end()
		}
		entries, slots, writesIntent = entries[:0], slots[:0], false
	}
	for i, l := range logs {
		if l.Type != raft.LogCommand {
			continue
		}
		if f.split.Load() != nil {
			out[i] = fmt.Errorf("consensus: group %d: %w", f.group, ErrSplit)
			continue
		}
		if isSplit(l.Data) {
			voters, err := decodeSplit(l.Data)
			if err != nil {
				out[i] = err
				continue
			}
			merge() // the children start from everything before the split
			f.applySplit(&splitInfo{index: l.Index, voters: voters}, "log")
			continue
		}
		var err error
		// A batch's records go into the same store call as every other
		// command of this raft batch: one Badger commit (see
		// docs/ARCHITECTURE.md, "Transactions", on atomic visibility).
		from := len(entries)
		if entries, err = decodeCommand(entries, f.group, l.Data); err != nil {
			out[i] = err
			continue
		}
		writesIntent = writesIntent || anyIntent(entries[from:])
		slots = append(slots, i)
	}
	merge()
	if len(logs) > 0 {
		f.mu.Lock()
		if f.mu.changed != nil {
			close(f.mu.changed)
			f.mu.changed = nil
		}
		f.mu.Unlock()
	}
	return out
}

// applySplit records the split and tells the Manager; a second one (the
// same entry again after a restart) only tells it again, which finds the
// children started.
func (f *fsm) applySplit(info *splitInfo, via string) {
	if f.split.Load() == nil {
		f.split.Store(info)
	}
	if f.onSplit != nil {
		f.onSplit(info, via)
	}
}

// changes returns a channel closed at the next applied batch.
func (f *fsm) changes() <-chan struct{} {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.mu.changed == nil {
		f.mu.changed = make(chan struct{})
	}
	return f.mu.changed
}

// waitApplied blocks until raft's applied index reaches index or ctx ends.
// Raft does not hand Noop and Barrier entries to the FSM, so the index is
// raft's own; the FSM's batches wake the wait early, and a short tick
// covers entries that never reach the FSM.
func (f *fsm) waitApplied(ctx context.Context, r *raft.Raft, index uint64) error {
	var tick *time.Ticker
	for {
		ch := f.changes()
		if r.AppliedIndex() >= index {
			if tick != nil {
				tick.Stop()
			}
			return nil
		}
		if tick == nil {
			tick = time.NewTicker(time.Millisecond)
			defer tick.Stop()
		}
		select {
		case <-ch:
		case <-tick.C:
		case <-ctx.Done():
			return ctx.Err()
		}
	}
}

// Snapshot implements raft.FSM. The records are read when raft persists
// the snapshot, from a point-in-time read of the partition; entries
// applied in between are in the snapshot too, which is harmless because
// restoring merges.
func (f *fsm) Snapshot() (raft.FSMSnapshot, error) {
	return &snapshot{group: f.group, store: f.store, split: f.split.Load()}, nil
}

// Snapshot stream format: repeated (uvarint len(key) | key | uvarint
// len(record) | record), then a zero-length key as terminator, then, for
// a group that has split, the split trailer (split.go).
type snapshot struct {
	group uint32
	store Store
	split *splitInfo
}

func (s *snapshot) Persist(sink raft.SnapshotSink) error {
	w := bufio.NewWriterSize(sink, 256<<10)
	var werr error
	buf := make([]byte, 0, 1024)
	err := s.store.Scan(s.group, nil, nil, func(key []byte, rec replica.Record) bool {
		buf = binary.AppendUvarint(buf[:0], uint64(len(key)))
		buf = append(buf, key...)
		enc := rec.AppendBinary(nil)
		buf = binary.AppendUvarint(buf, uint64(len(enc)))
		buf = append(buf, enc...)
		_, werr = w.Write(buf)
		return werr == nil
	})
	if err == nil {
		err = werr
	}
	if err == nil {
		_, err = w.Write([]byte{0})
	}
	if err == nil && s.split != nil {
		_, err = w.Write(appendSplitTrailer(nil, s.split))
	}
	if err == nil {
		err = w.Flush()
	}
	if err != nil {
		_ = sink.Cancel() // the snapshot is abandoned; report the cause
		return fmt.Errorf("consensus: persist snapshot of group %d: %w", s.group, err)
	}
	if err := sink.Close(); err != nil {
		return fmt.Errorf("consensus: close snapshot sink: %w", err)
	}
	return nil
}

func (s *snapshot) Release() {}

// Restore implements raft.FSM: it merges the snapshot's records into the
// partition, in batches, without an fsync of their own (MergeUnsynced, as
// Apply): raft holds the snapshot it restores durably in its snapshot
// store and restores the newest snapshot again at start, so a machine
// crash during or after a restore loses nothing (merging a record twice
// is harmless). A fsync per batch made installing a large snapshot
// several times slower (BenchmarkSnapshotLarge).
func (f *fsm) Restore(rc io.ReadCloser) error {
	defer func() { _ = rc.Close() }() // read to the end below
	// A snapshot may hold intents: it counts as an intent write.
	f.intents.begin()
	defer f.intents.end()
	r := bufio.NewReaderSize(rc, 256<<10)
	const batch = 512
	entries := make([]replica.Entry, 0, batch)
	flush := func() error {
		if len(entries) == 0 {
			return nil
		}
		err := f.store.MergeUnsynced(context.Background(), entries)
		entries = entries[:0]
		if err != nil {
			return fmt.Errorf("consensus: restore group %d: %w", f.group, err)
		}
		return nil
	}
	for {
		klen, err := binary.ReadUvarint(r)
		if err != nil {
			return fmt.Errorf("consensus: restore group %d: %w", f.group, err)
		}
		if klen == 0 {
			if err := flush(); err != nil {
				return err
			}
			info, err := readSplitTrailer(r)
			if err != nil {
				return fmt.Errorf("consensus: restore group %d: %w", f.group, err)
			}
			if info != nil {
				f.applySplit(info, "snapshot")
			}
			return nil
		}
		if klen > replica.MaxKeyBytes {
			return fmt.Errorf("consensus: restore group %d: key length %d over %d: %w", f.group, klen, replica.MaxKeyBytes, ErrCorruptCommand)
		}
		key, err := readN(r, klen)
		if err != nil {
			return fmt.Errorf("consensus: restore group %d: %w", f.group, err)
		}
		rlen, err := binary.ReadUvarint(r)
		if err != nil || rlen > maxSnapshotRecordBytes {
			return fmt.Errorf("consensus: restore group %d: bad record length: %w", f.group, errors.Join(err, ErrCorruptCommand))
		}
		enc, err := readN(r, rlen)
		if err != nil {
			return fmt.Errorf("consensus: restore group %d: %w", f.group, err)
		}
		rec, err := replica.DecodeRecord(enc)
		if err != nil {
			return fmt.Errorf("consensus: restore group %d: %w", f.group, err)
		}
		entries = append(entries, replica.Entry{Partition: f.group, Key: key, Record: rec})
		if len(entries) == batch {
			if err := flush(); err != nil {
				return err
			}
		}
	}
}

// maxSnapshotRecordBytes bounds one encoded record in a snapshot stream: the
// largest value a store holds plus room for the record's header.
const maxSnapshotRecordBytes = replica.MaxRecordBytes + 1<<20

// readN reads exactly n bytes of r. Memory grows with the bytes actually
// read, never with n alone, so a length field the stream does not back
// cannot make it allocate; a short stream is io.ErrUnexpectedEOF.
func readN(r io.Reader, n uint64) ([]byte, error) {
	if n <= 64<<10 {
		b := make([]byte, n)
		if _, err := io.ReadFull(r, b); err != nil {
			return nil, fmt.Errorf("read %d bytes: %w", n, err)
		}
		return b, nil
	}
	var buf bytes.Buffer
	got, err := io.Copy(&buf, io.LimitReader(r, int64(n)))
	if err != nil {
		return nil, fmt.Errorf("read %d bytes: %w", n, err)
	}
	if uint64(got) != n {
		return nil, io.ErrUnexpectedEOF
	}
	return buf.Bytes(), nil
}
