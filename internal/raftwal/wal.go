// Package raftwal is a write-ahead log shared by the Raft groups of one
// node: every group's log entries go to the same segment files, so one
// fdatasync makes the appends of every group durable (group commit), and
// no entry passes through the node's Badger (its memtable, its value log,
// its compactions) on its way to the disk.
//
// Why not a library: hashicorp/raft-wal keeps one WAL per Raft group, each
// with its own fsync, and pulls etcd v3.3 code into the module;
// tidwall/wal is one log of one sequence, reads whole segments into
// memory and checks no checksum. A node here runs a group per partition
// (64 by default) and wants them to share a sync, which is what
// multi-raft stores do (TiKV's raft-engine, dragonboat's tan).
//
// # On disk
//
// A directory of segment files named by a sequence number
// (0000000000000001.wal, ...), appended in order; the newest is the active
// one. A segment is a run of records:
//
//	crc    uint32 LE: CRC-32C of everything after it in the record
//	length uint32 LE: of what follows it
//	kind   byte: kindEntry, kindMove or kindTruncate
//	group  uint32 LE
//	index  uint64 LE: the entry's index (kindTruncate: the first index removed)
//	kindTruncate: hi uint64 LE, the last index removed
//	kindEntry, kindMove: the entry's bytes
//
// An entry replaces any entry of its group at its index and leaves the
// others (as raft-boltdb's StoreLogs: Raft deletes a conflicting suffix
// itself first); a group's log may have holes. A move is an entry copied
// forward out of an old segment (below); on replay it is put back the
// same way. A truncate removes a range.
//
// Open replays the segments in order to rebuild each group's index (where
// each entry lies; entries themselves are read from the files when asked
// for). In the newest segment, the first record cut short or failing its
// checksum is taken for a write a crash interrupted (a crash may persist
// any subset of the pages written since the last fdatasync, none of them
// acknowledged): the segment is cut there, dropping what follows. In an
// older segment, which was fdatasynced whole before the next one began,
// it is corruption (ErrCorrupt).
//
// # Reclaiming space
//
// A segment holds entries of many groups. Each segment counts its live
// entries; once a segment and every one older have none, and the record
// that killed the last of them is on disk, they are deleted. A group that
// stops compacting (an idle partition keeps its trailing entries) would
// pin the oldest segment, and with it every newer one: so when a segment
// is cut, the live entries of segments more than KeepSegments behind the
// active one are moved forward (copied into the active segment), which
// frees the old segment at the next sync.
//
// # Syncing
//
// One syncer goroutine fdatasyncs the active segment for every batch of
// waiting appends and answers their durability callbacks. Under load it
// first lingers for more (Options.SyncLinger, internal/linger): never
// longer than recent fdatasyncs took, so an append waits at most about
// one more fdatasync, and the node spends fewer of them.
package raftwal

import (
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"slices"
	"sort"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"golang.org/x/sys/unix"

	"github.com/ringkv/ringkv/internal/crc"
	"github.com/ringkv/ringkv/internal/linger"
)

// Errors.
var (
	// ErrNotFound: no entry at that index of that group.
	ErrNotFound = errors.New("raftwal: entry not found")
	// ErrCorrupt marks a record that fails to decode or its checksum
	// anywhere but the end of the newest segment (returned wrapped).
	ErrCorrupt = errors.New("raftwal: corrupt log")
	// ErrClosed: the WAL is closed.
	ErrClosed = errors.New("raftwal: closed")
	// ErrTooLarge: an entry larger than MaxEntryBytes.
	ErrTooLarge = errors.New("raftwal: entry too large")
	// ErrInvalidEntry: an entry the WAL cannot hold (index 0, which raft
	// never uses): the caller's mistake, nothing written.
	ErrInvalidEntry = errors.New("raftwal: invalid entry")
	// ErrNotWritten marks (joined with the cause) a write that failed and
	// was cut off the file again: nothing of it stays, and the WAL goes on.
	ErrNotWritten = errors.New("raftwal: nothing written")
)

// Record kinds.
const (
	kindEntry    = 1
	kindMove     = 2
	kindTruncate = 3
)

