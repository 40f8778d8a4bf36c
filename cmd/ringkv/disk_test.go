package main

import (
	"context"
	"encoding/json"
	"fmt"
	"math/rand/v2"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/ringkv/ringkv/internal/testcluster"
)

// Issue 21 item 2: disks that fill up or stall, with real `ringkv serve`
// processes. RINGKV_DISK_LONG=1 runs the longer variants (more rounds).

// mountTmpfs mounts a size-limited tmpfs on a new directory, unmounted at
// cleanup (after the cluster's processes are killed: cleanups run last
// registered first, so call it before starting the cluster). It skips the
// test where mounting is refused.
func mountTmpfs(t *testing.T, size int64) string {
	t.Helper()
	dir := t.TempDir()
	out, err := exec.Command("mount", "-t", "tmpfs", "-o", fmt.Sprintf("size=%d", size), "tmpfs", dir).CombinedOutput()
	if err != nil {
		t.Skipf("cannot mount a %d-byte tmpfs (needs root and mount rights): %v: %s", size, err, out)
	}
	t.Cleanup(func() {
		if out, err := exec.Command("umount", "-l", dir).CombinedOutput(); err != nil {
			t.Errorf("umount %s: %v: %s", dir, err, out)
		}
	})
	return dir
}

// diskValue is the 64 KB value written under key: the key, then letters
// from a generator seeded by the key, so that a read can be checked
// against it and Badger cannot compress it away.
func diskValue(key string) string {
	var seed [32]byte
	copy(seed[:], key)
	r := rand.NewChaCha8(seed)
	b := make([]byte, 64<<10)
	copy(b, key+":")
	for i := len(key) + 1; i < len(b); i++ {
		b[i] = 'a' + byte(r.Uint64()%26)
	}
	return string(b)
}

type readiness struct {
	Ready bool `json:"ready"`
	Disk  struct {
		Healthy   bool   `json:"healthy"`
		Reason    string `json:"reason"`
		FreeBytes int64  `json:"free_bytes"`
	} `json:"disk"`
}

func diskReady(ctx context.Context, nd *testcluster.Node) (readiness, int, error) {
	var r readiness
	code, body, err := nd.Do(ctx, http.MethodGet, "/ready", nil, nil)
	if err != nil {
		return r, code, err
	}
	if err := json.Unmarshal(body, &r); err != nil {
		return r, code, fmt.Errorf("decode /ready: %w: %s", err, body)
	}
	return r, code, nil
}

// leading returns the groups nd leads, by its own /api/stats.
func leading(ctx context.Context, nd *testcluster.Node) ([]uint32, error) {
	st, err := nd.Stats(ctx)
	if err != nil {
		return nil, err
	}
	var out []uint32
	for _, g := range st.Groups {
		if g.State == "Leader" {
			out = append(out, g.Partition)
		}
	}
	return out, nil
}

