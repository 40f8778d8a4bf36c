package replica

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"maps"
	"math/rand/v2"
	"slices"
	"sync"
	"testing"
)

func kv(k, v string) KV { return KV{Key: []byte(k), Value: []byte(v)} }

func kr(start, end string) KeyRange { return KeyRange{Start: []byte(start), End: []byte(end)} }

func mustWriteRaw(t testing.TB, s *Store, sets []KV, ranges ...KeyRange) {
	t.Helper()
	if err := s.WriteRaw(context.Background(), sets, ranges); err != nil {
		t.Fatalf("WriteRaw: got %v, want nil", err)
	}
}

// rawKeys returns every raw key (and value) under prefix, as a map.
func rawContents(t testing.TB, s *Store, prefix string) map[string]string {
	t.Helper()
	got := map[string]string{}
	err := s.ScanRaw([]byte(prefix), nil, func(k, v []byte) bool {
		got[string(k)] = string(v)
		return true
	})
	if err != nil {
		t.Fatalf("ScanRaw(%q): got %v, want nil", prefix, err)
	}
	return got
}

func TestWriteRawGetRaw(t *testing.T) {
	s := openTest(t, nil)
	mustWriteRaw(t, s, []KV{kv("l1", "one"), kv("l2", "two"), kv("s", ""), kv("l1", "one again")})
	tests := []struct {
		key     string
		want    string
		wantErr error
	}{
		{"l1", "one again", nil}, // later sets of one call win
		{"l2", "two", nil},
		{"s", "", nil},
		{"l3", "", ErrNotFound},
		{"l", "", ErrNotFound},
	}
	for _, tc := range tests {
		t.Run(tc.key, func(t *testing.T) {
			got, err := s.GetRaw([]byte(tc.key))
			if !errors.Is(err, tc.wantErr) {
				t.Fatalf("GetRaw: got error %v, want %v", err, tc.wantErr)
			}
			if err == nil && (string(got) != tc.want || got == nil) {
				t.Errorf("GetRaw: got %q (nil: %t), want %q (non-nil)", got, got == nil, tc.want)
			}
		})
	}
	// Values returned are copies; slices passed in are not retained.
	got, _ := s.GetRaw([]byte("l2"))
	got[0] = 'X'
	in := kv("l4", "four")
	mustWriteRaw(t, s, []KV{in})
	in.Key[1], in.Value[0] = '9', 'F'
	if got, want := rawContents(t, s, "l"), map[string]string{"l1": "one again", "l2": "two", "l4": "four"}; !maps.Equal(got, want) {
		t.Errorf("contents: got %q, want %q", got, want)
	}
	// Raw writes and records do not see each other.
	mustMerge(t, s, Entry{Partition: 0, Key: []byte("k"), Record: rec(1, "n", "v")})
	if got := rawContents(t, s, "l"); len(got) != 3 {
		t.Errorf("raw keys after a merge: got %q, want 3", got)
	}
	if _, err := s.Get(0, []byte("l1")); !errors.Is(err, ErrNotFound) {
		t.Errorf("Get of a raw key as a record: got %v, want ErrNotFound", err)
	}
}

