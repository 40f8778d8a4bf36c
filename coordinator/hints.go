package coordinator

// Hinted handoff.
//
// When a write does not reach one of its replicas (the merge failed, or did
// not finish within ReplicaWriteTimeout), the coordinator stores a hint: the
// entry, addressed to that replica, in this node's replica.Store under the
// 'h' namespace. A loop looks at the targets it holds hints for every
// HintReplayInterval and, for each target gossip reports alive, replays its
// hints in order through Transport.Merge in batches, rate-limited, deleting
// each batch once the target acknowledged it. Merge keeps the newer record,
// so a hint replayed twice, or after a newer write, changes nothing.
//
// Choices, after Cassandra:
//   - Hints never count toward W: a write at QUORUM still needs a quorum
//     of the partition's own replicas.
//   - The hint is written after the failed replica's result has been handed
//     to the request, so storing it never delays the client's answer; it is
//     still written durably (WriteRaw, through the group committer and its
//     fsync). A crash in the moment between the failure and the hint's
//     commit loses the hint, and anti-entropy repairs the difference.
//   - Hints older than HintWindow are dropped (at replay, and by a sweep
//     while the target stays down), as are the hints of a member the ring
//     marks removed (or no longer lists); both are left to anti-entropy.
//   - A hint is replayed by its key: re-addressed to the key's partition
//     id in the ring at replay (a split since it was stored changes the
//     id), and dropped when the target no longer replicates that
//     partition.
//   - A target holds at most MaxHintBytesPerTarget of hints; beyond it new
//     hints are dropped. Every drop is counted by reason.
//
// Key and value layout (the replica package documents the namespace):
//
//	key:   'h' | uint16 BE len(target) | target | seq uint64 BE
//	value: version (1) | partition id uint32 BE | uvarint len(key) | key |
//	       record (replica.Record.AppendBinary) | CRC-32C of all before it
//
// seq is the hint's creation time in Unix nanoseconds, made strictly
// increasing within the process and above every stored hint's at start, so
// a target's hints sort oldest first and seq tells a hint's age.
//
// Goroutines: the loop (handoff.run) runs under the Coordinator's WaitGroup
// and stops with its lifetime context; it starts at most one session per
// target (replay, drop or sweep), tracked by the loop, which waits for them
// before returning.

import (
	"bytes"
	"context"
	"encoding/binary"
	"fmt"
	"log/slog"
	"math"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/ringkv/ringkv/internal/crc"
	"github.com/ringkv/ringkv/internal/varint"

	"golang.org/x/time/rate"

	"github.com/ringkv/ringkv/replica"
	"github.com/ringkv/ringkv/ring"
)

const (
	nsHint      = 'h'
	hintVersion = 1
	hintCRCLen  = 4
	// hintReplayBatchBytes caps the hint bytes one replay RPC carries.
	hintReplayBatchBytes = 4 << 20
	// hintScanFactor bounds the hints one scan visits, as a multiple of
	// HintReplayBatch, so that a long run of expired hints is deleted in
	// bounded steps.
	hintScanFactor = 4
)

// hintPrefix returns the key prefix of every hint for target.
func hintPrefix(target string) []byte {
	b := make([]byte, 0, 3+len(target)+8)
	b = append(b, nsHint)
	b = binary.BigEndian.AppendUint16(b, uint16(len(target)))
	return append(b, target...)
}

// hintKey returns the key of target's hint number seq.
func hintKey(target string, seq uint64) []byte {
	return binary.BigEndian.AppendUint64(hintPrefix(target), seq)
}

// parseHintKey splits a hint key; ok is false if k is not one.
func parseHintKey(k []byte) (target string, seq uint64, ok bool) {
	if len(k) < 3+8 || k[0] != nsHint {
		return "", 0, false
	}
	n := int(binary.BigEndian.Uint16(k[1:3]))
	if len(k) != 3+n+8 {
		return "", 0, false
	}
	return string(k[3 : 3+n]), binary.BigEndian.Uint64(k[3+n:]), true
}

