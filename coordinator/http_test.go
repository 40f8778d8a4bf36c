package coordinator

import (
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/ringkv/ringkv/replica"
)

func TestHTTPAPI(t *testing.T) {
	tc := newTestCluster(t, func(c *Config) { c.MaxValueBytes = 1 << 10 })
	srv := httptest.NewServer(HTTPHandler(tc.coords["n1"]))
	defer srv.Close()

	do := func(t *testing.T, method, path, body string) (int, map[string]any) {
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
		b, err := io.ReadAll(resp.Body)
		if err != nil {
			t.Fatal(err)
		}
		if ct := resp.Header.Get("Content-Type"); ct != "application/json" {
			t.Fatalf("%s %s: content type %q", method, path, ct)
		}
		var out map[string]any
		if err := json.Unmarshal(b, &out); err != nil {
			t.Fatalf("%s %s: body %q is not JSON: %v", method, path, b, err)
		}
		return resp.StatusCode, out
	}

	t.Run("spec examples", func(t *testing.T) {
		steps := []struct {
			method, path, body string
			code               int
			want               string
		}{
			{"POST", "/api/set", `{"key":"user:1001","value":"John Doe"}`, 200, `{"success":true}`},
			{"GET", "/api/get?key=user:1001", "", 200, `{"found":true,"value":"John Doe"}`},
			{"GET", "/api/list?prefix=user:", "", 200, `{"pairs":[{"key":"user:1001","value":"John Doe"}]}`},
			{"GET", "/api/list?prefix=nobody:", "", 200, `{"pairs":[]}`},
			{"DELETE", "/api/delete?key=user:1001", "", 200, `{"success":true}`},
			{"GET", "/api/get?key=user:1001", "", 404, `{"found":false}`},
			{"POST", "/api/set?consistency=all", `{"key":"a","value":""}`, 200, `{"success":true}`},
			{"POST", "/api/set", `{"key":"b","value":"x","consistency":"one"}`, 200, `{"success":true}`},
			{"GET", "/api/get?key=a&consistency=one", "", 200, `{"found":true,"value":""}`},
			{"GET", "/api/list?prefix=&limit=1&consistency=all", "", 200, `{"pairs":[{"key":"a","value":""}]}`},
		}
		for _, s := range steps {
			code, out := do(t, s.method, s.path, s.body)
			got, _ := json.Marshal(out)
			if code != s.code || string(got) != s.want {
				t.Fatalf("%s %s: got %d %s, want %d %s", s.method, s.path, code, got, s.code, s.want)
			}
		}
	})

	t.Run("bad input", func(t *testing.T) {
		long := strings.Repeat("k", 4097)
		big := strings.Repeat("v", 1025)
		for _, tt := range []struct {
			name, method, path, body string
			code                     int
		}{
			{"empty key set", "POST", "/api/set", `{"key":"","value":"v"}`, 400},
			{"missing key", "POST", "/api/set", `{"value":"v"}`, 400},
			{"missing value", "POST", "/api/set", `{"key":"k"}`, 400},
			{"key over 4 KiB", "POST", "/api/set", `{"key":"` + long + `","value":"v"}`, 400},
			{"value over limit", "POST", "/api/set", `{"key":"k","value":"` + big + `"}`, 400},
			{"malformed JSON", "POST", "/api/set", `{"key":`, 400},
			{"not an object", "POST", "/api/set", `[1,2]`, 400},
			{"trailing data", "POST", "/api/set", `{"key":"k","value":"v"} {}`, 400},
			{"unknown field", "POST", "/api/set", `{"key":"k","value":"v","ttl_ms":3000}`, 400},
			{"number value", "POST", "/api/set", `{"key":"k","value":3}`, 400},
			{"body too big", "POST", "/api/set", `{"key":"k","value":"` + strings.Repeat("v", 64<<10) + `"}`, 400},
			{"unknown level set", "POST", "/api/set?consistency=two", `{"key":"k","value":"v"}`, 400},
			{"unknown level body", "POST", "/api/set", `{"key":"k","value":"v","consistency":"most"}`, 400},
			{"empty key get", "GET", "/api/get", "", 400},
			{"key over 4 KiB get", "GET", "/api/get?key=" + long, "", 400},
			{"unknown level get", "GET", "/api/get?key=k&consistency=linearish", "", 400},
			{"empty key delete", "DELETE", "/api/delete", "", 400},
			{"unknown level delete", "DELETE", "/api/delete?key=k&consistency=x", "", 400},
			{"bad limit", "GET", "/api/list?limit=ten", "", 400},
			{"negative limit", "GET", "/api/list?limit=-1", "", 400},
			{"unknown level list", "GET", "/api/list?consistency=x", "", 400},
			{"wrong method set", "GET", "/api/set", "", 405},
			{"wrong method get", "POST", "/api/get?key=k", "", 405},
			{"wrong method list", "DELETE", "/api/list", "", 405},
			{"wrong method delete", "GET", "/api/delete?key=k", "", 405},
			{"reserved key set", "POST", "/api/set", `{"key":"\u0000ringkv/ring","value":"v"}`, 400},
			{"reserved key get", "GET", "/api/get?key=%00ringkv/ring", "", 400},
			{"reserved key delete", "DELETE", "/api/delete?key=%00ringkv/ring", "", 400},
			{"reserved key cas", "POST", "/api/cas", `{"key":"\u0000x","value":"v"}`, 400},
			{"reserved prefix list", "GET", "/api/list?prefix=%00", "", 400},
		} {
			t.Run(tt.name, func(t *testing.T) {
				code, out := do(t, tt.method, tt.path, tt.body)
				if code != tt.code {
					t.Fatalf("got %d %v, want %d", code, out, tt.code)
				}
				if msg, ok := out["error"].(string); !ok || msg == "" {
					t.Fatalf("got body %v, want an error message", out)
				}
			})
		}
	})

	t.Run("too few replicas is 503", func(t *testing.T) {
		tc.trans.setDown("n2", true)
		tc.trans.setDown("n3", true)
		defer tc.trans.setDown("n2", false)
		defer tc.trans.setDown("n3", false)
		for _, s := range []struct{ method, path, body string }{
			{"POST", "/api/set", `{"key":"k","value":"v"}`},
			{"GET", "/api/get?key=k", ""},
			{"GET", "/api/list", ""},
			{"DELETE", "/api/delete?key=k&consistency=all", ""},
		} {
			code, out := do(t, s.method, s.path, s.body)
			if msg, _ := out["error"].(string); code != 503 || !strings.Contains(msg, "required replicas answered") {
				t.Fatalf("%s %s: got %d %v, want 503 with counts", s.method, s.path, code, out)
			}
		}
	})
}

func TestStatusFor(t *testing.T) {
	for _, tt := range []struct {
		err  error
		want int
	}{
		{ErrInvalidArgument, 400}, {&UnavailableError{}, 503}, {ErrClosed, 503},
		{ErrCorrupt, 500}, {io.EOF, 500},
		{fmt.Errorf("merge: %w", replica.ErrDiskFull), 507},
		{&UnavailableError{Cause: errorFor(rpcError(replica.ErrDiskFull))}, 507},
	} {
		if got := StatusFor(tt.err); got != tt.want {
			t.Errorf("StatusFor(%v): got %d, want %d", tt.err, got, tt.want)
		}
	}
}
