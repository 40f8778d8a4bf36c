package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"flag"
	"io"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/ringkv/ringkv/internal/testlog"
	"github.com/ringkv/ringkv/node"
)

func TestUsageErrors(t *testing.T) {
	for _, tc := range []struct {
		name string
		args []string
	}{
		{"no command", nil},
		{"unknown command", []string{"frobnicate"}},
		{"serve without id", []string{"serve", "--data", t.TempDir()}},
		{"serve with args", []string{"serve", "extra"}},
		{"serve bad flag", []string{"serve", "--nope"}},
		{"serve bad log level", []string{"serve", "--log-level", "loud"}},
		{"serve bad log format", []string{"serve", "--id", "s1", "--data", t.TempDir(), "--log-format", "xml"}},
		{"dev bad log format", []string{"dev", "--log-format", "yaml"}},
		{"serve bad hint window", []string{"serve", "--hint-window", "soon"}},
		{"serve bad hints switch", []string{"serve", "--hints=maybe"}},
		{"dev bad nodes", []string{"dev", "--nodes", "0"}},
		{"serve bad rate limit", []string{"serve", "--rate-limit", "prefix:logs/=fast"}},
		{"dev bad rate limit kind", []string{"dev", "--rate-limit", "host:x=5"}},
		{"serve bad memory budget", []string{"serve", "--memory-budget", "lots"}},
		{"serve memory budget below the minimum", []string{"serve", "--id", "s1", "--data", t.TempDir(), "--memory-budget", "1MiB"}},
		{"dev bad memory budget", []string{"dev", "--memory-budget", "-5MiB"}},
		{"dev memory budget below the minimum", []string{"dev", "--memory-budget", "63MiB"}},
		{"get without key", []string{"get"}},
		{"set with one arg", []string{"set", "k"}},
		{"list with two args", []string{"list", "a", "b"}},
		{"client bad flag", []string{"get", "k", "--nope"}},
		{"client bad level", []string{"get", "k", "--consistency", "most"}},
		{"cas with one arg", []string{"cas", "k"}},
		{"cas with two args", []string{"cas", "k", "v"}},
		{"cas absent with three args", []string{"cas", "k", "a", "b", "--absent"}},
		{"set negative ttl", []string{"set", "k", "v", "--ttl", "-1s"}},
		{"get with ttl", []string{"get", "k", "--ttl", "1s"}},
		{"expire bad duration", []string{"expire", "k", "soon"}},
		{"expire zero", []string{"expire", "k", "0s"}},
		{"ttl without key", []string{"ttl"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var out, errOut bytes.Buffer
			err := run(t.Context(), tc.args, &out, &errOut)
			if !errors.Is(err, errUsage) {
				t.Fatalf("got %v, want a usage error", err)
			}
		})
	}
	var out bytes.Buffer
	if err := run(t.Context(), []string{"help"}, &out, &out); err != nil || !strings.Contains(out.String(), "Usage:") {
		t.Fatalf("help: %v %q", err, out.String())
	}
}

func TestServeHintEnvIsValidated(t *testing.T) {
	for _, env := range []string{"RINGKV_HINTS", "RINGKV_HINT_WINDOW", "RINGKV_HINT_REPLAY_RATE", "RINGKV_MEMORY_BUDGET"} {
		t.Run(env, func(t *testing.T) {
			t.Setenv(env, "not-a-value")
			var out bytes.Buffer
			err := run(t.Context(), []string{"serve", "--id", "s1", "--data", t.TempDir()}, &out, &out)
			if !errors.Is(err, errUsage) || !strings.Contains(err.Error(), env) {
				t.Fatalf("got %v, want a usage error naming %s", err, env)
			}
		})
	}
}

