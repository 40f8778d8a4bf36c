package coordinator

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/ringkv/ringkv/replica"
	"github.com/ringkv/ringkv/ring"
)

// fakeLiveness is a Liveness whose answers the test sets; members are alive
// unless marked dead.
type fakeLiveness struct {
	mu   sync.Mutex
	dead map[string]bool
}

func (f *fakeLiveness) Alive(id string) bool {
	f.mu.Lock()
	defer f.mu.Unlock()
	return !f.dead[id]
}

func (f *fakeLiveness) set(id string, alive bool) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.dead == nil {
		f.dead = map[string]bool{}
	}
	f.dead[id] = !alive
}

// hintCluster is three coordinators over in-memory stores, like testCluster,
// with a Liveness the test controls and fast hint replay.
type hintCluster struct {
	*testCluster
	live *fakeLiveness
}

func newHintCluster(t *testing.T, mutate func(*Config)) *hintCluster {
	t.Helper()
	r, err := ring.New(ring.DefaultConfig())
	if err != nil {
		t.Fatal(err)
	}
	tc := &testCluster{
		ids:    []string{"n1", "n2", "n3"},
		stores: map[string]*replica.Store{},
		coords: map[string]*Coordinator{},
		ring:   &staticRing{},
	}
	hc := &hintCluster{testCluster: tc, live: &fakeLiveness{}}
	for _, id := range tc.ids {
		if r, err = r.Join(ring.Member{ID: id}); err != nil {
			t.Fatal(err)
		}
		tc.stores[id] = openMemStore(t)
	}
	tc.ring.r.Store(r)
	tc.trans = &memTransport{stores: tc.stores, down: map[string]bool{}, stall: map[string]bool{}}
	for _, id := range tc.ids {
		cfg := DefaultConfig()
		cfg.NodeID = id
		cfg.RequestTimeout = 2 * time.Second
		cfg.HintReplayInterval = 10 * time.Millisecond
		cfg.HintReplayBatch = 16
		cfg.HintReplayRate = 100000
		if mutate != nil {
			mutate(&cfg)
		}
		c, err := New(cfg, Deps{Store: tc.stores[id], Clock: replica.NewClock(nil, 0), Ring: tc.ring, Transport: tc.trans, Liveness: hc.live})
		if err != nil {
			t.Fatal(err)
		}
		tc.coords[id] = c
	}
	t.Cleanup(func() {
		for _, id := range tc.ids {
			if err := tc.coords[id].Close(); err != nil {
				t.Error(err)
			}
		}
	})
	return hc
}

func openMemStore(t *testing.T) *replica.Store {
	t.Helper()
	cfg := replica.DefaultConfig()
	cfg.InMemory = true
	s, err := replica.Open(cfg, replica.Deps{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := s.Close(); err != nil {
			t.Error(err)
		}
	})
	return s
}

// down takes node down for writes and gossip alike.
func (hc *hintCluster) down(node string, isDown bool) {
	hc.trans.setDown(node, isDown)
	hc.live.set(node, !isDown)
}

// waitFor polls cond until it holds, failing the test after a generous
// deadline.
func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		timer := time.NewTimer(5 * time.Millisecond)
		<-timer.C
	}
}

