package gossip

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/ringkv/ringkv/internal/testlog"
	"github.com/ringkv/ringkv/ring"
)

// lockedBuffer is a bytes.Buffer safe for concurrent writers and readers.
type lockedBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (l *lockedBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

func (l *lockedBuffer) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}

func TestBootstrapSingleNode(t *testing.T) {
	log := testLogger(t)
	g := open(t, testConfig(t, log, t.TempDir(), "n1"))
	r := g.Ring()
	if got, want := r.Version(), uint64(1); got != want {
		t.Fatalf("version: got %d, want %d", got, want)
	}
	if got := r.Active(); len(got) != 1 || got[0].ID != "n1" || got[0].Zone != "zone-n1" {
		t.Fatalf("active: got %+v, want [n1 in zone-n1]", got)
	}
	if _, err := os.Stat(filepath.Join(g.cfg.DataDir, stateFile)); err != nil {
		t.Fatalf("ring not persisted: %v", err)
	}
	waitFor(t, "self alive", func() string { return seesAlive(g, "n1") })
}

func TestSeededNodeDoesNotBootstrap(t *testing.T) {
	log := testLogger(t)
	// Nothing listens on port 1: joining keeps failing until Close.
	g := open(t, testConfig(t, log, t.TempDir(), "n1", "127.0.0.1:1"))
	waitSteps(t, g, 5)
	if r := g.Ring(); r.Version() != 0 || len(r.Members()) != 0 {
		t.Fatalf("ring: got version %d members %v, want empty version 0", r.Version(), r.Members())
	}
	if _, err := os.Stat(filepath.Join(g.cfg.DataDir, stateFile)); !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("ring.state: got %v, want not exist", err)
	}
}

func TestThreeNodesConverge(t *testing.T) {
	nodes, _, _ := startCluster(t, 3)
	// Each node advertises the version of the ring it holds; the others
	// learn it by gossip.
	for _, g := range nodes {
		waitFor(t, "every ring version advertised", func() string {
			for _, id := range []string{"n1", "n2", "n3"} {
				if mi, _ := g.Member(id); mi.RingVersion != 3 {
					return fmt.Sprintf("%s sees %s at ring version %d", g.cfg.NodeID, id, mi.RingVersion)
				}
			}
			return ""
		})
	}
	for _, g := range nodes {
		waitFor(t, "everyone alive", func() string { return seesAlive(g, "n1", "n2", "n3") })
		for _, id := range []string{"n1", "n2", "n3"} {
			mi, _ := g.Member(id)
			want := MemberInfo{
				ID: id, Zone: "zone-" + id,
				RPCAddr: "127.0.0.1:1" + id[1:], HTTPAddr: "127.0.0.1:2" + id[1:],
				Liveness: Alive, Status: ring.Joined, RingVersion: 3, Wire: CurrentWire(),
			}
			if mi != want {
				t.Errorf("%s: Member(%s): got %+v, want %+v", g.cfg.NodeID, id, mi, want)
			}
		}
		if got := len(g.Members()); got != 3 {
			t.Errorf("%s: got %d members, want 3", g.cfg.NodeID, got)
		}
	}
	if got, want := nodes[0].Ring().Version(), uint64(3); got != want {
		t.Errorf("version: got %d, want %d (bootstrap + 2 joins)", got, want)
	}
}

func TestRestartKeepsRing(t *testing.T) {
	nodes, base, log := startCluster(t, 3)
	var want [][]byte
	for _, g := range nodes {
		b, err := g.Ring().MarshalBinary()
		if err != nil {
			t.Fatal(err)
		}
		want = append(want, b)
	}
	for _, g := range nodes {
		if err := g.Close(); err != nil {
			t.Fatalf("Close: %v", err)
		}
	}

	var reopened []*Gossip
	for _, id := range []string{"n1", "n2", "n3"} {
		reopened = append(reopened, open(t, testConfig(t, log, base, id, addrs(reopened)...)))
	}
	first := reopened[0]
	check := func() {
		t.Helper()
		for i, g := range reopened {
			got, err := g.Ring().MarshalBinary()
			if err != nil {
				t.Fatal(err)
			}
			if !bytes.Equal(got, want[i]) {
				t.Fatalf("%s: ring after restart differs: got version %d, want the persisted one", g.cfg.NodeID, g.Ring().Version())
			}
		}
	}
	check()
	for _, g := range reopened {
		waitFor(t, "everyone alive again", func() string { return seesAlive(g, "n1", "n2", "n3") })
	}
	waitSteps(t, first, 5)
	check()
}