// TestDiskFullNode is the reproduction: three nodes, the third
// with its data on a 64 MB tmpfs, 64 KB values written at QUORUM (and
// some linearizable) until that disk is full. The third node must not
// die; it refuses what it cannot store, is not ready, leads no group,
// serves reads, and takes writes again within 10 s of a filler file being
// removed; no acknowledged write is lost and no record is corrupt.
// RINGKV_DISK_LONG=1 fills and frees a 256 MB tmpfs four times.
func TestDiskFullNode(t *testing.T) {
	const minFree = 16 << 20
	tmpfsBytes, cycles := int64(64<<20), 1
	if os.Getenv("RINGKV_DISK_LONG") == "1" {
		// The reserve grows with n3's tables (as large again, plus three
		// memtables), so more data needs a larger disk.
		tmpfsBytes, cycles = 256<<20, 4
	}
	mnt := mountTmpfs(t, tmpfsBytes)
	c := testcluster.StartOptions(t, testcluster.Options{Nodes: 3, Args: []string{"--partitions", "8"},
		Prepare: func(nodes []*testcluster.Node) {
			nodes[2].DataDir = filepath.Join(mnt, "n3")
			nodes[2].Args = append(nodes[2].Args, "--memtable-bytes", "4194304", "--min-free-bytes", strconv.Itoa(minFree))
		}})
	c.WaitRaftReady(60*time.Second, 3)
	n3 := c.Nodes[2]
	ctx := t.Context()
	var acked []string
	next := 0
	for cycle := range cycles {
		// A filler leaves n3 about 16 MB above its reserve (which grows
		// with its tables).
		var st unix.Statfs_t
		if err := unix.Statfs(mnt, &st); err != nil {
			t.Fatal(err)
		}
		free := int64(st.Bavail) * st.Bsize //nolint:gosec // block counts fit
		res, err := n3.Metric(ctx, "ringkv_replica_disk_reserve_bytes")
		if err != nil {
			t.Fatal(err)
		}
		filler := filepath.Join(mnt, fmt.Sprintf("filler%d", cycle))
		if size := free - int64(res) - 16<<20; size > 0 {
			if err := os.WriteFile(filler, make([]byte, size), 0o600); err != nil {
				t.Fatal(err)
			}
		}
		fillUntilFull(t, c, &acked, &next)
		checkFullNode(t, c, acked)
		// Free space: n3 takes writes again within 10 s.
		if err := os.Remove(filler); err != nil && !os.IsNotExist(err) {
			t.Fatal(err)
		}
		freed := time.Now()
		var back time.Duration
		c.WaitFor(10*time.Second, "n3 to take writes again after the filler's removal", func(ctx context.Context) error {
			key := fmt.Sprintf("after/%d", time.Now().UnixNano())
			code, body, err := n3.Do(ctx, http.MethodPost, "/api/set", url.Values{"consistency": {"all"}},
				map[string]string{"key": key, "value": "x"})
			if err != nil {
				return err
			}
			if code != http.StatusOK && code != http.StatusNoContent {
				return fmt.Errorf("write at ALL through n3: HTTP %d %s", code, body)
			}
			back = time.Since(freed)
			return nil
		})
		t.Logf("cycle %d: n3 took a write at ALL %v after the filler's removal", cycle, back.Round(time.Millisecond))
		c.WaitFor(30*time.Second, "n3 ready again", func(ctx context.Context) error {
			r, code, err := diskReady(ctx, n3)
			if err != nil {
				return err
			}
			if code != http.StatusOK || !r.Disk.Healthy {
				return fmt.Errorf("/ready: HTTP %d %+v", code, r)
			}
			return nil
		})
	}

	// Nothing acknowledged lost, nothing corrupt: every acknowledged key
	// reads back whole at QUORUM through each node, also after n3 restarts.
	checkAcked := func() int {
		lost := 0
		for _, nd := range c.Nodes {
			for _, key := range acked {
				v, code, err := nd.Get(ctx, key, "quorum")
				if err != nil || code != http.StatusOK || v != diskValue(key) {
					lost++
					t.Errorf("read %s through %s: HTTP %d, err %v, value ok %v", key, nd.ID, code, err, v == diskValue(key))
				}
			}
		}
		for _, nd := range c.Nodes {
			if v, err := nd.Metric(ctx, "ringkv_replica_corrupt_records_total"); err != nil || v != 0 {
				t.Errorf("%s: ringkv_replica_corrupt_records_total %v (err %v), want 0", nd.ID, v, err)
			}
		}
		return lost
	}
	lost := checkAcked()
	n3.Stop()
	n3.Start()
	c.WaitRaftReady(60*time.Second, 3)
	lost += checkAcked()
	t.Logf("%d acknowledged writes read back through every node, before and after n3's restart: %d lost; 0 corrupt records", len(acked), lost)
}

// fillUntilFull writes 64 KB values at QUORUM (every fourth
// linearizable) through n1 and n2 until n3 reports its disk full, then
// for 2 s more, appending the acknowledged keys to acked.
func fillUntilFull(t *testing.T, c *testcluster.Cluster, acked *[]string, next *int) {
	t.Helper()
	ctx := t.Context()
	n3 := c.Nodes[2]
	full := time.Time{}
	start := time.Now()
	n := 0
	for ; ; n++ {
		if n > 4000 {
			t.Fatalf("n3 never reported a full disk after %d writes", n)
		}
		if n%16 == 0 && !n3.Running() {
			t.Fatalf("n3 exited after %d writes (SIGBUS?)", n)
		}
		i := *next
		*next++
		key := fmt.Sprintf("fill/%05d", i)
		level := "quorum"
		if i%4 == 3 {
			level = "linearizable"
		}
		code, err := c.Nodes[i%2].Set(ctx, key, diskValue(key), level)
		if err != nil {
			t.Fatalf("set %s: %v", key, err)
		}
		if code == http.StatusOK || code == http.StatusNoContent {
			*acked = append(*acked, key)
		} else if code != http.StatusServiceUnavailable && code != http.StatusGatewayTimeout {
			t.Fatalf("set %s at %s: HTTP %d, want success (n1 and n2 make a quorum)", key, level, code)
		}
		if full.IsZero() && n%16 == 0 {
			if v, err := n3.Metric(ctx, "ringkv_replica_disk_full"); err == nil && v == 1 {
				full = time.Now()
			}
		}
		if !full.IsZero() && time.Since(full) > 2*time.Second {
			break
		}
	}
	res, _ := n3.Metric(ctx, "ringkv_replica_disk_reserve_bytes")
	t.Logf("n3's disk full after %v and %d writes of 64 KB (reserve %.0f bytes); %d acknowledged by the cluster so far", full.Sub(start).Round(time.Millisecond), n, res, len(*acked))
	if !n3.Running() {
		t.Fatal("n3 exited when its disk filled (SIGBUS?)")
	}
}

