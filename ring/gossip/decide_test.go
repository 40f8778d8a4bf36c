package gossip

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/ringkv/ringkv/ring"
)

// statusRing returns a ring with the given members, each Joined then moved
// to its status, in order.
func statusRing(t testing.TB, members ...ring.Member) *ring.Ring {
	t.Helper()
	r, err := ring.New(ring.Config{Partitions: 16, ReplicationFactor: 3})
	if err != nil {
		t.Fatal(err)
	}
	for _, m := range members {
		if r, err = r.Join(ring.Member{ID: m.ID, Zone: m.Zone}); err != nil {
			t.Fatal(err)
		}
		switch m.Status {
		case ring.Leaving:
			r, err = r.Leave(m.ID)
		case ring.Removed:
			r, err = r.Remove(m.ID)
		}
		if err != nil {
			t.Fatal(err)
		}
	}
	return r
}

func TestEvaluate(t *testing.T) {
	base := statusRing(t,
		ring.Member{ID: "a", Status: ring.Joined},
		ring.Member{ID: "b", Status: ring.Joined},
		ring.Member{ID: "c", Status: ring.Leaving},
		ring.Member{ID: "d", Status: ring.Removed},
	)
	alive := map[string]meta{"a": {}, "b": {}, "c": {Zone: "zc"}, "d": {}, "e": {Zone: "ze"}}
	refuse := errors.New("refused by check")
	for _, tc := range []struct {
		name   string
		c      Change
		status ring.Status // of c.ID in the ring made; 0: no ring made
		noop   bool
		err    error
		says   string
	}{
		{name: "leave joined", c: Change{Op: OpLeave, ID: "b"}, status: ring.Leaving},
		{name: "leave leaving", c: Change{Op: OpLeave, ID: "c"}, err: ErrConflict, says: "it is leaving (ring version"},
		{name: "leave removed", c: Change{Op: OpLeave, ID: "d"}, err: ErrConflict, says: "it is removed"},
		{name: "leave absent", c: Change{Op: OpLeave, ID: "e"}, err: ErrConflict, says: "not a member of the ring"},
		{name: "remove joined", c: Change{Op: OpRemove, ID: "a"}, status: ring.Removed},
		{name: "remove leaving", c: Change{Op: OpRemove, ID: "c"}, status: ring.Removed},
		{name: "remove removed", c: Change{Op: OpRemove, ID: "d"}, err: ErrConflict, says: "it is removed"},
		{name: "admit joined", c: Change{Op: OpAdmit, ID: "a"}, noop: true, says: "already joined"},
		{name: "admit leaving", c: Change{Op: OpAdmit, ID: "c"}, status: ring.Joined},
		{name: "admit removed", c: Change{Op: OpAdmit, ID: "d"}, status: ring.Joined},
		{name: "admit absent alive", c: Change{Op: OpAdmit, ID: "e"}, status: ring.Joined},
		{name: "admit absent dead", c: Change{Op: OpAdmit, ID: "f"}, err: ErrNotAlive},
		{name: "check refuses", c: Change{Op: OpLeave, ID: "a", Check: func(*ring.Ring) error { return refuse }}, err: refuse},
		{name: "claim by claimant", c: Change{Op: opClaim}, status: ring.Joined}, // joins e
	} {
		t.Run(tc.name, func(t *testing.T) {
			next, noop, err := evaluate("a", base, tc.c, alive)
			if !errors.Is(err, tc.err) || (tc.err == nil) != (err == nil) {
				t.Fatalf("err: got %v, want %v", err, tc.err)
			}
			if tc.says != "" && !strings.Contains(fmt.Sprint(err)+noop, tc.says) {
				t.Errorf("got %v / %q, want it to say %q", err, noop, tc.says)
			}
			if (noop != "" && next == nil) != tc.noop {
				t.Errorf("no-op: got %q, want %v", noop, tc.noop)
			}
			if tc.status == 0 {
				if next != nil {
					t.Fatalf("got ring %v, want none", next)
				}
				return
			}
			id := tc.c.ID
			if tc.c.Op == opClaim {
				id = "e"
			}
			m, _ := next.Member(id)
			if m.Status != tc.status || next.Version() != base.Version()+1 {
				t.Fatalf("got %s %v at version %d, want %v at %d", id, m.Status, next.Version(), tc.status, base.Version()+1)
			}
			if want := alive[id].Zone; tc.c.Op != OpLeave && tc.c.Op != OpRemove && m.Zone != want {
				t.Errorf("zone: got %q, want the advertised %q", m.Zone, want)
			}
		})
	}
	// Only the claimant claims.
	if next, _, err := evaluate("b", base, Change{Op: opClaim}, alive); next != nil || err != nil {
		t.Fatalf("claim by b: got %v, %v, want nothing", next, err)
	}
}