const (
	// maxKeptBuf: a write buffer grown larger than this by a batch of big
	// entries is not kept for the next one.
	maxKeptBuf  = 4 << 20
	headerLen   = 4 + 4 + 1 + 4 + 8 // crc, length, kind, group, index
	truncateLen = headerLen + 8
	segSuffix   = ".wal"
)

// Options tune a WAL; zero fields take the defaults.
type Options struct {
	// SegmentBytes: a segment is cut once it reaches this size (default
	// 64 MiB).
	SegmentBytes int64
	// KeepSegments: live entries of segments more than this many behind
	// the active one are moved forward when a segment is cut (default 2).
	KeepSegments int
	// MaxEntryBytes bounds one entry (default 64 MiB).
	MaxEntryBytes int
	// NoSync skips fdatasync and directory syncs (tests of logic only;
	// never in a node).
	NoSync bool
	// SyncFault, if set, runs before every fdatasync of the syncer (a
	// chaos hook: it may sleep, a stalled disk, or fail, a failed one);
	// nil in production.
	SyncFault func() error
	// Registerer, if set, gets the WAL's metrics (ringkv_raftwal_*),
	// unregistered by Close.
	Registerer prometheus.Registerer
	// SyncLinger is the longest the syncer waits, under load, for more
	// appends before an fdatasync that would cover fewer than
	// LingerBelow, never longer than recent fdatasyncs took, ending
	// early after a quiet quarter of it (internal/linger). 0: the
	// default, 4 ms; negative: sync at once.
	SyncLinger time.Duration
	// LingerBelow: a batch of at least this many appends is synced at
	// once (default 64).
	LingerBelow int
}

func (o *Options) fill() {
	if o.SegmentBytes <= 0 {
		o.SegmentBytes = 64 << 20
	}
	if o.KeepSegments <= 0 {
		o.KeepSegments = 2
	}
	if o.MaxEntryBytes <= 0 {
		o.MaxEntryBytes = 64 << 20
	}
	if o.SyncLinger == 0 {
		o.SyncLinger = DefaultSyncLinger
	}
	if o.LingerBelow <= 0 {
		o.LingerBelow = DefaultLingerBelow
	}
}

// Defaults of Options.SyncLinger and Options.LingerBelow. Appends come
// from every group of the node (three per linearizable write across a
// cluster of three), so the WAL lingers for more than the replica store
// (16): without a linger an fdatasync under a linearizable write load
// covered about seven appends; lingering up to 64 rather than 16 gave
// 1.07x the writes in an A/B, and the limit (an fdatasync's time) ends
// most lingers first (docs/BENCHMARKS.md, "The Raft WAL's fsync
// linger").
const (
	DefaultSyncLinger  = 4 * time.Millisecond
	DefaultLingerBelow = 64
)

// Entry is one log entry to append: its index and its bytes (the caller's
// encoding; the WAL does not retain Data).
type Entry struct {
	Index uint64
	Data  []byte
}

// loc is where an entry lies: segment sequence number, offset of its
// bytes, their length. n == 0 is a hole (no entry at that index).
type loc struct {
	seg uint64
	off int64
	n   uint32
}

// glog is one group's index: locs[i] is the entry at index first+i.
// locs never starts or ends with a hole.
type glog struct {
	first uint64
	locs  []loc
}

func (g *glog) last() uint64 {
	if len(g.locs) == 0 {
		return 0
	}
	return g.first + uint64(len(g.locs)) - 1
}

type segment struct {
	seq  uint64
	f    *os.File
	size int64
	live int
	// deadAt is the WAL's write position when live last dropped to 0:
	// the segment may be deleted once a sync covered it.
	deadAt int64
}

