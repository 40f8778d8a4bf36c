package node

import (
	"context"
	"crypto/tls"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"storj.io/drpc/drpcerr"

	"github.com/ringkv/ringkv/auth"
	"github.com/ringkv/ringkv/coordinator"
	"github.com/ringkv/ringkv/internal/pki"
	"github.com/ringkv/ringkv/internal/rpcconn"
	"github.com/ringkv/ringkv/internal/testlog"
	"github.com/ringkv/ringkv/proto/kvpb"
	"github.com/ringkv/ringkv/ring"
)

// testCerts makes a CA in dir/ca, a certs dir per node (dir/nI: ca.crt,
// node.crt for 127.0.0.1) and client certificates for users in dir/ca.
func testCerts(t *testing.T, dir string, nodes int, users ...string) {
	t.Helper()
	ca := filepath.Join(dir, "ca")
	if err := pki.CreateCA(ca, pki.CAOptions{}); err != nil {
		t.Fatal(err)
	}
	for i := 1; i <= nodes; i++ {
		nd := filepath.Join(dir, fmt.Sprintf("n%d", i))
		if err := pki.CreateNode(nd, fmt.Sprintf("n%d", i), []string{"127.0.0.1", "localhost"}, pki.CertOptions{
			CACertPath: filepath.Join(ca, pki.CACertFile), CAKeyPath: filepath.Join(ca, pki.CAKeyFile),
		}); err != nil {
			t.Fatal(err)
		}
		copyFile(t, filepath.Join(ca, pki.CACertFile), filepath.Join(nd, pki.CACertFile))
	}
	for _, u := range users {
		if err := pki.CreateClient(ca, u, pki.CertOptions{}); err != nil {
			t.Fatal(err)
		}
	}
}

// startSecureCluster starts n nodes with certificates under certs (made
// by testCerts) and a cheap bcrypt cost.
func startSecureCluster(t *testing.T, n int, certs string) []*Node {
	return startClusterWith(t, n, func(c *Config) {
		c.CertsDir = filepath.Join(certs, c.ID)
		c.Auth = auth.LocalConfig()
		c.Ring = ring.Config{Partitions: 16, ReplicationFactor: 3}
	})
}

// httpsClient returns an HTTP client trusting certs/ca that presents
// user's client certificate ("" for none).
func httpsClient(t *testing.T, certs, user string) *http.Client {
	t.Helper()
	cfg, err := pki.ClientTLS(filepath.Join(certs, "ca"), user)
	if err != nil {
		t.Fatal(err)
	}
	cfg.ServerName = "127.0.0.1"
	return &http.Client{Transport: &http.Transport{TLSClientConfig: cfg}, Timeout: 30 * time.Second}
}