// appendHint appends the encoding of e to b.
func appendHint(b []byte, e replica.Entry) []byte {
	start := len(b)
	b = append(b, hintVersion)
	b = binary.BigEndian.AppendUint32(b, e.Partition)
	b = binary.AppendUvarint(b, uint64(len(e.Key)))
	b = append(b, e.Key...)
	b = e.Record.AppendBinary(b)
	return binary.BigEndian.AppendUint32(b, crc.Sum(b[start:]))
}

// decodeHint decodes appendHint's encoding. Any problem returns an error
// wrapping ErrCorrupt. The entry does not alias b.
func decodeHint(b []byte) (replica.Entry, error) {
	if len(b) < 1+4+1+hintCRCLen {
		return replica.Entry{}, fmt.Errorf("%w: hint of %d bytes", ErrCorrupt, len(b))
	}
	body, sum := b[:len(b)-hintCRCLen], binary.BigEndian.Uint32(b[len(b)-hintCRCLen:])
	if got := crc.Sum(body); got != sum {
		return replica.Entry{}, fmt.Errorf("%w: hint checksum %08x, want %08x", ErrCorrupt, got, sum)
	}
	if body[0] != hintVersion {
		return replica.Entry{}, fmt.Errorf("%w: hint version %d", ErrCorrupt, body[0])
	}
	e := replica.Entry{Partition: binary.BigEndian.Uint32(body[1:5])}
	rest := body[5:]
	n, k := varint.Uvarint(rest)
	if k <= 0 || n > uint64(len(rest)-k) {
		return replica.Entry{}, fmt.Errorf("%w: hint key length", ErrCorrupt)
	}
	e.Key = bytes.Clone(rest[k : k+int(n)])
	rec, err := replica.DecodeRecord(rest[k+int(n):])
	if err != nil {
		return replica.Entry{}, fmt.Errorf("%w: hint record: %w", ErrCorrupt, err)
	}
	e.Record = rec
	return e, nil
}

// sessionMode is what a session does with a target's hints.
type sessionMode int

const (
	// modeReplay delivers the hints (dropping expired ones on the way).
	modeReplay sessionMode = iota + 1
	// modeDrop deletes every hint: the target was removed from the ring.
	modeDrop
	// modeSweep deletes the expired hints of a target that is down.
	modeSweep
)

func (m sessionMode) String() string {
	switch m {
	case modeReplay:
		return "replay"
	case modeDrop:
		return "drop"
	case modeSweep:
		return "sweep"
	}
	return fmt.Sprintf("sessionMode(%d)", int(m))
}

// handoff stores and replays one node's hints.
type handoff struct {
	self    string
	cfg     Config
	store   *replica.Store
	trans   Transport
	ring    RingSource
	live    Liveness // nil: every member is alive
	log     *slog.Logger
	m       *hintMetrics
	limiter *rate.Limiter
	now     func() time.Time

	// seq is the last hint sequence number handed out.
	seq atomic.Uint64

	mu struct {
		sync.Mutex
		// targets holds the hints of each target: counts include hints
		// being stored right now. Entries are never removed (members are
		// few).
		targets map[string]*hintTarget
	}
}

type hintTarget struct {
	pending int64 // hints
	bytes   int64 // their keys and values
	busy    bool  // a session runs for this target
}

// newHandoff loads the hints stored by earlier runs (counting them per
// target) and returns a handoff ready to add hints; run replays them.
func newHandoff(cfg Config, deps Deps, log *slog.Logger) (*handoff, error) {
	m, err := newHintMetrics(deps.Registerer)
	if err != nil {
		return nil, err
	}
	h := &handoff{
		self:    cfg.NodeID,
		cfg:     cfg,
		store:   deps.Store,
		trans:   deps.Transport,
		ring:    deps.Ring,
		live:    deps.Liveness,
		log:     log,
		m:       m,
		limiter: rate.NewLimiter(rate.Limit(cfg.HintReplayRate), max(cfg.HintReplayRate, cfg.HintReplayBatch)),
		now:     time.Now,
	}
	h.mu.targets = make(map[string]*hintTarget)
	if err := h.load(); err != nil {
		return nil, err
	}
	return h, nil
}

