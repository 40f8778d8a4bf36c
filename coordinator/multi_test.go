package coordinator

import (
	"bytes"
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/ringkv/ringkv/consensus"
	"github.com/ringkv/ringkv/proto/kvpb"
	"github.com/ringkv/ringkv/replica"
)

func pairsOf(keys [][]byte, value string) []MSetPair {
	out := make([]MSetPair, len(keys))
	for i, k := range keys {
		out[i] = MSetPair{Key: k, Value: []byte(fmt.Sprintf("%s-%d", value, i))}
	}
	return out
}

func TestMSetMGetEventual(t *testing.T) {
	tc := newTestCluster(t, nil)
	n1, n2 := tc.coords["n1"], tc.coords["n2"]
	keys := spread(t, n1, "k", 5)
	for _, level := range []Level{One, Quorum, All} {
		t.Run(level.String(), func(t *testing.T) {
			pairs := pairsOf(keys, level.String())
			pairs[1].TTL = time.Hour
			if err := n1.MSet(t.Context(), pairs, level); err != nil {
				t.Fatal(err)
			}
			ask := append([][]byte{[]byte("absent")}, keys...)
			pollUntil(t, 5*time.Second, "mset visible through n2", func() bool {
				res, err := n2.MGet(t.Context(), ask, Quorum)
				if err != nil {
					t.Fatal(err)
				}
				if len(res) != len(ask) || res[0].Found || res[0].Version != 0 || string(res[0].Key) != "absent" {
					t.Fatalf("got %+v for an absent key", res[0])
				}
				for i, r := range res[1:] {
					if !r.Found || string(r.Value) != string(pairs[i].Value) || r.Version == 0 {
						return false
					}
					if r.Version != res[1].Version {
						t.Fatalf("key %d version %d, key 0 version %d: want one stamp for the batch", i, r.Version, res[1].Version)
					}
				}
				return true
			})
			item, _, err := n2.GetItem(t.Context(), keys[1], Quorum)
			if err != nil || item.ExpiresAt.IsZero() {
				t.Fatalf("got %+v, %v: want an expiring item", item, err)
			}
		})
	}
	// Every batch entry is cleared once written.
	pollUntil(t, 5*time.Second, "batch entries tombstoned", func() bool {
		return liveBatches(t, tc) == 0
	})
	if got := testutil.ToFloat64(n1.metrics.batches.WithLabelValues(batchWritten)); got != 3 {
		t.Fatalf("got %v batches written, want 3", got)
	}
}

// liveBatches counts the live batch entries in every store.
func liveBatches(t *testing.T, tc *testCluster) int {
	t.Helper()
	n := 0
	r := tc.ring.Ring()
	for _, s := range tc.stores {
		for p := range uint32(r.Partitions()) {
			if err := s.Scan(p, []byte(batchPrefix), nil, func(_ []byte, rec replica.Record) bool {
				if !rec.Tombstone {
					n++
				}
				return true
			}); err != nil {
				t.Fatal(err)
			}
		}
	}
	return n
}

// TestLoggedBatchReplayedAfterCoordinatorDies: a coordinator that logs a
// batch of 6 records and writes one of them, then stops (as if it died),
// leaves the batch entry; once it is older than BatchReplayAge, the
// primary's replayer writes every record to every replica with the
// batch's one stamp and clears the entry.
func TestLoggedBatchReplayedAfterCoordinatorDies(t *testing.T) {
	tc := newTestCluster(t, func(c *Config) {
		c.BatchReplayAge = 300 * time.Millisecond
		c.BatchReplayInterval = 20 * time.Millisecond
	})
	n1 := tc.coords["n1"]
	keys := spread(t, n1, "d", 6)
	pairs := pairsOf(keys, "v")
	n1.batchHooks.skipRecord = func(i int) bool { return i != 0 }
	start := time.Now()
	if err := n1.MSet(t.Context(), pairs, Quorum); !errors.Is(err, errBatchStopped) {
		t.Fatalf("got %v, want errBatchStopped", err)
	}
	r := tc.ring.Ring()
	onEvery := func(i int) bool {
		for _, s := range tc.stores {
			rec, err := s.Get(r.PartitionOf(keys[i]), keys[i])
			if err != nil || string(rec.Value) != string(pairs[i].Value) {
				return false
			}
		}
		return true
	}
	for i := 1; i < len(keys); i++ {
		if onEvery(i) {
			t.Fatalf("record %d written before the replay", i)
		}
	}
	if liveBatches(t, tc) == 0 {
		t.Fatal("no batch entry logged")
	}
	pollUntil(t, 10*time.Second, "every record on every replica", func() bool {
		for i := range keys {
			if !onEvery(i) {
				return false
			}
		}
		return true
	})
	if since := time.Since(start); since < 300*time.Millisecond {
		t.Fatalf("replayed after %s, before BatchReplayAge", since)
	}
	var stamp replica.Timestamp
	for _, s := range tc.stores {
		for _, k := range keys {
			rec, err := s.Get(r.PartitionOf(k), k)
			if err != nil {
				t.Fatal(err)
			}
			if stamp == 0 {
				stamp = rec.Timestamp
			}
			if rec.Timestamp != stamp {
				t.Fatalf("got stamp %v, want the batch's %v", rec.Timestamp, stamp)
			}
		}
	}
	pollUntil(t, 5*time.Second, "batch entry tombstoned", func() bool { return liveBatches(t, tc) == 0 })
	replayed := 0.0
	for _, c := range tc.coords {
		replayed += testutil.ToFloat64(c.metrics.batches.WithLabelValues(batchReplayed))
	}
	if replayed != 1 {
		t.Fatalf("got %v replays, want 1", replayed)
	}
}