func TestDeadMemberStaysInRing(t *testing.T) {
	for _, tc := range []struct {
		name  string
		leave bool
	}{
		{name: "graceful", leave: true},
		{name: "crash", leave: false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var logs lockedBuffer
			log := slog.New(slog.NewTextHandler(io.MultiWriter(testlog.Writer(t), &logs), &slog.HandlerOptions{Level: slog.LevelInfo}))
			nodes, _, _ := startClusterWith(t, 3, func(c *Config) { c.Logger = log })
			for _, g := range nodes {
				waitFor(t, "everyone alive", func() string { return seesAlive(g, "n1", "n2", "n3") })
			}
			before := nodes[0].Ring()
			mark := len(logs.String())
			if err := nodes[2].shutdown(tc.leave); err != nil {
				t.Fatalf("shutdown: %v", err)
			}
			for _, g := range nodes[:2] {
				waitFor(t, "n3 detected dead", func() string {
					if mi, _ := g.Member("n3"); mi.Liveness == Alive {
						return fmt.Sprintf("%s sees n3 %s", g.cfg.NodeID, mi.Liveness)
					}
					return ""
				})
			}
			// One Info line per member that saw it go, a warning only
			// once it has been down for downWarnAfter (10s under Local).
			logged := func(want string) func() string {
				return func() string {
					if !strings.Contains(logs.String(), want) {
						return "no " + want
					}
					return ""
				}
			}
			waitFor(t, "n3's departure logged", logged(`level=INFO msg="member down" node_id=n1 peer=n3`))
			if after := logs.String()[mark:]; strings.Contains(after, "level=WARN") {
				t.Errorf("warnings as n3 went:\n%s", after)
			}
			if !tc.leave {
				waitFor(t, "n3 still down", logged(`level=WARN msg="member still down" node_id=n1 peer=n3`))
			}
			waitSteps(t, nodes[0], 5)
			for _, g := range nodes[:2] {
				mi, _ := g.Member("n3")
				if mi.Status != ring.Joined || mi.RPCAddr == "" {
					t.Errorf("%s: n3: got %+v, want Joined with its addresses", g.cfg.NodeID, mi)
				}
				r := g.Ring()
				if r.Version() != before.Version() {
					t.Errorf("%s: version: got %d, want %d", g.cfg.NodeID, r.Version(), before.Version())
				}
				for p := range uint32(r.Partitions()) {
					if got, want := r.Replicas(p), before.Replicas(p); !slices.Equal(got, want) {
						t.Fatalf("%s: partition %d replicas: got %v, want %v", g.cfg.NodeID, p, got, want)
					}
				}
			}
		})
	}
}

