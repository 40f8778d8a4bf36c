package node

import (
	"context"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/ringkv/ringkv/coordinator"
)

type readyBody struct {
	Ready bool       `json:"ready"`
	Disk  DiskHealth `json:"disk"`
}

func post(t *testing.T, url string) int {
	t.Helper()
	return postBody(t, url, nil)
}

// postBody POSTs body to url and returns the status code.
func postBody(t *testing.T, url string, body io.Reader) int {
	t.Helper()
	req, err := http.NewRequestWithContext(t.Context(), http.MethodPost, url, body)
	if err != nil {
		t.Fatal(err)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	_ = resp.Body.Close() // status only
	return resp.StatusCode
}

// A node whose fsyncs stall (POST /chaos/disk) hands its leadership away
// and reports itself not ready, then takes leadership back after a quiet
// spell.
func TestDiskStall(t *testing.T) {
	nodes := startClusterWith(t, 3, func(c *Config) {
		c.ChaosHooks = true
		c.DiskStallTimeout = 500 * time.Millisecond
	})
	waitUntil(t, 30*time.Second, "every node ready", func() bool {
		for _, nd := range nodes {
			if ready, _, _, _ := nd.Ready(); !ready {
				return false
			}
		}
		return true
	})
	nd := nodes[1]
	base := "http://" + nd.HTTPAddr()
	for _, bad := range []string{"/chaos/disk?sync-delay=soon", "/chaos/disk?sync-delay=-1s", "/chaos/disk?sync-fail=maybe"} {
		if code := post(t, base+bad); code != http.StatusBadRequest {
			t.Errorf("POST %s: got %d, want 400", bad, code)
		}
	}
	if code := post(t, base+"/chaos/disk?sync-delay=2s"); code != http.StatusOK {
		t.Fatalf("POST /chaos/disk: got %d, want 200", code)
	}
	ctx := t.Context()
	// Writes at ALL make n2 fsync; they complete once each stall ends.
	writes := make(chan error, 1)
	go func() {
		var err error
		for range 3 {
			if err = nodes[0].Coordinator().Set(ctx, []byte("stall"), []byte("v"), coordinator.All); err != nil {
				break
			}
		}
		writes <- err
	}()
	t.Log("stall set")
	waitUntil(t, 30*time.Second, "n2 unhealthy, leading nothing", func() bool {
		return nd.DiskUnhealthy() && len(nd.groups.Leading()) == 0
	})
	var rb readyBody
	if code := getJSON(t, base+"/ready", &rb); code != http.StatusServiceUnavailable || rb.Disk.Healthy || !strings.Contains(rb.Disk.Reason, "fsync stalled") {
		t.Errorf("/ready while fsyncs stall: got %d %+v, want 503 naming the stall", code, rb)
	}
	if code := post(t, base+"/chaos/disk?sync-delay=0s"); code != http.StatusOK {
		t.Fatalf("POST /chaos/disk: got %d, want 200", code)
	}
	t.Log("stall ended")
	if err := <-writes; err != nil {
		t.Errorf("writes at ALL across the stall: %v", err)
	}
	waitUntil(t, 30*time.Second, "n2 healthy and ready again", func() bool {
		ready, _, _, _ := nd.Ready()
		return !nd.DiskUnhealthy() && ready
	})

	t.Log("healthy again")
}

// A node whose fsync failed stays unhealthy (the store refuses durable
// writes until reopened), even across an Undrain. One node: with peers, the
// first vote it is asked for would need its term saved, and hashicorp/raft
// panics when its stable store fails (fail-stop; a restart recovers).
func TestDiskSyncFailureIsSticky(t *testing.T) {
	nodes := startClusterWith(t, 1, func(c *Config) { c.ChaosHooks = true })
	nd := nodes[0]
	base := "http://" + nd.HTTPAddr()
	waitUntil(t, 30*time.Second, "the node ready", func() bool { r, _, _, _ := nd.Ready(); return r })
	if code := post(t, base+"/chaos/disk?sync-fail=true"); code != http.StatusOK {
		t.Fatalf("POST /chaos/disk: got %d, want 200", code)
	}
	ctx, cancel := context.WithTimeout(t.Context(), 10*time.Second)
	defer cancel()
	if err := nd.Coordinator().Set(ctx, []byte("fail"), []byte("v"), coordinator.One); err == nil {
		t.Error("write with the fsync failing: got nil, want an error")
	}
	waitUntil(t, 30*time.Second, "the node unhealthy after a failed fsync", nd.DiskUnhealthy)
	nd.Undrain() // not draining: a no-op
	if _, err := nd.Drain(ctx); err != nil {
		t.Fatalf("Drain: %v", err)
	}
	nd.Undrain()
	if ready, _, _, _ := nd.Ready(); ready || !nd.groups.Draining() {
		t.Error("Undrain with a failed fsync: the node is ready or takes leadership again")
	}
	var rb readyBody
	if code := getJSON(t, base+"/ready", &rb); code != http.StatusServiceUnavailable || !strings.Contains(rb.Disk.Reason, "fsync failed") {
		t.Errorf("/ready after a failed fsync: got %d %+v, want 503 naming it", code, rb)
	}
}

// A node whose store refuses writes for lack of space (its data on a
// small tmpfs, nearly filled by a file) answers them 507, serves reads and
// takes writes again once the file is removed.
func TestDiskFullAnswers507(t *testing.T) {
	mnt := t.TempDir()
	if out, err := exec.Command("mount", "-t", "tmpfs", "-o", "size=32m", "tmpfs", mnt).CombinedOutput(); err != nil {
		t.Skipf("cannot mount a tmpfs (needs root and mount rights): %v: %s", err, out)
	}
	t.Cleanup(func() {
		if out, err := exec.Command("umount", "-l", mnt).CombinedOutput(); err != nil {
			t.Errorf("umount: %v: %s", err, out)
		}
	})
	nodes := startClusterWith(t, 1, func(c *Config) {
		c.DataDir = filepath.Join(mnt, "n1")
		c.Replica.MemTableBytes = 1 << 20
		c.Replica.MinFreeBytes = 8 << 20
	})
	nd := nodes[0]
	base := "http://" + nd.HTTPAddr()
	waitUntil(t, 30*time.Second, "the node ready", func() bool { r, _, _, _ := nd.Ready(); return r })
	var st unix.Statfs_t
	if err := unix.Statfs(mnt, &st); err != nil {
		t.Fatal(err)
	}
	filler := filepath.Join(mnt, "filler")
	if err := os.WriteFile(filler, make([]byte, int64(st.Bavail)*st.Bsize-4<<20), 0o600); err != nil {
		t.Fatal(err)
	}
	waitUntil(t, 30*time.Second, "the node to see its disk full", nd.DiskUnhealthy)
	set := func() int {
		req, err := http.NewRequestWithContext(t.Context(), http.MethodPost, base+"/api/set", strings.NewReader(`{"key":"k","value":"v"}`))
		if err != nil {
			t.Fatal(err)
		}
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		_ = resp.Body.Close() // status only
		return resp.StatusCode
	}
	if code := set(); code != http.StatusInsufficientStorage {
		t.Errorf("POST /api/set on a full node: got %d, want 507", code)
	}
	if code := getJSON(t, base+"/api/get?key=k&consistency=one", &map[string]any{}); code != http.StatusNotFound {
		t.Errorf("GET on a full node: got %d, want 404 (reads served)", code)
	}
	var rb readyBody
	if code := getJSON(t, base+"/ready", &rb); code != http.StatusServiceUnavailable || rb.Disk.Healthy || !strings.Contains(rb.Disk.Reason, "insufficient storage") || rb.Disk.FreeBytes <= 0 {
		t.Errorf("/ready on a full node: got %d %+v, want 503 with the reason and free bytes", code, rb)
	}
	if err := os.Remove(filler); err != nil {
		t.Fatal(err)
	}
	waitUntil(t, 10*time.Second, "a write accepted after the filler's removal", func() bool { return set() == http.StatusOK })
}
