package coordinator

import (
	"encoding/json"
	"errors"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/ringkv/ringkv/proto/kvpb"
	"github.com/ringkv/ringkv/replica"
)

// A value written with a TTL carries its absolute expiry (the
// coordinator's HLC wall time plus the TTL) to every replica, reads
// answer the time left, and from the expiry on every read at every level
// finds the key absent, while the replicas still hold the record.
func TestTTLAtEventualLevels(t *testing.T) {
	tc := newTestCluster(t, nil)
	ctx := t.Context()
	const ttl = 300 * time.Millisecond
	for _, level := range []Level{One, Quorum, All} {
		t.Run(level.String(), func(t *testing.T) {
			key := []byte("ttl-" + level.String())
			before := time.Now()
			if err := tc.coords["n1"].Set(ctx, key, []byte("v"), level, WithTTL(ttl)); err != nil {
				t.Fatal(err)
			}
			it, found, err := tc.coords["n2"].GetItem(ctx, key, All)
			if err != nil || !found || string(it.Value) != "v" {
				t.Fatalf("get: %v %v %v", it, found, err)
			}
			if lo, hi := before.Add(ttl-time.Millisecond), time.Now().Add(ttl+time.Millisecond); it.ExpiresAt.Before(lo) || it.ExpiresAt.After(hi) {
				t.Fatalf("expires at %s, want within [%s, %s]", it.ExpiresAt, lo, hi)
			}
			if left := it.TTL(time.Now()); left <= 0 || left > ttl {
				t.Fatalf("ttl left %s", left)
			}
			waitFor(t, "expiry", func() bool {
				_, found, err := tc.coords["n3"].Get(ctx, key, One)
				return err == nil && !found
			})
			for _, id := range tc.ids {
				for _, l := range []Level{One, Quorum, All} {
					if _, found, err := tc.coords[id].Get(ctx, key, l); err != nil || found {
						t.Fatalf("%s at %s after expiry: found %v err %v", id, l, found, err)
					}
				}
				p := tc.ring.Ring().PartitionOf(key)
				rec, err := tc.stores[id].Get(p, key)
				if err != nil || !rec.ExpiresAt.Equal(it.ExpiresAt) || rec.Live(time.Now()) {
					t.Fatalf("%s holds %v %v, want the expired record", id, rec, err)
				}
			}
			pairs, err := tc.coords["n1"].List(ctx, key, 0, All)
			if err != nil || len(pairs) != 0 {
				t.Fatalf("list after expiry: %v %v", pairs, err)
			}
		})
	}
}

func TestTTLInvalid(t *testing.T) {
	tc := newTestCluster(t, nil)
	c := tc.coords["n1"]
	ctx := t.Context()
	for name, opt := range map[string]WriteOption{
		"zero": WithTTL(0), "negative": WithTTL(-time.Second), "too long": WithTTL(MaxTTL + 1),
		"before 1970": WithExpiresAt(time.Unix(-5, 0)), "after 2262": WithExpiresAt(time.Now().Add(2 * MaxTTL)),
	} {
		if err := c.Set(ctx, []byte("k"), []byte("v"), Quorum, opt); !errors.Is(err, ErrInvalidArgument) {
			t.Errorf("set %s: got %v, want ErrInvalidArgument", name, err)
		}
		if _, err := c.CompareAndSet(ctx, []byte("k"), nil, []byte("v"), opt); !errors.Is(err, ErrInvalidArgument) {
			t.Errorf("cas %s: got %v, want ErrInvalidArgument", name, err)
		}
	}
	if _, err := c.Expire(ctx, []byte("k"), 0, Quorum); !errors.Is(err, ErrInvalidArgument) {
		t.Errorf("expire 0: got %v", err)
	}
	// An expiry in the past writes a record that is already absent.
	if err := c.Set(ctx, []byte("past"), []byte("v"), All, WithExpiresAt(time.Now().Add(-time.Second))); err != nil {
		t.Fatal(err)
	}
	if _, found, err := c.Get(ctx, []byte("past"), All); err != nil || found {
		t.Fatalf("past expiry: found %v err %v", found, err)
	}
	// WithExpiresAt(zero) is no expiry.
	if err := c.Set(ctx, []byte("never"), []byte("v"), All, WithExpiresAt(time.Time{})); err != nil {
		t.Fatal(err)
	}
	if it, found, err := c.GetItem(ctx, []byte("never"), All); err != nil || !found || !it.ExpiresAt.IsZero() || it.TTL(time.Now()) != 0 {
		t.Fatalf("never: %v %v %v", it, found, err)
	}
}