func TestHintedHandoffDeliversMissedWrites(t *testing.T) {
	hc := newHintCluster(t, nil)
	ctx := t.Context()
	hc.down("n3", true)
	const n = 200
	var wg sync.WaitGroup
	for w := range 4 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			c := hc.coords[hc.ids[w%2]] // n1 and n2 coordinate
			for i := w; i < n; i += 4 {
				if err := c.Set(ctx, fmt.Appendf(nil, "k%03d", i), fmt.Appendf(nil, "v%d", i), Quorum); err != nil {
					t.Error(err)
					return
				}
			}
		}()
	}
	wg.Wait()
	// Delete one key too: tombstones travel by hint like values.
	if err := hc.coords["n1"].Delete(ctx, []byte("k000"), Quorum); err != nil {
		t.Fatal(err)
	}
	stored := func() float64 {
		return testutil.ToFloat64(hc.coords["n1"].hints.m.stored.WithLabelValues("n3")) + testutil.ToFloat64(hc.coords["n2"].hints.m.stored.WithLabelValues("n3"))
	}
	waitFor(t, "a hint per write", func() bool { return stored() == n+1 })
	r := hc.ring.Ring()
	if _, err := hc.stores["n3"].Get(r.PartitionOf([]byte("k001")), []byte("k001")); !errors.Is(err, replica.ErrNotFound) {
		t.Fatalf("n3 while down: got %v, want ErrNotFound", err)
	}
	if got := hc.coords["n1"].HintsPending("n3") + hc.coords["n2"].HintsPending("n3"); got != n+1 {
		t.Fatalf("pending hints for n3: got %d, want %d", got, n+1)
	}

	hc.down("n3", false)
	waitFor(t, "hints to drain", func() bool {
		return hc.coords["n1"].HintsPending("n3")+hc.coords["n2"].HintsPending("n3") == 0
	})
	for i := range n {
		key := fmt.Appendf(nil, "k%03d", i)
		rec, err := hc.stores["n3"].Get(r.PartitionOf(key), key)
		if err != nil {
			t.Fatalf("n3 %s after replay: %v", key, err)
		}
		if want := fmt.Sprintf("v%d", i); i > 0 && string(rec.Value) != want {
			t.Fatalf("n3 %s after replay: got %q, want %q", key, rec.Value, want)
		}
		if i == 0 && !rec.Tombstone {
			t.Fatalf("n3 k000 after replay: got %+v, want the tombstone", rec)
		}
	}
	replayed := testutil.ToFloat64(hc.coords["n1"].hints.m.replayed.WithLabelValues("n3")) + testutil.ToFloat64(hc.coords["n2"].hints.m.replayed.WithLabelValues("n3"))
	if replayed != n+1 {
		t.Fatalf("replayed: got %v, want %d", replayed, n+1)
	}
	for _, id := range []string{"n1", "n2"} {
		if got := testutil.ToFloat64(hc.coords[id].hints.m.pending.WithLabelValues("n3")); got != 0 {
			t.Fatalf("%s pending gauge: got %v, want 0", id, got)
		}
		var left int
		if err := hc.stores[id].ScanRaw([]byte{nsHint}, nil, func(_, _ []byte) bool { left++; return true }); err != nil {
			t.Fatal(err)
		}
		if left != 0 {
			t.Fatalf("%s still stores %d hints after replay", id, left)
		}
	}
}

func TestHintsDoNotCountTowardW(t *testing.T) {
	hc := newHintCluster(t, nil)
	hc.down("n2", true)
	hc.down("n3", true)
	c := hc.coords["n1"]
	err := c.Set(t.Context(), []byte("k"), []byte("v"), Quorum)
	var ue *UnavailableError
	if !errors.As(err, &ue) || ue.Answered != 1 {
		t.Fatalf("quorum with two replicas down: got %v, want unavailable with 1 answered", err)
	}
	// Both missed replicas still get a hint: the write reached n1 and will
	// reach the others.
	waitFor(t, "hints for n2 and n3", func() bool {
		return testutil.ToFloat64(c.hints.m.stored.WithLabelValues("n2")) == 1 && testutil.ToFloat64(c.hints.m.stored.WithLabelValues("n3")) == 1
	})
}

func TestHintedHandoffDisabled(t *testing.T) {
	hc := newHintCluster(t, func(c *Config) { c.HintedHandoff = false })
	hc.down("n3", true)
	c := hc.coords["n1"]
	if err := c.Set(t.Context(), []byte("k"), []byte("v"), Quorum); err != nil {
		t.Fatal(err)
	}
	if c.hints != nil || c.HintsPending("n3") != 0 {
		t.Fatal("a coordinator with HintedHandoff false keeps hints")
	}
}

