package main

import (
	"bytes"
	"errors"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/ringkv/ringkv/internal/pki"
	"github.com/ringkv/ringkv/node"
)

func TestCheckSecure(t *testing.T) {
	for _, tc := range []struct {
		http, rpc, gossip string
		certs             string
		insecure          bool
		ok                bool
	}{
		{"127.0.0.1:8081", "127.0.0.1:9001", "localhost:7001", "", false, true},
		{"[::1]:8081", "127.0.0.1:9001", "127.0.0.1:7001", "", false, true},
		{"0.0.0.0:8081", "127.0.0.1:9001", "127.0.0.1:7001", "", false, false},
		{"127.0.0.1:8081", ":9001", "127.0.0.1:7001", "", false, false},
		{"127.0.0.1:8081", "127.0.0.1:9001", "10.0.0.5:7001", "", false, false},
		{"0.0.0.0:8081", "0.0.0.0:9001", "0.0.0.0:7001", "/certs", false, false}, // no gossip key
		{"127.0.0.1:8081", "127.0.0.1:9001", "127.0.0.1:7001", "/certs", false, true},
		{"0.0.0.0:8081", "0.0.0.0:9001", "0.0.0.0:7001", "", true, true},
	} {
		cfg := node.Config{HTTPAddr: tc.http, RPCAddr: tc.rpc, GossipAddr: tc.gossip, CertsDir: tc.certs}
		if tc.certs != "" && tc.http != "0.0.0.0:8081" {
			cfg.GossipKeyringFile = "/certs/gossip.key"
		}
		err := checkSecure(cfg, tc.insecure)
		if (err == nil) != tc.ok {
			t.Errorf("%+v: got %v, want ok=%v", tc, err, tc.ok)
		}
		if err != nil && (!errors.Is(err, errUsage) || !strings.Contains(err.Error(), "--insecure")) {
			t.Errorf("%+v: got %v, want a usage error naming --insecure", tc, err)
		}
	}
	secured := node.Config{HTTPAddr: "0.0.0.0:1", RPCAddr: "0.0.0.0:2", GossipAddr: "0.0.0.0:3", CertsDir: "/c", GossipKeyringFile: "/c/gossip.key"}
	if err := checkSecure(secured, false); err != nil {
		t.Fatalf("certificates and a gossip key: %v", err)
	}
	// serve refuses before it opens anything.
	var stderr bytes.Buffer
	err := run(t.Context(), []string{"serve", "--id", "n1", "--data", t.TempDir(), "--http", "0.0.0.0:0", "--advertise", "10.0.0.5"}, io.Discard, &stderr)
	if !errors.Is(err, errUsage) || !strings.Contains(err.Error(), "--insecure") {
		t.Fatalf("serve on 0.0.0.0 without certificates: got %v, want the refusal", err)
	}
	// On 0.0.0.0 without --advertise it would tell its peers an address
	// nobody can dial: refused first, naming the flag.
	err = run(t.Context(), []string{"serve", "--id", "n1", "--data", t.TempDir(), "--http", "0.0.0.0:0", "--insecure"}, io.Discard, &stderr)
	if !errors.Is(err, errUsage) || !strings.Contains(err.Error(), "--advertise") {
		t.Fatalf("serve on 0.0.0.0 without --advertise: got %v, want the refusal naming --advertise", err)
	}
}

