package gossip

import (
	"bytes"
	"log/slog"
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
	} {
		level, msg := parseLogLine(tc.line)
		if level != tc.wantLevel || msg != tc.wantMsg {
			t.Errorf("parseLogLine(%q): got (%v, %q), want (%v, %q)", tc.line, level, msg, tc.wantLevel, tc.wantMsg)
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