// call sends one request and returns its status and JSON body.
func call(t *testing.T, c *http.Client, method, url, body string, header ...string) (int, map[string]any) {
	t.Helper()
	req, err := http.NewRequestWithContext(t.Context(), method, url, strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	for i := 0; i+1 < len(header); i += 2 {
		req.Header.Set(header[i], header[i+1])
	}
	resp, err := c.Do(req)
	if err != nil {
		t.Fatalf("%s %s: %v", method, url, err)
	}
	defer func() { _ = resp.Body.Close() }() // read fully below
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	var out map[string]any
	if len(b) > 0 && json.Unmarshal(b, &out) != nil {
		out = map[string]any{"raw": string(b)}
	}
	return resp.StatusCode, out
}

// TestSecureCluster: three nodes with certificates form a cluster over
// mutual TLS (gossip, raft, replica traffic), serve HTTPS, refuse plain
// HTTP, and refuse the peer services to anything but a node certificate.
func TestSecureCluster(t *testing.T) {
	certs := t.TempDir()
	testCerts(t, certs, 3, "alice")
	nodes := startSecureCluster(t, 3, certs)
	base := "https://" + nodes[0].HTTPAddr()
	alice := httpsClient(t, certs, "alice")

	// The groups converge: raft runs over mutual TLS.
	waitUntil(t, 60*time.Second, "secure groups to converge", func() bool {
		code, out := call(t, alice, "GET", "https://"+nodes[2].HTTPAddr()+"/api/cluster/status", "")
		return code == http.StatusOK && out["converged"] == true
	})
	for _, s := range []struct {
		method, path, body string
		want               int
	}{
		{"POST", "/api/set", `{"key":"k","value":"v"}`, 200},
		{"POST", "/api/set?consistency=linearizable", `{"key":"l","value":"v"}`, 200},
		{"GET", "/api/get?key=k", "", 200},
		{"GET", "/health", "", 200},
	} {
		if code, out := call(t, alice, s.method, base+s.path, s.body); code != s.want {
			t.Fatalf("%s %s: got %d %v, want %d", s.method, s.path, code, out, s.want)
		}
	}
	// Plain HTTP to the HTTPS port is not served.
	if resp, err := http.Get("http://" + nodes[0].HTTPAddr() + "/health"); err == nil {
		_ = resp.Body.Close()
		if resp.StatusCode == http.StatusOK {
			t.Fatalf("plain HTTP was served")
		}
	}

	// The peer services answer only node certificates.
	ctx, cancel := context.WithTimeout(t.Context(), 10*time.Second)
	defer cancel()
	clientCfg, err := pki.ClientTLS(filepath.Join(certs, "ca"), "alice")
	if err != nil {
		t.Fatal(err)
	}
	anon, err := pki.ClientTLS(filepath.Join(certs, "ca"), "")
	if err != nil {
		t.Fatal(err)
	}
	for name, cfg := range map[string]*tls.Config{"client certificate": clientCfg, "no certificate": anon} {
		conn, err := rpcconn.Dial(ctx, nodes[0].RPCAddr(), func(string) *tls.Config { return cfg })
		if err != nil {
			t.Fatalf("%s: dial: %v", name, err)
		}
		_, err = kvpb.NewDRPCReplicaClient(conn).Read(ctx, &kvpb.ReadRequest{Keys: []*kvpb.ReadKey{{Key: []byte("k")}}})
		_ = conn.Close()
		if drpcerr.Code(err) != codePermissionDenied {
			t.Fatalf("%s on the Replica service: got %v (code %d), want code %d", name, err, drpcerr.Code(err), codePermissionDenied)
		}
	}
	// A node certificate is let in.
	r, err := pki.OpenReloader(filepath.Join(certs, "n2"), pki.DefaultReloaderConfig())
	if err != nil {
		t.Fatal(err)
	}
	conn, err := rpcconn.Dial(ctx, nodes[0].RPCAddr(), r.PeerTLSFor)
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = conn.Close() }()
	if _, err := kvpb.NewDRPCReplicaClient(conn).Read(ctx, &kvpb.ReadRequest{Keys: []*kvpb.ReadKey{{Key: []byte("k")}}}); drpcerr.Code(err) == codePermissionDenied {
		t.Fatalf("node certificate refused: %v", err)
	}
}

