package coordinator

import (
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"testing"
	"time"
)

func TestMultiHTTP(t *testing.T) {
	n1, _, _ := newLinNode(t)
	srv := httptest.NewServer(HTTPHandler(n1))
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
		raw, err := io.ReadAll(resp.Body)
		if err != nil {
			t.Fatal(err)
		}
		var out map[string]any
		if err := json.Unmarshal(raw, &out); err != nil {
			t.Fatalf("body %q is not JSON: %v", raw, err)
		}
		return resp.StatusCode, out
	}
	keys := spread(t, n1, "h", 3)
	a, b, c := string(keys[0]), string(keys[1]), string(keys[2])
	for _, level := range []string{"one", "linearizable"} {
		t.Run(level, func(t *testing.T) {
			code, out := do(t, "POST", "/api/mset?consistency="+level,
				fmt.Sprintf(`{"pairs":[{"key":%q,"value":"1-%s"},{"key":%q,"value":"2-%s","ttl":"30s"}]}`, a, level, b, level))
			if code != 200 || out["success"] != true {
				t.Fatalf("mset: got %d %v", code, out)
			}
			q := url.Values{"key": {a, b, c}, "consistency": {level}}
			pollUntil(t, 5*time.Second, "mset visible", func() bool {
				code, out = do(t, "GET", "/api/mget?"+q.Encode(), "")
				if code != 200 {
					t.Fatalf("mget: got %d %v", code, out)
				}
				results, _ := out["results"].([]any)
				if len(results) != 3 {
					t.Fatalf("mget: got %v", out)
				}
				ra, _ := results[0].(map[string]any)
				rb, _ := results[1].(map[string]any)
				rc, _ := results[2].(map[string]any)
				if rc["found"] != false || rc["key"] != c || rc["value"] != nil {
					t.Fatalf("absent key: got %v", rc)
				}
				version, _ := ra["version"].(string)
				return ra["value"] == "1-"+level && rb["value"] == "2-"+level && version != "" && ra["key"] == a
			})
		})
	}
	for _, tc := range []struct {
		name, method, path, body string
		want                     int
	}{
		{"mget no key", "GET", "/api/mget", "", 400},
		{"mget duplicate", "GET", "/api/mget?key=a&key=a", "", 400},
		{"mget reserved", "GET", "/api/mget?key=%00x", "", 400},
		{"mget bad level", "GET", "/api/mget?key=a&consistency=most", "", 400},
		{"mget method", "POST", "/api/mget?key=a", "", 405},
		{"mset empty", "POST", "/api/mset", `{"pairs":[]}`, 400},
		{"mset no value", "POST", "/api/mset", `{"pairs":[{"key":"a"}]}`, 400},
		{"mset duplicate", "POST", "/api/mset", `{"pairs":[{"key":"a","value":"1"},{"key":"a","value":"2"}]}`, 400},
		{"mset reserved", "POST", "/api/mset", `{"pairs":[{"key":"\u0000x","value":"1"}]}`, 400},
		{"mset bad ttl", "POST", "/api/mset", `{"pairs":[{"key":"a","value":"1","ttl":"soon"}]}`, 400},
		{"mset unknown field", "POST", "/api/mset", `{"pairs":[],"x":1}`, 400},
		{"mset bad level", "POST", "/api/mset?consistency=most", `{"pairs":[{"key":"a","value":"1"}]}`, 400},
	} {
		t.Run(tc.name, func(t *testing.T) {
			code, out := do(t, tc.method, tc.path, tc.body)
			if msg, _ := out["error"].(string); code != tc.want || msg == "" {
				t.Fatalf("got %d %v, want %d with an error", code, out, tc.want)
			}
		})
	}
}