// Expire and Persist rewrite a key's expiry and keep its value; an absent
// key stays absent.
func TestExpirePersistEventual(t *testing.T) {
	tc := newTestCluster(t, nil)
	c := tc.coords["n1"]
	ctx := t.Context()
	key := []byte("k")
	if found, err := c.Expire(ctx, key, time.Minute, Quorum); err != nil || found {
		t.Fatalf("expire absent: %v %v", found, err)
	}
	if found, err := c.Persist(ctx, key, Quorum); err != nil || found {
		t.Fatalf("persist absent: %v %v", found, err)
	}
	if err := c.Set(ctx, key, []byte("v"), All); err != nil {
		t.Fatal(err)
	}
	if found, err := c.Persist(ctx, key, All); err != nil || !found {
		t.Fatalf("persist without expiry: %v %v", found, err)
	}
	if found, err := c.Expire(ctx, key, time.Minute, All); err != nil || !found {
		t.Fatalf("expire: %v %v", found, err)
	}
	it, found, err := tc.coords["n3"].GetItem(ctx, key, All)
	if err != nil || !found || string(it.Value) != "v" || it.TTL(time.Now()) <= 58*time.Second {
		t.Fatalf("after expire: %v %v %v", it, found, err)
	}
	if found, err := c.Persist(ctx, key, All); err != nil || !found {
		t.Fatalf("persist: %v %v", found, err)
	}
	if it, found, err = tc.coords["n2"].GetItem(ctx, key, All); err != nil || !found || !it.ExpiresAt.IsZero() {
		t.Fatalf("after persist: %v %v %v", it, found, err)
	}
	if found, err := c.Expire(ctx, key, 50*time.Millisecond, All); err != nil || !found {
		t.Fatalf("expire short: %v %v", found, err)
	}
	waitFor(t, "expiry", func() bool { _, found, err := c.Get(ctx, key, All); return err == nil && !found })
	if found, err := c.Expire(ctx, key, time.Minute, All); err != nil || found {
		t.Fatalf("expire after expiry: %v %v (an expired key must stay absent)", found, err)
	}
}

// At linearizable the leader decides expiry: a put-if-absent on an
// expired key takes it (a lock that timed out), on this node's group and
// through a forwarding node alike.
func TestTTLLinearizable(t *testing.T) {
	n1, n9, _ := newLinNode(t)
	ctx := t.Context()
	for _, c := range []*Coordinator{n1, n9} {
		t.Run(c.cfg.NodeID, func(t *testing.T) {
			lock := []byte("lock-" + c.cfg.NodeID)
			// The TTL counts from when the coordinator takes the write:
			// let the partition elect its leader first.
			if err := c.Delete(ctx, lock, Linearizable); err != nil {
				t.Fatal(err)
			}
			res, err := c.CompareAndSet(ctx, lock, nil, []byte("a"), WithTTL(200*time.Millisecond))
			if err != nil || !res.Swapped {
				t.Fatalf("take: %v %v", res, err)
			}
			if res, err = c.CompareAndSet(ctx, lock, nil, []byte("b"), WithTTL(time.Minute)); err != nil || res.Swapped || string(res.Current) != "a" {
				t.Fatalf("take while held: %v %v", res, err)
			}
			it, found, err := c.GetItem(ctx, lock, Linearizable)
			if err != nil || !found || it.ExpiresAt.IsZero() {
				t.Fatalf("get: %v %v %v", it, found, err)
			}
			waitFor(t, "lock expiry", func() bool {
				_, found, err := c.Get(ctx, lock, Linearizable)
				return err == nil && !found
			})
			if res, err = c.CompareAndSet(ctx, lock, nil, []byte("b"), WithTTL(time.Minute)); err != nil || !res.Swapped {
				t.Fatalf("take after expiry: %v %v", res, err)
			}
			// Expire and Persist go through compare-and-set.
			if found, err := c.Persist(ctx, lock, Linearizable); err != nil || !found {
				t.Fatalf("persist: %v %v", found, err)
			}
			if it, _, _ := c.GetItem(ctx, lock, Linearizable); !it.ExpiresAt.IsZero() || string(it.Value) != "b" {
				t.Fatalf("after persist: %v", it)
			}
			if found, err := c.Expire(ctx, lock, 100*time.Millisecond, Linearizable); err != nil || !found {
				t.Fatalf("expire: %v %v", found, err)
			}
			waitFor(t, "expire", func() bool {
				_, found, err := c.Get(ctx, lock, Linearizable)
				return err == nil && !found
			})
			if found, err := c.Expire(ctx, lock, time.Second, Linearizable); err != nil || found {
				t.Fatalf("expire absent: %v %v", found, err)
			}
			if found, err := c.Persist(ctx, lock, Linearizable); err != nil || found {
				t.Fatalf("persist absent: %v %v", found, err)
			}
			// A linearizable Set with a TTL.
			key := []byte("set-" + c.cfg.NodeID)
			if err := c.Set(ctx, key, []byte("v"), Linearizable, WithTTL(time.Minute)); err != nil {
				t.Fatal(err)
			}
			if it, found, err := c.GetItem(ctx, key, Linearizable); err != nil || !found || it.TTL(time.Now()) < 59*time.Second {
				t.Fatalf("set with ttl: %v %v %v", it, found, err)
			}
		})
	}
}