// TestSecureCommands drives a secure local cluster (as dev --secure
// makes it) through the auth, user, role and cluster commands.
func TestSecureCommands(t *testing.T) {
	data := t.TempDir()
	certs, err := devCerts(data, 1)
	if err != nil {
		t.Fatal(err)
	}
	again, err := devCerts(data, 1) // a second run reuses them
	if err != nil || again != certs {
		t.Fatalf("devCerts again: %v %q", err, again)
	}
	if err := pki.CreateClient(certs, "alice", pki.CertOptions{}); err != nil {
		t.Fatal(err)
	}
	running, err := startLocalCluster(t.Context(), localCluster{nodes: 1, dataDir: data, certsDir: certs}, slog.New(slog.DiscardHandler))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { closeNodes(running, io.Discard) })
	addr := running[0].HTTPAddr()
	pw := func(name, pw string) string {
		p := filepath.Join(t.TempDir(), name)
		if err := os.WriteFile(p, []byte(pw+"\n"), 0o600); err != nil {
			t.Fatal(err)
		}
		return p
	}
	rootPW, alicePW := pw("root", "rootpass1"), pw("alice", "alicepass")
	as := func(user string, extra ...string) []string {
		return append([]string{"--http-addr", addr, "--certs-dir", certs, "--user", user}, extra...)
	}
	// The node's raft groups may still be electing their first leaders
	// (the auth record is read at linearizable): wait for an answer.
	deadline := time.Now().Add(30 * time.Second)
	tick := time.NewTicker(50 * time.Millisecond)
	defer tick.Stop()
	for {
		var out, errOut bytes.Buffer
		err := run(t.Context(), append([]string{"auth", "status"}, as("root")...), &out, &errOut)
		if err == nil || !strings.Contains(err.Error(), "HTTP 503") || time.Now().After(deadline) {
			break
		}
		<-tick.C
	}
	for _, s := range []struct {
		args []string
		want string // in the output; "ERR:..." for an error containing it
	}{
		{append([]string{"auth", "status"}, as("root")...), "authentication disabled"},
		{append([]string{"auth", "enable"}, as("root", "--new-password-file", rootPW)...), "OK"},
		{append([]string{"auth", "enable"}, as("root", "--new-password-file", rootPW)...), "ERR:HTTP 409"},
		{append([]string{"role", "add", "reader", "read:acct/"}, as("root")...), "OK"},
		{append([]string{"role", "grant", "reader", "metrics"}, as("root")...), "OK"},
		{append([]string{"user", "add", "alice", "--roles", "reader"}, as("root", "--new-password-file", alicePW)...), "OK"},
		{append([]string{"user", "list"}, as("root")...), "alice  reader"},
		{append([]string{"role", "list"}, as("root")...), `reader  read:"acct/" metrics`},
		{append([]string{"auth", "status"}, as("root")...), "authentication enabled: 2 users"},
		{nil, "resp"}, // the Redis protocol's TLS and AUTH: respSecure
		{append([]string{"cluster", "status"}, as("root")...), "partitions converged"},
		// alice by certificate and by password: no admin.
		{append([]string{"cluster", "status"}, as("alice")...), "ERR:HTTP 403"},
		{append([]string{"user", "list"}, as("alice", "--password-file", alicePW)...), "ERR:HTTP 403"},
		{append([]string{"user", "list"}, as("alice", "--password-file", rootPW)...), "ERR:HTTP 401"},
		{[]string{"user", "list", "--http-addr", addr, "--password-file", rootPW}, "ERR:needs --certs-dir"},
		{append([]string{"user", "grant", "alice"}, as("root")...), "ERR:wrong number of arguments"},
		{append([]string{"role", "grant", "reader", "fly"}, as("root")...), "ERR:HTTP 400"},
		{append([]string{"user", "del", "alice"}, as("root")...), "OK"},
		{append([]string{"role", "del", "reader"}, as("root")...), "OK"},
		{append([]string{"auth", "disable"}, as("root", "--password-file", rootPW)...), "OK"},
	} {
		if s.args == nil {
			respSecure(t, running[0].RESPAddr(), certs)
			continue
		}
		var out, errOut bytes.Buffer
		err := run(t.Context(), s.args, &out, &errOut)
		if want, isErr := strings.CutPrefix(s.want, "ERR:"); isErr {
			if err == nil || !strings.Contains(err.Error(), want) {
				t.Fatalf("%v: got %v (%q), want an error with %q", s.args, err, out.String(), want)
			}
			continue
		}
		if err != nil || !strings.Contains(out.String(), s.want) {
			t.Fatalf("%v: got %v %q, want %q", s.args, err, out.String(), s.want)
		}
	}
}

// TestBenchSecure runs the bench's smoke test on a secure local cluster:
// TLS, authentication on, the bench acting as root by certificate.
func TestBenchSecure(t *testing.T) {
	var out, errOut bytes.Buffer
	if err := run(t.Context(), []string{"bench", "--secure", "--target", "127.0.0.1:1"}, &out, &errOut); !errors.Is(err, errUsage) {
		t.Fatalf("--secure with --target: got %v, want a usage error", err)
	}
	if err := run(t.Context(), []string{"bench", "--secure", "--short", "--workloads", "W,C", "--levels", "quorum"}, &out, &errOut); err != nil {
		t.Fatalf("bench --secure --short: %v\n%s", err, errOut.String())
	}
	if !strings.Contains(errOut.String(), "secure: true") || !strings.Contains(out.String(), "W  quorum") {
		t.Fatalf("output:\n%s\n%s", out.String(), errOut.String())
	}
}

// respSecure checks the Redis protocol port of a secure node with auth
// enabled: TLS, -NOAUTH without credentials, AUTH with the cluster's
// users (alice reads acct/ only), a client certificate's user.
func respSecure(t *testing.T, addr, certs string) {
	t.Helper()
	ctx := t.Context()
	dial := func(user string) *redis.Client {
		cfg, err := pki.ClientTLS(certs, user)
		if err != nil {
			t.Fatal(err)
		}
		cfg.ServerName = "127.0.0.1"
		r := redis.NewClient(&redis.Options{Addr: addr, TLSConfig: cfg, DisableIdentity: true, Protocol: 2})
		t.Cleanup(func() { _ = r.Close() })
		return r
	}
	anon := dial("")
	if err := anon.Get(ctx, "acct/1").Err(); err == nil || err.Error() != "NOAUTH Authentication required." {
		t.Fatalf("anonymous get: %v", err)
	}
	if err := anon.Do(ctx, "AUTH", "alice", "wrong").Err(); err == nil || !strings.HasPrefix(err.Error(), "WRONGPASS") {
		t.Fatalf("bad password: %v", err)
	}
	if err := anon.Do(ctx, "AUTH", "alice", "alicepass").Err(); err != nil {
		t.Fatal(err)
	}
	if err := anon.Get(ctx, "acct/1").Err(); !errors.Is(err, redis.Nil) {
		t.Fatalf("alice get: %v", err)
	}
	if err := anon.Set(ctx, "acct/1", "x", 0).Err(); err == nil || !strings.HasPrefix(err.Error(), "NOPERM") {
		t.Fatalf("alice set: %v", err)
	}
	root := dial("root") // by client certificate
	if err := root.Set(ctx, "acct/1", "x", 0).Err(); err != nil {
		t.Fatalf("root set: %v", err)
	}
	if v, err := anon.Get(ctx, "acct/1").Result(); err != nil || v != "x" {
		t.Fatalf("alice get after root set: %q %v", v, err)
	}
}