// TestSecureAuth: with authentication enabled, every request needs
// credentials (401 without), and a user without the permission is refused
// (403) without anything being written.
func TestSecureAuth(t *testing.T) {
	certs := t.TempDir()
	testCerts(t, certs, 1, "alice", "root")
	nodes := startSecureCluster(t, 1, certs)
	base := "https://" + nodes[0].HTTPAddr()
	anon := httpsClient(t, certs, "")
	root := httpsClient(t, certs, "root")
	alice := httpsClient(t, certs, "alice")

	waitUntil(t, 30*time.Second, "auth enable", func() bool {
		code, _ := call(t, anon, "POST", base+"/api/auth/enable", `{"root_password":"rootpass1"}`)
		return code == http.StatusOK
	})
	basicRoot := []string{"Authorization", "Basic " + basic("root", "rootpass1")}
	steps := []struct {
		name         string
		c            *http.Client
		method, path string
		body         string
		header       []string
		want         int
	}{
		{"anonymous set", anon, "POST", "/api/set", `{"key":"acct/1","value":"x"}`, nil, 401},
		{"anonymous status", anon, "GET", "/api/cluster/status", "", nil, 401},
		{"anonymous metrics", anon, "GET", "/metrics", "", nil, 401},
		{"anonymous health", anon, "GET", "/health", "", nil, 200},
		{"bad password", anon, "POST", "/api/set", `{"key":"acct/1","value":"x"}`, []string{"Authorization", "Basic " + basic("root", "nope")}, 401},
		{"bad token", anon, "GET", "/api/get?key=acct/1", "", []string{"Authorization", "Bearer nope"}, 401},
		{"root basic set", anon, "POST", "/api/set", `{"key":"acct/1","value":"x"}`, basicRoot, 200},
		{"add role", anon, "POST", "/api/auth/roles", `{"name":"acct-reader","permissions":[{"access":"read","prefix":"acct/"}]}`, basicRoot, 200},
		{"add user", anon, "POST", "/api/auth/users", `{"name":"alice","password":"alicepass","roles":["acct-reader"]}`, basicRoot, 200},
		{"alice cert reads", alice, "GET", "/api/get?key=acct/1", "", nil, 200},
		{"alice lists her prefix", alice, "GET", "/api/list?prefix=acct/", "", nil, 200},
		{"alice lists everything", alice, "GET", "/api/list?prefix=", "", nil, 403},
		{"alice writes", alice, "POST", "/api/set", `{"key":"acct/1","value":"stolen"}`, nil, 403},
		{"alice cas", alice, "POST", "/api/cas", `{"key":"acct/1","expected":"x","value":"stolen"}`, nil, 403},
		{"alice deletes", alice, "DELETE", "/api/delete?key=acct/1", "", nil, 403},
		{"alice admin", alice, "POST", "/api/cluster/leave?id=n1", "", nil, 403},
		{"alice adds a user", alice, "POST", "/api/auth/users", `{"name":"eve","password":"evepass1"}`, nil, 403},
		{"alice metrics", alice, "GET", "/metrics", "", nil, 403},
		{"root cert metrics", root, "GET", "/metrics", "", nil, 200},
		{"duplicate user", root, "POST", "/api/auth/users", `{"name":"alice","password":"alicepass"}`, nil, 409},
		{"unknown role", root, "POST", "/api/auth/users/grant", `{"user":"alice","role":"nope"}`, nil, 404},
		{"bad access", root, "POST", "/api/auth/roles/grant", `{"role":"acct-reader","access":"fly"}`, nil, 400},
		{"root reads it back", root, "GET", "/api/get?key=acct/1", "", nil, 200},
	}
	for _, s := range steps {
		code, out := call(t, s.c, s.method, base+s.path, s.body, s.header...)
		if code != s.want {
			t.Fatalf("%s: %s %s: got %d %v, want %d", s.name, s.method, s.path, code, out, s.want)
		}
		if code >= 400 && out["error"] == nil {
			t.Fatalf("%s: %d without an error message: %v", s.name, code, out)
		}
		if code == http.StatusForbidden && !strings.Contains(fmt.Sprint(out["error"]), "needs") {
			t.Fatalf("%s: a 403 that does not name the permission: %v", s.name, out)
		}
		if s.name == "root reads it back" && out["value"] != "x" {
			t.Fatalf("a refused write changed acct/1: %v", out)
		}
	}
	// A token from login works as a bearer.
	code, out := call(t, anon, "POST", base+"/api/auth/login", `{"user":"alice","password":"alicepass"}`)
	if code != http.StatusOK {
		t.Fatalf("login: %d %v", code, out)
	}
	bearer := []string{"Authorization", "Bearer " + fmt.Sprint(out["token"])}
	if code, out := call(t, anon, "GET", base+"/api/get?key=acct/1", "", bearer...); code != http.StatusOK {
		t.Fatalf("get with alice's token: %d %v", code, out)
	}
	if code, out := call(t, anon, "POST", base+"/api/set", `{"key":"acct/2","value":"y"}`, bearer...); code != http.StatusForbidden {
		t.Fatalf("set with alice's token: %d %v", code, out)
	}
	if code, _ := call(t, anon, "POST", base+"/api/auth/login", `{"user":"alice","password":"wrong"}`); code != http.StatusUnauthorized {
		t.Fatalf("login with a wrong password: got %d, want 401", code)
	}
}

func basic(user, password string) string {
	return base64Std(user + ":" + password)
}

