package backup_test

import (
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
	"time"

	"github.com/ringkv/ringkv/backup"
	"github.com/ringkv/ringkv/client"
	"github.com/ringkv/ringkv/internal/testcluster"
	"github.com/ringkv/ringkv/internal/testlog"
	"github.com/ringkv/ringkv/replica"
)

func TestMain(m *testing.M) {
	code := m.Run()
	testcluster.Cleanup()
	os.Exit(code)
}

// write is one write of the oracle's history of a key.
type write struct {
	value   string // "" with tomb
	tomb    bool
	started time.Time
	acked   time.Time // zero: not acknowledged (failed)
}

// history records every write of the test, per key, in the order each
// key's single writer made them.
type history struct {
	mu   sync.Mutex
	keys map[string][]write
}

func (h *history) add(key string, w write) {
	h.mu.Lock()
	defer h.mu.Unlock()
	h.keys[key] = append(h.keys[key], w)
}

// allowed returns the writes whose value a backup that started at start
// and returned at end may hold for key: the last one acknowledged before
// start (nil: none, the key may be absent), then any that started
// before end.
func (h *history) allowed(key string, start, end time.Time) (before *write, concurrent []write) {
	h.mu.Lock()
	defer h.mu.Unlock()
	ws := h.keys[key]
	last := -1
	for i, w := range ws {
		if !w.acked.IsZero() && w.acked.Before(start) {
			last = i
		}
	}
	if last >= 0 {
		before = &ws[last]
	}
	for _, w := range ws[last+1:] {
		if w.started.Before(end) {
			concurrent = append(concurrent, w)
		}
	}
	return before, concurrent
}

// lateWrite reports whether rec is the value of a write to key that was
// not acknowledged before t: one acknowledged at or after t, or never. A
// write acknowledged before t was stamped before it; one that started
// before t may still be stamped after it (a CI run saw a write started
// before a backup began stamped above the backup's T).
func (h *history) lateWrite(key string, rec replica.Record, t time.Time) bool {
	h.mu.Lock()
	defer h.mu.Unlock()
	for _, w := range h.keys[key] {
		if (w.acked.IsZero() || !w.acked.Before(t)) && w.matches(rec) {
			return true
		}
	}
	return false
}

func (h *history) writtenSince(key string, t time.Time) bool {
	h.mu.Lock()
	defer h.mu.Unlock()
	for _, w := range h.keys[key] {
		if !w.started.Before(t) {
			return true
		}
	}
	return false
}

// inFlight reports whether rec is the value of a write to key that may
// still have been on its way to some replica during [start, end]: one
// started before end. Its acknowledgement may come before start: a QUORUM
// write is acknowledged by two replicas of three, and the third may store
// it after the full backup pinned it (a CI run saw one stamped 20 ms
// before the pins, acknowledged before the backup began, in the
// incremental). Which writes started before end and not after the
// previous backup is what the caller's timestamp check (<= T1) bounds.
func (h *history) inFlight(key string, rec replica.Record, _, end time.Time) bool {
	h.mu.Lock()
	defer h.mu.Unlock()
	for _, w := range h.keys[key] {
		if w.matches(rec) && w.started.Before(end) {
			return true
		}
	}
	return false
}

func (h *history) all() []string {
	h.mu.Lock()
	defer h.mu.Unlock()
	var out []string
	for k := range h.keys {
		out = append(out, k)
	}
	slices.Sort(out)
	return out
}

func (w write) matches(rec replica.Record) bool {
	if w.tomb {
		return rec.Tombstone
	}
	return !rec.Tombstone && string(rec.Value) == w.value
}

// readBackup reads every record of the backup in dir.
func readBackup(t *testing.T, dir string) (*backup.Manifest, map[string]replica.Record) {
	t.Helper()
	m, err := backup.Verify(dir)
	if err != nil {
		t.Fatalf("verify %s: %v", dir, err)
	}
	out := map[string]replica.Record{}
	for _, f := range m.Files {
		fh, err := os.Open(filepath.Join(dir, f.Name))
		if err != nil {
			t.Fatal(err)
		}
		rd, err := backup.NewReader(fh)
		if err != nil {
			t.Fatal(err)
		}
		for {
			k, rec, err := rd.Next()
			if errors.Is(err, io.EOF) {
				break
			}
			if err != nil {
				t.Fatalf("%s: %v", f.Name, err)
			}
			if _, dup := out[string(k)]; dup {
				t.Fatalf("key %q in two files", k)
			}
			out[string(k)] = rec
		}
		_ = fh.Close()
	}
	return m, out
}