// WAL is a node's shared Raft log. Safe for concurrent use; appends and
// truncates of one group must not run concurrently with each other (Raft
// serializes a group's log writes), those of different groups may.
type WAL struct {
	dir  string
	opts Options
	m    *metrics

	// mu guards the index, the segments and the writes (held across the
	// write system call, which orders records as the index changes);
	// reads take it shared.
	mu     sync.RWMutex
	groups map[uint32]*glog
	segs   []*segment // oldest first; the last is active
	wpos   int64      // bytes written in all, ever (a sync's coverage)
	synced int64      // wpos covered by the last successful sync
	closed bool
	err    error // a failed write or sync: sticky
	buf    []byte

	// sync state: callbacks of writes waiting for the next fdatasync.
	// kick is closed by Close (under smu, with closing set); stopped is
	// closed when the syncer has answered everything and ended.
	smu     sync.Mutex
	pending []func(error)
	closing bool
	kick    chan struct{}
	stopped chan struct{}
	// linger is the syncer's pause before an fdatasync under load; the
	// syncer's alone.
	linger linger.Policy
	// syncStart is when the fdatasync in progress began (Unix
	// nanoseconds; 0: none runs).
	syncStart atomic.Int64
}

// Open opens (creating it if need be) the WAL in dir and replays it.
func Open(dir string, opts Options) (*WAL, error) {
	opts.fill()
	if err := os.MkdirAll(dir, 0o750); err != nil {
		return nil, fmt.Errorf("raftwal: %w", err)
	}
	w := &WAL{dir: dir, opts: opts, groups: map[uint32]*glog{}, kick: make(chan struct{}, 1), stopped: make(chan struct{}),
		linger: linger.Policy{Max: opts.SyncLinger, Below: opts.LingerBelow}}
	seqs, err := listSegments(dir)
	if err != nil {
		return nil, err
	}
	for i := 1; i < len(seqs); i++ {
		if seqs[i] != seqs[i-1]+1 {
			return nil, fmt.Errorf("%w: segment %s missing", ErrCorrupt, segName(seqs[i-1]+1))
		}
	}
	for i, seq := range seqs {
		if err := w.replay(seq, i == len(seqs)-1); err != nil {
			w.closeFiles()
			return nil, err
		}
	}
	if len(w.segs) == 0 {
		if err := w.cutLocked(); err != nil {
			return nil, err
		}
	}
	w.recount()
	w.synced = w.wpos // read back from the disk
	w.m = newMetrics(func() float64 { return float64(w.Segments()) })
	if err := w.m.register(opts.Registerer); err != nil {
		w.closeFiles()
		return nil, err
	}
	go w.syncer()
	return w, nil
}

func segName(seq uint64) string { return fmt.Sprintf("%016x%s", seq, segSuffix) }

func listSegments(dir string) ([]uint64, error) {
	ents, err := os.ReadDir(dir)
	if err != nil {
		return nil, fmt.Errorf("raftwal: %w", err)
	}
	var seqs []uint64
	for _, e := range ents {
		name, ok := strings.CutSuffix(e.Name(), segSuffix)
		if !ok || len(name) != 16 {
			continue
		}
		seq, err := strconv.ParseUint(name, 16, 64)
		if err != nil {
			continue
		}
		seqs = append(seqs, seq)
	}
	slices.Sort(seqs)
	return seqs, nil
}

// replay reads segment seq into the index; the newest (last) is cut at
// a torn tail and stays open for appends.
func (w *WAL) replay(seq uint64, last bool) error {
	path := filepath.Join(w.dir, segName(seq))
	f, err := os.OpenFile(path, os.O_RDWR, 0)
	if err != nil {
		return fmt.Errorf("raftwal: %w", err)
	}
	data, err := io.ReadAll(f)
	if err != nil {
		_ = f.Close()
		return fmt.Errorf("raftwal: read %s: %w", path, err)
	}
	seg := &segment{seq: seq, f: f}
	w.segs = append(w.segs, seg)
	off := 0
	for off < len(data) {
		n, rec, err := decode(data[off:])
		if err != nil {
			if !last {
				return fmt.Errorf("%w: %s at offset %d: %w", ErrCorrupt, path, off, err)
			}
			// A torn tail: cut it (and make the cut durable before
			// anything is appended after it).
			if err := f.Truncate(int64(off)); err != nil {
				return fmt.Errorf("raftwal: cut %s: %w", path, err)
			}
			if err := f.Sync(); err != nil {
				return fmt.Errorf("raftwal: cut %s: %w", path, err)
			}
			break
		}
		w.apply(rec, loc{seg: seq, off: int64(off + rec.dataOff), n: uint32(len(rec.data))}) //nolint:gosec // bounded by MaxEntryBytes
		off += n
	}
	seg.size = int64(off)
	w.wpos += int64(off)
	if _, err := f.Seek(int64(off), io.SeekStart); err != nil {
		return fmt.Errorf("raftwal: %w", err)
	}
	return nil
}