// The Client service carries TTLs both ways and refuses bad ones.
func TestClientServerTTL(t *testing.T) {
	tc := newTestCluster(t, nil)
	s := NewClientServer(tc.coords["n1"], nil)
	ctx := t.Context()
	do := func(op *kvpb.ClientOp) *kvpb.ClientResult {
		t.Helper()
		resp, err := s.Do(ctx, &kvpb.ClientRequest{Op: op})
		if err != nil {
			t.Fatal(err)
		}
		return resp.GetResult()
	}
	all := kvpb.Consistency_CONSISTENCY_ALL
	if r := do(&kvpb.ClientOp{Kind: kvpb.ClientOp_KIND_SET, Key: []byte("k"), Value: []byte("v"), Consistency: all, TtlMicros: 60_000_000}); r.GetError() != 0 {
		t.Fatalf("set: %v", r)
	}
	if r := do(&kvpb.ClientOp{Kind: kvpb.ClientOp_KIND_GET, Key: []byte("k"), Consistency: all}); !r.GetFound() || r.GetTtlMicros() < 59_000_000 || r.GetTtlMicros() > 60_000_000 {
		t.Fatalf("get: %v", r)
	}
	if r := do(&kvpb.ClientOp{Kind: kvpb.ClientOp_KIND_PERSIST, Key: []byte("k"), Consistency: all}); r.GetError() != 0 || !r.GetFound() {
		t.Fatalf("persist: %v", r)
	}
	if r := do(&kvpb.ClientOp{Kind: kvpb.ClientOp_KIND_GET, Key: []byte("k"), Consistency: all}); !r.GetFound() || r.GetTtlMicros() != 0 {
		t.Fatalf("get after persist: %v", r)
	}
	if r := do(&kvpb.ClientOp{Kind: kvpb.ClientOp_KIND_EXPIRE, Key: []byte("k"), Consistency: all, TtlMicros: 1000}); r.GetError() != 0 || !r.GetFound() {
		t.Fatalf("expire: %v", r)
	}
	if r := do(&kvpb.ClientOp{Kind: kvpb.ClientOp_KIND_EXPIRE, Key: []byte("absent"), TtlMicros: 1000}); r.GetError() != 0 || r.GetFound() {
		t.Fatalf("expire absent: %v", r)
	}
	for name, op := range map[string]*kvpb.ClientOp{
		"negative ttl":   {Kind: kvpb.ClientOp_KIND_SET, Key: []byte("k"), TtlMicros: -1},
		"huge ttl":       {Kind: kvpb.ClientOp_KIND_SET, Key: []byte("k"), TtlMicros: int64(MaxTTL/time.Microsecond) + 1},
		"expire no ttl":  {Kind: kvpb.ClientOp_KIND_EXPIRE, Key: []byte("k")},
		"cas negative":   {Kind: kvpb.ClientOp_KIND_CAS, Key: []byte("k"), TtlMicros: -5},
		"expire neg ttl": {Kind: kvpb.ClientOp_KIND_EXPIRE, Key: []byte("k"), TtlMicros: -5},
	} {
		if r := do(op); r.GetError() != kvpb.ErrorCode_ERROR_CODE_INVALID_ARGUMENT || !strings.Contains(r.GetMessage(), "ttl") {
			t.Errorf("%s: got %v, want invalid argument naming the ttl", name, r)
		}
	}
}