// TestSecurityErrors covers the small pieces: the refusal of the auth API
// on an insecure node (the log limiter is internal/loglimit's).
func TestSecurityErrors(t *testing.T) {
	nodes := startCluster(t, 1)
	var out map[string]string
	if code := postJSON(t, "http://"+nodes[0].HTTPAddr()+"/api/auth/enable", &out); code != http.StatusBadRequest || !strings.Contains(out["error"], "TLS") {
		t.Fatalf("auth enable on an insecure node: got %d %v, want 400 naming TLS", code, out)
	}
	if _, err := parsePermission("fly", ""); !errors.Is(err, auth.ErrInvalid) {
		t.Fatalf("parsePermission: got %v", err)
	}
}

func base64Std(s string) string { return base64.StdEncoding.EncodeToString([]byte(s)) }

// copyFile copies src to dst.
func copyFile(t *testing.T, src, dst string) {
	t.Helper()
	b, err := os.ReadFile(src)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(dst, b, 0o644); err != nil {
		t.Fatal(err)
	}
}

// TestSecureHTTPMatrix sends every HTTP endpoint of a secure node, with
// authentication on, as {nobody, a user without the permission, a user
// with it}: 401, 403, success. A refused write changes nothing (read back
// as root).
func TestSecureHTTPMatrix(t *testing.T) {
	certs := t.TempDir()
	testCerts(t, certs, 1, "root")
	nodes := startSecureCluster(t, 1, certs)
	base := "https://" + nodes[0].HTTPAddr()
	anon := httpsClient(t, certs, "")
	root := httpsClient(t, certs, "root")
	waitUntil(t, 30*time.Second, "auth enable", func() bool {
		code, _ := call(t, anon, "POST", base+"/api/auth/enable", `{"root_password":"rootpass1"}`)
		return code == http.StatusOK
	})
	// "none" holds a role on an unrelated prefix and nothing else; each
	// row's "with" user holds exactly the row's permission.
	setup := []string{
		`/api/auth/roles {"name":"unrelated","permissions":[{"access":"readwrite","prefix":"zzz/"}]}`,
		`/api/auth/users {"name":"none","password":"nonepass","roles":["unrelated"]}`,
		`/api/auth/roles {"name":"r","permissions":[{"access":"read","prefix":"k"}]}`,
		`/api/auth/roles {"name":"w","permissions":[{"access":"write","prefix":"k"}]}`,
		`/api/auth/roles {"name":"rw","permissions":[{"access":"readwrite","prefix":"k"}]}`,
		`/api/auth/roles {"name":"admin","permissions":[{"access":"admin"}]}`,
		`/api/auth/roles {"name":"metrics","permissions":[{"access":"metrics"}]}`,
	}
	for _, role := range []string{"r", "w", "rw", "admin", "metrics"} {
		setup = append(setup, fmt.Sprintf(`/api/auth/users {"name":"u-%s","password":"password-%s","roles":["%s"]}`, role, role, role))
	}
	for _, s := range setup {
		path, body, _ := strings.Cut(s, " ")
		if code, out := call(t, root, "POST", base+path, body); code != http.StatusOK {
			t.Fatalf("setup %s: %d %v", s, code, out)
		}
	}
	if code, out := call(t, root, "POST", base+"/api/set", `{"key":"k1","value":"orig"}`); code != http.StatusOK {
		t.Fatalf("seed: %d %v", code, out)
	}
	as := func(user string) []string {
		if user == "" {
			return nil
		}
		pw := "nonepass"
		if user != "none" {
			pw = "password-" + strings.TrimPrefix(user, "u-")
		}
		return []string{"Authorization", "Basic " + basic(user, pw)}
	}
	for _, ep := range []struct {
		method, path, body string
		with               string // the user holding the permission
		write              bool   // refused: k1 must still hold "orig"
	}{
		{"POST", "/api/set", `{"key":"k1","value":"new"}`, "u-w", true},
		{"POST", "/api/set?consistency=linearizable", `{"key":"k1","value":"new"}`, "u-w", true},
		{"GET", "/api/get?key=k1", "", "u-r", false},
		{"GET", "/api/get?key=k1&consistency=linearizable", "", "u-r", false},
		{"GET", "/api/list?prefix=k", "", "u-r", false},
		{"DELETE", "/api/delete?key=k1", "", "u-w", true},
		{"POST", "/api/cas", `{"key":"k1","expected":"orig","value":"new"}`, "u-rw", true},
		{"GET", "/api/cluster/status", "", "u-admin", false},
		{"POST", "/api/cluster/admit?id=n1", "", "u-admin", false},
		{"POST", "/api/cluster/repair?partition=0", "", "u-admin", false},
		{"GET", "/api/auth/status", "", "u-admin", false},
		{"GET", "/api/auth/users", "", "u-admin", false},
		{"GET", "/api/auth/roles", "", "u-admin", false},
		{"POST", "/api/auth/roles", `{"name":"extra"}`, "u-admin", false},
		{"POST", "/api/auth/roles/grant", `{"role":"extra","access":"read","prefix":"x"}`, "u-admin", false},
		{"POST", "/api/auth/roles/revoke", `{"role":"extra","access":"read","prefix":"x"}`, "u-admin", false},
		{"POST", "/api/auth/users", `{"name":"extra","password":"extrapass"}`, "u-admin", false},
		{"POST", "/api/auth/users/grant", `{"user":"extra","role":"extra"}`, "u-admin", false},
		{"POST", "/api/auth/users/revoke", `{"user":"extra","role":"extra"}`, "u-admin", false},
		{"POST", "/api/auth/passwd", `{"name":"extra","password":"extrapass2"}`, "u-admin", false},
		{"DELETE", "/api/auth/users?name=extra", "", "u-admin", false},
		{"DELETE", "/api/auth/roles?name=extra", "", "u-admin", false},
		{"GET", "/metrics", "", "u-metrics", false},
		{"GET", "/api/stats", "", "u-metrics", false},
	} {
		t.Run(ep.method+" "+ep.path, func(t *testing.T) {
			for _, who := range []struct {
				user string
				want int
			}{{"", 401}, {"none", 403}, {ep.with, 200}} {
				code, out := call(t, anon, ep.method, base+ep.path, ep.body, as(who.user)...)
				if code != who.want {
					t.Fatalf("as %q: got %d %v, want %d", who.user, code, out, who.want)
				}
				if code != 200 && (out["error"] == nil || out["error"] == "") {
					t.Fatalf("as %q: %d without an error", who.user, code)
				}
				if ep.write && code != 200 {
					if c, got := call(t, root, "GET", base+"/api/get?key=k1&consistency=linearizable", ""); c != 200 || got["value"] != "orig" {
						t.Fatalf("a refused %s %s changed k1: %d %v", ep.method, ep.path, c, got)
					}
				}
				if ep.write && code == 200 {
					// Put it back for the next row.
					if c, out := call(t, root, "POST", base+"/api/set?consistency=linearizable", `{"key":"k1","value":"orig"}`); c != 200 {
						t.Fatalf("restore k1: %d %v", c, out)
					}
				}
			}
		})
	}
	// Open endpoints stay open.
	for _, p := range []string{"/health", "/ready"} {
		if code, out := call(t, anon, "GET", base+p, ""); code != 200 && code != 503 {
			t.Fatalf("%s: %d %v", p, code, out)
		}
	}
}

