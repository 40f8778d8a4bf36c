package replica

import (
	"errors"
	"fmt"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
)

// fakeDisk is a statfs seam whose free space the test sets.
type fakeDisk struct{ free atomic.Int64 }

func (d *fakeDisk) statfs(string) (int64, error) { return d.free.Load(), nil }

func TestDiskFullRefusesAdmittedWritesOnly(t *testing.T) {
	const minFree = 8 << 20
	reg := prometheus.NewRegistry()
	cfg := DefaultConfig()
	cfg.Dir = t.TempDir()
	cfg.Logger = testLogger(t)
	cfg.MinFreeBytes = minFree
	cfg.MemTableBytes = 1 << 20 // the reserve is minFree, above three memtables
	cfg.DiskCheckInterval = 10 * time.Millisecond
	s, err := Open(cfg, Deps{Registerer: reg})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = s.Close() })
	disk := &fakeDisk{}
	disk.free.Store(minFree * 4)
	s.space.setHooks(disk.statfs, nil)
	ctx := t.Context()
	rec := func(v string, ts Timestamp) Record { return Record{Value: []byte(v), Timestamp: ts, NodeID: "n1"} }

	mustMerge(t, s, Entry{Partition: 1, Key: []byte("before"), Record: rec("v", 1)})
	if st := s.DiskState(); st.Full || st.FreeBytes != minFree*4 {
		t.Fatalf("DiskState with room: got %+v, want not full, %d free", st, minFree*4)
	}

	// A batch that would leave less than the reserve is refused whole.
	disk.free.Store(minFree + 1000)
	err = s.Merge(ctx, []Entry{{Partition: 1, Key: []byte("big"), Record: rec(string(make([]byte, 4000)), 2)}})
	if !errors.Is(err, ErrDiskFull) {
		t.Fatalf("Merge below the reserve: got %v, want ErrDiskFull", err)
	}
	if _, err := s.Get(1, []byte("big")); !errors.Is(err, ErrNotFound) {
		t.Fatalf("Get of a refused write: got %v, want ErrNotFound", err)
	}
	st := s.DiskState()
	if !st.Full || st.Reason == "" {
		t.Fatalf("DiskState when full: got %+v, want full with a reason", st)
	}
	if got := gaugeValue(t, reg, "ringkv_replica_disk_full"); got != 1 {
		t.Fatalf("ringkv_replica_disk_full: got %v, want 1", got)
	}
	// Reads go on.
	if got := mustGet(t, s, 1, "before"); string(got.Value) != "v" {
		t.Fatalf("Get while full: got %q, want %q", got.Value, "v")
	}
	// Admitted writes are refused, the rest goes through.
	cases := []struct {
		name    string
		write   func() error
		refused bool
	}{
		{"merge", func() error { return s.Merge(ctx, []Entry{{Partition: 1, Key: []byte("k"), Record: rec("x", 3)}}) }, true},
		{"merge async", func() error {
			done := make(chan error, 1)
			if err := s.MergeAsync(ctx, []Entry{{Partition: 1, Key: []byte("k"), Record: rec("x", 3)}}, func(err error) { done <- err }); err != nil {
				return err
			}
			return <-done
		}, true},
		{"raft log", func() error {
			return s.WriteRawAsync(ctx, []KV{{Key: []byte("l\x00\x00\x00\x01log"), Value: []byte("e")}}, nil, func(error) {})
		}, true},
		{"hint", func() error { return s.WriteRaw(ctx, []KV{{Key: []byte("h\x00\x02n2hint"), Value: []byte("h")}}, nil) }, true},
		{"state machine apply", func() error {
			return s.MergeUnsynced(ctx, []Entry{{Partition: 1, Key: []byte("applied"), Record: rec("a", 4)}})
		}, false},
		{"raft stable store", func() error {
			return s.WriteRaw(ctx, []KV{{Key: []byte("s\x00\x00\x00\x01term"), Value: []byte("7")}}, nil)
		}, false},
		{"delete", func() error { return s.DeleteRaw(ctx, [][]byte{[]byte("h\x00\x02n2hint")}) }, false},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			err := tc.write()
			if tc.refused && !errors.Is(err, ErrDiskFull) {
				t.Fatalf("got %v, want ErrDiskFull", err)
			}
			if !tc.refused && err != nil {
				t.Fatalf("got %v, want nil", err)
			}
		})
	}

	// Freed space: the guard's goroutine notices without a write.
	disk.free.Store(minFree * 2)
	waitFor(t, "the store to leave the full state", func() bool { return !s.DiskState().Full })
	mustMerge(t, s, Entry{Partition: 1, Key: []byte("after"), Record: rec("w", 5)})
	if got := gaugeValue(t, reg, "ringkv_replica_disk_full"); got != 0 {
		t.Fatalf("ringkv_replica_disk_full after recovery: got %v, want 0", got)
	}
	if got := gaugeValue(t, reg, "ringkv_replica_disk_full_refused_total"); got != 5 {
		t.Fatalf("ringkv_replica_disk_full_refused_total: got %v, want 5", got)
	}
}