// load counts the stored hints per target and sets seq above them. Keys in
// the namespace that are not hint keys are deleted and counted as corrupt.
func (h *handoff) load() error {
	var bad [][]byte
	var last uint64
	err := h.store.ScanRaw([]byte{nsHint}, nil, func(k, v []byte) bool {
		target, seq, ok := parseHintKey(k)
		if !ok {
			bad = append(bad, k)
			return true
		}
		t := h.targetLocked(target) // not yet shared: no lock needed
		t.pending++
		t.bytes += int64(len(k) + len(v))
		last = max(last, seq)
		return true
	})
	if err != nil {
		return fmt.Errorf("load hints: %w", err)
	}
	if len(bad) > 0 {
		if err := h.store.DeleteRaw(context.Background(), bad); err != nil {
			return fmt.Errorf("delete malformed hint keys: %w", err)
		}
		h.m.dropped.WithLabelValues(dropCorrupt).Add(float64(len(bad)))
	}
	h.seq.Store(last)
	for target, t := range h.mu.targets {
		h.m.pending.WithLabelValues(target).Set(float64(t.pending))
		if t.pending > 0 {
			h.log.Info("hints loaded", "peer", target, "pending", t.pending)
		}
	}
	return nil
}

// targetLocked returns target's counters, creating them. h.mu must be held
// (or h not yet shared).
func (h *handoff) targetLocked(target string) *hintTarget {
	t, ok := h.mu.targets[target]
	if !ok {
		t = &hintTarget{}
		h.mu.targets[target] = t
	}
	return t
}

func (h *handoff) nextSeq() uint64 {
	for {
		last := h.seq.Load()
		next := max(uint64(h.now().UnixNano()), last+1)
		if h.seq.CompareAndSwap(last, next) {
			return next
		}
	}
}

// add durably stores a hint of e for target, or counts why it could not.
// It blocks until the hint is committed (bounded by ReplicaWriteTimeout),
// so callers run it off the request path.
func (h *handoff) add(target string, e replica.Entry) {
	if len(target) > math.MaxUint16 {
		h.m.dropped.WithLabelValues(dropError).Inc()
		return
	}
	key := hintKey(target, h.nextSeq())
	val := appendHint(nil, e)
	size := int64(len(key) + len(val))
	h.mu.Lock()
	t := h.targetLocked(target)
	full := t.bytes+size > h.cfg.MaxHintBytesPerTarget
	if !full {
		t.pending++
		t.bytes += size
		h.m.pending.WithLabelValues(target).Set(float64(t.pending))
	}
	h.mu.Unlock()
	if full {
		h.m.dropped.WithLabelValues(dropOverflow).Inc()
		return
	}
	// Not the request's context: the hint is for after the request.
	ctx, cancel := context.WithTimeout(context.Background(), h.cfg.ReplicaWriteTimeout)
	defer cancel()
	if err := h.store.WriteRaw(ctx, []replica.KV{{Key: key, Value: val}}, nil); err != nil {
		h.forget(target, 1, size)
		h.m.dropped.WithLabelValues(dropError).Inc()
		h.log.Warn("hint not stored", "peer", target, "partition", e.Partition, "err", err)
		return
	}
	h.m.stored.WithLabelValues(target).Inc()
}

// forget subtracts n hints of size bytes from target's counts.
func (h *handoff) forget(target string, n int, size int64) {
	h.mu.Lock()
	defer h.mu.Unlock()
	t := h.targetLocked(target)
	t.pending = max(0, t.pending-int64(n))
	t.bytes = max(0, t.bytes-size)
	h.m.pending.WithLabelValues(target).Set(float64(t.pending))
}

// pending returns how many hints target has, for tests and reports.
func (h *handoff) pending(target string) int64 {
	h.mu.Lock()
	defer h.mu.Unlock()
	if t, ok := h.mu.targets[target]; ok {
		return t.pending
	}
	return 0
}

