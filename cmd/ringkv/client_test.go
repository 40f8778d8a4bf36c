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

	"github.com/ringkv/ringkv/internal/pki"
)

// passwordFile writes pw to a file of its own and returns its path.
func passwordFile(t *testing.T, pw string) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), "password")
	if err := os.WriteFile(p, []byte(pw), 0o600); err != nil {
		t.Fatal(err)
	}
	return p
}

// TestClientSecureFlagErrors: --certs-dir, --user and --password-file
// (or their environment variables) that cannot work are usage errors,
// found before anything is dialed.
func TestClientSecureFlagErrors(t *testing.T) {
	pw := passwordFile(t, "secret\n")
	empty := passwordFile(t, "")
	certs := t.TempDir()
	for _, tc := range []struct {
		name string
		args []string
		env  map[string]string
		want string
	}{
		{"password without certs", []string{"get", "k", "--user", "bob", "--password-file", pw}, nil, "needs --certs-dir"},
		{"password from env without certs", []string{"get", "k"}, map[string]string{"RINGKV_USER": "bob", "RINGKV_PASSWORD_FILE": pw}, "needs --certs-dir"},
		{"password without user", []string{"set", "k", "v", "--certs-dir", certs, "--password-file", pw}, nil, "needs --user"},
		{"missing password file", []string{"del", "k", "--certs-dir", certs, "--user", "bob", "--password-file", filepath.Join(certs, "nope")}, nil, "password file"},
		{"empty password file", []string{"list", "--certs-dir", certs, "--user", "bob", "--password-file", empty}, nil, "is empty"},
		{"bench certs without target", []string{"bench", "--certs-dir", certs}, nil, "--target"},
		{"bench password without user", []string{"bench", "--target", "127.0.0.1:1", "--certs-dir", certs, "--password-file", pw}, nil, "needs --user"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			for k, v := range tc.env {
				t.Setenv(k, v)
			}
			var out bytes.Buffer
			err := run(t.Context(), tc.args, &out, &out)
			if !errors.Is(err, errUsage) || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("got %v, want a usage error with %q", err, tc.want)
			}
		})
	}
	// A certs dir without ca.crt is refused by the client library: not a
	// usage error, nothing dialed.
	var out bytes.Buffer
	if err := run(t.Context(), []string{"get", "k", "--certs-dir", certs, "--addr", "127.0.0.1:1"}, &out, &out); err == nil || !strings.Contains(err.Error(), "ca.crt") {
		t.Fatalf("certs dir without ca.crt: got %v", err)
	}
	f := secureFlags{certsDir: &certs, user: new(string), passwordFile: new(string)}
	*f.user, *f.passwordFile = "bob", pw
	if opts, err := f.clientOptions(); err != nil || len(opts) != 2 {
		t.Fatalf("certs dir, user and password: got %d options, %v; want TLS and credentials", len(opts), err)
	}
}