func TestRecordEncoding(t *testing.T) {
	r := statusRing(t, ring.Member{ID: "a"})
	rec := record{ring: r}
	var ids []changeID
	for i := range recordHistory + 10 {
		next, err := rec.ring.Join(ring.Member{ID: fmt.Sprintf("m%03d", i)})
		if err != nil {
			t.Fatal(err)
		}
		id := changeID{byte(i), byte(i >> 8), 7}
		ids = append(ids, id)
		rec = rec.with(next, id)
	}
	b, err := rec.encode()
	if err != nil {
		t.Fatal(err)
	}
	got, err := decodeRecord(b)
	if err != nil {
		t.Fatal(err)
	}
	if got.ring.Hash() != rec.ring.Hash() || !slices.Equal(got.recent, rec.recent) || len(got.recent) != recordHistory {
		t.Fatalf("round trip: got %v with %d changes, want %v with %d", got.ring, len(got.recent), rec.ring, recordHistory)
	}
	last := ids[len(ids)-1]
	if v, ok := got.made(last); !ok || v != rec.ring.Version() {
		t.Fatalf("made(last): got %d %v, want %d", v, ok, rec.ring.Version())
	}
	if _, ok := got.made(ids[0]); ok {
		t.Fatalf("the oldest change is still remembered past the history bound")
	}
	if got.covers(2) || !got.covers(rec.ring.Version()) {
		t.Fatalf("covers: the history starts at version %d", got.recent[0].version)
	}
	for _, bad := range [][]byte{nil, b[:5], append([]byte("XXXX"), b[4:]...), append(b[:len(b):len(b)], 0)} {
		if _, err := decodeRecord(bad); !errors.Is(err, ErrCorrupt) {
			t.Errorf("decode of %d bad bytes: got %v, want ErrCorrupt", len(bad), err)
		}
	}
	flipped := slices.Clone(b)
	flipped[len(flipped)/2] ^= 1
	if _, err := decodeRecord(flipped); !errors.Is(err, ErrCorrupt) {
		t.Errorf("decode of a flipped bit: got %v, want ErrCorrupt", err)
	}
}

// acked is one change answered without error.
type acked struct {
	op  Op
	id  string
	res Result
}

