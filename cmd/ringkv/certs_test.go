package main

import (
	"bytes"
	"errors"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"

	"github.com/ringkv/ringkv/internal/pki"
)

// certsRun runs `ringkv certs ARGS...` and returns its output.
func certsRun(t *testing.T, args ...string) (string, error) {
	t.Helper()
	var out, errOut bytes.Buffer
	err := run(t.Context(), append([]string{"certs"}, args...), &out, &errOut)
	return out.String(), err
}

func TestCertsCommand(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "certs")
	steps := []struct {
		args []string
		want string // a substring of the output
	}{
		{[]string{"create-ca", "--certs-dir", dir}, "wrote " + filepath.Join(dir, "ca.crt") + ", " + filepath.Join(dir, "ca.key")},
		{[]string{"create-node", "--certs-dir", dir, "--id", "n1", "127.0.0.1", "localhost"}, filepath.Join(dir, "node.key")},
		// Flags after the positional arguments.
		{[]string{"create-client", "alice", "--certs-dir", dir, "--lifetime", "24h"}, filepath.Join(dir, "client.alice.crt")},
		{[]string{"create-gossip-key", "--certs-dir", dir}, filepath.Join(dir, "gossip.key")},
	}
	for _, s := range steps {
		out, err := certsRun(t, s.args...)
		if err != nil || !strings.Contains(out, s.want) {
			t.Fatalf("certs %q: got %q, %v; want output containing %q", s.args, out, err, s.want)
		}
	}
	r, err := pki.OpenReloader(dir, pki.ReloaderConfig{})
	if err != nil {
		t.Fatalf("the created directory does not load: %v", err)
	}
	if id := r.Material().Node.Leaf.Subject.CommonName; id != "n1" {
		t.Fatalf("got node %q, want n1", id)
	}
	if _, err := pki.LoadGossipKey(filepath.Join(dir, "gossip.key")); err != nil {
		t.Fatal(err)
	}

	// Creating again is refused, naming the file; --overwrite replaces it.
	if _, err := certsRun(t, "create-client", "alice", "--certs-dir", dir); !errors.Is(err, pki.ErrExists) || !strings.Contains(err.Error(), "client.alice") {
		t.Fatalf("got %v, want ErrExists naming the file", err)
	}
	if _, err := certsRun(t, "create-client", "alice", "--certs-dir", dir, "--overwrite"); err != nil {
		t.Fatal(err)
	}

	// A client certificate from another CA, copied in, is untrusted.
	other := t.TempDir()
	if _, err := certsRun(t, "create-ca", "--certs-dir", other); err != nil {
		t.Fatal(err)
	}
	if _, err := certsRun(t, "create-client", "mallory", "--certs-dir", dir, "--ca-key", filepath.Join(other, "ca.key")); !errors.Is(err, pki.ErrKeyMismatch) {
		t.Fatalf("--ca-key of another CA: got %v, want ErrKeyMismatch", err)
	}
	if _, err := certsRun(t, "create-client", "mallory", "--certs-dir", other); err != nil {
		t.Fatal(err)
	}
	b, err := os.ReadFile(filepath.Join(other, "client.mallory.crt"))
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, "client.mallory.crt"), b, 0o644); err != nil {
		t.Fatal(err)
	}

	out, err := certsRun(t, "list", "--certs-dir", dir)
	if err != nil {
		t.Fatal(err)
	}
	lines := strings.Split(strings.TrimSpace(out), "\n")
	rfc3339 := `\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ`
	want := []string{
		`^FILE\s+KIND\s+CN\s+SANS\s+EXPIRES\s+FLAGS$`,
		`^ca\.crt\s+ca\s+ringkv CA\s+-\s+` + rfc3339 + `\s+-$`,
		`^client\.alice\.crt\s+client\s+alice\s+-\s+` + rfc3339 + `\s+-$`,
		`^client\.mallory\.crt\s+client\s+mallory\s+-\s+` + rfc3339 + `\s+untrusted$`,
		`^node\.crt\s+node\s+n1\s+localhost,127\.0\.0\.1\s+` + rfc3339 + `\s+-$`,
	}
	if len(lines) != len(want) {
		t.Fatalf("got %d lines:\n%s\nwant %d", len(lines), out, len(want))
	}
	for i, w := range want {
		if !regexp.MustCompile(w).MatchString(lines[i]) {
			t.Errorf("line %d: got %q, want to match %s", i, lines[i], w)
		}
	}
}