func TestMultiRefused(t *testing.T) {
	tc := newTestCluster(t, nil)
	n1 := tc.coords["n1"]
	many := make([][]byte, consensus.MaxTxnKeys+1)
	for i := range many {
		many[i] = fmt.Appendf(nil, "k%d", i)
	}
	big := bytes.Repeat([]byte("x"), 1<<20)
	bigPairs := make([]MSetPair, 3)
	for i := range bigPairs {
		bigPairs[i] = MSetPair{Key: fmt.Appendf(nil, "b%d", i), Value: big}
	}
	for _, tt := range []struct {
		name  string
		keys  [][]byte
		pairs []MSetPair
		want  string
	}{
		{"empty", nil, nil, "no keys"},
		{"too many", many, nil, "limit 128"},
		{"duplicate", [][]byte{[]byte("a"), []byte("b"), []byte("a")}, []MSetPair{{Key: []byte("a")}, {Key: []byte("a")}}, "twice"},
		{"reserved", [][]byte{[]byte("a"), []byte("\x00ringkv/batch/x")}, []MSetPair{{Key: []byte("\x00x")}}, "reserved"},
		{"empty key", [][]byte{{}}, []MSetPair{{Key: nil}}, "empty"},
		{"too large", nil, bigPairs, "bytes of keys and values"},
		{"bad ttl", nil, []MSetPair{{Key: []byte("a"), TTL: -time.Second}}, "ttl"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			for _, level := range []Level{Quorum, Linearizable} {
				if tt.keys != nil || tt.pairs == nil {
					_, err := n1.MGet(t.Context(), tt.keys, level)
					if !errors.Is(err, ErrInvalidArgument) || !strings.Contains(strings.ToLower(err.Error()), tt.want) {
						t.Fatalf("mget at %s: got %v, want invalid argument with %q", level, err, tt.want)
					}
				}
				pairs := tt.pairs
				if pairs == nil {
					pairs = make([]MSetPair, len(tt.keys))
					for i, k := range tt.keys {
						pairs[i] = MSetPair{Key: k}
					}
				}
				err := n1.MSet(t.Context(), pairs, level)
				if !errors.Is(err, ErrInvalidArgument) || !strings.Contains(strings.ToLower(err.Error()), tt.want) {
					t.Fatalf("mset at %s: got %v, want invalid argument with %q", level, err, tt.want)
				}
			}
		})
	}
}

func TestBatchEncoding(t *testing.T) {
	entries := []replica.Entry{
		{Partition: 3, Key: []byte("a"), Record: replica.Record{Value: []byte("1"), Timestamp: 7, NodeID: "n1"}},
		{Partition: 9, Key: []byte("bb"), Record: replica.Record{Value: nil, Timestamp: 7, ExpiresAt: time.UnixMilli(1234), NodeID: "n1"}},
	}
	b := encodeBatch(entries)
	got, err := decodeBatch(b)
	if err != nil {
		t.Fatal(err)
	}
	if len(got) != 2 || string(got[1].Key) != "bb" || got[1].Partition != 9 || !got[1].Record.ExpiresAt.Equal(entries[1].Record.ExpiresAt) || string(got[0].Record.Value) != "1" {
		t.Fatalf("got %+v, want %+v", got, entries)
	}
	for i := range b {
		if _, err := decodeBatch(b[:i]); !errors.Is(err, ErrCorrupt) {
			t.Fatalf("prefix of %d bytes: got %v, want ErrCorrupt", i, err)
		}
	}
	flipped := bytes.Clone(b)
	flipped[len(flipped)-2] ^= 1
	if _, err := decodeBatch(flipped); !errors.Is(err, ErrCorrupt) {
		t.Fatalf("flipped: got %v, want ErrCorrupt", err)
	}
	if _, err := decodeBatch(append(bytes.Clone(b), 0)); !errors.Is(err, ErrCorrupt) {
		t.Fatalf("trailing byte: got %v, want ErrCorrupt", err)
	}
}

