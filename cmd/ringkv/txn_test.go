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
)

// TestTxnCommand runs transactions from a file and from stdin against a
// local one-node cluster, and refuses bad input as usage errors.
func TestTxnCommand(t *testing.T) {
	running, err := startLocalCluster(t.Context(), localCluster{nodes: 1, dataDir: t.TempDir(), respPort: -1}, slog.New(slog.DiscardHandler))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { closeNodes(running, io.Discard) })
	addr := running[0].RPCAddr()
	file := filepath.Join(t.TempDir(), "txn.json")
	if err := os.WriteFile(file, []byte(`{"compare":[{"key":"lock","absent":true}],
		"success":[{"set":"lock","value":"me","ttl":"1h"}],"failure":[{"get":"lock"}]}`), 0o600); err != nil {
		t.Fatal(err)
	}
	runTxn := func(stdin string, args ...string) (string, error) {
		var out, errOut bytes.Buffer
		err := txnCommand(t.Context(), append(args, "--addr", addr), strings.NewReader(stdin), &out, &errOut)
		return out.String(), err
	}
	got, err := runTxn("", file)
	if err != nil || got != `{"succeeded":true,"results":[{"op":"set","key":"lock"}]}`+"\n" {
		t.Fatalf("first: got %q %v", got, err)
	}
	got, err = runTxn("", file)
	if err != nil || !strings.HasPrefix(got, `{"succeeded":false,"results":[{"op":"get","key":"lock","found":true,"value":"me","version":"`) ||
		!strings.Contains(got, `"ttl_ms":`) {
		t.Fatalf("second: got %q %v", got, err)
	}
	got, err = runTxn(`{"compare":[{"key":"lock","value":"me"}],"success":[{"delete":"lock"}]}`, "-")
	if err != nil || got != `{"succeeded":true,"results":[{"op":"delete","key":"lock"}]}`+"\n" {
		t.Fatalf("stdin: got %q %v", got, err)
	}
	// Through run, as the binary dispatches it.
	var out bytes.Buffer
	if err := run(t.Context(), []string{"txn", file, "--addr", addr}, &out, &out); err != nil || !strings.Contains(out.String(), `"succeeded":true`) {
		t.Fatalf("run txn: got %q %v", out.String(), err)
	}

	for _, tc := range []struct {
		name, stdin string
		args        []string
	}{
		{"malformed", `{"compare":`, nil},
		{"unknown field", `{"ops":[]}`, nil},
		{"quorum", `{"success":[{"get":"a"}],"consistency":"quorum"}`, nil},
		{"two files", `{}`, []string{"a", "b"}},
		{"missing file", ``, []string{filepath.Join(t.TempDir(), "nope")}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := runTxn(tc.stdin, tc.args...)
			if tc.name == "missing file" {
				if err == nil || errors.Is(err, errUsage) {
					t.Fatalf("got %v, want an error that is not a usage error", err)
				}
				return
			}
			if !errors.Is(err, errUsage) {
				t.Fatalf("got %v, want a usage error", err)
			}
		})
	}
	// Refused by the cluster (not a usage error): empty.
	if _, err := runTxn(`{}`); err == nil || errors.Is(err, errUsage) || !strings.Contains(err.Error(), "at least one") {
		t.Fatalf("empty: got %v", err)
	}
	// Keys of several partitions (with 64 partitions, a to f seldom share
	// one): a transaction across partitions.
	if _, err := runTxn(`{"success":[{"get":"a"},{"get":"b"},{"get":"c"},{"get":"d"},{"get":"e"},{"get":"f"}]}`); err != nil {
		t.Fatalf("across partitions: %v", err)
	}
}