// record is a decoded record.
type record struct {
	kind    byte
	group   uint32
	index   uint64
	hi      uint64
	data    []byte
	dataOff int // offset of data in the record
}

// decode reads the record at the start of b and returns its length.
func decode(b []byte) (int, record, error) {
	if len(b) < headerLen {
		return 0, record{}, errors.New("record cut short")
	}
	length := binary.LittleEndian.Uint32(b[4:8])
	if uint64(length) > uint64(len(b)-8) {
		return 0, record{}, errors.New("record cut short")
	}
	body := b[8 : 8+int(length)]
	if crc.Sum(body) != binary.LittleEndian.Uint32(b[0:4]) {
		return 0, record{}, errors.New("checksum mismatch")
	}
	if len(body) < headerLen-8 {
		return 0, record{}, errors.New("record too short")
	}
	r := record{kind: body[0], group: binary.LittleEndian.Uint32(body[1:5]), index: binary.LittleEndian.Uint64(body[5:13])}
	switch r.kind {
	case kindEntry, kindMove:
		r.data, r.dataOff = body[13:], headerLen
	case kindTruncate:
		if len(body) != truncateLen-8 {
			return 0, record{}, errors.New("truncate record of the wrong length")
		}
		r.hi = binary.LittleEndian.Uint64(body[13:21])
	default:
		return 0, record{}, fmt.Errorf("unknown record kind %d", r.kind)
	}
	if r.index == 0 {
		return 0, record{}, errors.New("index 0")
	}
	return 8 + int(length), r, nil
}

func appendHeader(dst []byte, kind byte, group uint32, index uint64, bodyLen int) []byte {
	dst = binary.LittleEndian.AppendUint32(dst, 0)                           // crc, set by seal
	dst = binary.LittleEndian.AppendUint32(dst, uint32(headerLen-8+bodyLen)) //nolint:gosec // bounded by MaxEntryBytes
	dst = append(dst, kind)
	dst = binary.LittleEndian.AppendUint32(dst, group)
	return binary.LittleEndian.AppendUint64(dst, index)
}

// seal sets the checksum of the record starting at dst[start:].
func seal(dst []byte, start int) {
	binary.LittleEndian.PutUint32(dst[start:], crc.Sum(dst[start+8:]))
}

// apply changes the index for one record (replay and writes alike).
func (w *WAL) apply(r record, at loc) {
	switch r.kind {
	case kindEntry, kindMove:
		w.put(r.group, r.index, at)
	case kindTruncate:
		w.remove(r.group, r.index, r.hi)
	}
}

// put puts the entry at index and leaves the others, making holes
// between it and the log if need be. (A moved entry's old segment may be
// gone at replay, so the index need not hold it either.)
func (w *WAL) put(group uint32, index uint64, at loc) {
	g := w.groups[group]
	if g == nil {
		g = &glog{}
		w.groups[group] = g
	}
	switch {
	case len(g.locs) == 0:
		g.first = index
		g.locs = append(g.locs[:0], at)
	case index < g.first:
		locs := make([]loc, g.first-index, g.first-index+uint64(len(g.locs)))
		locs[0] = at
		g.locs = append(locs, g.locs...)
		g.first = index
	case index > g.last():
		for g.last() < index-1 {
			g.locs = append(g.locs, loc{}) // a hole
		}
		g.locs = append(g.locs, at)
	default:
		g.locs[index-g.first] = at
	}
}