// A record's expiry survives the wire both ways.
func TestExpiryWire(t *testing.T) {
	at := time.Unix(1_800_000_000, 123)
	if got := expiryFromWire(expiryToWire(at)); !got.Equal(at) {
		t.Fatalf("round trip %s -> %s", at, got)
	}
	if expiryToWire(time.Time{}) != 0 || !expiryFromWire(0).IsZero() {
		t.Fatal("zero is never")
	}
	rec := replica.Record{Value: []byte("v"), ExpiresAt: at}
	if got := recordFromWire(recordToWire(rec)); !got.ExpiresAt.Equal(at) {
		t.Fatalf("record round trip: %v", got)
	}
}

func TestHTTPTTL(t *testing.T) {
	tc := newTestCluster(t, nil)
	srv := httptest.NewServer(HTTPHandler(tc.coords["n1"]))
	defer srv.Close()
	do := func(method, path, body string) (int, map[string]any) {
		t.Helper()
		req, err := http.NewRequestWithContext(t.Context(), method, srv.URL+path, strings.NewReader(body))
		if err != nil {
			t.Fatal(err)
		}
		resp, err := srv.Client().Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer func() { _ = resp.Body.Close() }() // read fully below
		var out map[string]any
		if err := json.NewDecoder(resp.Body).Decode(&out); err != nil {
			t.Fatalf("%s %s: %v", method, path, err)
		}
		return resp.StatusCode, out
	}
	ttlMs := func(key string) float64 {
		t.Helper()
		code, out := do("GET", "/api/get?consistency=all&key="+key, "")
		if code != 200 {
			t.Fatalf("get %s: %d %v", key, code, out)
		}
		ms, _ := out["ttl_ms"].(float64)
		return ms
	}
	for _, s := range []struct{ body, query string }{
		{`{"key":"a","value":"v","ttl":30}`, ""},
		{`{"key":"b","value":"v","ttl":"30s"}`, ""},
		{`{"key":"c","value":"v","ttl":"30"}`, ""},
		{`{"key":"d","value":"v","ttl":29.5}`, ""},
		{`{"key":"e","value":"v"}`, "&ttl=30s"},
	} {
		if code, out := do("POST", "/api/set?consistency=all"+s.query, s.body); code != 200 {
			t.Fatalf("set %s: %d %v", s.body, code, out)
		}
	}
	for _, k := range []string{"a", "b", "c", "d", "e"} {
		if ms := ttlMs(k); ms < 29_000 || ms > 30_000 {
			t.Errorf("%s: ttl_ms %v, want about 30000", k, ms)
		}
	}
	if code, out := do("POST", "/api/set?consistency=all", `{"key":"n","value":"v","ttl":null}`); code != 200 {
		t.Fatalf("set null ttl: %d %v", code, out)
	}
	if _, out := do("GET", "/api/get?key=n", ""); out["ttl_ms"] != nil {
		t.Fatalf("a key without expiry has no ttl_ms: %v", out)
	}
	for _, body := range []string{`0`, `-1`, `"-5s"`, `"soon"`, `true`, `"0s"`, `1e300`, `0.0000000001`} {
		for _, path := range []string{"/api/set", "/api/cas", "/api/expire"} {
			code, out := do("POST", path, `{"key":"x","value":"v","ttl":`+body+`}`)
			if path == "/api/expire" {
				code, out = do("POST", path, `{"key":"x","ttl":`+body+`}`)
			}
			if msg, _ := out["error"].(string); code != 400 || !strings.Contains(msg, "ttl") {
				t.Errorf("%s ttl %s: %d %v, want 400 naming the ttl", path, body, code, out)
			}
		}
	}
	if code, _ := do("POST", "/api/set?ttl=never", `{"key":"x","value":"v"}`); code != 400 {
		t.Errorf("?ttl=never: %d", code)
	}
	if code, out := do("POST", "/api/expire", `{"key":"a"}`); code != 400 {
		t.Errorf("expire without ttl: %d %v", code, out)
	}
	if code, out := do("POST", "/api/persist", `{"key":"a","ttl":3}`); code != 400 {
		t.Errorf("persist with ttl: %d %v", code, out)
	}
	if code, out := do("POST", "/api/persist", `{}`); code != 400 {
		t.Errorf("persist without key: %d %v", code, out)
	}
	if code, _ := do("GET", "/api/expire", ""); code != 405 {
		t.Errorf("GET /api/expire: %d", code)
	}
	if code, out := do("POST", "/api/persist?consistency=all", `{"key":"a"}`); code != 200 || ttlMs("a") != 0 {
		t.Fatalf("persist: %d %v", code, out)
	}
	if code, out := do("POST", "/api/expire?consistency=all", `{"key":"a","ttl":"10s"}`); code != 200 || ttlMs("a") > 10_000 || ttlMs("a") < 9_000 {
		t.Fatalf("expire: %d %v", code, out)
	}
	if code, _ := do("POST", "/api/expire", `{"key":"zz","ttl":5,"consistency":"one"}`); code != 404 {
		t.Fatalf("expire absent: %d", code)
	}
	if code, _ := do("POST", "/api/persist", `{"key":"zz","consistency":"bad"}`); code != 400 {
		t.Fatalf("persist bad level: %d", code)
	}
	if code, out := do("POST", "/api/cas", `{"key":"lock","value":"v","ttl":"1m"}`); code != 503 {
		t.Fatalf("cas without groups: %d %v", code, out) // validated before it is refused
	}
}