// checkFullNode checks that n3, whose disk is full, tells the cluster (not
// ready, leads no group), refuses a write that needs it with 507 and
// serves reads.
func checkFullNode(t *testing.T, c *testcluster.Cluster, acked []string) {
	t.Helper()
	ctx := t.Context()
	n3 := c.Nodes[2]
	c.WaitFor(30*time.Second, "n3 to report its disk and lead no group", func(ctx context.Context) error {
		r, code, err := diskReady(ctx, n3)
		if err != nil {
			return err
		}
		if code != http.StatusServiceUnavailable || r.Disk.Healthy || !strings.Contains(r.Disk.Reason, "insufficient storage") {
			return fmt.Errorf("/ready: HTTP %d %+v, want 503 with an insufficient storage reason", code, r)
		}
		led, err := leading(ctx, n3)
		if err != nil {
			return err
		}
		if len(led) > 0 {
			return fmt.Errorf("n3 still leads groups %v", led)
		}
		return nil
	})
	code, body, err := n3.Do(ctx, http.MethodPost, "/api/set", url.Values{"consistency": {"all"}},
		map[string]string{"key": "needs-n3", "value": diskValue("needs-n3")})
	if err != nil {
		t.Fatal(err)
	}
	if code != http.StatusInsufficientStorage {
		t.Errorf("write at ALL while n3 is full: HTTP %d %s, want 507", code, body)
	}
	if v, code, err := n3.Get(ctx, acked[0], "quorum"); err != nil || code != http.StatusOK || v != diskValue(acked[0]) {
		t.Errorf("read through n3 while full: HTTP %d, err %v, value ok %v", code, err, v == diskValue(acked[0]))
	}
}