// TestChangesSerialized sends changes through every node at once while a
// fourth node joins through the claimant: every change answered without
// error is in the final ring, replaying them in the order of the versions
// they made gives that ring exactly, and every node ends on it.
func TestChangesSerialized(t *testing.T) {
	nodes, base, log := startCluster(t, 3)
	start := nodes[0].Ring()
	seed := time.Now().UnixNano()
	t.Logf("seed %d", seed)

	var mu sync.Mutex
	var done []acked
	var wg sync.WaitGroup
	var n4 *Gossip
	for w := range 6 {
		rng := rand.New(rand.NewPCG(uint64(seed), uint64(w)))
		g := nodes[w%len(nodes)]
		wg.Go(func() {
			for range 12 {
				op := []Op{OpLeave, OpRemove, OpAdmit}[rng.IntN(3)]
				id := []string{"n1", "n2", "n3"}[rng.IntN(3)]
				res, err := change(t, g, op, id)
				switch {
				case err == nil:
					mu.Lock()
					done = append(done, acked{op, id, res})
					mu.Unlock()
				case errors.Is(err, ErrConflict):
				default:
					t.Errorf("%s %s on %s: %v", op, id, g.cfg.NodeID, err)
				}
			}
		})
	}
	n4 = open(t, testConfig(t, log, base, "n4", addrs(nodes)...))
	wg.Wait()
	// The claimant is the lowest Joined member: make sure there is one.
	res, err := change(t, nodes[0], OpAdmit, "n1")
	if err != nil {
		t.Fatalf("admit n1: %v", err)
	}
	done = append(done, acked{OpAdmit, "n1", res})
	all := append(nodes, n4)
	waitFor(t, "n4 joined", func() string {
		if _, ok := nodes[0].Ring().Member("n4"); !ok {
			return "n4 is not in the ring"
		}
		return ""
	})
	// Every change is in the register: all nodes end on its ring.
	final := decided(t, storeFor(t))
	waitFor(t, "every node on the decided ring", func() string {
		for _, g := range all {
			if r := g.Ring(); r.Hash() != final.Hash() {
				return fmt.Sprintf("%s holds %v, the register %v", g.cfg.NodeID, r, final)
			}
		}
		return ""
	})

	// Replay in version order; the one version no acknowledged change
	// made is the claimant's join of n4.
	byVersion := map[uint64]acked{}
	for _, a := range done {
		if a.res.Noop {
			continue
		}
		if prev, dup := byVersion[a.res.Version]; dup {
			t.Fatalf("version %d made twice: %+v and %+v", a.res.Version, prev, a)
		}
		byVersion[a.res.Version] = a
	}
	r := start
	claims := 0
	for v := start.Version() + 1; v <= final.Version(); v++ {
		a, ok := byVersion[v]
		var err error
		switch {
		case !ok:
			claims++
			r, err = r.Join(ring.Member{ID: "n4", Zone: "zone-n4"})
		case a.op == OpLeave:
			r, err = r.Leave(a.id)
		case a.op == OpRemove:
			r, err = r.Remove(a.id)
		case a.op == OpAdmit:
			r, err = r.Join(ring.Member{ID: a.id, Zone: "zone-" + a.id})
		}
		if err != nil {
			t.Fatalf("replay of version %d (%+v): %v", v, a, err)
		}
	}
	if claims != 1 {
		t.Fatalf("%d versions were made by no acknowledged change, want 1 (the join of n4)", claims)
	}
	if r.Hash() != final.Hash() {
		t.Fatalf("replay gives %v, the cluster holds %v", r, final)
	}
	t.Logf("%d changes acknowledged (%d made a ring), ring version %d -> %d", len(done), len(byVersion), start.Version(), final.Version())
}

// decided returns the ring in s.
func decided(t *testing.T, s *memStore) *ring.Ring {
	t.Helper()
	b, found, err := s.Get(t.Context())
	if err != nil || !found {
		t.Fatalf("register: %v, found %v", err, found)
	}
	rec, err := decodeRecord(b)
	if err != nil {
		t.Fatal(err)
	}
	return rec.ring
}