func TestRemove(t *testing.T) {
	nodes, _, _ := startCluster(t, 3)
	// Not the claimant: any node may decide an operator change.
	if _, err := change(t, nodes[1], OpRemove, "n3"); err != nil {
		t.Fatalf("Remove: %v", err)
	}
	removed := func() string {
		for _, g := range nodes {
			r := g.Ring()
			if m, _ := r.Member("n3"); m.Status != ring.Removed {
				return fmt.Sprintf("%s: n3 is %v at version %d", g.cfg.NodeID, m.Status, r.Version())
			}
			for p := range uint32(r.Partitions()) {
				if slices.Contains(r.Replicas(p), "n3") {
					return fmt.Sprintf("%s: n3 replicates partition %d", g.cfg.NodeID, p)
				}
			}
		}
		return converged(nodes, "n1", "n2")
	}
	waitFor(t, "n3 removed everywhere", removed)
	version := nodes[0].Ring().Version()

	// n3 is still alive, but the claimant leaves it out.
	waitFor(t, "n3 alive", func() string { return seesAlive(nodes[0], "n3") })
	waitSteps(t, nodes[0], 10)
	if why := removed(); why != "" {
		t.Fatalf("after claims: %s", why)
	}
	if got := nodes[0].Ring().Version(); got != version {
		t.Fatalf("version: got %d, want %d", got, version)
	}

	if _, err := change(t, nodes[1], OpRemove, "n3"); !errors.Is(err, ErrConflict) {
		t.Fatalf("second Remove: got %v, want ErrConflict", err)
	}

	// Admit brings it back.
	if _, err := change(t, nodes[2], OpAdmit, "n3"); err != nil {
		t.Fatalf("Admit: %v", err)
	}
	waitFor(t, "n3 re-admitted", func() string { return converged(nodes, "n1", "n2", "n3") })
}

func TestLeave(t *testing.T) {
	nodes, _, _ := startCluster(t, 3)
	if _, err := change(t, nodes[0], OpLeave, "n2"); err != nil {
		t.Fatalf("Leave: %v", err)
	}
	waitFor(t, "n2 leaving everywhere", func() string {
		for _, g := range nodes {
			if m, _ := g.Ring().Member("n2"); m.Status != ring.Leaving {
				return fmt.Sprintf("%s: n2 is %v", g.cfg.NodeID, m.Status)
			}
		}
		return converged(nodes, "n1", "n3")
	})
	waitSteps(t, nodes[0], 5)
	if m, _ := nodes[0].Ring().Member("n2"); m.Status != ring.Leaving {
		t.Fatalf("claimant re-joined a leaving member: n2 is %v", m.Status)
	}
	if _, err := change(t, nodes[0], OpLeave, "n2"); !errors.Is(err, ErrConflict) || !strings.Contains(err.Error(), "leaving") {
		t.Fatalf("second Leave: got %v, want ErrConflict saying n2 is leaving", err)
	}
	before := nodes[0].Ring().Version()
	if res, err := change(t, nodes[0], OpAdmit, "n1"); err != nil || !res.Noop || res.Version != before {
		t.Fatalf("Admit of a joined member: got %+v, %v, want a no-op at version %d", res, err, before)
	}
	if _, err := change(t, nodes[0], OpAdmit, "nobody"); !errors.Is(err, ErrNotAlive) {
		t.Fatalf("Admit of an unknown member: got %v, want ErrNotAlive", err)
	}
	if got := nodes[0].Ring().Version(); got != before {
		t.Fatalf("refused changes moved the ring from version %d to %d", before, got)
	}
}

func TestAdmitNotAlive(t *testing.T) {
	nodes, _, _ := startCluster(t, 2)
	if err := nodes[1].shutdown(true); err != nil {
		t.Fatal(err)
	}
	if _, err := change(t, nodes[0], OpRemove, "n2"); err != nil {
		t.Fatalf("Remove: %v", err)
	}
	waitFor(t, "n2 dead", func() string {
		if mi, _ := nodes[0].Member("n2"); mi.Liveness != Dead {
			return fmt.Sprintf("n2 is %s", mi.Liveness)
		}
		return ""
	})
	if _, err := change(t, nodes[0], OpAdmit, "n2"); !errors.Is(err, ErrNotAlive) {
		t.Fatalf("Admit: got %v, want ErrNotAlive", err)
	}
}