func dial(t *testing.T, c *testcluster.Cluster) *client.Client {
	t.Helper()
	var addrs []string
	for _, nd := range c.Nodes {
		addrs = append(addrs, nd.RPCAddr)
	}
	cl, err := client.New(addrs, client.WithRequestTimeout(10*time.Second))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = cl.Close() })
	return cl
}

// state reads every key of keys at ALL: value, or "" with found false.
// ALL, not QUORUM: a load write cancelled when the load stopped may sit on
// one replica only; a quorum read that missed that replica would call the
// old value current, while a later backup of every replica (and so the
// restore) holds the newer one. A read of all three returns the newest and
// repairs the others before it answers, so that every later backup agrees.
func state(t *testing.T, cl *client.Client, keys []string) map[string]*string {
	t.Helper()
	out := map[string]*string{}
	for chunk := range slices.Chunk(keys, 500) {
		ops := make([]client.Op, len(chunk))
		for i, k := range chunk {
			ops[i] = client.GetOp(k, client.WithConsistency(client.All))
		}
		for i, r := range cl.Batch(t.Context(), ops) {
			switch {
			case errors.Is(r.Err, client.ErrNotFound):
				out[chunk[i]] = nil
			case r.Err != nil:
				t.Fatalf("get %q: %v", chunk[i], r.Err)
			default:
				v := string(r.Value)
				out[chunk[i]] = &v
			}
		}
	}
	return out
}