func TestMGetMSetLinearizable(t *testing.T) {
	n1, n9, _ := newLinNode(t)
	one := spread(t, n1, "s", 1)
	// One partition: the transaction path of MSet.
	same := [][]byte{one[0]}
	r := n1.deps.Ring.Ring()
	for i := 0; len(same) < 3; i++ {
		k := fmt.Appendf(nil, "s-%d", i)
		if r.PartitionOf(k) == r.PartitionOf(one[0]) {
			same = append(same, k)
		}
	}
	pairs := pairsOf(same, "lin")
	if err := n9.MSet(t.Context(), pairs, Linearizable); err != nil {
		t.Fatal(err)
	}
	// Several partitions: MSet runs the transaction across partitions.
	multi := spread(t, n1, "m", 4)
	if err := n9.MSet(t.Context(), pairsOf(multi, "x"), Linearizable); err != nil {
		t.Fatal(err)
	}
	for _, keys := range [][][]byte{same, multi} {
		got, err := n9.MGet(t.Context(), append([][]byte{[]byte("nope")}, keys...), Linearizable)
		if err != nil {
			t.Fatal(err)
		}
		if got[0].Found {
			t.Fatalf("absent key found: %+v", got[0])
		}
		for i, g := range got[1:] {
			if !g.Found || g.Version == 0 || !strings.HasSuffix(string(g.Value), fmt.Sprintf("-%d", i)) {
				t.Fatalf("key %s: got %+v", keys[i], g)
			}
		}
	}
	// Through n1, the leader: the transaction runs locally.
	got, err := n1.MGet(t.Context(), append([][]byte{[]byte("nope")}, multi...), Linearizable)
	if err != nil {
		t.Fatal(err)
	}
	if got[0].Found || !got[1].Found || string(got[1].Value) != "x-0" || got[1].Version == 0 {
		t.Fatalf("got %+v", got)
	}
}

func TestClientServerMulti(t *testing.T) {
	n1, _, _ := newLinNode(t)
	s := NewClientServer(n1, nil)
	keys := spread(t, n1, "c", 3)
	for _, level := range []kvpb.Consistency{kvpb.Consistency_CONSISTENCY_ONE, kvpb.Consistency_CONSISTENCY_LINEARIZABLE} {
		req := &kvpb.ClientMSetRequest{Consistency: level}
		for i, k := range keys {
			req.Pairs = append(req.Pairs, &kvpb.ClientMSetPair{Key: k, Value: fmt.Appendf(nil, "%s-%d", level, i), TtlMicros: int64(i) * 1e6})
		}
		resp, err := s.MSet(t.Context(), req)
		if err != nil || resp.GetError() != kvpb.ErrorCode_ERROR_CODE_UNSPECIFIED {
			t.Fatalf("mset at %s: %v %v", level, resp, err)
		}
		got, err := s.MGet(t.Context(), &kvpb.ClientMGetRequest{Keys: append([][]byte{[]byte("none")}, keys...), Consistency: level})
		if err != nil || got.GetError() != kvpb.ErrorCode_ERROR_CODE_UNSPECIFIED || len(got.GetResults()) != 4 {
			t.Fatalf("mget at %s: %v %v", level, got, err)
		}
		if got.GetResults()[0].GetFound() {
			t.Fatalf("absent key found: %v", got.GetResults()[0])
		}
		for i, r := range got.GetResults()[1:] {
			if !r.GetFound() || string(r.GetValue()) != fmt.Sprintf("%s-%d", level, i) || r.GetVersion() == 0 || (i > 0) != (r.GetTtlMicros() > 0) {
				t.Fatalf("mget at %s key %d: got %v", level, i, r)
			}
		}
	}
	for name, code := range map[string]kvpb.ErrorCode{
		"mset ttl": func() kvpb.ErrorCode {
			r, _ := s.MSet(t.Context(), &kvpb.ClientMSetRequest{Pairs: []*kvpb.ClientMSetPair{{Key: []byte("a"), TtlMicros: -1}}})
			return r.GetError()
		}(),
		"mset level": func() kvpb.ErrorCode {
			r, _ := s.MSet(t.Context(), &kvpb.ClientMSetRequest{Pairs: []*kvpb.ClientMSetPair{{Key: []byte("a")}}, Consistency: 99})
			return r.GetError()
		}(),
		"mget level": func() kvpb.ErrorCode {
			r, _ := s.MGet(t.Context(), &kvpb.ClientMGetRequest{Keys: [][]byte{[]byte("a")}, Consistency: 99})
			return r.GetError()
		}(),
		"mget duplicate": func() kvpb.ErrorCode {
			r, _ := s.MGet(t.Context(), &kvpb.ClientMGetRequest{Keys: [][]byte{[]byte("a"), []byte("a")}})
			return r.GetError()
		}(),
	} {
		if code != kvpb.ErrorCode_ERROR_CODE_INVALID_ARGUMENT {
			t.Errorf("%s: got %s, want INVALID_ARGUMENT", name, code)
		}
	}
}