// run is the handoff loop: every HintReplayInterval it starts a session for
// each target that has hints and none running. It returns when ctx ends,
// after its sessions.
func (h *handoff) run(ctx context.Context) {
	var sessions sync.WaitGroup
	defer sessions.Wait()
	tick := time.NewTicker(h.cfg.HintReplayInterval)
	defer tick.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-tick.C:
		}
		for target, mode := range h.plan() {
			sessions.Add(1)
			go func() {
				defer sessions.Done()
				h.session(ctx, target, mode)
			}()
		}
	}
}

// plan picks, for every target with hints and no session, what its session
// does, and marks those targets busy.
func (h *handoff) plan() map[string]sessionMode {
	h.mu.Lock()
	var idle []string
	for target, t := range h.mu.targets {
		if t.pending > 0 && !t.busy {
			t.busy = true
			idle = append(idle, target)
		}
	}
	h.mu.Unlock()
	// Outside the lock: Liveness may take gossip's locks.
	r := h.ring.Ring()
	out := make(map[string]sessionMode, len(idle))
	for _, target := range idle {
		out[target] = h.modeFor(r, target)
	}
	return out
}

// modeFor decides what to do with target's hints given the ring r. A ring
// with no active member (nil or empty: this node has not joined or loaded
// one yet) says nothing about removals, so nothing is dropped on its word.
func (h *handoff) modeFor(r *ring.Ring, target string) sessionMode {
	if r != nil && r.ActiveCount() > 0 {
		if m, ok := r.Member(target); !ok || m.Status == ring.Removed {
			return modeDrop
		}
	}
	if target == h.self || h.live == nil || h.live.Alive(target) {
		return modeReplay
	}
	return modeSweep
}

// hintBatch is one scan's worth of a target's hints.
type hintBatch struct {
	keys    [][]byte // of entries
	entries []replica.Entry
	bytes   int64 // of keys and entries' values

	drops []hintDrop
	last  []byte // the last key consumed
	done  bool   // the scan reached the end of what the session does
}

type hintDrop struct {
	key    []byte
	size   int64
	reason string
}

// session works through target's hints in mode until they are done, a
// delivery fails or ctx ends; then it clears the target's busy mark.
func (h *handoff) session(ctx context.Context, target string, mode sessionMode) {
	defer func() {
		h.mu.Lock()
		h.targetLocked(target).busy = false
		h.mu.Unlock()
	}()
	prefix := hintPrefix(target)
	start := prefix
	replayed, dropped := 0, 0
	h.log.Debug("hint session started", "peer", target, "mode", mode.String(), "pending", h.pending(target))
	defer func() {
		// Info only when something changed: a target that gossip calls
		// alive but that fails every replay would otherwise log each tick.
		level := slog.LevelDebug
		if replayed > 0 || dropped > 0 {
			level = slog.LevelInfo
		}
		h.log.Log(context.Background(), level, "hint session ended", "peer", target, "mode", mode.String(),
			"replayed", replayed, "dropped", dropped, "pending", h.pending(target))
	}()
	for ctx.Err() == nil {
		b, err := h.scan(target, prefix, start, mode)
		if err != nil {
			h.log.Warn("hint scan failed", "peer", target, "err", err)
			return
		}
		if len(b.drops) > 0 {
			if err := h.drop(ctx, target, b.drops); err != nil {
				h.log.Debug("hint drop failed", "peer", target, "err", err)
				return
			}
			dropped += len(b.drops)
		}
		if len(b.entries) > 0 {
			if err := h.deliver(ctx, target, b); err != nil {
				h.log.Debug("hint replay stopped", "peer", target, "replayed", replayed, "err", err)
				return
			}
			replayed += len(b.entries)
		}
		if b.done {
			return
		}
		start = append(b.last[:len(b.last):len(b.last)], 0) // the next key after last
	}
}