func TestHintEncodingRoundTrip(t *testing.T) {
	for _, tc := range []struct {
		name string
		e    replica.Entry
	}{
		{"value", replica.Entry{Partition: 7, Key: []byte("key"), Record: replica.Record{Value: []byte("value"), Timestamp: 42, NodeID: "n1"}}},
		{"tombstone", replica.Entry{Partition: 0, Key: []byte{0}, Record: replica.Record{Timestamp: 1, NodeID: "n2", Tombstone: true}}},
		{"expiring", replica.Entry{Partition: 1<<32 - 1, Key: bytes.Repeat([]byte("k"), 300), Record: replica.Record{Value: []byte{}, Timestamp: 9, NodeID: "n3", ExpiresAt: time.Unix(100, 5).UTC()}}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			b := appendHint(nil, tc.e)
			got, err := decodeHint(b)
			if err != nil {
				t.Fatalf("decode: %v", err)
			}
			if got.Partition != tc.e.Partition || !bytes.Equal(got.Key, tc.e.Key) || replica.Compare(got.Record, tc.e.Record) != 0 {
				t.Fatalf("got %+v, want %+v", got, tc.e)
			}
			for i := range b {
				bad := bytes.Clone(b)
				bad[i] ^= 0x40
				if _, err := decodeHint(bad); !errors.Is(err, ErrCorrupt) {
					t.Fatalf("byte %d flipped: got %v, want ErrCorrupt", i, err)
				}
			}
			if _, err := decodeHint(b[:len(b)-1]); !errors.Is(err, ErrCorrupt) {
				t.Fatalf("truncated: got %v, want ErrCorrupt", err)
			}
		})
	}
	for _, tc := range []struct {
		target string
		seq    uint64
	}{{"n1", 0}, {"", 1}, {"a-long-node-name", 1<<64 - 1}} {
		k := hintKey(tc.target, tc.seq)
		target, seq, ok := parseHintKey(k)
		if !ok || target != tc.target || seq != tc.seq {
			t.Fatalf("parseHintKey(hintKey(%q, %d)): got %q %d %v", tc.target, tc.seq, target, seq, ok)
		}
		if !bytes.HasPrefix(k, hintPrefix(tc.target)) {
			t.Fatalf("key %x lacks its target's prefix", k)
		}
	}
	for _, k := range [][]byte{nil, []byte("h"), []byte("r\x00\x02n1\x00\x00\x00\x00\x00\x00\x00\x00"), []byte("h\x00\x03n1\x00\x00\x00\x00\x00\x00\x00\x00")} {
		if _, _, ok := parseHintKey(k); ok {
			t.Fatalf("parseHintKey(%q) accepted a malformed key", k)
		}
	}
}

func FuzzDecodeHint(f *testing.F) {
	f.Add(appendHint(nil, replica.Entry{Partition: 3, Key: []byte("k"), Record: replica.Record{Value: []byte("v"), Timestamp: 1, NodeID: "n1"}}))
	f.Add([]byte{})
	f.Fuzz(func(t *testing.T, b []byte) {
		e, err := decodeHint(b)
		if err != nil {
			if !errors.Is(err, ErrCorrupt) {
				t.Fatalf("got %v, want ErrCorrupt", err)
			}
			return
		}
		if again := appendHint(nil, e); !bytes.Equal(again, b) {
			t.Fatalf("re-encoding differs: %x, want %x", again, b)
		}
	})
}

// handoffRig is a handoff without its loop, driven step by step with a clock
// the test sets.
type handoffRig struct {
	h     *handoff
	store *replica.Store
	dest  *replica.Store // n3's store
	trans *memTransport
	ring  *staticRing
	live  *fakeLiveness
	clock time.Time
}

func newHandoffRig(t *testing.T, store *replica.Store, mutate func(*Config)) *handoffRig {
	t.Helper()
	r, err := ring.New(ring.DefaultConfig())
	if err != nil {
		t.Fatal(err)
	}
	for _, id := range []string{"n1", "n2", "n3"} {
		if r, err = r.Join(ring.Member{ID: id}); err != nil {
			t.Fatal(err)
		}
	}
	rig := &handoffRig{store: store, dest: openMemStore(t), ring: &staticRing{}, live: &fakeLiveness{}, clock: time.Unix(1_700_000_000, 0)}
	rig.ring.r.Store(r)
	rig.trans = &memTransport{stores: map[string]*replica.Store{"n3": rig.dest}, down: map[string]bool{}, stall: map[string]bool{}}
	cfg := DefaultConfig()
	cfg.NodeID = "n1"
	cfg.HintWindow = time.Hour
	cfg.HintReplayBatch = 4
	cfg.HintReplayRate = 100000
	if mutate != nil {
		mutate(&cfg)
	}
	h, err := newHandoff(cfg, Deps{Store: store, Ring: rig.ring, Transport: rig.trans, Liveness: rig.live}, slog.New(slog.DiscardHandler))
	if err != nil {
		t.Fatal(err)
	}
	h.now = func() time.Time { return rig.clock }
	rig.h = h
	return rig
}

