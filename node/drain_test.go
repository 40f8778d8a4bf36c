package node

import (
	"context"
	"errors"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/hashicorp/raft"

	"github.com/ringkv/ringkv/consensus"
	"github.com/ringkv/ringkv/coordinator"
	"github.com/ringkv/ringkv/replica"
	"github.com/ringkv/ringkv/ring/gossip"
)

// A data directory gets FORMAT 1 on first open (what every older release
// wrote without saying), and one of a format this build does not read is
// refused before anything is opened, with a message naming both formats.
func TestDiskFormat(t *testing.T) {
	dir := t.TempDir()
	if v, err := checkDiskFormat(dir); err != nil || v != 1 {
		t.Fatalf("fresh directory: %d %v, want format 1", v, err)
	}
	b, err := os.ReadFile(filepath.Join(dir, formatFile))
	if err != nil || string(b) != "1\n" {
		t.Fatalf("FORMAT: got %q (%v), want \"1\\n\"", b, err)
	}
	if _, err := checkDiskFormat(dir); err != nil {
		t.Fatalf("second open: %v", err)
	}
	for _, bad := range []string{"7\n", "two\n", ""} {
		if err := os.WriteFile(filepath.Join(dir, formatFile), []byte(bad), 0o644); err != nil {
			t.Fatal(err)
		}
		_, err := checkDiskFormat(dir)
		var fe *FormatError
		if !errors.Is(err, ErrDiskFormat) || !errors.As(err, &fe) {
			t.Fatalf("FORMAT %q: got %v, want a *FormatError", bad, err)
		}
		if !strings.Contains(err.Error(), "this binary reads format 1") {
			t.Errorf("FORMAT %q: message %q does not name the formats read", bad, err)
		}
	}
	cfg := testNodeConfig(t, 1, dir, nil, nil)
	if _, err := Open(cfg, Deps{}); !errors.Is(err, ErrDiskFormat) {
		t.Fatalf("Open of a directory of format \"\": got %v, want ErrDiskFormat", err)
	}
	if _, err := os.Stat(filepath.Join(dir, "replica")); !os.IsNotExist(err) {
		t.Errorf("the refused directory was touched: replica/ exists (%v)", err)
	}
}

// A directory of format 1, its Raft logs in the store, is converted on
// open: the logs move into the WAL, FORMAT says 2, and a second open
// finds them there.
func TestDiskFormatConverted(t *testing.T) {
	dir := t.TempDir()
	if err := writeDiskFormat(dir, 1); err != nil {
		t.Fatal(err)
	}
	rcfg := replica.DefaultConfig()
	rcfg.Dir = filepath.Join(dir, "replica")
	store, err := replica.Open(rcfg, replica.Deps{})
	if err != nil {
		t.Fatal(err)
	}
	const group = 60000 // not a partition: nothing else touches it
	ls, err := consensus.NewLogStore(store, group)
	if err != nil {
		t.Fatal(err)
	}
	var logs []*raft.Log
	for i := uint64(1); i <= 50; i++ {
		logs = append(logs, &raft.Log{Index: i, Term: 1, Type: raft.LogCommand, Data: []byte("x")})
	}
	if err := ls.StoreLogs(logs); err != nil {
		t.Fatal(err)
	}
	if err := store.Close(); err != nil {
		t.Fatal(err)
	}
	for round := range 2 {
		nd, err := Open(testNodeConfig(t, 1, dir, nil, nil), Deps{})
		if err != nil {
			t.Fatalf("open %d: %v", round, err)
		}
		if first, last := nd.wal.Bounds(group); first != 1 || last != 50 {
			t.Errorf("open %d: the WAL holds %d..%d, want 1..50", round, first, last)
		}
		if err := nd.Close(); err != nil {
			t.Fatal(err)
		}
		if b, err := os.ReadFile(filepath.Join(dir, formatFile)); err != nil || string(b) != "2\n" {
			t.Fatalf("FORMAT after open %d: %q %v, want 2", round, b, err)
		}
	}
	store, err = replica.Open(rcfg, replica.Deps{})
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = store.Close() }()
	if ls, err = consensus.NewLogStore(store, group); err != nil {
		t.Fatal(err)
	}
	if last, _ := ls.LastIndex(); last != 0 {
		t.Errorf("the store still holds the log up to %d", last)
	}
}

// Drain in process: the node stops being ready, leads nothing, refuses
// client requests with ErrDraining (the HTTP API with 503), keeps serving
// its peers, and Undrain brings it back.
func TestDrainInProcess(t *testing.T) {
	nodes := startCluster(t, 3)
	waitUntil(t, 30*time.Second, "every node ready", func() bool {
		for _, nd := range nodes {
			if ready, _, _, _ := nd.Ready(); !ready {
				return false
			}
		}
		return true
	})
	nd := nodes[1]
	ctx, cancel := context.WithTimeout(t.Context(), 30*time.Second)
	defer cancel()
	rep, err := nd.Drain(ctx)
	if err != nil || !rep.Done || len(rep.Leading) != 0 || !rep.Draining {
		t.Fatalf("Drain: got %+v, %v; want done, leading nothing", rep, err)
	}
	if ready, _, _, _ := nd.Ready(); ready {
		t.Error("a draining node reports ready")
	}
	if code := getJSON(t, "http://"+nd.HTTPAddr()+"/api/get?key=k", &map[string]any{}); code != http.StatusServiceUnavailable {
		t.Errorf("HTTP get on a draining node: got %d, want 503", code)
	}
	// Other nodes still reach its replica: a write at All succeeds.
	if err := nodes[0].Coordinator().Set(ctx, []byte("k"), []byte("v"), coordinator.All); err != nil {
		t.Errorf("write at All while n2 drains: %v", err)
	}
	waitUntil(t, 20*time.Second, "n1 to see n2 draining", func() bool {
		mi, _ := nodes[0].Gossip().Member(nd.ID())
		return mi.Draining && mi.Liveness == gossip.Alive
	})
	if !(membership{g: nodes[0].Gossip()}).Draining(nd.ID()) {
		t.Error("membership.Draining(n2) is false on n1")
	}
	nd.Undrain()
	if nd.Draining() || nd.Coordinator().Draining() {
		t.Error("still draining after Undrain")
	}
	waitUntil(t, 30*time.Second, "n2 ready again", func() bool {
		ready, _, _, _ := nd.Ready()
		return ready
	})
}