// scan reads target's hints from start on (prefix is target's): up to
// HintReplayBatch replayable ones (or hintReplayBatchBytes) in replay mode,
// and the ones to drop on the way.
func (h *handoff) scan(target string, prefix, start []byte, mode sessionMode) (hintBatch, error) {
	var b hintBatch
	now := h.now()
	r := h.ring.Ring()
	if r != nil && (r.Partitions() == 0 || r.ActiveCount() == 0) {
		r = nil // says nothing about placement yet
	}
	visited, limited := 0, false
	err := h.store.ScanRaw(prefix, start, func(k, v []byte) bool {
		_, seq, ok := parseHintKey(k)
		size := int64(len(k) + len(v))
		expired := ok && now.Sub(time.Unix(0, int64(seq))) > h.cfg.HintWindow
		switch {
		case !ok:
			b.drops = append(b.drops, hintDrop{k, size, dropCorrupt})
		case mode == modeDrop:
			b.drops = append(b.drops, hintDrop{k, size, dropRemoved})
		case expired:
			b.drops = append(b.drops, hintDrop{k, size, dropExpired})
		case mode == modeSweep:
			return false // hints are in age order: the rest are younger
		default:
			e, err := decodeHint(v)
			if err != nil {
				b.drops = append(b.drops, hintDrop{k, size, dropCorrupt})
				break
			}
			if r != nil {
				// Judged and addressed by key: the hint may name its
				// partition by an id of a ring before a split.
				e.Partition = r.IDOf(e.Key)
				if !slices.Contains(r.ReplicasOf(e.Partition), target) {
					// The ring moved the key's partition away from target
					// since the hint was written: target would refuse it
					// (ErrNotReplica); its new replicas get the write from
					// anti-entropy.
					b.drops = append(b.drops, hintDrop{k, size, dropMoved})
					break
				}
			}
			b.keys = append(b.keys, k)
			b.entries = append(b.entries, e)
			b.bytes += size
		}
		b.last = k
		visited++
		if len(b.entries) >= h.cfg.HintReplayBatch || b.bytes >= hintReplayBatchBytes || visited >= hintScanFactor*h.cfg.HintReplayBatch {
			limited = true
			return false
		}
		return true
	})
	if err != nil {
		return hintBatch{}, fmt.Errorf("scan hints: %w", err)
	}
	b.done = !limited
	return b, nil
}

// drop deletes hints given up on and counts them.
func (h *handoff) drop(ctx context.Context, target string, drops []hintDrop) error {
	keys := make([][]byte, len(drops))
	var size int64
	for i, d := range drops {
		keys[i] = d.key
		size += d.size
	}
	if err := h.store.DeleteRaw(ctx, keys); err != nil {
		return fmt.Errorf("delete dropped hints: %w", err)
	}
	for _, d := range drops {
		h.m.dropped.WithLabelValues(d.reason).Inc()
	}
	h.forget(target, len(drops), size)
	return nil
}

// deliver merges b's entries into target (rate-limited), then deletes them.
func (h *handoff) deliver(ctx context.Context, target string, b hintBatch) error {
	if err := h.limiter.WaitN(ctx, len(b.entries)); err != nil {
		return fmt.Errorf("rate limit: %w", err)
	}
	mctx, cancel := context.WithTimeout(ctx, h.cfg.ReplicaWriteTimeout)
	var err error
	if target == h.self {
		err = h.store.Merge(mctx, b.entries)
	} else {
		err = h.trans.Merge(mctx, target, b.entries)
	}
	cancel()
	if err != nil {
		return fmt.Errorf("merge on %s: %w", target, err)
	}
	if err := h.store.DeleteRaw(ctx, b.keys); err != nil {
		// Delivered but kept: they are delivered again next time, harmlessly.
		return fmt.Errorf("delete replayed hints: %w", err)
	}
	h.m.replayed.WithLabelValues(target).Add(float64(len(b.entries)))
	h.forget(target, len(b.entries), b.bytes)
	return nil
}

// hint stores a hint of entries for node, a replica the write did not reach.
// It is called off the request path, after the replica's result was handed
// over. No hints are kept for this node itself or when hints are disabled.
func (c *Coordinator) hint(node string, entries []replica.Entry) {
	if c.hints == nil || node == c.cfg.NodeID {
		return
	}
	for _, e := range entries {
		c.hints.add(node, e)
	}
}

// HintsPending returns how many hints this node holds for node (0 when
// hinted handoff is disabled). Safe for concurrent use.
func (c *Coordinator) HintsPending(node string) int64 {
	if c.hints == nil {
		return 0
	}
	return c.hints.pending(node)
}