func TestWriteRawDeleteRange(t *testing.T) {
	base := []KV{kv("l\x00", "a"), kv("l\x01", "b"), kv("l\x01\x00", "c"), kv("l\x02", "d"), kv("l\xff", "e"), kv("m", "f"), kv("s1", "g")}
	tests := []struct {
		name   string
		sets   []KV
		ranges []KeyRange
		want   []string // remaining keys
	}{
		{"nothing in range", nil, []KeyRange{kr("l\x03", "l\x04")}, []string{"l\x00", "l\x01", "l\x01\x00", "l\x02", "l\xff", "m", "s1"}},
		{"end is exclusive", nil, []KeyRange{kr("l\x01", "l\x02")}, []string{"l\x00", "l\x02", "l\xff", "m", "s1"}},
		{"whole namespace", nil, []KeyRange{kr("l", "m")}, []string{"m", "s1"}},
		{"across namespaces", nil, []KeyRange{kr("l\x02", "n")}, []string{"l\x00", "l\x01", "l\x01\x00", "s1"}},
		{"below the records", nil, []KeyRange{{Start: nil, End: []byte("r")}}, []string{"s1"}},
		{"above the records", nil, []KeyRange{{Start: []byte("s"), End: []byte("\xff\xff")}}, []string{"l\x00", "l\x01", "l\x01\x00", "l\x02", "l\xff", "m"}},
		{"several ranges", nil, []KeyRange{kr("l\x00", "l\x01"), kr("l\x02", "l\x03"), kr("s", "t")}, []string{"l\x01", "l\x01\x00", "l\xff", "m"}},
		{"sets first, then deletes", []KV{kv("l\x01\x01", "new"), kv("n", "new")}, []KeyRange{kr("l\x01", "l\x02")}, []string{"l\x00", "l\x02", "l\xff", "m", "n", "s1"}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			s := openTest(t, func(c *Config) { c.Dir, c.InMemory = "", true })
			mustMerge(t, s, Entry{Partition: 0, Key: []byte("rec"), Record: rec(1, "n", "v")})
			mustWriteRaw(t, s, base)
			mustWriteRaw(t, s, tc.sets, tc.ranges...)
			var got []string
			for _, p := range []string{"l", "m", "n", "s"} {
				got = append(got, slices.Sorted(maps.Keys(rawContents(t, s, p)))...)
			}
			if !slices.Equal(got, tc.want) {
				t.Errorf("keys left: got %q, want %q", got, tc.want)
			}
			mustGet(t, s, 0, "rec")
		})
	}
}

func TestWriteRawDeleteRangeSpanningTransactions(t *testing.T) {
	// A 1 MiB memtable lets one Badger transaction hold ~150 KiB, so neither
	// the sets nor the deletes fit in one transaction.
	s := openTest(t, func(c *Config) { c.MemTableBytes = 1 << 20; c.MaxBatchEntries = 1 << 20 })
	const n = 5000
	sets := make([]KV, n)
	for i := range sets {
		sets[i] = KV{Key: fmt.Appendf(nil, "l%06d", i), Value: bytes.Repeat([]byte{'v'}, 100)}
	}
	mustWriteRaw(t, s, sets)
	before := s.txnsCommitted.Load()
	if before < 2 {
		t.Errorf("transactions for the sets: got %d, want at least 2", before)
	}
	mustWriteRaw(t, s, nil, kr("l000010", "l004990"))
	if got := s.txnsCommitted.Load() - before; got < 2 {
		t.Errorf("transactions for the deletes: got %d, want at least 2", got)
	}
	got := rawContents(t, s, "l")
	if len(got) != 20 {
		t.Errorf("keys left: got %d, want 20", len(got))
	}
	for _, k := range []string{"l000000", "l000009", "l004990", "l004999"} {
		if _, ok := got[k]; !ok {
			t.Errorf("key %q: got deleted, want kept", k)
		}
	}
}

func TestWriteRawDeleteRangeCommitFailure(t *testing.T) {
	s := openTest(t, func(c *Config) { c.MemTableBytes = 1 << 20; c.MaxBatchEntries = 1 << 20 })
	sets := make([]KV, 8000)
	for i := range sets {
		sets[i] = KV{Key: fmt.Appendf(nil, "l%06d", i), Value: []byte("v")}
	}
	mustWriteRaw(t, s, sets)
	failCommits(s, 1)
	if err := s.WriteRaw(t.Context(), nil, []KeyRange{kr("l", "m")}); !errors.Is(err, errInjected) {
		t.Fatalf("WriteRaw: got %v, want the injected error", err)
	}
	// Deleting again completes the job.
	mustWriteRaw(t, s, nil, kr("l", "m"))
	if got := rawContents(t, s, "l"); len(got) != 0 {
		t.Errorf("keys left: got %d, want 0", len(got))
	}
}

