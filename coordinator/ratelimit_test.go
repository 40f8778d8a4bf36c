package coordinator

import (
	"context"
	"encoding/json"
	"errors"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/ringkv/ringkv/replica"
)

func TestParseRateLimit(t *testing.T) {
	good := []struct {
		in   string
		want RateLimit
	}{
		{"prefix:logs/=100", RateLimit{Kind: RatePrefix, Name: "logs/", PerSec: 100}},
		{"prefix:a=b=2.5,10", RateLimit{Kind: RatePrefix, Name: "a=b", PerSec: 2.5, Burst: 10}},
		{"prefix:=50", RateLimit{Kind: RatePrefix, Name: "", PerSec: 50}}, // every key
		{"user:batch=500,1000", RateLimit{Kind: RateUser, Name: "batch", PerSec: 500, Burst: 1000}},
		{"user:*=10", RateLimit{Kind: RateUser, Name: "*", PerSec: 10}},
	}
	for _, tc := range good {
		got, err := ParseRateLimit(tc.in)
		if err != nil || got != tc.want {
			t.Errorf("ParseRateLimit(%q) = %+v, %v; want %+v", tc.in, got, err, tc.want)
		}
		if back, err := ParseRateLimit(got.String()); err != nil || back.PerSec != got.PerSec || back.Name != got.Name || back.burst() != got.burst() {
			t.Errorf("%q: String %q does not parse back: %+v, %v", tc.in, got.String(), back, err)
		}
	}
	for _, in := range []string{"", "logs/=100", "prefix:logs/", "host:x=1", "prefix:x=fast", "prefix:x=0", "prefix:x=-3",
		"prefix:x=NaN", "prefix:x=+Inf", "prefix:x=1,0", "prefix:x=1,-2", "prefix:x=1,many", "user:=5"} {
		if _, err := ParseRateLimit(in); !errors.Is(err, ErrBadRateLimit) {
			t.Errorf("ParseRateLimit(%q): got %v, want ErrBadRateLimit", in, err)
		}
	}
}

func TestRateLimitsValidate(t *testing.T) {
	cfg := DefaultConfig()
	cfg.NodeID = "n1"
	cfg.RateLimits = []RateLimit{{Kind: RatePrefix, Name: "a", PerSec: 1}, {Kind: RatePrefix, Name: "a", PerSec: 2}, {Kind: 9, Name: "b", PerSec: 1}, {Kind: RateUser, Name: "u", PerSec: 1, Burst: -1}}
	err := cfg.Validate()
	for _, want := range []string{"prefix:a is given twice", "unknown kind", "burst must not be negative"} {
		if !errors.Is(err, ErrBadRateLimit) || !strings.Contains(err.Error(), want) {
			t.Errorf("Validate: got %v, want ErrBadRateLimit saying %q", err, want)
		}
	}
}

// namer names the caller by a context value.
type namer struct{}

type userKey struct{}

func (namer) CallerName(ctx context.Context) string {
	u, _ := ctx.Value(userKey{}).(string)
	return u
}

func asUser(u string) context.Context { return context.WithValue(context.Background(), userKey{}, u) }

func TestRateLimitsTake(t *testing.T) {
	reg := prometheus.NewRegistry()
	rl, err := newRateLimits([]RateLimit{
		{Kind: RatePrefix, Name: "a/", PerSec: 1, Burst: 2},
		{Kind: RatePrefix, Name: "a/b/", PerSec: 1, Burst: 1},
		{Kind: RateUser, Name: "bob", PerSec: 1, Burst: 1},
		{Kind: RateUser, Name: "*", PerSec: 1, Burst: 3},
	}, namer{}, reg)
	if err != nil {
		t.Fatal(err)
	}
	now := time.Unix(1000, 0)
	take := func(ctx context.Context, key string) error { return rl.take(ctx, []byte(key), now) }
	anon := context.Background()

	// The longest prefix rule applies: a/b/ has a burst of 1, a/ of 2.
	if err := take(anon, "a/b/1"); err != nil {
		t.Fatal(err)
	}
	if err := take(anon, "a/b/2"); !errors.Is(err, ErrOverloaded) || !strings.Contains(err.Error(), "prefix:a/b/") {
		t.Fatalf("second a/b/ op: got %v, want ErrOverloaded naming prefix:a/b/", err)
	}
	for i := range 2 {
		if err := take(anon, "a/x"); err != nil {
			t.Fatalf("a/ op %d: %v", i, err)
		}
	}
	if err := take(anon, "a/x"); !errors.Is(err, ErrOverloaded) {
		t.Fatalf("third a/ op: got %v, want ErrOverloaded", err)
	}
	if err := take(anon, "other"); err != nil {
		t.Fatalf("a key no rule names: %v", err)
	}
	// A second later each bucket has one token again.
	now = now.Add(time.Second)
	if err := take(anon, "a/b/3"); err != nil {
		t.Fatal(err)
	}

	// bob has his own rule; carol and dave one bucket each of user:*.
	if err := take(asUser("bob"), "k"); err != nil {
		t.Fatal(err)
	}
	if err := take(asUser("bob"), "k"); !errors.Is(err, ErrOverloaded) || !strings.Contains(err.Error(), "user:bob") {
		t.Fatalf("bob's second op: got %v, want ErrOverloaded naming user:bob", err)
	}
	for _, u := range []string{"carol", "dave"} {
		for i := range 3 {
			if err := take(asUser(u), "k"); err != nil {
				t.Fatalf("%s op %d: %v", u, i, err)
			}
		}
		if err := take(asUser(u), "k"); !errors.Is(err, ErrOverloaded) {
			t.Fatalf("%s's fourth op: got %v, want ErrOverloaded", u, err)
		}
	}

	// Refused by the user's bucket: the prefix token is given back.
	now = now.Add(10 * time.Second)
	if err := take(asUser("bob"), "a/b/4"); err != nil { // spends a/b/ and bob
		t.Fatal(err)
	}
	if err := take(asUser("bob"), "a/5"); !errors.Is(err, ErrOverloaded) { // a/ has 2; bob none
		t.Fatalf("bob again: got %v, want ErrOverloaded", err)
	}
	for i := range 2 {
		if err := take(anon, "a/6"); err != nil {
			t.Fatalf("a/ after bob's refusal, op %d: %v (the refused op kept a/'s token)", i, err)
		}
	}

	want := map[string]float64{"prefix:a/b/": 1, "prefix:a/": 1, "user:bob": 2, "user:*": 2}
	for rule, n := range want {
		got, err := metricValue(reg, "ringkv_coordinator_rate_limited_total", "rule", rule)
		if err != nil || got != n {
			t.Errorf("rate_limited_total{rule=%q}: got %v (%v), want %v", rule, got, err, n)
		}
	}
}