// Each node judges expiry by its own clock, so with clocks δ apart the
// instant a key vanishes differs by up to δ between nodes, and no node
// finds it absent before t + d − δ (t: the writing coordinator's clock
// when it took the write, d: the TTL). Here n2's clock runs δ = 300 ms
// ahead of the writer n1's and n3's δ behind.
func TestExpiryUnderClockSkew(t *testing.T) {
	const skew, ttl = 300 * time.Millisecond, 600 * time.Millisecond
	tc := newTestCluster(t, nil)
	tc.coords["n2"].deps.Clock = replica.NewClock(func() time.Time { return time.Now().Add(skew) }, 0)
	tc.coords["n3"].deps.Clock = replica.NewClock(func() time.Time { return time.Now().Add(-skew) }, 0)
	ctx := t.Context()
	key := []byte("skewed")
	t0 := time.Now()
	if err := tc.coords["n1"].Set(ctx, key, []byte("v"), All, WithTTL(ttl)); err != nil {
		t.Fatal(err)
	}
	gone := map[string]time.Time{}
	waitFor(t, "the key to vanish on every node", func() bool {
		for _, id := range tc.ids {
			if _, ok := gone[id]; ok {
				continue
			}
			asked := time.Now()
			_, found, err := tc.coords[id].Get(ctx, key, One)
			if err != nil {
				t.Fatal(err)
			}
			if !found {
				// Less a millisecond: the HLC stamps the write (and so
				// its expiry) in whole milliseconds, rounded down, so a
				// write taken just after t0 may expire up to 1 ms before
				// t0+d (seen in CI: n2 absent at 299.56 ms).
				if early := t0.Add(ttl - skew - time.Millisecond); asked.Before(early) {
					t.Fatalf("%s found the key absent at %s, before t+d-δ", id, asked.Sub(t0))
				}
				gone[id] = asked
			}
		}
		return len(gone) == len(tc.ids)
	})
	t.Logf("vanished after: n2 (ahead) %s, n1 %s, n3 (behind) %s",
		gone["n2"].Sub(t0).Round(time.Millisecond), gone["n1"].Sub(t0).Round(time.Millisecond), gone["n3"].Sub(t0).Round(time.Millisecond))
	if !gone["n2"].Before(gone["n3"]) {
		t.Fatalf("the node ahead (n2, %s) did not see expiry before the one behind (n3, %s)", gone["n2"].Sub(t0), gone["n3"].Sub(t0))
	}
	if spread := gone["n3"].Sub(gone["n2"]); spread > 2*skew+400*time.Millisecond {
		t.Fatalf("vanishing instants spread over %s, clocks only %s apart", spread, 2*skew)
	}
}