// remove removes the entries of group in [lo, hi].
func (w *WAL) remove(group uint32, lo, hi uint64) {
	g := w.groups[group]
	if g == nil || len(g.locs) == 0 || lo > hi || hi < g.first || lo > g.last() {
		return
	}
	lo, hi = max(lo, g.first), min(hi, g.last())
	for i := lo; i <= hi; i++ {
		g.locs[i-g.first] = loc{}
	}
	// Trim holes at both ends.
	start := 0
	for start < len(g.locs) && g.locs[start].n == 0 {
		start++
	}
	end := len(g.locs)
	for end > start && g.locs[end-1].n == 0 {
		end--
	}
	if start == end {
		delete(w.groups, group)
		return
	}
	g.first += uint64(start)
	if start > len(g.locs)/2 {
		g.locs = slices.Clone(g.locs[start:end]) // give the front back
	} else {
		g.locs = g.locs[start:end]
	}
}

// recount sets every segment's live count from the index.
func (w *WAL) recount() {
	for _, s := range w.segs {
		s.live = 0
	}
	for _, g := range w.groups {
		for _, l := range g.locs {
			if s := w.segOf(l.seg); l.n != 0 && s != nil {
				s.live++
			}
		}
	}
	for _, s := range w.segs {
		if s.live == 0 {
			s.deadAt = 0
		}
	}
}

// cutLocked starts a new active segment. w.mu held (or w not shared).
func (w *WAL) cutLocked() error {
	var seq uint64 = 1
	if n := len(w.segs); n > 0 {
		old := w.segs[n-1]
		seq = old.seq + 1
		// What was written to the old segment must be on disk before a
		// sync of the new one can stand for it.
		if !w.opts.NoSync {
			if err := unix.Fdatasync(int(old.f.Fd())); err != nil {
				return fmt.Errorf("raftwal: sync %s: %w", segName(old.seq), err)
			}
		}
	}
	f, err := os.OpenFile(filepath.Join(w.dir, segName(seq)), os.O_CREATE|os.O_RDWR|os.O_EXCL, 0o640)
	if err != nil {
		return fmt.Errorf("raftwal: %w", err)
	}
	if !w.opts.NoSync {
		if err := syncDir(w.dir); err != nil {
			_ = f.Close()
			return err
		}
	}
	w.segs = append(w.segs, &segment{seq: seq, f: f})
	return nil
}

func syncDir(dir string) error {
	d, err := os.Open(dir)
	if err != nil {
		return fmt.Errorf("raftwal: %w", err)
	}
	defer d.Close() //nolint:errcheck // read-only
	if err := d.Sync(); err != nil {
		return fmt.Errorf("raftwal: sync %s: %w", dir, err)
	}
	return nil
}

// Append writes entries of group, in index order, and returns once they
// are visible to Get; durable is called (from the syncer, without
// blocking it for long) once they are on disk, or with the error that
// kept them from being. An entry replaces the one at its index, if any.
// durable is not called if Append returns an error.
func (w *WAL) Append(group uint32, entries []Entry, durable func(error)) error {
	if len(entries) == 0 {
		w.enqueue(durable)
		return nil
	}
	size := 0
	for _, e := range entries {
		if len(e.Data) > w.opts.MaxEntryBytes {
			return fmt.Errorf("%w: %d bytes, limit %d", ErrTooLarge, len(e.Data), w.opts.MaxEntryBytes)
		}
		if e.Index == 0 {
			return fmt.Errorf("%w: index 0", ErrInvalidEntry)
		}
		size += headerLen + len(e.Data)
	}
	w.mu.Lock()
	if err := w.usableLocked(); err != nil {
		w.mu.Unlock()
		return err
	}
	seg := w.segs[len(w.segs)-1]
	buf := w.buf[:0]
	offs := make([]int64, len(entries))
	for i, e := range entries {
		start := len(buf)
		buf = appendHeader(buf, kindEntry, group, e.Index, len(e.Data))
		offs[i] = seg.size + int64(len(buf))
		buf = append(buf, e.Data...)
		seal(buf, start)
	}
	if err := w.writeLocked(seg, buf); err != nil {
		w.mu.Unlock()
		return err
	}
	if cap(buf) <= maxKeptBuf {
		w.buf = buf[:0]
	}
	for i, e := range entries {
		w.removeLive(group, e.Index, e.Index)
		w.put(group, e.Index, loc{seg: seg.seq, off: offs[i], n: uint32(len(e.Data))}) //nolint:gosec // bounded by MaxEntryBytes
		seg.live++
	}
	// The entries are written; a failure to cut the next segment is
	// sticky in w.err and refuses the next write.
	_ = w.maybeCutLocked()
	w.mu.Unlock()
	w.enqueue(durable)
	return nil
}