func TestRawInvalid(t *testing.T) {
	s := openTest(t, func(c *Config) { c.Dir, c.InMemory = "", true })
	ok := kv("lok", "v")
	writes := []struct {
		name   string
		sets   []KV
		ranges []KeyRange
	}{
		{"record namespace", []KV{ok, kv("r\x00\x00\x00\x00k", "v")}, nil},
		{"empty key", []KV{ok, kv("", "v")}, nil},
		{"badger namespace", []KV{ok, kv("!badger!head", "v")}, nil},
		{"key too long", []KV{ok, {Key: append([]byte("l"), make([]byte, MaxKeyBytes)...)}}, nil},
		{"value too long", []KV{ok, {Key: []byte("l"), Value: make([]byte, 2<<20)}}, nil},
		{"range over the records", []KV{ok}, []KeyRange{kr("l", "t")}},
		{"range inside the records", []KV{ok}, []KeyRange{kr("r1", "r2")}},
		{"range from nothing to the records", []KV{ok}, []KeyRange{{End: []byte("r\x00")}}},
		{"empty range", []KV{ok}, []KeyRange{kr("l", "l")}},
		{"inverted range", []KV{ok}, []KeyRange{kr("m", "l")}},
	}
	for _, tc := range writes {
		t.Run("WriteRaw/"+tc.name, func(t *testing.T) {
			if err := s.WriteRaw(t.Context(), tc.sets, tc.ranges); !errors.Is(err, ErrInvalidEntry) {
				t.Errorf("WriteRaw: got %v, want ErrInvalidEntry", err)
			}
			if _, err := s.GetRaw(ok.Key); !errors.Is(err, ErrNotFound) {
				t.Errorf("GetRaw of the valid set: got %v, want ErrNotFound (nothing applied)", err)
			}
		})
	}
	for _, p := range []string{"", "r", "r\x00\x00\x00\x01", "!badger!"} {
		t.Run(fmt.Sprintf("reads/%q", p), func(t *testing.T) {
			if _, err := s.GetRaw([]byte(p)); !errors.Is(err, ErrInvalidEntry) {
				t.Errorf("GetRaw: got %v, want ErrInvalidEntry", err)
			}
			if err := s.ScanRaw([]byte(p), nil, func(_, _ []byte) bool { return true }); !errors.Is(err, ErrInvalidEntry) {
				t.Errorf("ScanRaw: got %v, want ErrInvalidEntry", err)
			}
			if _, _, err := s.LastRaw([]byte(p)); !errors.Is(err, ErrInvalidEntry) {
				t.Errorf("LastRaw: got %v, want ErrInvalidEntry", err)
			}
		})
	}
	if err := s.WriteRaw(t.Context(), nil, nil); err != nil {
		t.Errorf("WriteRaw of nothing: got %v, want nil", err)
	}
}

func TestScanRaw(t *testing.T) {
	s := openTest(t, nil)
	var sets []KV
	for _, k := range []string{"l", "la", "lab", "lb", "lba", "m", "k"} {
		sets = append(sets, kv(k, "v-"+k))
	}
	mustWriteRaw(t, s, sets)
	tests := []struct {
		name          string
		prefix, start string
		limit         int // 0 = no limit
		want          []string
	}{
		{"whole namespace", "l", "", 0, []string{"l", "la", "lab", "lb", "lba"}},
		{"longer prefix", "la", "", 0, []string{"la", "lab"}},
		{"start inside", "l", "lab", 0, []string{"lab", "lb", "lba"}},
		{"start between keys", "l", "laa", 0, []string{"lab", "lb", "lba"}},
		{"start below prefix", "lb", "a", 0, []string{"lb", "lba"}},
		{"start above prefix", "la", "lb", 0, nil},
		{"no match", "lz", "", 0, nil},
		{"stop early", "l", "", 2, []string{"l", "la"}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			var got []string
			var start []byte
			if tc.start != "" {
				start = []byte(tc.start)
			}
			err := s.ScanRaw([]byte(tc.prefix), start, func(k, v []byte) bool {
				if want := "v-" + string(k); string(v) != want {
					t.Errorf("value of %q: got %q, want %q", k, v, want)
				}
				got = append(got, string(k))
				return tc.limit == 0 || len(got) < tc.limit
			})
			if err != nil {
				t.Fatalf("ScanRaw: got %v, want nil", err)
			}
			if !slices.Equal(got, tc.want) {
				t.Errorf("keys: got %q, want %q", got, tc.want)
			}
		})
	}
}