func gaugeValue(t *testing.T, g prometheus.Gatherer, name string) float64 {
	t.Helper()
	mfs, err := g.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, mf := range mfs {
		if mf.GetName() != name {
			continue
		}
		m := mf.GetMetric()[0]
		if m.GetGauge() != nil {
			return m.GetGauge().GetValue()
		}
		return m.GetCounter().GetValue()
	}
	t.Fatalf("metric %s not found", name)
	return 0
}

func TestWriteErrorNeedsAProbeToRecover(t *testing.T) {
	s := openTest(t, func(c *Config) {
		c.MinFreeBytes, c.MemTableBytes, c.DiskCheckInterval = 1<<20, 1<<20, 10*time.Millisecond
	})
	disk := &fakeDisk{}
	disk.free.Store(1 << 30)
	var probeErr atomic.Pointer[error]
	fail := error(syscall.EIO)
	probeErr.Store(&fail)
	s.space.setHooks(disk.statfs, func(string) error { return *probeErr.Load() })
	var failCommit atomic.Bool
	failCommit.Store(true)
	s.hooks.commitErr = func() error {
		if failCommit.Load() {
			return fmt.Errorf("write wal: %w", syscall.ENOSPC)
		}
		return nil
	}
	ctx := t.Context()
	e := Entry{Partition: 1, Key: []byte("k"), Record: Record{Value: []byte("v"), Timestamp: 1, NodeID: "n1"}}
	if err := s.Merge(ctx, []Entry{e}); !errors.Is(err, ErrDiskFull) || !errors.Is(err, syscall.ENOSPC) {
		t.Fatalf("Merge whose commit fails with ENOSPC: got %v, want ErrDiskFull and ENOSPC", err)
	}
	failCommit.Store(false)
	if !s.DiskState().Full {
		t.Fatal("DiskState after a failed commit: got not full, want full")
	}
	if err := s.Merge(ctx, []Entry{e}); !errors.Is(err, ErrDiskFull) {
		t.Fatalf("Merge after a failed commit, probe failing: got %v, want ErrDiskFull", err)
	}
	var ok error
	probeErr.Store(&ok)
	waitFor(t, "a probe to clear the write error", func() bool { return !s.DiskState().Full })
	mustMerge(t, s, e)
}