// removeLive lowers the live counts of group's entries in [lo, hi]
// (before they are removed from the index).
func (w *WAL) removeLive(group uint32, lo, hi uint64) {
	g := w.groups[group]
	if g == nil || len(g.locs) == 0 || lo > g.last() || hi < g.first {
		return
	}
	lo, hi = max(lo, g.first), min(hi, g.last())
	for i := lo; i <= hi; i++ {
		l := g.locs[i-g.first]
		if l.n == 0 {
			continue
		}
		if s := w.segOf(l.seg); s != nil {
			s.live--
			if s.live == 0 {
				s.deadAt = w.wpos
			}
		}
	}
}

// segOf returns the segment of sequence number seq, nil if there is none
// (segments are sorted and consecutive). w.mu held.
func (w *WAL) segOf(seq uint64) *segment {
	base := w.segs[0].seq
	if seq < base || seq-base >= uint64(len(w.segs)) {
		return nil
	}
	return w.segs[seq-base]
}

func (w *WAL) usableLocked() error {
	if w.closed {
		return ErrClosed
	}
	return w.err
}

// writeLocked writes buf at the end of seg. A write that fails (ENOSPC)
// is cut off the file again, so that nothing of it stays and the WAL
// goes on; if even that fails, the WAL refuses every write from then on
// (Open cuts a torn record).
func (w *WAL) writeLocked(seg *segment, buf []byte) error {
	if _, err := seg.f.Write(buf); err != nil {
		err = fmt.Errorf("raftwal: write %s: %w", segName(seg.seq), err)
		if terr := seg.f.Truncate(seg.size); terr != nil {
			w.err = errors.Join(err, terr)
			return w.err
		}
		if _, serr := seg.f.Seek(seg.size, io.SeekStart); serr != nil {
			w.err = errors.Join(err, serr)
			return w.err
		}
		return errors.Join(ErrNotWritten, err)
	}
	seg.size += int64(len(buf))
	w.wpos += int64(len(buf))
	if w.m != nil {
		w.m.written.Add(float64(len(buf)))
	}
	return nil
}

// maybeCutLocked cuts a new segment once the active one is full, and
// moves forward the live entries of segments too far behind.
func (w *WAL) maybeCutLocked() error {
	if w.segs[len(w.segs)-1].size < w.opts.SegmentBytes {
		return nil
	}
	if err := w.cutLocked(); err != nil {
		w.err = err
		return err
	}
	old := len(w.segs) - 1 - w.opts.KeepSegments
	for i := range max(old, 0) {
		if s := w.segs[i]; s.live > 0 {
			if err := w.moveForwardLocked(s); err != nil {
				w.err = err
				return err
			}
		}
	}
	return nil
}

// moveForwardLocked copies the live entries of s into the active segment.
func (w *WAL) moveForwardLocked(s *segment) error {
	active := w.segs[len(w.segs)-1]
	groups := make([]uint32, 0, len(w.groups))
	for id := range w.groups {
		groups = append(groups, id)
	}
	sort.Slice(groups, func(a, b int) bool { return groups[a] < groups[b] })
	for _, id := range groups {
		g := w.groups[id]
		for i, l := range g.locs {
			if l.n == 0 || l.seg != s.seq {
				continue
			}
			data := make([]byte, l.n)
			if _, err := s.f.ReadAt(data, l.off); err != nil {
				return fmt.Errorf("raftwal: read %s: %w", segName(s.seq), err)
			}
			index := g.first + uint64(i)
			buf := appendHeader(w.buf[:0], kindMove, id, index, len(data))
			off := active.size + int64(len(buf))
			buf = append(buf, data...)
			seal(buf, 0)
			if err := w.writeLocked(active, buf); err != nil {
				return err
			}
			w.buf = buf[:0]
			g.locs[i] = loc{seg: active.seq, off: off, n: l.n}
			w.m.moved.Inc()
			active.live++
			s.live--
			if s.live == 0 {
				s.deadAt = w.wpos
			}
		}
	}
	return nil
}