// TestBackupUnderLoadRestoreIntoLargerCluster is the scenario: a
// 3-node cluster of 16 partitions under a live write load is backed up at
// T; every write acknowledged before the backup started is in it with its
// value (keys overwritten after the start keep their old value), none
// above T is; an incremental backup holds exactly what changed since; the
// cluster is wiped, a 5-node cluster of 64 partitions gets both backups
// restored and then holds what the source held; restoring the full backup
// again changes nothing (LWW); verify finds a flipped byte. A backup
// with one of the three nodes down holds the same data.
func TestBackupUnderLoadRestoreIntoLargerCluster(t *testing.T) {
	if testing.Short() {
		t.Skip("starts 8 processes")
	}
	ctx := t.Context()
	log := slog.New(slog.NewTextHandler(testlog.Writer(t), &slog.HandlerOptions{Level: slog.LevelInfo}))
	src := testcluster.StartOptions(t, testcluster.Options{Nodes: 3, Args: []string{"--partitions", "16"}, NoRace: true})
	cl := dial(t, src)
	h := &history{keys: map[string][]write{}}

	// Phase A: 1500 keys of 100-byte values, 150 of them deleted.
	const base = 1500
	var ops []client.Op
	var values []string
	for i := range base {
		values = append(values, fmt.Sprintf("base-%05d-%s", i, strings.Repeat("v", 90)))
		ops = append(ops, client.SetOp(fmt.Sprintf("k%05d", i), []byte(values[i])))
	}
	startA := time.Now()
	for i, r := range cl.Batch(ctx, ops) {
		if r.Err != nil {
			t.Fatalf("set: %v", r.Err)
		}
		h.add(fmt.Sprintf("k%05d", i), write{value: values[i], started: startA, acked: time.Now()})
	}
	for i := 0; i < base; i += 10 {
		k := fmt.Sprintf("k%05d", i)
		st := time.Now()
		if err := cl.Delete(ctx, k); err != nil {
			t.Fatal(err)
		}
		h.add(k, write{tomb: true, started: st, acked: time.Now()})
	}

	// The live load: 4 writers, each overwriting its own quarter of the
	// keys in turn and adding new keys, until stopped.
	loadCtx, stopLoad := context.WithCancel(ctx)
	var load sync.WaitGroup
	for w := range 4 {
		load.Add(1)
		go func() {
			defer load.Done()
			for seq := 0; loadCtx.Err() == nil; seq++ {
				k := fmt.Sprintf("k%05d", (seq*4+w)%base)
				if seq%5 == 4 {
					k = fmt.Sprintf("new-%d-%05d", w, seq)
				}
				v := fmt.Sprintf("load-%d-%d", w, seq)
				st := time.Now()
				err := cl.Set(loadCtx, k, []byte(v))
				wr := write{value: v, started: st}
				if err == nil {
					wr.acked = time.Now()
				}
				h.add(k, wr)
			}
		}()
	}
	waitWrites(t, h, 200)

	dir1 := filepath.Join(t.TempDir(), "full")
	runStart := time.Now()
	m1, err := backup.Run(ctx, cl, backup.Config{Dir: dir1, Logger: log, PageRecords: 100, Lease: 2 * time.Second})
	runEnd := time.Now()
	if err != nil {
		t.Fatalf("backup: %v", err)
	}
	waitWritesAfter(t, h, runEnd, 200) // overwrites certainly after the backup
	stopLoad()
	load.Wait()

	_, recs1 := readBackup(t, dir1)
	if m1.Partitions != 16 || len(m1.Files) != 16 || len(m1.Nodes) != 3 {
		t.Fatalf("manifest: %d partitions, %d files, nodes %v; want 16, 16, 3 nodes", m1.Partitions, len(m1.Files), m1.Nodes)
	}
	checkBackup(t, h, recs1, m1, runStart, runEnd)

	// Incremental: overwrite 50 keys, delete 30, add 20, then back up
	// since T1.
	changed := map[string]write{}
	for i := range 100 {
		k := fmt.Sprintf("k%05d", 3+i*7)
		st := time.Now()
		wr := write{started: st}
		switch {
		case i < 50:
			wr.value = fmt.Sprintf("inc-%d", i)
			err = cl.Set(ctx, k, []byte(wr.value))
		case i < 80:
			wr.tomb = true
			err = cl.Delete(ctx, k)
		default:
			k = fmt.Sprintf("inc-new-%d", i)
			wr.value = "fresh"
			err = cl.Set(ctx, k, []byte(wr.value))
		}
		if err != nil {
			t.Fatal(err)
		}
		wr.acked = time.Now()
		h.add(k, wr)
		changed[k] = wr
	}
	dir2 := filepath.Join(t.TempDir(), "incr")
	m2, err := backup.Run(ctx, cl, backup.Config{Dir: dir2, Base: m1, Logger: log})
	if err != nil {
		t.Fatalf("incremental backup: %v", err)
	}
	_, recs2 := readBackup(t, dir2)
	for k, w := range changed {
		if rec, ok := recs2[k]; !ok || !w.matches(rec) {
			t.Errorf("incremental: %q is %+v (present %v), want %+v", k, rec, ok, w)
		}
	}
	inFlight := 0
	for k, rec := range recs2 {
		if rec.Timestamp > replica.Timestamp(m2.Timestamp) {
			t.Errorf("incremental: %q stamped %d, above T2=%d", k, rec.Timestamp, m2.Timestamp)
		}
		if rec.Timestamp > replica.Timestamp(m1.Timestamp) {
			if _, ok := changed[k]; !ok && !h.lateWrite(k, rec, runStart) {
				t.Errorf("incremental: %q holds %q (tombstone %v) stamped above T1, not a write acknowledged after the full backup began", k, rec.Value, rec.Tombstone)
			}
			continue
		}
		// A record stamped at or before T1 is one of a write in flight when
		// the full backup pinned its snapshots (stamped before, stored on
		// some replica after its pin): it may be new, or (stored on another
		// replica before its pin) a repeat of the full backup's, which
		// restoring merges away. Any other is an error.
		inFlight++
		if !h.inFlight(k, rec, runStart, runEnd) {
			t.Errorf("incremental: %q holds %q stamped %d <= T1, not a write in flight during the full backup", k, rec.Value, rec.Timestamp)
		}
	}
	t.Logf("full backup: %d records at T=%d; incremental: %d records (%d changed on purpose, the rest by the load after the pins, %d of them in flight at the full backup's pins)", m1.Records, m1.Timestamp, m2.Records, len(changed), inFlight)

	keys := h.all()
	want := state(t, cl, keys)

	// With a node down, a backup reads the two replicas left of each
	// partition (a majority) and holds the same data.
	src.Nodes[2].Kill()
	dir3 := filepath.Join(t.TempDir(), "degraded")
	m3, err := backup.Run(ctx, cl, backup.Config{Dir: dir3, Logger: log})
	if err != nil {
		t.Fatalf("backup with a node down: %v", err)
	}
	_, recs3 := readBackup(t, dir3)
	if len(m3.Nodes) != 2 {
		t.Fatalf("backup with n3 down read nodes %v, want 2", m3.Nodes)
	}
	for k, w := range want {
		rec, ok := recs3[k]
		switch {
		case w == nil && ok && !rec.Tombstone:
			t.Errorf("backup with a node down: %q holds %q, want absent", k, rec.Value)
		case w != nil && (!ok || rec.Tombstone || string(rec.Value) != *w):
			t.Errorf("backup with a node down: %q is %+v (present %v), want %q", k, rec, ok, *w)
		}
	}

	// Wipe the source; restore both into 5 nodes of 64 partitions.
	for _, nd := range src.Nodes {
		nd.Kill()
		if err := os.RemoveAll(nd.DataDir); err != nil {
			t.Fatal(err)
		}
	}
	dst := testcluster.StartOptions(t, testcluster.Options{Nodes: 5, Args: []string{"--partitions", "64"}, NoRace: true})
	dcl := dial(t, dst)
	if topo, err := dcl.Topology(); err != nil || topo.Partitions != 64 || len(topo.Members) != 5 {
		t.Fatalf("target topology: %+v, %v", topo, err)
	}
	sum, err := backup.Restore(ctx, dcl, backup.RestoreConfig{Dirs: []string{dir2, dir1}, Logger: log, BatchRecords: 200})
	if err != nil {
		t.Fatalf("restore: %v", err)
	}
	if sum.Records != m1.Records+m2.Records || sum.Files != 32 {
		t.Fatalf("restore summary %+v: want %d records from 32 files", sum, m1.Records+m2.Records)
	}
	compareState(t, "after restore", want, state(t, dcl, keys))

	// Restoring the full backup again changes nothing: its records are
	// older than the incremental's.
	if _, err := backup.Restore(ctx, dcl, backup.RestoreConfig{Dirs: []string{dir1}}); err != nil {
		t.Fatalf("second restore: %v", err)
	}
	compareState(t, "after restoring the full backup again", want, state(t, dcl, keys))

	// A flipped byte is found, and the file named.
	bad := filepath.Join(dir1, m1.Files[3].Name)
	b, err := os.ReadFile(bad)
	if err != nil {
		t.Fatal(err)
	}
	b[len(b)/2] ^= 0x40
	if err := os.WriteFile(bad, b, 0o600); err != nil {
		t.Fatal(err)
	}
	_, err = backup.Verify(dir1)
	var fe *backup.FileError
	if !errors.Is(err, backup.ErrCorrupt) || !errors.As(err, &fe) || fe.Path != bad {
		t.Fatalf("verify after a flipped byte: got %v, want ErrCorrupt naming %s", err, bad)
	}
}