func TestSyncFaultStallsAndFails(t *testing.T) {
	release := make(chan struct{})
	var mode atomic.Int32 // 0 pass, 1 block until release, 2 fail
	cfg := DefaultConfig()
	cfg.Dir = t.TempDir()
	cfg.Logger = testLogger(t)
	s, err := Open(cfg, Deps{SyncFault: func() error {
		switch mode.Load() {
		case 1:
			<-release
		case 2:
			return syscall.EIO
		}
		return nil
	}})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = s.Close() })
	ctx := t.Context()
	e := func(k string) []Entry {
		return []Entry{{Partition: 1, Key: []byte(k), Record: Record{Value: []byte("v"), Timestamp: 1, NodeID: "n1"}}}
	}
	mode.Store(1)
	done := make(chan error, 1)
	go func() { done <- s.Merge(ctx, e("a")) }()
	waitFor(t, "a stalled fsync", func() bool { return s.DiskState().SyncStall > 20*time.Millisecond })
	mode.Store(0)
	close(release)
	if err := <-done; err != nil {
		t.Fatalf("Merge after the stall: got %v, want nil", err)
	}
	if st := s.DiskState(); st.SyncStall != 0 {
		t.Fatalf("SyncStall after the fsync: got %v, want 0", st.SyncStall)
	}
	mode.Store(2)
	if err := s.Merge(ctx, e("b")); !errors.Is(err, ErrSyncFailed) {
		t.Fatalf("Merge whose fsync fails: got %v, want ErrSyncFailed", err)
	}
	if st := s.DiskState(); !st.SyncFailed || st.Reason == "" {
		t.Fatalf("DiskState after a failed fsync: got %+v, want SyncFailed with a reason", st)
	}
}

// mountTmpfs mounts a tmpfs of size bytes on a new directory, unmounted
// at cleanup; it skips the test where mounting is refused.
func mountTmpfs(t *testing.T, size int64) string {
	t.Helper()
	dir := t.TempDir()
	out, err := exec.Command("mount", "-t", "tmpfs", "-o", fmt.Sprintf("size=%d", size), "tmpfs", dir).CombinedOutput()
	if err != nil {
		t.Skipf("cannot mount a %d-byte tmpfs (needs root and mount rights): %v: %s", size, err, out)
	}
	t.Cleanup(func() {
		if out, err := exec.Command("umount", dir).CombinedOutput(); err != nil {
			t.Errorf("umount %s: %v: %s", dir, err, out)
		}
	})
	return dir
}

// TestFillTmpfs writes 64 KB values to a store on a 64 MB tmpfs until it
// refuses them: no crash (Badger's SIGBUS), every acknowledged write
// reads back, and the store writes again once a filler file is removed.
// The filler must free more than the reserve can grow by after the
// refusal (a flush turns up to three memtables into tables, which the
// reserve counts again, 12 MB here) plus the hysteresis (an eighth of
// the reserve): 8 MB was not always enough.
func TestFillTmpfs(t *testing.T) {
	mnt := mountTmpfs(t, 64<<20)
	filler := filepath.Join(mnt, "filler")
	if err := os.WriteFile(filler, make([]byte, 24<<20), 0o600); err != nil {
		t.Fatal(err)
	}
	cfg := DefaultConfig()
	cfg.Dir = filepath.Join(mnt, "replica")
	cfg.Logger = testLogger(t)
	cfg.MemTableBytes = 4 << 20
	cfg.MinFreeBytes = DefaultMinFreeBytes(cfg.MemTableBytes)
	cfg.DiskCheckInterval = 20 * time.Millisecond
	s, err := Open(cfg, Deps{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = s.Close() })
	ctx := t.Context()
	val := make([]byte, 64<<10)
	_, _ = rand.NewChaCha8([32]byte{1}).Read(val) // incompressible
	acked := 0
	var full error
	for i := 0; i < 4000; i++ {
		copy(val, fmt.Sprintf("value %d", i))
		err := s.Merge(ctx, []Entry{{Partition: 1, Key: fmt.Appendf(nil, "k%05d", i), Record: Record{Value: val, Timestamp: Timestamp(i + 1), NodeID: "n1"}}})
		if err != nil {
			full = err
			break
		}
		acked++
	}
	if !errors.Is(full, ErrDiskFull) {
		t.Fatalf("after %d writes: got %v, want ErrDiskFull", acked, full)
	}
	st := s.DiskState()
	t.Logf("64 MB tmpfs (24 MB filler, 4 MB memtables, reserve at least %d): %d writes of 64 KB acknowledged, then refused; free %d bytes, reserve %d", cfg.MinFreeBytes, acked, st.FreeBytes, s.space.reserve.Load())
	check := func() {
		t.Helper()
		for i := range acked {
			got, err := s.Get(1, fmt.Appendf(nil, "k%05d", i))
			if err != nil {
				t.Fatalf("Get of acknowledged write %d: got %v, want nil", i, err)
			}
			if want := fmt.Sprintf("value %d", i); string(got.Value[:len(want)]) != want {
				t.Fatalf("Get of acknowledged write %d: got %q..., want %q", i, got.Value[:len(want)], want)
			}
		}
	}
	check()
	if err := os.Remove(filler); err != nil {
		t.Fatal(err)
	}
	start := time.Now()
	waitFor(t, "writes admitted after the filler's removal", func() bool { return !s.DiskState().Full })
	t.Logf("writes admitted again %v after the filler's removal", time.Since(start).Round(time.Millisecond))
	mustMerge(t, s, Entry{Partition: 1, Key: []byte("after"), Record: Record{Value: val, Timestamp: 1, NodeID: "n1"}})
	check()
}