func TestLastRaw(t *testing.T) {
	s := openTest(t, nil)
	mustMerge(t, s, Entry{Partition: 0, Key: []byte("x"), Record: rec(1, "n", "v")})
	var sets []KV
	for _, k := range []string{"k\xff", "l", "l\x00\x01", "l\x00\x02", "l\x01", "l\x01\xff\xff", "l\x02", "m", "\xff", "\xff\x01", "\xff\xff\xff"} {
		sets = append(sets, kv(k, "v-"+k))
	}
	mustWriteRaw(t, s, sets)
	tests := []struct {
		prefix string
		want   string // "" = ErrNotFound
	}{
		{"l", "l\x02"},
		{"l\x00", "l\x00\x02"},
		{"l\x01", "l\x01\xff\xff"},
		{"l\x01\xff", "l\x01\xff\xff"},
		{"l\x02", "l\x02"},
		{"l\x03", ""},
		{"k", "k\xff"},
		{"j", ""},
		{"n", ""},
		{"\xff", "\xff\xff\xff"},
		{"\xff\xff", "\xff\xff\xff"},
		{"\xff\x00", ""},
	}
	for _, tc := range tests {
		t.Run(fmt.Sprintf("%q", tc.prefix), func(t *testing.T) {
			k, v, err := s.LastRaw([]byte(tc.prefix))
			if tc.want == "" {
				if !errors.Is(err, ErrNotFound) {
					t.Errorf("LastRaw: got %q, %v; want ErrNotFound", k, err)
				}
				return
			}
			if err != nil || string(k) != tc.want || string(v) != "v-"+tc.want {
				t.Errorf("LastRaw: got %q=%q, %v; want %q=%q", k, v, err, tc.want, "v-"+tc.want)
			}
		})
	}
}

func TestRawSurvivesReopen(t *testing.T) {
	cfg := DefaultConfig()
	cfg.Dir = t.TempDir()
	cfg.Logger = testLogger(t)
	want := map[string]string{"l\x00\x01": "a", "l\x00\x03": "c", "s\x00name": "n"}
	for i := range 2 {
		s, err := Open(cfg, Deps{})
		if err != nil {
			t.Fatalf("Open %d: got %v, want nil", i, err)
		}
		if i == 0 {
			mustWriteRaw(t, s, []KV{kv("l\x00\x01", "a"), kv("l\x00\x02", "b"), kv("l\x00\x03", "c"), kv("s\x00name", "n")})
			mustWriteRaw(t, s, nil, kr("l\x00\x02", "l\x00\x03"))
		}
		got := rawContents(t, s, "l")
		maps.Copy(got, rawContents(t, s, "s"))
		if !maps.Equal(got, want) {
			t.Errorf("after open %d: got %q, want %q", i, got, want)
		}
		if err := s.Close(); err != nil {
			t.Fatalf("Close %d: got %v, want nil", i, err)
		}
	}
}

func TestRawSharesGroupCommitWithMerges(t *testing.T) {
	s := openTest(t, nil)
	mustWriteRaw(t, s, []KV{kv("lold", "x")})
	entered, release := blockCommitter(s)
	defer release()
	var sizes []int
	hook := s.hooks.beforeBatch
	s.hooks.beforeBatch = func(n int) { sizes = append(sizes, n); hook(n) }
	txns := s.txnsCommitted.Load()

	const pairs = 16
	errs := make(chan error, 2*pairs+1)
	go func() { errs <- s.WriteRaw(t.Context(), []KV{kv("lfirst", "v")}, nil) }()
	<-entered
	for i := range pairs {
		go func() {
			errs <- s.Merge(t.Context(), []Entry{{Partition: 1, Key: fmt.Append(nil, "k", i), Record: rec(1, "n", "v")}})
		}()
		go func() {
			errs <- s.WriteRaw(t.Context(), []KV{{Key: fmt.Append(nil, "l", i), Value: []byte("v")}}, []KeyRange{kr("lold", "lole")})
		}()
	}
	waitFor(t, "callers to queue", func() bool { return s.queued.Load() == 2*pairs })
	release()
	for range 2*pairs + 1 {
		if err := <-errs; err != nil {
			t.Errorf("write: got %v, want nil", err)
		}
	}
	if want := []int{1, 2 * pairs}; !slices.Equal(sizes, want) {
		t.Errorf("batch sizes (requests): got %v, want %v", sizes, want)
	}
	if got, want := s.txnsCommitted.Load()-txns, int64(2); got != want {
		t.Errorf("transactions committed: got %d, want %d", got, want)
	}
	if got := rawContents(t, s, "l"); len(got) != pairs+1 {
		t.Errorf("raw keys: got %d, want %d", len(got), pairs+1)
	}
}

