package gossip

import (
	"bytes"
	"log/slog"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
)

func TestParseLogLine(t *testing.T) {
	for _, tc := range []struct {
		line      string
		wantLevel slog.Level
		wantMsg   string
	}{
		{"[DEBUG] memberlist: Stream connection from=127.0.0.1:1\n", slog.LevelDebug, "Stream connection from=127.0.0.1:1"},
		{"[INFO] memberlist: Marking n2 as failed", slog.LevelInfo, "Marking n2 as failed"},
		{"[WARN] memberlist: Was able to connect", slog.LevelWarn, "Was able to connect"},
		{"[ERR] memberlist: Failed to send ping", slog.LevelWarn, "Failed to send ping"},
		{"[ERR] Failed to shutdown transport: x", slog.LevelWarn, "Failed to shutdown transport: x"},
		{"no level at all", slog.LevelInfo, "no level at all"},
		{"[ODD] memberlist: x", slog.LevelInfo, "x"},
		// A node stopping, or a peer that just stopped: Debug.
		{"[ERR] memberlist: Failed to send gossip to 127.0.0.1:7002: write udp 127.0.0.1:7001->127.0.0.1:7002: use of closed network connection",
			slog.LevelDebug, "Failed to send gossip to 127.0.0.1:7002: write udp 127.0.0.1:7001->127.0.0.1:7002: use of closed network connection"},
		{"[ERR] memberlist: Push/Pull with n2 failed: dial tcp 127.0.0.1:7002: connect: connection refused",
			slog.LevelDebug, "Push/Pull with n2 failed: dial tcp 127.0.0.1:7002: connect: connection refused"},
		{"[ERR] memberlist: Failed fallback TCP ping: dial tcp 127.0.0.1:7002: connect: connection refused",
			slog.LevelDebug, "Failed fallback TCP ping: dial tcp 127.0.0.1:7002: connect: connection refused"},
		// The same messages for other reasons stay at Warn.
		{"[ERR] memberlist: Failed to send gossip to 10.0.0.2:7002: sendto: no route to host",
			slog.LevelWarn, "Failed to send gossip to 10.0.0.2:7002: sendto: no route to host"},
		{"[ERR] memberlist: Failed fallback TCP ping: timeout 1s: read tcp 10.0.0.1:5->10.0.0.2:7002: i/o timeout",
			slog.LevelWarn, "Failed fallback TCP ping: timeout 1s: read tcp 10.0.0.1:5->10.0.0.2:7002: i/o timeout"},
		// Two members with one name: the operator must act.
		{"[ERR] memberlist: Conflicting address for n2. Mine: 10.0.0.2:7002 Theirs: 10.0.0.3:7002 Old state: 0",
			slog.LevelError, "Conflicting address for n2. Mine: 10.0.0.2:7002 Theirs: 10.0.0.3:7002 Old state: 0"},
	} {
		level, msg := parseLogLine(tc.line)
		if level != tc.wantLevel || msg != tc.wantMsg {
			t.Errorf("parseLogLine(%q): got (%v, %q), want (%v, %q)", tc.line, level, msg, tc.wantLevel, tc.wantMsg)
		}
	}
}

// TestLogRulesNameMemberlistMessages keeps logRules in step with the
// memberlist version in go.mod: every prefix is the start of a message it
// logs.
func TestLogRulesNameMemberlistMessages(t *testing.T) {
	out, err := exec.Command("go", "list", "-m", "-f", "{{.Dir}}", "github.com/hashicorp/memberlist").Output()
	if err != nil {
		t.Skipf("go list: %v", err)
	}
	dir := strings.TrimSpace(string(out))
	files, err := filepath.Glob(filepath.Join(dir, "*.go"))
	if err != nil || len(files) == 0 {
		t.Skipf("memberlist sources in %q: %v", dir, err)
	}
	var src bytes.Buffer
	for _, f := range files {
		if strings.HasSuffix(f, "_test.go") {
			continue
		}
		b, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		src.Write(b)
	}
	for _, r := range logRules {
		if !bytes.Contains(src.Bytes(), []byte("memberlist: "+r.prefix)) {
			t.Errorf("logRules: memberlist (%s) logs no message starting %q", dir, r.prefix)
		}
	}
}

func TestStdLogger(t *testing.T) {
	var buf bytes.Buffer
	l := newStdLogger(slog.New(slog.NewTextHandler(&buf, &slog.HandlerOptions{Level: slog.LevelInfo})))
	l.Printf("[DEBUG] memberlist: hidden")
	l.Printf("[WARN] memberlist: shown %d", 1)
	out := buf.String()
	if strings.Contains(out, "hidden") {
		t.Errorf("debug line logged at info level: %q", out)
	}
	if !strings.Contains(out, "level=WARN") || !strings.Contains(out, `detail="shown 1"`) {
		t.Errorf("got %q, want a WARN record with detail=\"shown 1\"", out)
	}
}

func TestMeta(t *testing.T) {
	want := meta{Version: metaVersion, Zone: "z", RPCAddr: "a:1", HTTPAddr: "a:2"}
	b, err := encodeMeta(want)
	if err != nil {
		t.Fatal(err)
	}
	if got, err := decodeMeta(b); err != nil || got != want {
		t.Fatalf("round trip: got (%+v, %v), want (%+v, nil)", got, err, want)
	}
	for _, bad := range []string{"", "{", `{"v":2}`} {
		if _, err := decodeMeta([]byte(bad)); err == nil {
			t.Errorf("decodeMeta(%q): got nil error", bad)
		}
	}
}