// TestAdmitStatfsOnlyNearTheReserve: the committer admits on its estimate
// (the last statfs minus what it admitted since) while that stays above
// twice the reserve and is recent, and asks statfs again once the estimate
// nears the reserve or grows old.
func TestAdmitStatfsOnlyNearTheReserve(t *testing.T) {
	const reserve = 1 << 20
	g := newSpaceGuard(t.TempDir(), reserve, 1, func() int64 { return 0 }, time.Hour, testLogger(t), newMetrics(func() float64 { return 0 }))
	t.Cleanup(g.close)
	var calls atomic.Int64
	var free atomic.Int64
	free.Store(10 * reserve)
	g.mu.Lock()
	g.mu.statfs = func(string) (int64, error) { calls.Add(1); return free.Load(), nil }
	g.mu.Unlock()

	if !g.admit(reserve) { // statfs: 10 reserves free, 9 left by the estimate
		t.Fatal("first admit refused")
	}
	for range 7 { // 9 → 2 reserves: never below twice the reserve, no statfs
		if !g.admit(reserve) {
			t.Fatal("admit on the estimate refused")
		}
	}
	if got := calls.Load(); got != 1 {
		t.Fatalf("statfs calls while the estimate is far above the reserve: got %d, want 1", got)
	}
	// The estimate would fall below twice the reserve: statfs again, which
	// now says the disk filled behind the store's back.
	free.Store(reserve + reserve/2)
	if g.admit(reserve) {
		t.Fatal("admit below the reserve by a fresh statfs: admitted")
	}
	if got := calls.Load(); got != 2 {
		t.Fatalf("statfs calls near the reserve: got %d, want 2", got)
	}
	if !g.full.Load() {
		t.Fatal("guard not full after a refused admit")
	}

	// An old estimate is not trusted however large.
	g2 := newSpaceGuard(t.TempDir(), reserve, 1, func() int64 { return 0 }, time.Hour, testLogger(t), newMetrics(func() float64 { return 0 }))
	t.Cleanup(g2.close)
	calls.Store(0)
	free.Store(100 * reserve)
	g2.mu.Lock()
	g2.mu.statfs = func(string) (int64, error) { calls.Add(1); return free.Load(), nil }
	g2.mu.Unlock()
	g2.admit(1)
	g2.est.at = g2.est.at.Add(-estimateReuse)
	g2.admit(1)
	if got := calls.Load(); got != 2 {
		t.Fatalf("statfs calls with an estimate older than estimateReuse: got %d, want 2", got)
	}
}
