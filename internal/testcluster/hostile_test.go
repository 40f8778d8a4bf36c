package testcluster

import (
	"bytes"
	"encoding/json"
	"io"
	"net"
	"net/http"
	"net/url"
	"strings"
	"testing"
	"time"
)

// TestHostileInput sends malformed and hostile input to one real node and
// checks, for every case, a clear refusal (HTTP 4xx with a JSON "error";
// on the drpc port, the connection dropped without an answer), that
// nothing was stored (the case's key is still absent and a sentinel key
// keeps its value), and that the node is still healthy (/health 200).
//
// The cluster runs with replication factor 2, so that each node has
// partitions it does not replicate, and without anti-entropy exchanges
// or scrubbing, so that a record corrupted on purpose stays so until
// read.
func TestHostileInput(t *testing.T) {
	if testing.Short() {
		t.Skip("starts real processes")
	}
	c := StartWith(t, 3, "--replicas", "2", "--ae-interval", "-1s", "--scrub-rate", "-1")
	c.WaitRaftReady(120*time.Second, 0)
	ctx := t.Context()
	nd := c.Nodes[0]
	if code, err := nd.Set(ctx, "hostile-sentinel", "v0", "all"); err != nil || code != http.StatusOK {
		t.Fatalf("set sentinel: %d %v", code, err)
	}
	long := strings.Repeat("k", 4097)    // over the default MaxKeyBytes (4096)
	huge := strings.Repeat("v", 1<<20+1) // over the default MaxValueBytes (1 MiB)
	const key = "hostile-k"              // every HTTP case targets this key
	set := func(k, v string, extra string) string {
		b, _ := json.Marshal(map[string]string{"key": k, "value": v}) //nolint:errchkjson // strings always encode
		if extra != "" {
			b = append(b[:len(b)-1], ","+extra+"}"...)
		}
		return string(b)
	}
	httpCases := []struct {
		name, method, path, query, body string
	}{
		{"empty key", "POST", "/api/set", "", set("", "v", "")},
		{"key over the limit", "POST", "/api/set", "", set(long, "v", "")},
		{"value over the limit", "POST", "/api/set", "", set(key, huge, "")},
		{"unknown consistency level", "POST", "/api/set", "consistency=two", set(key, "v", "")},
		{"unknown consistency level in body", "POST", "/api/set", "", set(key, "v", `"consistency":"most"`)},
		{"cas at a non-linearizable level", "POST", "/api/cas", "consistency=one", `{"key":"hostile-k","expected":"a","value":"b"}`},
		{"cas without its value", "POST", "/api/cas", "", `{"key":"hostile-k","expected":"a"}`},
		{"zero ttl", "POST", "/api/set", "", set(key, "v", `"ttl":0`)},
		{"negative ttl", "POST", "/api/set", "", set(key, "v", `"ttl":"-5s"`)},
		{"negative ttl in query", "POST", "/api/set", "ttl=-1", set(key, "v", "")},
		{"nan ttl", "POST", "/api/set", "", set(key, "v", `"ttl":"NaN"`)},
		{"expire with zero ttl", "POST", "/api/expire", "", `{"key":"hostile-k","ttl":0}`},
		{"truncated JSON", "POST", "/api/set", "", `{"key":"hostile-k","val`},
		{"not JSON", "POST", "/api/set", "", "\x00\xff\xfe garbage"},
		{"trailing data", "POST", "/api/txn", "", `{"success":[{"op":"set","key":"hostile-k","value":"v"}]} {}`},
		{"unknown txn op", "POST", "/api/txn", "", `{"success":[{"op":"explode","key":"hostile-k"}]}`},
		{"txn at a non-linearizable level", "POST", "/api/txn", "", `{"success":[{"op":"set","key":"hostile-k","value":"v"}],"consistency":"one"}`},
		{"empty txn", "POST", "/api/txn", "", `{}`},
		{"wrong method", "GET", "/api/set", "key=hostile-k&value=v", ""},
		{"list with negative limit", "GET", "/api/list", "prefix=hostile&limit=-1", ""},
	}
	for _, tc := range httpCases {
		t.Run(tc.name, func(t *testing.T) {
			u := nd.URL(tc.path)
			if tc.query != "" {
				u += "?" + tc.query
			}
			req, err := http.NewRequestWithContext(ctx, tc.method, u, strings.NewReader(tc.body))
			if err != nil {
				t.Fatal(err)
			}
			resp, err := http.DefaultClient.Do(req)
			if err != nil {
				t.Fatal(err)
			}
			b, err := io.ReadAll(resp.Body)
			_ = resp.Body.Close()
			if err != nil {
				t.Fatal(err)
			}
			var out struct {
				Error string `json:"error"`
			}
			if resp.StatusCode < 400 || resp.StatusCode > 499 || json.Unmarshal(b, &out) != nil || out.Error == "" {
				t.Fatalf("got %d %q, want a 4xx with a JSON error", resp.StatusCode, clipBody(b))
			}
			checkUnchanged(t, c, key)
		})
	}

	// The drpc port: frames no client sends. drpc answers a frame it
	// cannot parse by closing the connection; it sends no typed error,
	// since it cannot tell which stream the garbage belonged to.
	rpcCases := []struct {
		name  string
		bytes []byte
	}{
		{"truncated frame", []byte{0x05}},
		{"frame over the maximum size", append([]byte{0x05, 0x01, 0x01}, bytes.Repeat([]byte{0xff}, 10)...)},
		{"unknown message type", []byte{0x7f, 0x01, 0x01, 0x01, 0x00}},
		{"garbage", []byte("GET / HTTP/1.1\r\nHost: x\r\n\r\n")},
		{"long garbage", bytes.Repeat([]byte{0xff}, 64<<10)},
	}
	for _, tc := range rpcCases {
		t.Run("rpc "+tc.name, func(t *testing.T) {
			conn, err := net.Dial("tcp", nd.RPCAddr)
			if err != nil {
				t.Fatal(err)
			}
			defer func() { _ = conn.Close() }()
			if err := conn.SetDeadline(time.Now().Add(time.Second)); err != nil {
				t.Fatal(err)
			}
			_, _ = conn.Write(tc.bytes)
			// The node answers nothing a client could take for a reply:
			// either it closes, or (a frame it still waits the rest of)
			// the read times out and we close.
			got, _ := io.ReadAll(conn)
			if len(got) > 0 && bytes.Contains(got, []byte("hostile")) {
				t.Fatalf("node answered %q", got)
			}
			checkUnchanged(t, c, key)
		})
	}

	hostilePeerCases(t, c, key)
	hostileRestartCases(t, c, key)
}

// checkUnchanged fails unless key is absent, the sentinel still reads v0
// and every node's /health answers 200.
func checkUnchanged(t *testing.T, c *Cluster, key string) {
	t.Helper()
	ctx := t.Context()
	nd := c.Nodes[0]
	if _, code, err := nd.Get(ctx, key, "all"); err != nil || code != http.StatusNotFound {
		t.Fatalf("get %s after the case: %d %v, want 404", key, code, err)
	}
	if got, code, err := nd.Get(ctx, "hostile-sentinel", "all"); err != nil || code != http.StatusOK || got != "v0" {
		t.Fatalf("sentinel after the case: %q %d %v", got, code, err)
	}
	for _, n := range c.Nodes {
		code, _, err := n.Do(ctx, http.MethodGet, "/health", url.Values{}, nil)
		if err != nil || code != http.StatusOK {
			t.Fatalf("%s /health: %d %v", n.ID, code, err)
		}
	}
}

func clipBody(b []byte) string {
	if len(b) > 200 {
		return string(b[:200]) + "..."
	}
	return string(b)
}