// TestHandshakeFailuresLoggedOnce: a peer failing the TLS handshake again
// and again, on the drpc, HTTP and Redis protocol ports, is logged once a
// minute per port at most; on the Redis port a plain-text client
// (redis-cli without --tls) fails it too.
func TestHandshakeFailuresLoggedOnce(t *testing.T) {
	certs := t.TempDir()
	testCerts(t, certs, 1)
	var logs testlog.Buffer
	nodes := startClusterWith(t, 1, func(c *Config) {
		c.CertsDir = filepath.Join(certs, c.ID)
		c.Auth = auth.LocalConfig()
		c.RESPAddr = "127.0.0.1:0"
		c.Logger = slog.New(slog.NewTextHandler(&logs, &slog.HandlerOptions{Level: slog.LevelWarn}))
	})
	defer func() {
		if t.Failed() {
			t.Logf("logs:\n%s", logs.String())
		}
	}()
	// A plain-text Redis client first: logged, and its minute starts.
	plain, err := net.Dial("tcp", nodes[0].RESPAddr())
	if err != nil {
		t.Fatal(err)
	}
	if _, err := plain.Write([]byte("*1\r\n$4\r\nPING\r\n")); err != nil {
		t.Fatal(err)
	}
	if _, err := plain.Read(make([]byte, 64)); err == nil {
		t.Fatal("a plain-text PING on the TLS port was answered")
	}
	_ = plain.Close()
	waitUntil(t, 10*time.Second, "the plain-text client logged", func() bool {
		return strings.Contains(logs.String(), "port=resp")
	})
	if s := logs.String(); !strings.Contains(s, "first record does not look like a TLS handshake") {
		t.Fatalf("the plain-text client's line does not give the cause:\n%s", s)
	}
	rogue := t.TempDir()
	if err := pki.CreateCA(rogue, pki.CAOptions{}); err != nil {
		t.Fatal(err)
	}
	if err := pki.CreateClient(rogue, "mallory", pki.CertOptions{}); err != nil {
		t.Fatal(err)
	}
	cfg, err := pki.ClientTLS(rogue, "mallory")
	if err != nil {
		t.Fatal(err)
	}
	cfg.InsecureSkipVerify = true // mallory does not care who the server is
	for range 5 {
		for _, addr := range []string{nodes[0].RPCAddr(), nodes[0].HTTPAddr(), nodes[0].RESPAddr()} {
			if c, err := tls.Dial("tcp", addr, cfg); err == nil {
				_, _ = c.Write([]byte("x")) // TLS 1.3: the server refuses the certificate after the client's Finished
				_, _ = c.Read(make([]byte, 1))
				_ = c.Close()
			}
		}
	}
	waitUntil(t, 10*time.Second, "the failures on every port logged", func() bool {
		s := logs.String()
		return strings.Contains(s, "port=rpc") && strings.Contains(s, "port=http")
	})
	if n := strings.Count(logs.String(), "tls handshake failed"); n != 3 {
		t.Fatalf("%d log lines for 16 failed handshakes from one host, want 3 (one per port):\n%s", n, logs.String())
	}
}

