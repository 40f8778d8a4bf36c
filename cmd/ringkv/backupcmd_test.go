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

	"github.com/ringkv/ringkv/backup"
	"github.com/ringkv/ringkv/internal/pki"
)

// TestBackupCommands drives backup, backup verify and restore from the
// command line: from a secure one-node cluster with authentication on (as
// root by certificate; a user without the admin permission is refused),
// an incremental on top of the full backup, both restored into an
// insecure cluster; verify finds a flipped byte and names the file.
func TestBackupCommands(t *testing.T) {
	data := t.TempDir()
	certs, err := devCerts(data, 1)
	if err != nil {
		t.Fatal(err)
	}
	if err := pki.CreateClient(certs, "alice", pki.CertOptions{}); err != nil {
		t.Fatal(err)
	}
	src, err := startLocalCluster(t.Context(), localCluster{nodes: 1, dataDir: data, certsDir: certs}, slog.New(slog.DiscardHandler))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { closeNodes(src, io.Discard) })
	dstData := t.TempDir()
	dst, err := startLocalCluster(t.Context(), localCluster{nodes: 1, dataDir: dstData}, slog.New(slog.DiscardHandler))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { closeNodes(dst, io.Discard) })

	rootPW, alicePW := passwordFile(t, "rootpass1\n"), passwordFile(t, "alicepass\n")
	admin := func(args ...string) []string {
		return append(args, "--http-addr", src[0].HTTPAddr(), "--certs-dir", certs, "--user", "root")
	}
	secure := func(user string, args ...string) []string {
		return append(args, "--addr", src[0].RPCAddr(), "--certs-dir", certs, "--user", user)
	}
	plain := func(args ...string) []string { return append(args, "--addr", dst[0].RPCAddr()) }
	dir := t.TempDir()
	full, incr := filepath.Join(dir, "full"), filepath.Join(dir, "incr")
	for _, s := range []struct {
		name string
		args []string
		want string // "ERR:..." for an error containing it; "USAGE" for a usage error
	}{
		{"no --to", secure("root", "backup"), "USAGE"},
		{"restore without --from", plain("restore"), "USAGE"},
		{"verify without a directory", []string{"backup", "verify"}, "USAGE"},
		{"bad --since", secure("root", "backup", "--to", incr, "--since", "yesterday"), "USAGE"},
		{"write a", secure("root", "set", "a", "1"), "OK"},
		{"write b", secure("root", "set", "b", "2"), "OK"},
		{"enable auth", admin("auth", "enable", "--new-password-file", rootPW), "OK"},
		{"reader role", admin("role", "add", "reader", "read:"), "OK"},
		{"alice", admin("user", "add", "alice", "--roles", "reader", "--new-password-file", alicePW), "OK"},
		{"alice may not back up", secure("alice", "backup", "--to", filepath.Join(dir, "alice"), "--quiet"), "ERR:permission denied"},
		{"full backup", secure("root", "backup", "--to", full), "2 records"},
		{"not over a backup", secure("root", "backup", "--to", full), "ERR:already holds a backup"},
		{"verify", []string{"backup", "verify", full}, "OK: 64 files, 2 records"},
		{"overwrite a", secure("root", "set", "a", "10"), "OK"},
		{"delete b", secure("root", "del", "b"), "OK"},
		{"add c", secure("root", "set", "c", "3"), "OK"},
		{"incremental, as root by password", secure("root", "backup", "--to", incr, "--since", full, "--password-file", rootPW), "3 records"},
		{"restore both", plain("restore", "--from", full, "--from", incr), "restored 2 backups (128 files): 5 records"},
		{"a restored", plain("get", "a"), "10\n"},
		{"b deleted", plain("get", "b"), "ERR:not found"},
		{"c restored", plain("get", "c"), "3\n"},
	} {
		var out, errOut bytes.Buffer
		err := run(t.Context(), s.args, &out, &errOut)
		switch want, isErr := strings.CutPrefix(s.want, "ERR:"); {
		case s.want == "USAGE":
			if !errors.Is(err, errUsage) {
				t.Fatalf("%s: %v: got %v, want a usage error", s.name, s.args, err)
			}
		case isErr:
			if err == nil || errors.Is(err, errUsage) || !strings.Contains(err.Error(), want) {
				t.Fatalf("%s: %v: got %v (%q), want an error with %q", s.name, s.args, err, out.String(), want)
			}
		case err != nil || !strings.Contains(out.String(), s.want):
			t.Fatalf("%s: %v: got %v %q (stderr %q), want %q", s.name, s.args, err, out.String(), errOut.String(), s.want)
		}
	}

	m, err := backup.ReadManifest(full)
	if err != nil {
		t.Fatal(err)
	}
	var bad string
	for _, f := range m.Files {
		if f.Records > 0 {
			bad = filepath.Join(full, f.Name)
			break
		}
	}
	b, err := os.ReadFile(bad)
	if err != nil {
		t.Fatal(err)
	}
	b[len(b)-1] ^= 0xff
	if err := os.WriteFile(bad, b, 0o600); err != nil {
		t.Fatal(err)
	}
	var out bytes.Buffer
	err = run(t.Context(), []string{"backup", "verify", full}, &out, &out)
	if err == nil || !strings.Contains(err.Error(), "FAILED") || !strings.Contains(err.Error(), bad) {
		t.Fatalf("verify after a flipped byte: got %v, want FAILED naming %s", err, bad)
	}
}