func TestLateJoiner(t *testing.T) {
	nodes, base, log := startCluster(t, 3)
	// Seeded with every node, the claimant last.
	n4 := open(t, testConfig(t, log, base, "n4", nodes[2].Addr(), nodes[1].Addr(), nodes[0].Addr()))
	all := append(nodes, n4)
	waitFor(t, "n4 joined everywhere", func() string { return converged(all, "n1", "n2", "n3", "n4") })
	for _, g := range all {
		waitFor(t, "everyone alive", func() string { return seesAlive(g, "n1", "n2", "n3", "n4") })
	}
}

func TestSubscribe(t *testing.T) {
	log := testLogger(t)
	base := t.TempDir()
	n1 := open(t, testConfig(t, log, base, "n1"))
	ch, cancel := n1.Subscribe()
	if r := <-ch; r.Version() != 1 {
		t.Fatalf("first ring: got version %d, want 1", r.Version())
	}
	n2 := open(t, testConfig(t, log, base, "n2", n1.Addr()))
	waitFor(t, "n2 joined", func() string { return converged([]*Gossip{n1, n2}, "n1", "n2") })
	if r := <-ch; r.Version() != 2 {
		t.Fatalf("next ring: got version %d, want 2", r.Version())
	}
	cancel()
	cancel()
	if _, ok := <-ch; ok {
		t.Fatalf("channel open after cancel")
	}

	ch2, _ := n2.Subscribe()
	<-ch2
	if err := n2.Close(); err != nil {
		t.Fatal(err)
	}
	if _, ok := <-ch2; ok {
		t.Fatalf("channel open after Close")
	}
	ch3, cancel3 := n2.Subscribe()
	cancel3()
	if _, ok := <-ch3; ok {
		t.Fatalf("Subscribe after Close: channel open")
	}
	if _, err := change(t, n2, OpLeave, "n1"); !errors.Is(err, ErrClosed) {
		t.Fatalf("Leave after Close: got %v, want ErrClosed", err)
	}
	if err := n2.Close(); err != nil {
		t.Fatalf("second Close: %v", err)
	}
}

func TestOperatorCallCanceled(t *testing.T) {
	log := testLogger(t)
	g := open(t, testConfig(t, log, t.TempDir(), "n1"))
	ctx, cancel := context.WithCancel(t.Context())
	cancel()
	if _, err := g.Change(ctx, Change{Op: OpRemove, ID: "n1"}); !errors.Is(err, context.Canceled) {
		t.Fatalf("Remove: got %v, want context.Canceled", err)
	}
}

func TestMetrics(t *testing.T) {
	log := testLogger(t)
	reg := prometheus.NewRegistry()
	cfg := testConfig(t, log, t.TempDir(), "n1")
	g, err := Open(cfg, Deps{Registerer: reg})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = g.Close() })
	if _, err := Open(cfg, Deps{Registerer: reg}); err == nil {
		t.Fatalf("second Open on the same registry: got nil error")
	}
	g.SetStore(storeFor(t))
	if _, err := change(t, g, OpRemove, "n1"); err != nil {
		t.Fatal(err)
	}
	waitSteps(t, g, 2)
	got := gather(t, reg)
	for name, want := range map[string]float64{
		`ringkv_gossip_ring_version`:            2,
		`ringkv_gossip_ring_changes_total`:      1,
		`ringkv_gossip_members{liveness=alive}`: 1,
		`ringkv_gossip_members{liveness=dead}`:  0,
	} {
		if got[name] != want {
			t.Errorf("%s: got %v, want %v", name, got[name], want)
		}
	}
}

func gather(t *testing.T, reg *prometheus.Registry) map[string]float64 {
	t.Helper()
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	out := make(map[string]float64)
	for _, mf := range mfs {
		for _, m := range mf.GetMetric() {
			name := mf.GetName()
			for _, l := range m.GetLabel() {
				name += fmt.Sprintf("{%s=%s}", l.GetName(), l.GetValue())
			}
			switch {
			case m.GetGauge() != nil:
				out[name] = m.GetGauge().GetValue()
			case m.GetCounter() != nil:
				out[name] = m.GetCounter().GetValue()
			}
		}
	}
	return out
}