// entry returns hint number i, addressed as a write addresses it: by its
// key's partition id in a ring of ring.DefaultConfig (the rig's).
func entry(i int) replica.Entry {
	r, err := ring.New(ring.DefaultConfig())
	if err != nil {
		panic(err)
	}
	key := fmt.Appendf(nil, "k%d", i)
	return replica.Entry{Partition: r.IDOf(key), Key: key, Record: replica.Record{Value: fmt.Appendf(nil, "v%d", i), Timestamp: replica.Timestamp(i + 1), NodeID: "n1"}}
}

// run runs one planning round synchronously and returns the modes chosen.
func (rig *handoffRig) run(ctx context.Context) map[string]sessionMode {
	plan := rig.h.plan()
	for target, mode := range plan {
		rig.h.session(ctx, target, mode)
	}
	return plan
}

func (rig *handoffRig) delivered(t *testing.T, i int) bool {
	t.Helper()
	e := entry(i)
	rec, err := rig.dest.Get(e.Partition, e.Key)
	if errors.Is(err, replica.ErrNotFound) {
		return false
	}
	if err != nil || !bytes.Equal(rec.Value, e.Record.Value) {
		t.Fatalf("n3 holds %q (%v) for %s, want %q", rec.Value, err, e.Key, e.Record.Value)
	}
	return true
}

func TestHintModeFor(t *testing.T) {
	rig := newHandoffRig(t, openMemStore(t), nil)
	r := rig.ring.Ring()
	removed, err := r.Remove("n3")
	if err != nil {
		t.Fatal(err)
	}
	rig.live.set("n2", false)
	empty, err := ring.New(ring.DefaultConfig())
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name   string
		r      *ring.Ring
		target string
		want   sessionMode
	}{
		{"alive member", r, "n3", modeReplay},
		{"dead member", r, "n2", modeSweep},
		{"removed member", removed, "n3", modeDrop},
		{"unknown member", r, "n9", modeDrop},
		{"no ring yet", nil, "n2", modeSweep},
		{"empty ring", empty, "n9", modeReplay},
		{"no ring yet, alive", nil, "n3", modeReplay},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if got := rig.h.modeFor(tc.r, tc.target); got != tc.want {
				t.Fatalf("got %v, want %v", got, tc.want)
			}
		})
	}
}

func TestHintsExpireAfterWindow(t *testing.T) {
	rig := newHandoffRig(t, openMemStore(t), nil)
	ctx := t.Context()
	rig.live.set("n3", false)
	for i := range 10 {
		rig.h.add("n3", entry(i))
	}
	rig.clock = rig.clock.Add(50 * time.Minute)
	for i := 10; i < 15; i++ {
		rig.h.add("n3", entry(i))
	}
	rig.clock = rig.clock.Add(20 * time.Minute) // the first ten are 70 minutes old
	if got := rig.run(ctx); got["n3"] != modeSweep {
		t.Fatalf("plan: got %v, want a sweep of n3", got)
	}
	if got := rig.h.pending("n3"); got != 5 {
		t.Fatalf("pending after sweep: got %d, want 5", got)
	}
	if got := testutil.ToFloat64(rig.h.m.dropped.WithLabelValues(dropExpired)); got != 10 {
		t.Fatalf("dropped expired: got %v, want 10", got)
	}
	rig.live.set("n3", true)
	rig.run(ctx)
	if got := rig.h.pending("n3"); got != 0 {
		t.Fatalf("pending after replay: got %d, want 0", got)
	}
	for i := range 15 {
		if want := i >= 10; rig.delivered(t, i) != want {
			t.Fatalf("hint %d delivered: got %v, want %v", i, !want, want)
		}
	}
	if got := testutil.ToFloat64(rig.h.m.replayed.WithLabelValues("n3")); got != 5 {
		t.Fatalf("replayed: got %v, want 5", got)
	}
}

