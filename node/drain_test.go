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

	"github.com/ringkv/ringkv/coordinator"
	"github.com/ringkv/ringkv/ring/gossip"
)

// A data directory gets FORMAT 1 on first open (what every older release
// wrote without saying), and one of a format this build does not read is
// refused before anything is opened, with a message naming both formats.
func TestDiskFormat(t *testing.T) {
	dir := t.TempDir()
	if err := checkDiskFormat(dir); err != nil {
		t.Fatalf("fresh directory: %v", err)
	}
	b, err := os.ReadFile(filepath.Join(dir, formatFile))
	if err != nil || string(b) != "1\n" {
		t.Fatalf("FORMAT: got %q (%v), want \"1\\n\"", b, err)
	}
	if err := checkDiskFormat(dir); err != nil {
		t.Fatalf("second open: %v", err)
	}
	for _, bad := range []string{"7\n", "two\n", ""} {
		if err := os.WriteFile(filepath.Join(dir, formatFile), []byte(bad), 0o644); err != nil {
			t.Fatal(err)
		}
		err := checkDiskFormat(dir)
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