// Get returns a copy of the entry of group at index, or ErrNotFound.
func (w *WAL) Get(group uint32, index uint64) ([]byte, error) {
	w.mu.RLock()
	defer w.mu.RUnlock()
	if w.closed {
		return nil, ErrClosed
	}
	g := w.groups[group]
	if g == nil || index < g.first || index > g.last() {
		return nil, ErrNotFound
	}
	l := g.locs[index-g.first]
	if l.n == 0 {
		return nil, ErrNotFound
	}
	s := w.segOf(l.seg)
	if s == nil {
		return nil, fmt.Errorf("%w: group %d index %d in segment %d, which is gone", ErrCorrupt, group, index, l.seg)
	}
	data := make([]byte, l.n)
	if _, err := s.f.ReadAt(data, l.off); err != nil {
		return nil, fmt.Errorf("raftwal: read %s: %w", segName(s.seq), err)
	}
	return data, nil
}

// Bounds returns the first and last index of group's log (0, 0: empty).
func (w *WAL) Bounds(group uint32) (first, last uint64) {
	w.mu.RLock()
	defer w.mu.RUnlock()
	g := w.groups[group]
	if g == nil {
		return 0, 0
	}
	return g.first, g.last()
}

// Groups returns the groups with entries, in order.
func (w *WAL) Groups() []uint32 {
	w.mu.RLock()
	defer w.mu.RUnlock()
	out := make([]uint32, 0, len(w.groups))
	for id := range w.groups {
		out = append(out, id)
	}
	slices.Sort(out)
	return out
}

// DeleteRange removes group's entries in [lo, hi] and returns once that
// is on disk.
func (w *WAL) DeleteRange(group uint32, lo, hi uint64) error {
	lo = max(lo, 1)
	if lo > hi {
		return nil
	}
	w.mu.Lock()
	if err := w.usableLocked(); err != nil {
		w.mu.Unlock()
		return err
	}
	seg := w.segs[len(w.segs)-1]
	buf := appendHeader(w.buf[:0], kindTruncate, group, lo, 8)
	buf = binary.LittleEndian.AppendUint64(buf, hi)
	seal(buf, 0)
	if err := w.writeLocked(seg, buf); err != nil {
		w.mu.Unlock()
		return err
	}
	w.buf = buf[:0]
	w.removeLive(group, lo, hi)
	w.remove(group, lo, hi)
	w.mu.Unlock()
	done := make(chan error, 1)
	w.enqueue(func(err error) { done <- err })
	return <-done
}

// Sync returns once everything written before it is on disk.
func (w *WAL) Sync() error {
	done := make(chan error, 1)
	w.enqueue(func(err error) { done <- err })
	return <-done
}

// enqueue asks the syncer to call fn after its next fdatasync.
func (w *WAL) enqueue(fn func(error)) {
	if fn == nil {
		return
	}
	w.smu.Lock()
	defer w.smu.Unlock()
	if w.closing {
		fn(ErrClosed)
		return
	}
	w.pending = append(w.pending, fn)
	select {
	case w.kick <- struct{}{}:
	default:
	}
}

// takePending appends the waiting callbacks to fns; closing reports that
// Close has begun (no more will come).
func (w *WAL) takePending(fns []func(error)) (_ []func(error), closing bool) {
	w.smu.Lock()
	defer w.smu.Unlock()
	fns = append(fns, w.pending...)
	clear(w.pending)
	w.pending = w.pending[:0]
	return fns, w.closing
}

