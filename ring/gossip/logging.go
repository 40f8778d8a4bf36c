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

// logWriter adapts memberlist's "[LEVEL] memberlist: msg" lines to slog,
// at the level memberlistLevel gives.
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

// parseLogLine splits "[LEVEL] memberlist: msg" into msg and its slog
// level (memberlistLevel). Lines without a level are logged at Info.
func parseLogLine(s string) (slog.Level, string) {
	s = strings.TrimSpace(s)
	tag := ""
	if strings.HasPrefix(s, "[") {
		if end := strings.IndexByte(s, ']'); end > 0 {
			tag = s[1:end]
			s = strings.TrimSpace(s[end+1:])
		}
	}
	s = strings.TrimPrefix(s, "memberlist: ")
	return memberlistLevel(tag, s), s
}

// logRule sets the slog level of memberlist messages that start with
// prefix and, if errs is not empty, contain one of errs.
type logRule struct {
	prefix string
	errs   []string
	level  slog.Level
}

// stoppingErrs are the errors of sending to or reading from a peer that
// has stopped, or of this node's own sockets closing at Shutdown.
var stoppingErrs = []string{"use of closed network connection", "connection refused", "EOF", "connection reset by peer", "broken pipe"}

// logRules overrides memberlist's levels (memberlistLevel); the first
// match wins. A node stopping, or a peer that just stopped, makes
// memberlist log [ERR] lines for every packet it could not send: Debug
// (a member that stays away is reported by its failure detector). Two
// members with one name need the operator.
var logRules = []logRule{
	{prefix: "Failed to send gossip to ", errs: stoppingErrs, level: slog.LevelDebug},
	{prefix: "Failed to send UDP ping", errs: stoppingErrs, level: slog.LevelDebug},
	{prefix: "Failed to send UDP compound ping and suspect message to ", errs: stoppingErrs, level: slog.LevelDebug},
	{prefix: "Failed to send indirect UDP ping", errs: stoppingErrs, level: slog.LevelDebug},
	{prefix: "Failed to send indirect ping", errs: stoppingErrs, level: slog.LevelDebug},
	{prefix: "Failed to send ack", errs: stoppingErrs, level: slog.LevelDebug},
	{prefix: "Failed to send nack", errs: stoppingErrs, level: slog.LevelDebug},
	{prefix: "Failed to forward ack", errs: stoppingErrs, level: slog.LevelDebug},
	{prefix: "Failed fallback TCP ping", errs: stoppingErrs, level: slog.LevelDebug},
	{prefix: "Push/Pull with ", errs: stoppingErrs, level: slog.LevelDebug},
	{prefix: "failed to receive: ", errs: stoppingErrs, level: slog.LevelDebug},
	{prefix: "Failed to receive user message", errs: stoppingErrs, level: slog.LevelDebug},
	{prefix: "Error reading UDP packet", errs: stoppingErrs, level: slog.LevelDebug},
	{prefix: "Error accepting TCP connection", errs: stoppingErrs, level: slog.LevelDebug},
	{prefix: "Conflicting address for ", level: slog.LevelError},
	// A peer refused by the Alive delegate (wire.go), which logs it itself.
	{prefix: "ignoring alive message for ", level: slog.LevelDebug},
}

// memberlistLevel returns the level of a memberlist message logged with
// tag ("DEBUG", "INFO", "WARN", "ERR", ...): the first of logRules that
// matches, else by tag. memberlist handles its own [ERR] cases (a failed
// probe, a refused connection), so they are logged at Warn; Error is for
// the operator.
func memberlistLevel(tag, msg string) slog.Level {
	for _, r := range logRules {
		if r.match(msg) {
			return r.level
		}
	}
	switch tag {
	case "DEBUG", "TRACE":
		return slog.LevelDebug
	case "WARN", "ERR", "ERROR":
		return slog.LevelWarn
	}
	return slog.LevelInfo
}

func (r logRule) match(msg string) bool {
	if !strings.HasPrefix(msg, r.prefix) {
		return false
	}
	if len(r.errs) == 0 {
		return true
	}
	for _, e := range r.errs {
		if strings.Contains(msg, e) {
			return true
		}
	}
	return false
}