// TestUserRateLimit: a user rule bounds that user's operations, named by
// its client certificate or its password, and no one else's.
func TestUserRateLimit(t *testing.T) {
	certs := t.TempDir()
	testCerts(t, certs, 1, "alice", "root")
	nodes := startClusterWith(t, 1, func(c *Config) {
		c.CertsDir = filepath.Join(certs, c.ID)
		c.Auth = auth.LocalConfig()
		c.Ring = ring.Config{Partitions: 16, ReplicationFactor: 3}
		c.Coordinator.RateLimits = []coordinator.RateLimit{{Kind: coordinator.RateUser, Name: "alice", PerSec: 0.001, Burst: 2}}
	})
	base := "https://" + nodes[0].HTTPAddr()
	anon := httpsClient(t, certs, "")
	root := httpsClient(t, certs, "root")
	alice := httpsClient(t, certs, "alice")
	waitUntil(t, 30*time.Second, "auth enable", func() bool {
		code, _ := call(t, anon, "POST", base+"/api/auth/enable", `{"root_password":"rootpass1"}`)
		return code == http.StatusOK
	})
	for _, step := range []struct{ path, body string }{
		{"/api/auth/roles", `{"name":"reader","permissions":[{"access":"read","prefix":""}]}`},
		{"/api/auth/users", `{"name":"alice","password":"alicepass","roles":["reader"]}`},
	} {
		if code, out := call(t, root, "POST", base+step.path, step.body); code != http.StatusOK {
			t.Fatalf("%s: %d %v", step.path, code, out)
		}
	}
	for i := range 2 {
		if code, out := call(t, alice, "GET", base+"/api/get?key=k", ""); code != http.StatusNotFound {
			t.Fatalf("alice's get %d: %d %v, want 404 (allowed, absent)", i, code, out)
		}
	}
	code, out := call(t, anon, "GET", base+"/api/get?key=k", "", "Authorization", "Basic "+basic("alice", "alicepass"))
	if code != http.StatusTooManyRequests || !strings.Contains(fmt.Sprint(out["error"]), "user:alice") {
		t.Fatalf("alice's third get, by password: %d %v, want 429 naming user:alice", code, out)
	}
	for i := range 5 {
		if code, out := call(t, root, "GET", base+"/api/get?key=k", ""); code != http.StatusNotFound {
			t.Fatalf("root's get %d: %d %v", i, code, out)
		}
	}
}