func TestHintsDroppedForRemovedMember(t *testing.T) {
	rig := newHandoffRig(t, openMemStore(t), nil)
	rig.live.set("n3", false)
	for i := range 9 {
		rig.h.add("n3", entry(i))
	}
	removed, err := rig.ring.Ring().Remove("n3")
	if err != nil {
		t.Fatal(err)
	}
	rig.ring.r.Store(removed)
	if got := rig.run(t.Context()); got["n3"] != modeDrop {
		t.Fatalf("plan: got %v, want a drop of n3", got)
	}
	if got := rig.h.pending("n3"); got != 0 {
		t.Fatalf("pending: got %d, want 0", got)
	}
	if got := testutil.ToFloat64(rig.h.m.dropped.WithLabelValues(dropRemoved)); got != 9 {
		t.Fatalf("dropped removed: got %v, want 9", got)
	}
	if rig.delivered(t, 0) {
		t.Fatal("a hint for a removed member was delivered")
	}
}

func TestHintReplayRetriesAfterFailure(t *testing.T) {
	rig := newHandoffRig(t, openMemStore(t), nil)
	for i := range 6 {
		rig.h.add("n3", entry(i))
	}
	// Gossip says alive but the node does not answer: nothing is lost.
	rig.trans.setDown("n3", true)
	rig.run(t.Context())
	if got := rig.h.pending("n3"); got != 6 {
		t.Fatalf("pending after failed replay: got %d, want 6", got)
	}
	rig.trans.setDown("n3", false)
	rig.run(t.Context())
	if got := rig.h.pending("n3"); got != 0 {
		t.Fatalf("pending after replay: got %d, want 0", got)
	}
	for i := range 6 {
		if !rig.delivered(t, i) {
			t.Fatalf("hint %d not delivered", i)
		}
	}
	if got := rig.run(t.Context()); len(got) != 0 {
		t.Fatalf("plan with nothing pending: got %v, want none", got)
	}
}

func TestHintOverflowAndCorruption(t *testing.T) {
	one := int64(len(hintKey("n3", 1)) + len(appendHint(nil, entry(0))))
	rig := newHandoffRig(t, openMemStore(t), func(c *Config) { c.MaxHintBytesPerTarget = 3 * one })
	for i := range 5 {
		rig.h.add("n3", entry(i))
	}
	if got := testutil.ToFloat64(rig.h.m.dropped.WithLabelValues(dropOverflow)); got != 2 {
		t.Fatalf("dropped overflow: got %v, want 2", got)
	}
	// Corrupt the second stored hint in place.
	var keys [][]byte
	if err := rig.store.ScanRaw(hintPrefix("n3"), nil, func(k, _ []byte) bool { keys = append(keys, k); return true }); err != nil {
		t.Fatal(err)
	}
	if len(keys) != 3 {
		t.Fatalf("stored hints: got %d, want 3", len(keys))
	}
	if err := rig.store.WriteRaw(t.Context(), []replica.KV{{Key: keys[1], Value: []byte("garbage")}}, nil); err != nil {
		t.Fatal(err)
	}
	rig.run(t.Context())
	if got := testutil.ToFloat64(rig.h.m.dropped.WithLabelValues(dropCorrupt)); got != 1 {
		t.Fatalf("dropped corrupt: got %v, want 1", got)
	}
	if !rig.delivered(t, 0) || rig.delivered(t, 1) || !rig.delivered(t, 2) {
		t.Fatal("want hints 0 and 2 delivered and the corrupt hint 1 not")
	}
	if got := rig.h.pending("n3"); got != 0 {
		t.Fatalf("pending: got %d, want 0", got)
	}
	// Space freed by delivery takes new hints again.
	rig.h.add("n3", entry(7))
	if got := rig.h.pending("n3"); got != 1 {
		t.Fatalf("pending after overflow cleared: got %d, want 1", got)
	}
}