// TestDevAndClientCommands runs `ringkv dev` on free ports in-process and
// drives it with the client subcommands, as a user would.
func TestDevAndClientCommands(t *testing.T) {
	d := startDev(t)
	devOut := &d.out
	addrs := regexp.MustCompile(`drpc (127\.0\.0\.1:\d+)`).FindAllStringSubmatch(devOut.String(), -1)
	if len(addrs) != 3 {
		t.Fatalf("dev printed %d drpc addresses: %s", len(addrs), devOut.String())
	}
	cli := func(args ...string) (string, error) {
		var out, errOut bytes.Buffer
		err := run(t.Context(), args, &out, &errOut)
		return out.String(), err
	}
	steps := []struct {
		args []string
		want string
		err  string
	}{
		{[]string{"set", "user:1001", "John Doe", "--addr", addrs[0][1]}, "OK\n", ""},
		{[]string{"get", "user:1001", "--addr", addrs[1][1]}, "John Doe\n", ""},
		{[]string{"list", "user:", "--addr", addrs[2][1], "--consistency", "all"}, "user:1001\tJohn Doe\n", ""},
		{[]string{"list", "--limit", "5", "--addr", addrs[2][1]}, "user:1001\tJohn Doe\n", ""},
		{[]string{"del", "user:1001", "--addr", addrs[2][1]}, "OK\n", ""},
		{[]string{"get", "user:1001", "--addr", addrs[0][1]}, "", "not found"},
		{[]string{"set", "", "v", "--addr", addrs[0][1]}, "", "invalid argument"},
		{[]string{"set", "lock", "a", "--consistency", "linearizable", "--addr", addrs[0][1] + "," + addrs[1][1]}, "OK\n", ""},
		{[]string{"get", "lock", "--consistency", "linearizable", "--addr", addrs[2][1]}, "a\n", ""},
		{[]string{"cas", "lock", "a", "b", "--addr", addrs[1][1]}, "OK\n", ""},
		{[]string{"cas", "lock", "a", "c", "--addr", addrs[2][1]}, "", `current value is "b"`},
		{[]string{"cas", "new", "1", "--absent", "--addr", addrs[0][1]}, "OK\n", ""},
		{[]string{"cas", "new", "2", "--absent", "--addr", addrs[0][1]}, "", `current value is "1"`},
		{[]string{"cas", "gone", "x", "y", "--addr", addrs[0][1]}, "", "key is absent"},
		{[]string{"set", "session", "s", "--ttl", "1h", "--addr", addrs[0][1]}, "OK\n", ""},
		{[]string{"persist", "session", "--addr", addrs[1][1], "--consistency", "all"}, "OK\n", ""},
		{[]string{"ttl", "session", "--addr", addrs[2][1], "--consistency", "all"}, "none\n", ""},
		{[]string{"expire", "session", "2h", "--addr", addrs[1][1], "--consistency", "linearizable"}, "OK\n", ""},
		{[]string{"cas", "slock", "me", "--absent", "--ttl", "1h", "--addr", addrs[0][1]}, "OK\n", ""},
		{[]string{"expire", "nobody", "1m", "--addr", addrs[0][1]}, "", "not found"},
	}
	for _, s := range steps {
		args := s.args
		got, err := cli(args...)
		if s.err != "" {
			if err == nil || !strings.Contains(err.Error(), s.err) {
				t.Fatalf("%v: got %v, want error with %q", args, err, s.err)
			}
			continue
		}
		if err != nil || got != s.want {
			t.Fatalf("%v: got %q %v, want %q", args, got, err, s.want)
		}
	}
	if err := d.stop(); err != nil {
		t.Fatalf("dev: %v", err)
	}
	if !strings.Contains(devOut.String(), "stopping") {
		t.Fatalf("dev did not say it stopped: %s", devOut.String())
	}
	// Nothing listens now: the client reports the connection error.
	if _, err := cli("get", "k", "--addr", addrs[0][1], "--timeout", "2s"); err == nil {
		t.Fatal("get against a stopped cluster succeeded")
	}
}

// devRun is a `ringkv dev` running in this process (startDev).
type devRun struct {
	out, errOut testlog.Buffer
	cancel      context.CancelFunc
	done        chan struct{} // closed by the dev goroutine when run returns, after setting err
	err         error
}

// stop stops dev and returns what run returned; it may be called again.
func (d *devRun) stop() error {
	d.cancel()
	<-d.done
	return d.err
}

// startDev runs `ringkv dev` in-process as a user would, on free ports
// and with its own data directory, and returns once it has printed that
// its nodes are ready (joined). The test's end stops it.
func startDev(t *testing.T) *devRun {
	t.Helper()
	data := t.TempDir()
	ctx, cancel := context.WithCancel(t.Context())
	d := &devRun{cancel: cancel, done: make(chan struct{})}
	go func() {
		defer close(d.done)
		d.err = run(ctx, []string{"dev", "--data", data, "--http-port", "0", "--rpc-port", "0", "--gossip-port", "0", "--resp-port", "0"}, &d.out, &d.errOut)
	}()
	t.Cleanup(func() { _ = d.stop() }) // before data goes: cleanups run last-in first-out
	deadline := time.Now().Add(60 * time.Second)
	tick := time.NewTicker(20 * time.Millisecond)
	defer tick.Stop()
	for !strings.Contains(d.out.String(), "Ctrl-C") {
		if time.Now().After(deadline) {
			t.Fatalf("dev never became ready: %s %s", d.out.String(), d.errOut.String())
		}
		select {
		case <-d.done:
			t.Fatalf("dev exited early: %v\n%s", d.err, d.errOut.String())
		case <-tick.C:
		}
	}
	return d
}

