package replica

import (
	"bytes"
	"errors"
	"fmt"
	"math/rand/v2"
	"testing"
	"time"
)

func TestVersionCacheBounds(t *testing.T) {
	c := newVersionCache(16)
	for i := range 100 {
		c.put(fmt.Appendf(nil, "k%d", i), rec(Timestamp(i), "n", "v"), uint64(i))
		if len(c.m) > 16 {
			t.Fatalf("%d entries after %d puts, bound 16", len(c.m), i+1)
		}
	}
	v, ok := c.get([]byte("k99"))
	if !ok || v.timestamp != 99 || v.hash != 99 {
		t.Fatalf("the last put: %+v %v", v, ok)
	}
	c.drop([]byte("k99"))
	if _, ok := c.get([]byte("k99")); ok {
		t.Fatal("dropped key still cached")
	}
	c.reset()
	if len(c.m) != 0 {
		t.Fatalf("%d entries after reset", len(c.m))
	}
	cv := cachedVersion{timestamp: 5, nodeID: "n2"}
	for _, tc := range []struct {
		r   Record
		cmp int
		ok  bool
	}{
		{rec(6, "n1", ""), 1, true}, {rec(4, "n3", ""), -1, true},
		{rec(5, "n3", ""), 1, true}, {rec(5, "n1", ""), -1, true}, {rec(5, "n2", "x"), 0, false},
	} {
		cmp, ok := cv.order(tc.r)
		if cmp != tc.cmp || ok != tc.ok {
			t.Errorf("order(%v): %d %v, want %d %v", tc.r, cmp, ok, tc.cmp, tc.ok)
		}
		if ok && cmp != Compare(tc.r, Record{Timestamp: 5, NodeID: "n2"}) {
			t.Errorf("order(%v) disagrees with Compare", tc.r)
		}
	}
}

// TestMergeWithVersionCache: random merges over a few keys (many tying on
// timestamp and node id, so both the cached and the read path run) leave
// each key with the record Compare ranks highest, as a model says.
func TestMergeWithVersionCache(t *testing.T) {
	seed := uint64(time.Now().UnixNano())
	t.Logf("seed %d", seed)
	rnd := rand.New(rand.NewPCG(seed, 7))
	s := openTest(t, func(c *Config) { c.InMemory, c.Dir = true, "" })
	want := map[string]Record{}
	for range 2000 {
		key := fmt.Sprintf("k%d", rnd.IntN(8))
		r := Record{Timestamp: Timestamp(rnd.IntN(20)), NodeID: fmt.Sprintf("n%d", rnd.IntN(3)),
			Value: []byte{byte(rnd.IntN(3))}, Tombstone: rnd.IntN(10) == 0}
		if r.Tombstone {
			r.Value = nil
		}
		mustMerge(t, s, Entry{Partition: 3, Key: []byte(key), Record: r})
		if old, ok := want[key]; !ok || r.Newer(old) {
			want[key] = r
		}
	}
	for key, w := range want {
		got := mustGet(t, s, 3, key)
		if got.Timestamp != w.Timestamp || got.NodeID != w.NodeID || got.Tombstone != w.Tombstone || !bytes.Equal(got.Value, w.Value) {
			t.Fatalf("%s: stored %+v, want %+v", key, got, w)
		}
	}
}

// TestVersionCacheForgets: a failed commit and a conditional delete leave
// no cached version behind, so an older record merged afterwards is
// written (the key holds nothing newer).
func TestVersionCacheForgets(t *testing.T) {
	s := openTest(t, nil)
	failCommits(s, 2)
	mustMerge(t, s, Entry{Partition: 1, Key: []byte("a"), Record: rec(1, "n", "one")})
	err := s.Merge(t.Context(), []Entry{{Partition: 1, Key: []byte("a"), Record: rec(9, "n", "lost")}})
	if !errors.Is(err, errInjected) {
		t.Fatalf("failed commit: %v", err)
	}
	mustMerge(t, s, Entry{Partition: 1, Key: []byte("a"), Record: rec(5, "n", "five")})
	if got := mustGet(t, s, 1, "a"); string(got.Value) != "five" {
		t.Fatalf("after a failed commit of ts 9: stored %q, want the ts 5 record", got.Value)
	}

	mustMerge(t, s, Entry{Partition: 1, Key: []byte("b"), Record: rec(7, "n", "seven")})
	if ok, err := s.DeleteIfEqual(t.Context(), 1, []byte("b"), rec(7, "n", "seven")); err != nil || !ok {
		t.Fatalf("DeleteIfEqual: %v %v", ok, err)
	}
	mustMerge(t, s, Entry{Partition: 1, Key: []byte("b"), Record: rec(3, "n", "three")})
	if got := mustGet(t, s, 1, "b"); string(got.Value) != "three" {
		t.Fatalf("after deleting the ts 7 record: stored %q, want the ts 3 record", got.Value)
	}
}
