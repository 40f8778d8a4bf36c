package backup_test

import (
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/ringkv/ringkv/backup"
	"github.com/ringkv/ringkv/client"
	"github.com/ringkv/ringkv/internal/testcluster"
)

// TestBackupThroughput measures backup and restore throughput on real
// processes (docs/BENCHMARKS.md "Backup and restore"): a 3-node cluster
// is loaded with RINGKV_BACKUP_BENCH_RECORDS records (default 500000) of
// RINGKV_BACKUP_BENCH_VALUE bytes (default 200), backed up 3 times, and
// each backup restored into a fresh, empty 3-node cluster. It runs only
// with RINGKV_BACKUP_BENCH=1.
func TestBackupThroughput(t *testing.T) {
	if os.Getenv("RINGKV_BACKUP_BENCH") != "1" {
		t.Skip("set RINGKV_BACKUP_BENCH=1 to measure backup and restore throughput")
	}
	records := envInt(t, "RINGKV_BACKUP_BENCH_RECORDS", 500000)
	valueBytes := envInt(t, "RINGKV_BACKUP_BENCH_VALUE", 200)
	ctx := t.Context()
	src := testcluster.StartOptions(t, testcluster.Options{Nodes: 3, NoRace: true})
	cl := dial(t, src)

	start := time.Now()
	value := make([]byte, valueBytes)
	for i := range value {
		value[i] = byte('a' + i%26)
	}
	const chunk, writers = 2000, 4
	var wg sync.WaitGroup
	errc := make(chan error, writers)
	for w := range writers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for lo := w * chunk; lo < records; lo += writers * chunk {
				ops := make([]client.Op, 0, chunk)
				for i := lo; i < min(lo+chunk, records); i++ {
					ops = append(ops, client.SetOp(fmt.Sprintf("user%010d", i), value))
				}
				for _, r := range cl.Batch(ctx, ops) {
					if r.Err != nil {
						errc <- r.Err
						return
					}
				}
			}
		}()
	}
	wg.Wait()
	close(errc)
	if err := <-errc; err != nil {
		t.Fatalf("load: %v", err)
	}
	t.Logf("loaded %d records of %d bytes in %s", records, valueBytes, time.Since(start).Round(time.Millisecond))

	type run struct {
		took          time.Duration
		records, size int64
	}
	var backups, restores []run
	for i := range 3 {
		dir := filepath.Join(t.TempDir(), fmt.Sprintf("b%d", i))
		st := time.Now()
		m, err := backup.Run(ctx, cl, backup.Config{Dir: dir})
		if err != nil {
			t.Fatalf("backup: %v", err)
		}
		backups = append(backups, run{time.Since(st), m.Records, m.Bytes})
		if m.Records != int64(records) {
			t.Fatalf("backup holds %d records, want %d", m.Records, records)
		}

		dst := testcluster.StartOptions(t, testcluster.Options{Nodes: 3, NoRace: true})
		dcl := dial(t, dst)
		st = time.Now()
		sum, err := backup.Restore(ctx, dcl, backup.RestoreConfig{Dirs: []string{dir},
			Parallelism: envInt(t, "RINGKV_BACKUP_BENCH_PARALLEL", 4), BatchRecords: envInt(t, "RINGKV_BACKUP_BENCH_BATCH", 2048)})
		if err != nil {
			t.Fatalf("restore: %v", err)
		}
		restores = append(restores, run{time.Since(st), sum.Records, sum.Bytes})
		_ = dcl.Close()
		for _, nd := range dst.Nodes {
			nd.Kill()
			_ = os.RemoveAll(nd.DataDir)
		}
		_ = os.RemoveAll(dir)
		t.Logf("run %d: backup %s, restore %s", i+1, backups[i].took.Round(time.Millisecond), restores[i].took.Round(time.Millisecond))
	}
	report := func(what string, runs []run) {
		slices.SortFunc(runs, func(a, b run) int { return int(a.took - b.took) })
		for _, r := range runs {
			s := r.took.Seconds()
			t.Logf("%s: %d records, %.1f MB in %.2f s: %.0f records/s, %.1f MB/s", what, r.records, float64(r.size)/1e6, s, float64(r.records)/s, float64(r.size)/1e6/s)
		}
		m := runs[len(runs)/2]
		t.Logf("%s median: %.0f records/s, %.1f MB/s", what, float64(m.records)/m.took.Seconds(), float64(m.size)/1e6/m.took.Seconds())
	}
	report("backup", backups)
	report("restore", restores)
}

func envInt(t *testing.T, name string, def int) int {
	t.Helper()
	s := os.Getenv(name)
	if s == "" {
		return def
	}
	n, err := strconv.Atoi(s)
	if err != nil || n <= 0 {
		t.Fatalf("%s=%q: want a positive integer", name, s)
	}
	return n
}