func TestHintsSurviveRestart(t *testing.T) {
	dir := t.TempDir()
	open := func() *replica.Store {
		cfg := replica.DefaultConfig()
		cfg.Dir = dir
		s, err := replica.Open(cfg, replica.Deps{})
		if err != nil {
			t.Fatal(err)
		}
		return s
	}
	s := open()
	rig := newHandoffRig(t, s, nil)
	for i := range 7 {
		rig.h.add("n3", entry(i))
	}
	rig.h.add("n2", entry(100))
	lastSeq := rig.h.seq.Load()
	// A stray key in the hint namespace is cleaned up on load.
	if err := s.WriteRaw(t.Context(), []replica.KV{{Key: []byte("hx"), Value: nil}}, nil); err != nil {
		t.Fatal(err)
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}

	s = open()
	t.Cleanup(func() {
		if err := s.Close(); err != nil {
			t.Error(err)
		}
	})
	rig = newHandoffRig(t, s, nil)
	if got := rig.h.pending("n3"); got != 7 {
		t.Fatalf("pending for n3 after restart: got %d, want 7", got)
	}
	if got := rig.h.pending("n2"); got != 1 {
		t.Fatalf("pending for n2 after restart: got %d, want 1", got)
	}
	if got := testutil.ToFloat64(rig.h.m.dropped.WithLabelValues(dropCorrupt)); got != 1 {
		t.Fatalf("dropped corrupt on load: got %v, want 1", got)
	}
	if got := testutil.ToFloat64(rig.h.m.pending.WithLabelValues("n3")); got != 7 {
		t.Fatalf("pending gauge after restart: got %v, want 7", got)
	}
	if got := rig.h.seq.Load(); got < lastSeq {
		t.Fatalf("seq after restart: got %d, want at least %d", got, lastSeq)
	}
	rig.clock = time.Unix(0, 0) // even with the clock behind, new hints sort after old ones
	if next := rig.h.nextSeq(); next <= lastSeq {
		t.Fatalf("nextSeq after restart: got %d, want above %d", next, lastSeq)
	}
	rig.live.set("n2", false) // n2's hint stays; n3's are delivered
	rig.run(t.Context())
	if got := rig.h.pending("n2"); got != 1 {
		t.Fatalf("pending for dead n2: got %d, want 1", got)
	}
	for i := range 7 {
		if !rig.delivered(t, i) {
			t.Fatalf("hint %d stored before the restart was not delivered", i)
		}
	}
}

// TestHintsDroppedForMovedPartitions: once the ring moves a partition
// away from a hint's target (a join took its slot), the hint is dropped
// (reason moved: the target would refuse it as not its replica) and the
// others are delivered.
func TestHintsDroppedForMovedPartitions(t *testing.T) {
	rig := newHandoffRig(t, openMemStore(t), func(c *Config) { c.HintReplayBatch = 64 })
	r := rig.ring.Ring()
	keys := make([][]byte, r.Partitions()) // a key of each partition
	for p := range uint32(r.Partitions()) {
		keys[p] = findKey(t, fmt.Sprintf("p%d-", p), func(k []byte) bool { return r.PartitionOf(k) == p })
		rig.h.add("n3", replica.Entry{Partition: p, Key: keys[p], Record: replica.Record{Value: []byte("v"), Timestamp: 1, NodeID: "n1"}})
	}
	joined, err := r.Join(ring.Member{ID: "n4"})
	if err != nil {
		t.Fatal(err)
	}
	rig.ring.r.Store(joined)
	moved := 0
	for p := range uint32(r.Partitions()) {
		if !slices.Contains(joined.Replicas(p), "n3") {
			moved++
		}
	}
	if moved == 0 {
		t.Fatal("n4's join moved no partition away from n3")
	}
	rig.run(t.Context())
	if got := rig.h.pending("n3"); got != 0 {
		t.Fatalf("pending: got %d, want 0", got)
	}
	if got := testutil.ToFloat64(rig.h.m.dropped.WithLabelValues(dropMoved)); got != float64(moved) {
		t.Fatalf("dropped moved: got %v, want %d", got, moved)
	}
	if got := testutil.ToFloat64(rig.h.m.replayed.WithLabelValues("n3")); got != float64(r.Partitions()-moved) {
		t.Fatalf("replayed: got %v, want %d", got, r.Partitions()-moved)
	}
	for p := range uint32(r.Partitions()) {
		_, err := rig.dest.Get(p, keys[p])
		if delivered := err == nil; delivered != slices.Contains(joined.Replicas(p), "n3") {
			t.Errorf("partition %d: delivered %v, n3 a replica %v", p, delivered, !delivered)
		}
	}
}