// checkBackup holds the full backup to the oracle.
func checkBackup(t *testing.T, h *history, recs map[string]replica.Record, m *backup.Manifest, start, end time.Time) {
	t.Helper()
	oldKept, present := 0, 0
	for _, k := range h.all() {
		rec, ok := recs[k]
		if ok && rec.Timestamp > replica.Timestamp(m.Timestamp) {
			t.Errorf("%q stamped %d, above T=%d", k, rec.Timestamp, m.Timestamp)
		}
		before, concurrent := h.allowed(k, start, end)
		if !ok {
			if before != nil {
				t.Errorf("%q: missing, want %+v (acknowledged before the backup)", k, *before)
			}
			continue
		}
		present++
		if before != nil && before.matches(rec) {
			if h.writtenSince(k, end) {
				oldKept++
			}
			continue
		}
		if !slices.ContainsFunc(concurrent, func(w write) bool { return w.matches(rec) }) {
			t.Errorf("%q: backup holds %q (tombstone %v), not the value acknowledged before the backup (%+v) nor a concurrent write", k, rec.Value, rec.Tombstone, before)
		}
	}
	if present != len(recs) {
		t.Errorf("backup holds %d keys the test never wrote", len(recs)-present)
	}
	if oldKept == 0 {
		t.Errorf("no key overwritten after the backup kept its old value in it")
	}
	t.Logf("full backup: %d keys, %d of them overwritten after it with the old value kept", len(recs), oldKept)
}

func compareState(t *testing.T, what string, want, got map[string]*string) {
	t.Helper()
	bad := 0
	for k, w := range want {
		g := got[k]
		if (w == nil) != (g == nil) || (w != nil && *w != *g) {
			if bad < 10 {
				t.Errorf("%s: %q is %v, want %v", what, k, str(g), str(w))
			}
			bad++
		}
	}
	if bad > 0 {
		t.Fatalf("%s: %d of %d keys differ", what, bad, len(want))
	}
}

func str(p *string) string {
	if p == nil {
		return "<absent>"
	}
	return fmt.Sprintf("%q", *p)
}

// waitWrites waits until the load has acknowledged n writes.
func waitWrites(t *testing.T, h *history, n int) {
	t.Helper()
	waitWritesAfter(t, h, time.Time{}, n)
}

// waitWritesAfter waits until the load has acknowledged n writes started
// after since.
func waitWritesAfter(t *testing.T, h *history, since time.Time, n int) {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	tick := time.NewTicker(20 * time.Millisecond)
	defer tick.Stop()
	for {
		got := 0
		h.mu.Lock()
		for k, ws := range h.keys {
			if !strings.HasPrefix(k, "k") && !strings.HasPrefix(k, "new-") {
				continue
			}
			for _, w := range ws {
				if strings.HasPrefix(w.value, "load-") && !w.acked.IsZero() && w.started.After(since) {
					got++
				}
			}
		}
		h.mu.Unlock()
		if got >= n {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("load acknowledged %d writes, want %d", got, n)
		}
		<-tick.C
	}
}