// TestServeStartsAndStops starts a one-node cluster with JSON logs
// (RINGKV_LOG_FORMAT) and stops it: every line is a JSON record, the node
// says it started and that its raft groups have leaders, and a clean stop
// logs nothing at Warn or above.
func TestServeStartsAndStops(t *testing.T) {
	t.Setenv("RINGKV_LOG_FORMAT", "json")
	ctx, cancel := context.WithCancel(t.Context())
	var errOut testlog.Buffer
	done := make(chan error, 1)
	go func() {
		done <- run(ctx, []string{"serve", "--id", "s1", "--data", t.TempDir(), "--http", "127.0.0.1:0",
			"--rpc", "127.0.0.1:0", "--gossip", "127.0.0.1:0", "--resp", "127.0.0.1:0", "--fast-gossip"}, &errOut, &errOut)
	}()
	deadline := time.Now().Add(30 * time.Second)
	tick := time.NewTicker(20 * time.Millisecond)
	defer tick.Stop()
	for !strings.Contains(errOut.String(), `"msg":"node started"`) || !strings.Contains(errOut.String(), `"msg":"raft groups ready"`) {
		if time.Now().After(deadline) {
			t.Fatalf("serve did not start, or its raft groups never had leaders: %s", errOut.String())
		}
		<-tick.C
	}
	started := len(errOut.String())
	cancel()
	if err := <-done; err != nil {
		t.Fatalf("serve: %v\n%s", err, errOut.String())
	}
	for i, line := range strings.Split(strings.TrimSpace(errOut.String()), "\n") {
		var rec struct{ Level, Msg string }
		if err := json.Unmarshal([]byte(line), &rec); err != nil || rec.Level == "" || rec.Msg == "" {
			t.Fatalf("line %d is not a JSON record with level and msg (%v): %s", i+1, err, line)
		}
	}
	if stop := errOut.String()[started:]; strings.Contains(stop, `"level":"WARN"`) || strings.Contains(stop, `"level":"ERROR"`) {
		t.Errorf("a clean stop logged warnings or errors:\n%s", stop)
	}
}

func TestNewLogger(t *testing.T) {
	for _, tc := range []struct{ level, format, want string }{
		{"info", "text", `level=INFO msg="node started" node_id=n1`},
		{"info", "json", `{"level":"INFO","msg":"node started","node_id":"n1"}`},
		{"warn", "json", ""},
	} {
		var buf bytes.Buffer
		log, err := newLogger(&buf, tc.level, tc.format)
		if err != nil {
			t.Fatalf("newLogger(%q, %q): %v", tc.level, tc.format, err)
		}
		log.Info("node started", "node_id", "n1")
		got := regexp.MustCompile(`time=\S+ |"time":"[^"]+",`).ReplaceAllString(strings.TrimSpace(buf.String()), "")
		if got != tc.want {
			t.Errorf("newLogger(%q, %q): got %s, want %s", tc.level, tc.format, got, tc.want)
		}
	}
	for _, bad := range [][2]string{{"loud", "text"}, {"info", "xml"}} {
		if _, err := newLogger(io.Discard, bad[0], bad[1]); !errors.Is(err, errUsage) {
			t.Errorf("newLogger(%q, %q): got %v, want a usage error", bad[0], bad[1], err)
		}
	}
}

func TestRateLimitFlags(t *testing.T) {
	fs := flag.NewFlagSet("serve", flag.ContinueOnError)
	lim := addLimitFlags(fs, node.DefaultConfig())
	if err := fs.Parse([]string{"--rate-limit", "prefix:logs/=100,200", "--rate-limit", "user:*=5"}); err != nil {
		t.Fatal(err)
	}
	cfg := node.DefaultConfig()
	lim.apply(&cfg)
	if got := lim.rates.String(); got != "prefix:logs/=100,200 user:*=5,5" {
		t.Fatalf("parsed %q", got)
	}
	if len(cfg.Coordinator.RateLimits) != 2 || cfg.Coordinator.RateLimits[1].Name != "*" {
		t.Fatalf("applied %+v", cfg.Coordinator.RateLimits)
	}
}
