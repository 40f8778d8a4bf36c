package testcluster

import (
	"context"
	"fmt"
	"net/http"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/ringkv/ringkv/internal/fault"
)

// TestScrubberRepairsCorruption flips a byte in 1% of one replica's stored
// records (without fixing their checksums): its scrubber must find every
// one (the metric equals the number injected) and repair each from a
// healthy replica, while reads at every level, through every node, never
// return a corrupted value. Anti-entropy exchanges are off so that the
// scrubber alone does the work. Then one key is corrupted on every
// replica: reads of it get a corruption error, never bytes.
//
// The scrubber runs at its default rate, 2,000 records a second: it
// charges a full page (256 records) for each partition's last page, so a
// pass over the 64 partitions takes about 8 s (at 500 it took 33 s).
func TestScrubberRepairsCorruption(t *testing.T) {
	if testing.Short() {
		t.Skip("starts real processes")
	}
	const keys = 5000
	c := StartWith(t, 3, "--ae-interval", "-1s", "--scrub-rate", "2000")
	c.WaitRaftReady(120*time.Second, 0)
	ctx := t.Context()
	n1, n3 := c.Nodes[0], c.Nodes[2]
	key := func(i int) string { return fmt.Sprintf("scrub-%05d", i) }
	val := func(i int) string { return fmt.Sprintf("value-%d", i) }
	if err := parallel(keys, func(i int) error {
		code, err := n1.Set(ctx, key(i), val(i), "all")
		if err != nil || code != http.StatusOK {
			return fmt.Errorf("set %s: %d %w", key(i), code, err)
		}
		return nil
	}); err != nil {
		t.Fatal(err)
	}

	n3.Stop()
	bad, err := fault.CorruptRecords(filepath.Join(n3.DataDir, "replica"), func(i int, _ uint32, _ []byte) bool { return i%100 == 0 })
	if err != nil {
		t.Fatal(err)
	}
	injected := len(bad)
	if injected < keys/100 {
		t.Fatalf("corrupted %d records, want at least %d", injected, keys/100)
	}
	t.Logf("corrupted %d of %d records on %s", injected, keys, n3.ID)
	n3.Start()
	c.WaitConverged(60 * time.Second)

	// Read the corrupted keys at every level through every node while the
	// scrubber works: an answer may be an error, never a wrong value.
	var reads, wrong, failed atomic.Int64
	levels := []string{"one", "quorum", "all", "linearizable"}
	readAll := func() error {
		return parallel(len(bad)*len(levels)*len(c.Nodes), func(j int) error {
			k := string(bad[j%len(bad)].Key)
			level := levels[(j/len(bad))%len(levels)]
			nd := c.Nodes[j/(len(bad)*len(levels))]
			var i int
			if _, err := fmt.Sscanf(k, "scrub-%05d", &i); err != nil {
				return fmt.Errorf("key %q: %w", k, err)
			}
			got, code, err := nd.Get(ctx, k, level)
			reads.Add(1)
			switch {
			case err != nil:
				return err
			case code == http.StatusOK && got != val(i):
				wrong.Add(1)
				t.Errorf("get %s at %s via %s: got %q, want %q", k, level, nd.ID, got, val(i))
			case code != http.StatusOK:
				failed.Add(1)
			}
			return nil
		})
	}
	if err := readAll(); err != nil {
		t.Fatal(err)
	}
	c.WaitFor(5*time.Minute, "the scrubber to find every corrupted record", func(ctx context.Context) error {
		if err := readAll(); err != nil {
			return err
		}
		n, err := n3.Metric(ctx, "ringkv_antientropy_scrub_repaired_total")
		if err != nil {
			return err
		}
		if int(n) < injected {
			return fmt.Errorf("%v of %d repaired", n, injected)
		}
		return nil
	})
	found, err := n3.Metric(ctx, "ringkv_antientropy_scrub_corrupt_total")
	if err != nil {
		t.Fatal(err)
	}
	removed, err := n3.Metric(ctx, "ringkv_replica_corrupt_records_removed_total")
	if err != nil {
		t.Fatal(err)
	}
	if int(found) != injected || int(removed) != injected {
		t.Fatalf("scrubber found %v and the store removed %v corrupt records, want %d each", found, removed, injected)
	}
	t.Logf("%d reads during the scrub: %d wrong, %d errors", reads.Load(), wrong.Load(), failed.Load())
	// Every key now reads back from n3's own replica at ONE.
	var missing atomic.Int64
	if err := parallel(keys, func(i int) error {
		got, code, err := n3.Get(ctx, key(i), "one")
		if err != nil {
			return err
		}
		if code != http.StatusOK || got != val(i) {
			missing.Add(1)
		}
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	if missing.Load() > 0 {
		t.Fatalf("%d keys not read back at ONE from %s after repair", missing.Load(), n3.ID)
	}

	// One key corrupt on every replica, scrubbers off: a corruption error.
	const victim = "scrub-00001"
	for _, nd := range c.Nodes {
		nd.Stop()
		if _, err := fault.CorruptRecords(filepath.Join(nd.DataDir, "replica"), func(_ int, _ uint32, k []byte) bool { return string(k) == victim }); err != nil {
			t.Fatal(err)
		}
		nd.Args = []string{"--ae-interval", "-1s", "--scrub-rate", "-1"}
	}
	for _, nd := range c.Nodes {
		nd.Start()
	}
	c.WaitConverged(60 * time.Second)
	for _, level := range []string{"one", "quorum"} {
		code, body, err := n1.Do(ctx, http.MethodGet, "/api/get", map[string][]string{"key": {victim}, "consistency": {level}}, nil)
		if err != nil {
			t.Fatal(err)
		}
		if code != http.StatusInternalServerError || !strings.Contains(string(body), "corrupt") {
			t.Fatalf("get of a key corrupt on every replica at %s: %d %s, want 500 with a corruption error", level, code, body)
		}
	}
}