// TestRawConcurrentWithMerges runs merges and raw writes (sets and range
// deletes) from many goroutines against a model: each goroutine owns its
// keys, so the final state is known.
func TestRawConcurrentWithMerges(t *testing.T) {
	rng := newRand(t)
	s := openTest(t, nil)
	const goroutines, rounds = 16, 30
	seeds := make([]uint64, goroutines)
	for i := range seeds {
		seeds[i] = rng.Uint64()
	}
	models := make([]map[string]string, goroutines)
	var wg sync.WaitGroup
	for g := range goroutines {
		models[g] = map[string]string{}
		wg.Go(func() {
			model := models[g]
			r := rand.New(rand.NewPCG(seeds[g], 0))
			for i := range rounds {
				var sets []KV
				for range r.IntN(5) {
					k, v := fmt.Sprintf("l%02d-%03d", g, r.IntN(40)), fmt.Sprint(i)
					sets = append(sets, kv(k, v))
					model[k] = v
				}
				var ranges []KeyRange
				if r.IntN(3) == 0 {
					a, b := r.IntN(40), r.IntN(40)
					lo, hi := fmt.Sprintf("l%02d-%03d", g, min(a, b)), fmt.Sprintf("l%02d-%03d", g, max(a, b)+1)
					ranges = append(ranges, kr(lo, hi))
					for k := range model {
						if k >= lo && k < hi {
							delete(model, k)
						}
					}
				}
				if err := s.WriteRaw(t.Context(), sets, ranges); err != nil {
					t.Errorf("WriteRaw: got %v, want nil", err)
				}
				if err := s.Merge(t.Context(), []Entry{{Partition: uint32(g), Key: []byte("k"), Record: rec(Timestamp(i+1), "n", "v")}}); err != nil {
					t.Errorf("Merge: got %v, want nil", err)
				}
			}
		})
	}
	wg.Wait()
	want := map[string]string{}
	for _, m := range models {
		maps.Copy(want, m)
	}
	if got := rawContents(t, s, "l"); !maps.Equal(got, want) {
		t.Errorf("raw contents: got %d keys, want %d; got %q, want %q", len(got), len(want), got, want)
	}
	for g := range goroutines {
		if got := mustGet(t, s, uint32(g), "k"); got.Timestamp != rounds {
			t.Errorf("record of partition %d: got timestamp %d, want %d", g, got.Timestamp, rounds)
		}
	}
}

func TestRawClosedAndContext(t *testing.T) {
	s := openTest(t, nil)
	ctx, cancel := context.WithCancel(t.Context())
	cancel()
	if err := s.WriteRaw(ctx, []KV{kv("l", "v")}, nil); !errors.Is(err, context.Canceled) {
		t.Errorf("WriteRaw with a canceled context: got %v, want context.Canceled", err)
	}
	if err := s.Close(); err != nil {
		t.Fatalf("Close: got %v, want nil", err)
	}
	if err := s.WriteRaw(t.Context(), []KV{kv("l", "v")}, nil); !errors.Is(err, ErrClosed) {
		t.Errorf("WriteRaw: got %v, want ErrClosed", err)
	}
	if _, err := s.GetRaw([]byte("l")); !errors.Is(err, ErrClosed) {
		t.Errorf("GetRaw: got %v, want ErrClosed", err)
	}
	if err := s.ScanRaw([]byte("l"), nil, func(_, _ []byte) bool { return true }); !errors.Is(err, ErrClosed) {
		t.Errorf("ScanRaw: got %v, want ErrClosed", err)
	}
	if _, _, err := s.LastRaw([]byte("l")); !errors.Is(err, ErrClosed) {
		t.Errorf("LastRaw: got %v, want ErrClosed", err)
	}
}

func TestCommonPrefixAndPrefixEnd(t *testing.T) {
	for _, tc := range []struct{ a, b, want string }{
		{"", "", ""}, {"abc", "abd", "ab"}, {"ab", "abc", "ab"}, {"x", "y", ""},
	} {
		if got := commonPrefix([]byte(tc.a), []byte(tc.b)); string(got) != tc.want {
			t.Errorf("commonPrefix(%q, %q): got %q, want %q", tc.a, tc.b, got, tc.want)
		}
	}
	for _, tc := range []struct{ p, want string }{
		{"a", "b"}, {"a\xff", "b"}, {"a\x00", "a\x01"}, {"\xff\xff", ""},
	} {
		if got := prefixEnd([]byte(tc.p)); string(got) != tc.want {
			t.Errorf("prefixEnd(%q): got %q, want %q", tc.p, got, tc.want)
		}
	}
}