// metricValue reads one labelled counter from reg.
func metricValue(reg prometheus.Gatherer, name, label, value string) (float64, error) {
	mfs, err := reg.Gather()
	if err != nil {
		return 0, err
	}
	for _, mf := range mfs {
		if mf.GetName() != name {
			continue
		}
		for _, m := range mf.GetMetric() {
			for _, lp := range m.GetLabel() {
				if lp.GetName() == label && lp.GetValue() == value {
					return m.GetCounter().GetValue(), nil
				}
			}
		}
	}
	return 0, errors.New("not found")
}

// TestRateLimitOverHTTP: a prefix rule refuses the operation beyond its
// burst with 429 and a JSON error, other keys and the node's own work go
// on, and a compare-and-set pays once.
func TestRateLimitOverHTTP(t *testing.T) {
	tc := newTestCluster(t, nil)
	cfg := DefaultConfig()
	cfg.NodeID = "n1"
	cfg.RequestTimeout = 2 * time.Second
	cfg.RateLimits = []RateLimit{{Kind: RatePrefix, Name: "hot/", PerSec: 0.001, Burst: 2}}
	reg := prometheus.NewRegistry()
	c, err := New(cfg, Deps{Store: tc.stores["n1"], Clock: replica.NewClock(nil, 0), Ring: tc.ring, Transport: tc.trans, Registerer: reg})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := c.Close(); err != nil {
			t.Error(err)
		}
	})
	srv := httptest.NewServer(HTTPHandler(c))
	defer srv.Close()
	post := func(path, body string) (int, string) {
		t.Helper()
		resp, b := httpDo(t, srv, http.MethodPost, path, body)
		var out struct {
			Error string `json:"error"`
		}
		_ = json.Unmarshal(b, &out) // a success has no error field
		if resp.StatusCode == http.StatusTooManyRequests && resp.Header.Get("Retry-After") == "" {
			t.Errorf("429 without Retry-After")
		}
		return resp.StatusCode, out.Error
	}
	if code, msg := post("/api/set", `{"key":"hot/1","value":"v"}`); code != http.StatusOK {
		t.Fatalf("first hot/ set: %d %s", code, msg)
	}
	// A compare-and-set reads and writes its key: one token, not two
	// (this test cluster runs no raft groups, so it then fails with 503;
	// a second token would have been refused with 429 first).
	if code, msg := post("/api/cas", `{"key":"hot/1","expected":"v","value":"w"}`); code == http.StatusTooManyRequests {
		t.Fatalf("hot/ CAS paid twice: %d %s", code, msg)
	}
	code, msg := post("/api/set", `{"key":"hot/2","value":"v"}`)
	if code != http.StatusTooManyRequests || !strings.Contains(msg, "rate limit prefix:hot/") {
		t.Fatalf("third hot/ op: got %d %q, want 429 naming the rule", code, msg)
	}
	if code, msg := post("/api/set", `{"key":"cold/1","value":"v"}`); code != http.StatusOK {
		t.Fatalf("a key of no rule: %d %s", code, msg)
	}
	if _, found, err := c.Get(System(t.Context()), []byte("hot/2"), Quorum); err != nil || found {
		t.Fatalf("the refused write: found %v, %v; want nothing stored", found, err)
	}
	if got := testutil.ToFloat64(c.rates.prefixes[0].refused); got != 1 {
		t.Errorf("refusals counted: %v, want 1", got)
	}
}
