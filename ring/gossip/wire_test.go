package gossip

import (
	"errors"
	"io"
	"log/slog"
	"strings"
	"testing"

	"github.com/hashicorp/memberlist"

	"github.com/ringkv/ringkv/internal/testlog"
)

func TestWireRangeOverlaps(t *testing.T) {
	for _, tc := range []struct {
		a, b WireRange
		want bool
	}{
		{WireRange{1, 1}, WireRange{1, 1}, true},
		{WireRange{1, 2}, WireRange{2, 3}, true},
		{WireRange{1, 1}, WireRange{2, 2}, false},
		{WireRange{3, 4}, WireRange{1, 2}, false},
	} {
		if got := tc.a.Overlaps(tc.b); got != tc.want {
			t.Errorf("%s overlaps %s: got %v, want %v", tc.a, tc.b, got, tc.want)
		}
	}
}

func TestCheckPeer(t *testing.T) {
	enc := func(md meta) []byte {
		b, err := encodeMeta(md)
		if err != nil {
			t.Fatal(err)
		}
		return b
	}
	local := WireRange{1, 2}
	for _, tc := range []struct {
		name string
		node memberlist.Node
		bad  bool
	}{
		{"itself, whatever it says", memberlist.Node{Name: "me", Meta: enc(meta{Version: metaVersion, Wire: [2]int{9, 9}})}, false},
		{"no wire field: an older node, version 1", memberlist.Node{Name: "p", Meta: []byte(`{"v":1}`)}, false},
		{"overlapping range", memberlist.Node{Name: "p", Meta: enc(meta{Version: metaVersion, Wire: [2]int{2, 3}})}, false},
		{"newer range", memberlist.Node{Name: "p", Meta: enc(meta{Version: metaVersion, Wire: [2]int{3, 4}})}, true},
		{"invalid range", memberlist.Node{Name: "p", Meta: enc(meta{Version: metaVersion, Wire: [2]int{2, 1}})}, true},
		{"not ringkv metadata: left to observe", memberlist.Node{Name: "p", Meta: []byte("x")}, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			err := checkPeer("me", local, "", &tc.node)
			if got := err != nil; got != tc.bad {
				t.Fatalf("got %v, want refused=%v", err, tc.bad)
			}
			if tc.bad && !errors.Is(err, ErrIncompatible) {
				t.Errorf("got %v, want ErrIncompatible", err)
			}
		})
	}
}

// A node speaking only wire version 2 cannot join a cluster of version-1
// nodes: both sides refuse it with a log line naming both ranges, and it
// never becomes a member. A node speaking 1..2 joins.
func TestIncompatiblePeerRefused(t *testing.T) {
	var buf testlog.Buffer
	log := slog.New(slog.NewTextHandler(io.MultiWriter(&buf, testlog.Writer(t)), &slog.HandlerOptions{Level: slog.LevelInfo}))
	base := t.TempDir()
	cfg1 := testConfig(t, log, base, "n1")
	cfg1.Wire = WireRange{1, 1} // a release before wire 2
	n1 := open(t, cfg1)
	cfg2 := testConfig(t, log, base, "n2", n1.Addr())
	cfg2.Wire = WireRange{2, 2}
	open(t, cfg2)
	cfg3 := testConfig(t, log, base, "n3", n1.Addr())
	cfg3.Wire = WireRange{1, 2}
	n3 := open(t, cfg3)
	waitFor(t, "n3 joins", func() string { return converged([]*Gossip{n1, n3}, "n1", "n3") })
	waitFor(t, "refusal logged", func() string {
		if !strings.Contains(buf.String(), "peer n2 speaks wire protocol 2, this node speaks 1") {
			return "no refusal line yet"
		}
		return ""
	})
	if mi, ok := n1.Member("n2"); ok && mi.Liveness == Alive {
		t.Errorf("n1 sees n2 alive: %+v", mi)
	}
	if mi, _ := n1.Member("n3"); mi.Wire != (WireRange{1, 2}) {
		t.Errorf("n3's wire as n1 sees it: got %s, want 1..2", mi.Wire)
	}
}

// SetDraining spreads by gossip: the other members see the flag, and see
// it cleared again.
func TestDrainingAdvertised(t *testing.T) {
	nodes, _, _ := startCluster(t, 2)
	draining := func(want bool) func() string {
		return func() string {
			if mi, _ := nodes[0].Member("n2"); mi.Draining != want {
				return "n1 does not see n2's draining flag change yet"
			}
			if mi, _ := nodes[1].Member("n2"); mi.Draining != want {
				return "n2 does not report its own flag"
			}
			return ""
		}
	}
	if err := nodes[1].SetDraining(true); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "draining seen", draining(true))
	if err := nodes[1].SetDraining(false); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "draining cleared", draining(false))
	if err := nodes[1].SetStarting(true); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "starting seen", func() string {
		if mi, _ := nodes[0].Member("n2"); !mi.Starting {
			return "n1 does not see n2 starting"
		}
		return ""
	})
}