func TestCertsCommandClientCAAndEnv(t *testing.T) {
	dir := t.TempDir()
	keyDir := t.TempDir()
	t.Setenv("RINGKV_CERTS_DIR", dir)
	for _, args := range [][]string{
		{"create-ca"},
		{"create-ca", "--client", "--ca-key", filepath.Join(keyDir, "client-ca.key")},
		{"create-client", "bob", "--ca-key", filepath.Join(keyDir, "client-ca.key")},
	} {
		if out, err := certsRun(t, args...); err != nil {
			t.Fatalf("certs %q: %v (%s)", args, err, out)
		}
	}
	if _, err := os.Stat(filepath.Join(dir, "ca-client.key")); !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("client CA key in the certs dir despite --ca-key: %v", err)
	}
	out, err := certsRun(t, "list")
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{`(?m)^ca-client\.crt\s+client-ca\s`, `(?m)^client\.bob\.crt\s+client\s+bob\s`} {
		if !regexp.MustCompile(want).MatchString(out) {
			t.Errorf("got\n%s\nwant a line with %q", out, want)
		}
	}
	if strings.Contains(out, "untrusted") {
		t.Errorf("got\n%s\nwant everything trusted", out)
	}
}

func TestCertsListEdgeCases(t *testing.T) {
	dir := t.TempDir()
	out, err := certsRun(t, "list", "--certs-dir", dir)
	if err != nil || !strings.Contains(out, "no certificates in") {
		t.Fatalf("empty dir: got %q, %v", out, err)
	}
	if err := os.WriteFile(filepath.Join(dir, "junk.crt"), []byte("junk"), 0o644); err != nil {
		t.Fatal(err)
	}
	out, err = certsRun(t, "list", "--certs-dir", dir)
	if err != nil || !regexp.MustCompile(`junk\.crt\s+unknown\s+-\s+-\s+-\s+ERROR: `).MatchString(out) {
		t.Fatalf("broken file: got %q, %v", out, err)
	}
	if _, err := certsRun(t, "list", "--certs-dir", filepath.Join(dir, "missing")); !errors.Is(err, pki.ErrNotFound) {
		t.Fatalf("missing dir: got %v, want ErrNotFound", err)
	}
	if _, err := certsRun(t, "create-node", "--certs-dir", dir, "--id", "n1", "h"); !errors.Is(err, pki.ErrNoCA) {
		t.Fatalf("no CA: got %v, want ErrNoCA", err)
	}
	if _, err := certsRun(t, "create-node", "--certs-dir", dir, "--id", "a/b", "h"); !errors.Is(err, pki.ErrInvalid) {
		t.Fatalf("bad id: got %v, want ErrInvalid", err)
	}
}

func TestCertsUsageErrors(t *testing.T) {
	dir := t.TempDir()
	for _, tc := range []struct {
		name string
		args []string
	}{
		{"no subcommand", nil},
		{"unknown subcommand", []string{"frobnicate"}},
		{"bad flag", []string{"list", "--nope"}},
		{"bad lifetime", []string{"create-ca", "--lifetime", "forever"}},
		{"create-ca with args", []string{"create-ca", "x"}},
		{"create-node without id", []string{"create-node", "127.0.0.1"}},
		{"create-node without hosts", []string{"create-node", "--id", "n1"}},
		{"create-client without user", []string{"create-client"}},
		{"create-client with two users", []string{"create-client", "a", "b"}},
		{"create-gossip-key with args", []string{"create-gossip-key", "x"}},
		{"list with args", []string{"list", "x"}},
		{"--client outside create-ca", []string{"create-client", "a", "--client"}},
		{"--id outside create-node", []string{"list", "--id", "n1"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := certsRun(t, append(tc.args, "--certs-dir", dir)...)
			if !errors.Is(err, errUsage) {
				t.Fatalf("got %v, want a usage error", err)
			}
		})
	}
	if entries, _ := os.ReadDir(dir); len(entries) != 0 {
		t.Fatalf("usage errors wrote files: %v", entries)
	}
}