// TestDiskStallLeader stalls every fsync of the node leading the most
// groups for 5 s (POST /chaos/disk): each group it led gets a new leader,
// and QUORUM writes through the other nodes keep completing.
func TestDiskStallLeader(t *testing.T) {
	c := testcluster.StartOptions(t, testcluster.Options{Nodes: 3, Args: []string{"--partitions", "8", "--chaos-hooks"}})
	c.WaitRaftReady(60*time.Second, 3)
	ctx := t.Context()
	// Leadership settles first (leaders hand groups to their primaries):
	// the same leaders, every group led, for three polls in a row.
	var prev string
	same := 0
	c.WaitFor(60*time.Second, "leadership to settle", func(ctx context.Context) error {
		var b strings.Builder
		total := 0
		for _, nd := range c.Nodes {
			l, err := leading(ctx, nd)
			if err != nil {
				return err
			}
			total += len(l)
			fmt.Fprintf(&b, "%s%v ", nd.ID, l)
		}
		if b.String() == prev && total == 8 {
			same++
		} else {
			same = 0
		}
		prev = b.String()
		if same < 3 {
			return fmt.Errorf("leaders %s (%d groups led) not settled", prev, total)
		}
		return nil
	})
	var victim *testcluster.Node
	var led []uint32
	for _, nd := range c.Nodes {
		l, err := leading(ctx, nd)
		if err != nil {
			t.Fatal(err)
		}
		if len(l) > len(led) {
			victim, led = nd, l
		}
	}
	if victim == nil {
		t.Fatal("no node leads a group")
	}
	var others []*testcluster.Node
	for _, nd := range c.Nodes {
		if nd != victim {
			others = append(others, nd)
		}
	}
	write := func(i int) time.Duration {
		key := fmt.Sprintf("stall/%05d", i)
		t0 := time.Now()
		code, err := others[i%2].Set(ctx, key, "v", "quorum")
		if err != nil || (code != http.StatusOK && code != http.StatusNoContent) {
			t.Errorf("set %s: HTTP %d, err %v", key, code, err)
		}
		return time.Since(t0)
	}
	rounds := 200
	if os.Getenv("RINGKV_DISK_LONG") == "1" {
		rounds = 2000
	}
	var base []time.Duration
	for i := range rounds {
		base = append(base, write(i))
	}

	code, body, err := victim.Do(ctx, http.MethodPost, "/chaos/disk", url.Values{"sync-delay": {"5s"}}, nil)
	if err != nil || code != http.StatusOK {
		t.Fatalf("POST /chaos/disk: HTTP %d %s, err %v", code, body, err)
	}
	stalled := time.Now()
	// Linearizable writes through the others meanwhile: those of the
	// victim's groups wait for its leadership to move.
	linDone := make(chan struct{})
	linStop := make(chan struct{})
	var lin []time.Duration
	linFailed := 0
	go func() {
		defer close(linDone)
		for i := 0; ; i++ {
			select {
			case <-linStop:
				return
			default:
			}
			key := fmt.Sprintf("stall-lin/%05d", i)
			t0 := time.Now()
			code, body, err := others[i%2].Do(ctx, http.MethodPost, "/api/set", url.Values{"consistency": {"linearizable"}},
				map[string]string{"key": key, "value": "v"})
			if err != nil || (code != http.StatusOK && code != http.StatusNoContent) {
				if linFailed == 0 {
					t.Logf("first failed linearizable write (after %v): HTTP %d %s, err %v", time.Since(t0).Round(time.Millisecond), code, body, err)
				}
				linFailed++
				continue
			}
			lin = append(lin, time.Since(t0))
		}
	}()
	// Writes go on (each one makes the victim's replica fsync, so its
	// disk stays stalled) until it leads nothing.
	var during []time.Duration
	var moved time.Duration
	for i := rounds; ; i++ {
		during = append(during, write(i))
		if i%8 == 0 {
			l, err := leading(ctx, victim)
			if err == nil && len(l) == 0 {
				moved = time.Since(stalled)
				break
			}
		}
		if time.Since(stalled) > 30*time.Second {
			t.Fatalf("%s still leads groups 30 s after its fsyncs stalled", victim.ID)
		}
	}
	// And on, at least 8 s into the stall (past the writes caught in its
	// first second, which wait for it), and at least rounds more.
	for n := 0; n < rounds || time.Since(stalled) < 8*time.Second; n++ {
		during = append(during, write(len(base)+len(during)))
	}
	close(linStop)
	<-linDone
	if code, _, err := victim.Do(ctx, http.MethodPost, "/chaos/disk", url.Values{"sync-delay": {"0s"}}, nil); err != nil || code != http.StatusOK {
		t.Fatalf("end the stall: HTTP %d, err %v", code, err)
	}
	for _, nd := range others {
		l, err := leading(ctx, nd)
		if err != nil {
			t.Fatal(err)
		}
		t.Logf("%s leads %v", nd.ID, l)
	}
	p99 := func(d []time.Duration) time.Duration {
		d = slices.Clone(d)
		slices.Sort(d)
		return d[len(d)*99/100]
	}
	t.Logf("%s led %d groups; all led elsewhere %v after its fsyncs stalled 5 s each; QUORUM write p99 %v unloaded, %v during the stall (%d writes)",
		victim.ID, len(led), moved.Round(time.Millisecond), p99(base), p99(during), len(during))
	if len(lin) > 0 {
		t.Logf("linearizable writes during the stall: %d ok, %d failed, p99 %v, max %v", len(lin), linFailed, p99(lin), slices.Max(lin))
	} else {
		t.Logf("linearizable writes during the stall: 0 ok, %d failed", linFailed)
	}

	// For comparison, the failover time of a crash: SIGKILL the node that
	// now leads the most groups and time until the last one leads them all.
	var killed, last *testcluster.Node
	var killedLed []uint32
	for _, nd := range others {
		l, err := leading(ctx, nd)
		if err != nil {
			t.Fatal(err)
		}
		if killed == nil || len(l) > len(killedLed) {
			if killed != nil {
				last = killed
			}
			killed, killedLed = nd, l
		} else {
			last = nd
		}
	}
	killed.Kill()
	t0 := time.Now()
	c.WaitFor(60*time.Second, "the groups of the killed leader to elect new leaders", func(ctx context.Context) error {
		st, err := last.Stats(ctx)
		if err != nil {
			return err
		}
		for _, g := range st.Groups {
			if g.Leader == "" || g.Leader == killed.ID {
				return fmt.Errorf("group %d has no live leader", g.Partition)
			}
		}
		return nil
	})
	t.Logf("for comparison: SIGKILL of %s (leading %d groups): all led elsewhere after %v", killed.ID, len(killedLed), time.Since(t0).Round(time.Millisecond))
}