// TestSecureDataCommands drives the data commands against a secure local
// cluster (as dev --secure makes it) with authentication on: by client
// certificate, by password (flags and environment), with a wrong
// password and with no credentials; refusals are errors (exit status 1)
// that say what to do.
func TestSecureDataCommands(t *testing.T) {
	data := t.TempDir()
	certs, err := devCerts(data, 1)
	if err != nil {
		t.Fatal(err)
	}
	if err := pki.CreateClient(certs, "alice", pki.CertOptions{}); err != nil {
		t.Fatal(err)
	}
	running, err := startLocalCluster(t.Context(), localCluster{nodes: 1, dataDir: data, certsDir: certs}, slog.New(slog.DiscardHandler))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { closeNodes(running, io.Discard) })
	httpAddr, rpcAddr := running[0].HTTPAddr(), running[0].RPCAddr()
	rootPW, alicePW, bobPW := passwordFile(t, "rootpass1\n"), passwordFile(t, "alicepass\n"), passwordFile(t, "bobpass12\r\n")
	admin := func(args ...string) []string {
		return append(args, "--http-addr", httpAddr, "--certs-dir", certs, "--user", "root")
	}
	byCert := func(user string, args ...string) []string {
		return append(args, "--addr", rpcAddr, "--certs-dir", certs, "--user", user)
	}
	byPassword := func(user, pwFile string, args ...string) []string {
		return append(args, "--addr", rpcAddr, "--certs-dir", certs, "--user", user, "--password-file", pwFile)
	}
	for _, s := range []struct {
		name string
		args []string
		want string // the output; "ERR:..." for an error (not a usage error) containing it
	}{
		{"auth disabled: certificate", byCert("alice", "set", "acct/0", "open"), "OK\n"},
		{"auth disabled: password", byPassword("bob", bobPW, "get", "acct/0"), "open\n"},
		{"enable", admin("auth", "enable", "--new-password-file", rootPW), "OK"},
		{"reader role", admin("role", "add", "reader", "read:acct/"), "OK"},
		{"writer role", admin("role", "add", "writer", "readwrite:acct/"), "OK"},
		{"alice", admin("user", "add", "alice", "--roles", "reader", "--new-password-file", alicePW), "OK"},
		{"bob", admin("user", "add", "bob", "--roles", "writer", "--new-password-file", bobPW), "OK"},
		{"root writes", byCert("root", "set", "acct/1", "x"), "OK\n"},
		{"alice reads by certificate", byCert("alice", "get", "acct/1"), "x\n"},
		{"alice lists", byCert("alice", "list", "acct/1"), "acct/1\tx\n"},
		{"alice writes", byCert("alice", "set", "acct/1", "stolen"), "ERR:an admin can grant it"},
		{"alice deletes", byCert("alice", "del", "acct/1"), "ERR:permission denied"},
		{"alice cas", byCert("alice", "cas", "acct/1", "x", "stolen"), "ERR:permission denied"},
		{"alice reads outside acct/", byCert("alice", "get", "other"), "ERR:permission denied"},
		{"bob writes by password", byPassword("bob", bobPW, "set", "acct/2", "y", "--consistency", "linearizable"), "OK\n"},
		{"bob cas", byPassword("bob", bobPW, "cas", "acct/2", "y", "z"), "OK\n"},
		{"bob reads", byPassword("bob", bobPW, "get", "acct/2", "--consistency", "linearizable"), "z\n"},
		{"wrong password", byPassword("bob", alicePW, "get", "acct/2"), "ERR:not authenticated"},
		{"no credentials", byCert("", "get", "acct/1"), "ERR:not authenticated"},
		{"no TLS", []string{"get", "acct/1", "--addr", rpcAddr, "--timeout", "2s"}, "ERR:"},
		{"the refused writes changed nothing", byCert("root", "get", "acct/1"), "x\n"},
	} {
		var out, errOut bytes.Buffer
		err := run(t.Context(), s.args, &out, &errOut)
		if want, isErr := strings.CutPrefix(s.want, "ERR:"); isErr {
			if err == nil || errors.Is(err, errUsage) || !strings.Contains(err.Error(), want) {
				t.Fatalf("%s: %v: got %v (%q), want an error with %q", s.name, s.args, err, out.String(), want)
			}
			continue
		}
		if err != nil || !strings.Contains(out.String(), s.want) {
			t.Fatalf("%s: %v: got %v %q, want %q", s.name, s.args, err, out.String(), s.want)
		}
	}
	// The same from the environment, which serves the data commands
	// (RINGKV_ADDR, drpc) and the HTTP ones (RINGKV_HTTP_ADDR) alike.
	t.Setenv("RINGKV_ADDR", rpcAddr)
	t.Setenv("RINGKV_HTTP_ADDR", httpAddr)
	t.Setenv("RINGKV_CERTS_DIR", certs)
	t.Setenv("RINGKV_USER", "bob")
	t.Setenv("RINGKV_PASSWORD_FILE", bobPW)
	var out bytes.Buffer
	if err := run(t.Context(), []string{"get", "acct/2", "--consistency", "linearizable"}, &out, &out); err != nil || out.String() != "z\n" {
		t.Fatalf("from the environment: got %v %q, want z", err, out.String())
	}
	out.Reset()
	if err := run(t.Context(), []string{"user", "list", "--user", "root", "--password-file", rootPW}, &out, &out); err != nil || !strings.Contains(out.String(), "bob") {
		t.Fatalf("user list from the environment: got %v %q, want bob listed", err, out.String())
	}
}