// TestChangeOutcome makes changes through a register whose
// compare-and-set fails: applied with an error, not applied with an
// error, never answering in time.
func TestChangeOutcome(t *testing.T) {
	errLost := errors.New("lost the answer")
	for _, tc := range []struct {
		name  string
		fault func(n int) (bool, error)
		want  error
		made  bool
	}{
		{"applied, answer lost", func(n int) (bool, error) { return true, errLost }, nil, true},
		{"not applied twice", func(n int) (bool, error) { return n > 2, map[bool]error{true: nil, false: errLost}[n > 2] }, nil, true},
		{"never applied", func(n int) (bool, error) { return false, errLost }, ErrOutcomeUnknown, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			log := testLogger(t)
			base := t.TempDir()
			n1 := open(t, testConfig(t, log, base, "n1"))
			n2 := open(t, testConfig(t, log, base, "n2", n1.Addr()))
			waitFor(t, "n2 joined", func() string { return converged([]*Gossip{n1, n2}, "n1", "n2") })
			s := storeFor(t)
			before := n1.Ring().Version()
			s.mu.Lock()
			s.fault = tc.fault
			s.cas = 0
			s.mu.Unlock()
			ctx, cancel := context.WithTimeout(t.Context(), 2*time.Second)
			defer cancel()
			res, err := n1.Change(ctx, Change{Op: OpLeave, ID: "n2"})
			if !errors.Is(err, tc.want) || (tc.want == nil) != (err == nil) {
				t.Fatalf("got %+v, %v, want %v", res, err, tc.want)
			}
			s.mu.Lock()
			s.fault = nil
			s.mu.Unlock()
			final := decided(t, s)
			m, _ := final.Member("n2")
			if got := m.Status == ring.Leaving; got != tc.made {
				t.Fatalf("register holds n2 %v at version %d, want the leave made: %v", m.Status, final.Version(), tc.made)
			}
			if tc.made && (res.Version != before+1 || final.Version() != before+1) {
				t.Fatalf("got version %d, register at %d, want both %d", res.Version, final.Version(), before+1)
			}
		})
	}
}

// TestSplitDecided: a split decided through one node while another node
// decides a leave: both are made, one after the other, every node ends on
// the register's ring, which has twice the partitions, the first P as its
// base, and replays from the start ring in version order. A split naming
// a member, and one its Check refuses, are refused.
func TestSplitDecided(t *testing.T) {
	nodes, _, _ := startCluster(t, 3)
	start := nodes[0].Ring()
	if _, err := change(t, nodes[0], OpSplit, "n1"); !errors.Is(err, ErrConflict) {
		t.Fatalf("split naming a member: %v, want ErrConflict", err)
	}
	errTooMany := errors.New("too many partitions")
	ctx, cancel := context.WithTimeout(t.Context(), convergeTimeout)
	defer cancel()
	_, err := nodes[0].Change(ctx, Change{Op: OpSplit, Check: func(next *ring.Ring) error {
		if next.Partitions() > start.Partitions() {
			return errTooMany
		}
		return nil
	}})
	if !errors.Is(err, errTooMany) {
		t.Fatalf("split refused by its check: %v", err)
	}

	var wg sync.WaitGroup
	var split, leave Result
	var splitErr, leaveErr error
	wg.Go(func() { split, splitErr = change(t, nodes[1], OpSplit, "") })
	wg.Go(func() { leave, leaveErr = change(t, nodes[2], OpLeave, "n3") })
	wg.Wait()
	if splitErr != nil || leaveErr != nil {
		t.Fatalf("split: %v; leave: %v", splitErr, leaveErr)
	}
	final := decided(t, storeFor(t))
	if final.Partitions() != 2*start.Partitions() || final.Base() != start.Partitions() || final.Version() != start.Version()+2 {
		t.Fatalf("after a split and a leave: %v (P=%d base %d), from %v", final, final.Partitions(), final.Base(), start)
	}
	waitFor(t, "every node on the split ring", func() string {
		for _, g := range nodes {
			if r := g.Ring(); r.Hash() != final.Hash() {
				return fmt.Sprintf("%s holds %v, the register %v", g.cfg.NodeID, r, final)
			}
		}
		return ""
	})
	r := start
	for v := start.Version() + 1; v <= final.Version(); v++ {
		switch v {
		case split.Version:
			r, err = r.Split()
		case leave.Version:
			r, err = r.Leave("n3")
		default:
			t.Fatalf("version %d made by neither change (split %d, leave %d)", v, split.Version, leave.Version)
		}
		if err != nil {
			t.Fatal(err)
		}
	}
	if r.Hash() != final.Hash() {
		t.Fatalf("replay gives %v, the register holds %v", r, final)
	}
}