// syncer fdatasyncs the active segment for every batch of waiting
// writes, answers them, and deletes the segments that are dead on disk.
// Under load it lingers first (Options.SyncLinger), so that one
// fdatasync covers more appends.
func (w *WAL) syncer() {
	defer close(w.stopped)
	for open := true; open; {
		_, open = <-w.kick // closed by Close: one last round, then end
		fns, _ := w.takePending(nil)
		if len(fns) == 0 {
			continue
		}
		if open && !w.opts.NoSync {
			stop := w.linger.Wait(len(fns), len(fns), w.kick, func() (writes, requests int, stop bool) {
				had := len(fns)
				fns, stop = w.takePending(fns)
				return len(fns) - had, len(fns) - had, stop
			})
			open = !stop
		}
		w.linger.Batched(len(fns))
		w.mu.RLock()
		err := w.err
		seg, pos := w.segs[len(w.segs)-1], w.wpos
		w.mu.RUnlock()
		if err == nil && !w.opts.NoSync {
			w.syncStart.Store(time.Now().UnixNano())
			var e error
			if w.opts.SyncFault != nil {
				e = w.opts.SyncFault()
			}
			if e == nil {
				e = unix.Fdatasync(int(seg.f.Fd()))
			}
			took := time.Since(time.Unix(0, w.syncStart.Load()))
			w.linger.Synced(took)
			w.m.syncDuration.Observe(took.Seconds())
			w.m.syncAppends.Observe(float64(len(fns)))
			w.syncStart.Store(0)
			if e != nil {
				err = fmt.Errorf("raftwal: sync %s: %w", segName(seg.seq), e)
				w.mu.Lock()
				w.err = err
				w.mu.Unlock()
			}
		}
		for _, fn := range fns {
			fn(err)
		}
		if err == nil {
			w.collect(pos)
		}
	}
}

// Err returns the failure that stopped the WAL (a failed fdatasync or a
// write that could not be undone), nil while it works. A WAL that failed
// refuses every write until it is reopened: the kernel may have dropped
// the pages a failed fdatasync could not write.
func (w *WAL) Err() error {
	w.mu.RLock()
	defer w.mu.RUnlock()
	return w.err
}

// SyncStall returns how long the fdatasync in progress has run; 0 when
// none runs. Safe for concurrent use.
func (w *WAL) SyncStall() time.Duration {
	start := w.syncStart.Load()
	if start == 0 {
		return 0
	}
	return time.Since(time.Unix(0, start))
}

// collect records that a sync covered everything written up to synced
// and deletes the oldest segments that hold no live entry since before it.
func (w *WAL) collect(synced int64) {
	w.mu.Lock()
	defer w.mu.Unlock()
	w.synced = max(w.synced, synced)
	n := 0
	for n < len(w.segs)-1 && w.segs[n].live == 0 && w.segs[n].deadAt <= synced {
		n++
	}
	for _, s := range w.segs[:n] {
		_ = s.f.Close()
		if err := os.Remove(filepath.Join(w.dir, segName(s.seq))); err != nil && !errors.Is(err, os.ErrNotExist) {
			w.err = fmt.Errorf("raftwal: %w", err)
		}
	}
	w.segs = slices.Delete(w.segs, 0, n)
}

// Segments returns the number of segment files.
func (w *WAL) Segments() int {
	w.mu.RLock()
	defer w.mu.RUnlock()
	return len(w.segs)
}

// Close syncs and closes the WAL. Appends and reads after it get
// ErrClosed. It returns the final sync's failure, but not a failure Err
// already reported (the WAL has refused writes since).
func (w *WAL) Close() error {
	w.mu.RLock()
	failed, clean := w.err != nil, w.synced == w.wpos
	w.mu.RUnlock()
	var err error
	if !failed && !clean {
		err = w.Sync()
	}
	w.smu.Lock()
	if w.closing {
		w.smu.Unlock()
		return ErrClosed
	}
	w.closing = true
	close(w.kick)
	w.smu.Unlock()
	<-w.stopped
	w.mu.Lock()
	w.closed = true
	w.closeFiles()
	w.mu.Unlock()
	w.m.unregister()
	if errors.Is(err, ErrClosed) {
		err = nil
	}
	return err
}

func (w *WAL) closeFiles() {
	for _, s := range w.segs {
		_ = s.f.Close()
	}
}
