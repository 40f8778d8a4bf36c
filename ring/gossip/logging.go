package gossip

import (
	"bytes"
	"context"
	"log"
	"log/slog"
	"strings"
)

// newStdLogger returns a *log.Logger for memberlist.Config.Logger that
// forwards each line to l.
func newStdLogger(l *slog.Logger) *log.Logger {
	return log.New(&logWriter{l: l}, "", 0)
}

// logWriter adapts memberlist's "[LEVEL] memberlist: msg" lines to slog.
// memberlist handles its own [ERR] cases (a failed probe, a refused
// connection), so they are logged at Warn; Error is for the operator.
type logWriter struct {
	l *slog.Logger
}

// Write implements io.Writer; log.Logger calls it once per line.
func (w *logWriter) Write(p []byte) (int, error) {
	for line := range bytes.Lines(p) {
		level, msg := parseLogLine(string(line))
		if msg == "" || !w.l.Enabled(context.Background(), level) {
			continue
		}
		w.l.Log(context.Background(), level, "memberlist", slog.String("detail", msg))
	}
	return len(p), nil
}

// parseLogLine splits "[LEVEL] memberlist: msg" into a slog level and msg.
// Lines without a level are logged at Info.
func parseLogLine(s string) (slog.Level, string) {
	s = strings.TrimSpace(s)
	level := slog.LevelInfo
	if strings.HasPrefix(s, "[") {
		if end := strings.IndexByte(s, ']'); end > 0 {
			switch s[1:end] {
			case "DEBUG", "TRACE":
				level = slog.LevelDebug
			case "INFO":
				level = slog.LevelInfo
			case "WARN", "ERR", "ERROR":
				level = slog.LevelWarn
			}
			s = strings.TrimSpace(s[end+1:])
		}
	}
	s = strings.TrimPrefix(s, "memberlist: ")
	return level, s
}
