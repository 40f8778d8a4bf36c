package gossip

import (
	"errors"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/hashicorp/memberlist"
	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/ringkv/ringkv/internal/testlog"
)

func TestCheckPeerCluster(t *testing.T) {
	const a, b = "0123456789abcdef0123456789abcdef", "fedcba9876543210fedcba9876543210"
	enc := func(cluster string) []byte {
		m, err := encodeMeta(meta{Version: metaVersion, Wire: [2]int{1, 1}, Cluster: cluster})
		if err != nil {
			t.Fatal(err)
		}
		return m
	}
	for _, tc := range []struct {
		name, local, peer string
		bad               bool
	}{
		{"same cluster", a, a, false},
		{"another cluster", a, b, true},
		{"peer without an id (older, or joining)", a, "", false},
		{"this node without an id (joining)", "", b, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			err := checkPeer("me", WireRange{1, 1}, tc.local, &memberlist.Node{Name: "p", Meta: enc(tc.peer)})
			if got := err != nil; got != tc.bad {
				t.Fatalf("got %v, want refused=%v", err, tc.bad)
			}
			var fe *ForeignClusterError
			if tc.bad && (!errors.Is(err, ErrForeignCluster) || !errors.As(err, &fe) || fe.PeerCluster != tc.peer) {
				t.Errorf("got %v, want a *ForeignClusterError naming %s", err, tc.peer)
			}
		})
	}
}

func TestLoadClusterID(t *testing.T) {
	dir := t.TempDir()
	if id, err := loadClusterID(dir); err != nil || id != "" {
		t.Fatalf("no file: %q %v", id, err)
	}
	id, err := newClusterID()
	if err != nil || !validClusterID(id) {
		t.Fatalf("newClusterID: %q %v", id, err)
	}
	if err := saveClusterID(dir, id); err != nil {
		t.Fatal(err)
	}
	if got, err := loadClusterID(dir); err != nil || got != id {
		t.Fatalf("load: %q %v, want %q", got, err, id)
	}
	if err := os.WriteFile(filepath.Join(dir, clusterIDFile), []byte("not an id\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	if _, err := loadClusterID(dir); !errors.Is(err, ErrCorrupt) {
		t.Fatalf("a bad file: %v, want ErrCorrupt", err)
	}
}

// The founder draws a cluster id; a node joining without one adopts it
// and persists it; a node of another cluster pointed at the founder is
// refused by both sides (counted, logged) and never seen alive.
func TestClusterIDAdoptedAndForeignPeerRefused(t *testing.T) {
	var buf testlog.Buffer
	log := slog.New(slog.NewTextHandler(io.MultiWriter(&buf, testlog.Writer(t)), &slog.HandlerOptions{Level: slog.LevelInfo}))
	base := t.TempDir()
	n1 := open(t, testConfig(t, log, base, "n1"))
	if !validClusterID(n1.ClusterID()) {
		t.Fatalf("founder's cluster id %q", n1.ClusterID())
	}
	n2 := open(t, testConfig(t, log, base, "n2", n1.Addr()))
	waitFor(t, "n2 joins", func() string { return converged([]*Gossip{n1, n2}, "n1", "n2") })
	waitFor(t, "n2 adopts the cluster id", func() string {
		if n2.ClusterID() != n1.ClusterID() {
			return "n2's id is " + n2.ClusterID()
		}
		return ""
	})
	if got, err := loadClusterID(filepath.Join(base, "n2")); err != nil || got != n1.ClusterID() {
		t.Fatalf("n2's persisted id: %q %v", got, err)
	}

	other := testConfig(t, log, base, "x3", n1.Addr())
	const foreign = "fedcba9876543210fedcba9876543210"
	if err := os.MkdirAll(other.DataDir, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := saveClusterID(other.DataDir, foreign); err != nil {
		t.Fatal(err)
	}
	x3 := open(t, other)
	waitFor(t, "the foreign peer refused", func() string {
		if !strings.Contains(buf.String(), "belongs to cluster "+foreign) {
			return "no refusal logged yet"
		}
		if testutil.ToFloat64(n1.metrics.peersRefused.WithLabelValues("cluster")) == 0 {
			return "n1 counted no refusal"
		}
		return ""
	})
	if mi, ok := n1.Member("x3"); ok && mi.Liveness == Alive {
		t.Errorf("n1 sees x3 alive: %+v", mi)
	}
	if x3.ClusterID() != foreign {
		t.Errorf("x3 adopted %q", x3.ClusterID())
	}
	if _, inRing := n1.Ring().Member("x3"); inRing {
		t.Error("x3 joined n1's ring")
	}
}
