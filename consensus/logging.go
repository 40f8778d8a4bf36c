package consensus

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"log"
	"log/slog"
	"strings"
	"time"

	"github.com/hashicorp/go-hclog"
)

// raftRule sets the slog level of one of hashicorp/raft's messages.
type raftRule struct {
	msg string // raft's message, exactly (raft's messages are constant)
	// errs, when not empty, restricts the rule to messages whose "error"
	// argument contains one of these.
	errs  []string
	level slog.Level
}

func (r raftRule) match(msg, err string) bool {
	if msg != r.msg {
		return false
	}
	if len(r.errs) == 0 {
		return true
	}
	for _, s := range r.errs {
		if strings.Contains(err, s) {
			return true
		}
	}
	return false
}

// transientErrs are the errors of a call to a peer that is stopping,
// stopped or has not created the group yet, or of our own transport
// closing: raft retries, and gossip reports a member that stays away.
var transientErrs = []string{
	"connection refused", "context canceled", "use of closed network connection",
	"EOF", "connection reset by peer", "broken pipe",
	ErrTransportClosed.Error(), ErrUnknownGroup.Error(), "transport shutdown",
	"append pipeline closed", "raft is already shutdown", "manager closed",
}

// raftRules overrides the default level of raft's messages (raftLevel);
// the first match wins. Routine: elections in a new or recovering group,
// a follower catching up, a peer that is stopping or not there yet (raft
// logs most of these at Warn or Error, once per group, 64 groups a node).
// Operator must act: the log or snapshot store failing.
var raftRules = []raftRule{
	// Elections.
	{msg: "heartbeat timeout reached, starting election", level: slog.LevelDebug},
	{msg: "heartbeat timeout reached, not part of a stable configuration or a non-voter, not triggering a leader election", level: slog.LevelDebug},
	{msg: "Election timeout reached, restarting election", level: slog.LevelDebug},
	{msg: "not part of stable configuration, aborting election", level: slog.LevelDebug},
	{msg: "no known peers, aborting election", level: slog.LevelDebug},
	{msg: "duplicate requestVote from", level: slog.LevelDebug},
	{msg: "rejecting vote request since our last term is greater", level: slog.LevelDebug},
	{msg: "rejecting vote request since our last index is greater", level: slog.LevelDebug},
	{msg: "rejecting vote request since we have a leader", level: slog.LevelDebug},
	{msg: "rejecting vote request since node is not a voter", level: slog.LevelDebug},
	{msg: "rejecting vote request since node is not in configuration", level: slog.LevelDebug},
	{msg: "rejecting pre-vote request since our last term is greater", level: slog.LevelDebug},
	{msg: "rejecting pre-vote request since our last index is greater", level: slog.LevelDebug},
	{msg: "rejecting pre-vote request since we have a leader", level: slog.LevelDebug},
	{msg: "rejecting pre-vote request since node is not a voter", level: slog.LevelDebug},
	{msg: "rejecting pre-vote request since node is not in configuration", level: slog.LevelDebug},
	{msg: "new leader elected, stepping down", level: slog.LevelDebug},
	{msg: "peer has newer term, stopping replication", level: slog.LevelDebug},
	// A follower catching up (a new one, or one that was away).
	{msg: "failed to get previous log", level: slog.LevelDebug},
	{msg: "previous log term mis-match", level: slog.LevelDebug},
	{msg: "appendEntries rejected, sending older logs", level: slog.LevelDebug},
	{msg: "clearing log suffix", level: slog.LevelDebug},
	{msg: "skipping application of old log", level: slog.LevelDebug},
	// A peer away for a moment (raft logs it once at Warn, then at
	// Debug), or a leader that lost its quorum: the leaderless-group
	// warning of the Manager covers a group that stays without a leader.
	{msg: "failed to contact", level: slog.LevelDebug},
	{msg: "failed to contact quorum of nodes, stepping down", level: slog.LevelInfo},
	// Calls to a peer that is stopping or not there yet, or made while
	// this node's transport closes. Other errors stay at Warn.
	{msg: "failed to heartbeat to", errs: transientErrs, level: slog.LevelDebug},
	{msg: "failed to appendEntries to", errs: transientErrs, level: slog.LevelDebug},
	{msg: "failed to pipeline appendEntries", errs: transientErrs, level: slog.LevelDebug},
	{msg: "failed to start pipeline replication to", errs: transientErrs, level: slog.LevelDebug},
	{msg: "failed to make requestVote RPC", errs: transientErrs, level: slog.LevelDebug},
	{msg: "failed to install snapshot", errs: transientErrs, level: slog.LevelDebug},
	{msg: "failed to send snapshot to", errs: transientErrs, level: slog.LevelDebug},
	// Rare and heavy: a snapshot sent to or restored on this node.
	{msg: "installing snapshot on", level: slog.LevelInfo},
	{msg: "Installed remote snapshot", level: slog.LevelInfo},
	{msg: "starting restore from snapshot", level: slog.LevelInfo},
	{msg: "restored from snapshot", level: slog.LevelInfo},
	// The log or snapshot store failing: the operator must act. A log
	// compacted under the leader's feet is not a failure (it sends a
	// snapshot instead).
	{msg: "failed to get log", errs: []string{"log not found"}, level: slog.LevelWarn},
	{msg: "failed to get log", level: slog.LevelError},
	{msg: "failed to append to logs", level: slog.LevelError},
	{msg: "failed to commit logs", level: slog.LevelError},
	{msg: "failed to persist vote", level: slog.LevelError},
	{msg: "failed to get last vote term", level: slog.LevelError},
	{msg: "failed to get last vote candidate", level: slog.LevelError},
	{msg: "failed to clear log suffix", level: slog.LevelError},
	{msg: "failed to reset logs", level: slog.LevelError},
	{msg: "failed to compact logs", level: slog.LevelError},
	{msg: "failed to remove old logs", level: slog.LevelError},
	{msg: "failed to get last log index", level: slog.LevelError},
	{msg: "failed to get commit index from store", level: slog.LevelError},
	{msg: "failed to get last log index from store", level: slog.LevelError},
	{msg: "failed to stage commit index in commit tracking log store", level: slog.LevelError},
	{msg: "failed to take snapshot", level: slog.LevelError},
	{msg: "failed to restore snapshot", level: slog.LevelError},
	{msg: "failed to finalize snapshot", level: slog.LevelError},
	{msg: "CRC checksum failed", level: slog.LevelError},
}

// raftLevel returns the slog level of a raft message: the first rule of
// raftRules that matches msg and err (its "error" argument, or ""), else by
// raft's level. Raft's Info is per group state (entering follower state,
// pipelining replication, ...): Debug; the Manager logs a summary. Raft's
// Error is mostly a call that failed and will be retried: Warn.
func raftLevel(level hclog.Level, msg, err string) slog.Level {
	for _, r := range raftRules {
		if r.match(msg, err) {
			return r.level
		}
	}
	if level >= hclog.Warn {
		return slog.LevelWarn
	}
	return slog.LevelDebug
}

// raftLogger implements hclog.Logger for hashicorp/raft over slog: each
// call is one record "raft" with raft's message as detail, at the level
// raftLevel gives, and raft's arguments as attributes (keys in snake_case,
// "error" as "err").
type raftLogger struct {
	log     *slog.Logger // with implied's attributes
	name    string
	implied []any
}

// newHCLogger returns raft's logger over log.
func newHCLogger(log *slog.Logger) hclog.Logger {
	return &raftLogger{log: log, name: "raft"}
}

var _ hclog.Logger = (*raftLogger)(nil)

func (l *raftLogger) Log(level hclog.Level, msg string, args ...any) {
	err := ""
	for i := 0; i+1 < len(args); i += 2 {
		if k, _ := args[i].(string); k == "error" {
			err = fmt.Sprint(args[i+1])
		}
	}
	lvl := raftLevel(level, msg, err)
	ctx := context.Background()
	if !l.log.Enabled(ctx, lvl) {
		return
	}
	l.log.LogAttrs(ctx, lvl, "raft", append([]slog.Attr{slog.String("detail", msg)}, raftAttrs(args)...)...)
}

// raftAttrs turns raft's key/value arguments into attributes. Values that
// are not strings, numbers, booleans, durations or times are formatted
// with fmt (raft passes servers, its *Raft and hclog.Format).
func raftAttrs(args []any) []slog.Attr {
	var out []slog.Attr
	if len(args)%2 == 1 {
		args = append(args, "(missing)")
	}
	for i := 0; i < len(args); i += 2 {
		key := raftKey(fmt.Sprint(args[i]))
		switch v := args[i+1].(type) {
		case string, bool, int, int64, uint64, uint32, uint, float64, time.Duration, time.Time:
			out = append(out, slog.Any(key, v))
		case hclog.Format:
			if len(v) > 0 {
				out = append(out, slog.String(key, fmt.Sprintf(fmt.Sprint(v[0]), v[1:]...)))
			}
		default:
			out = append(out, slog.String(key, fmt.Sprint(v)))
		}
	}
	return out
}

// raftKey makes raft's argument keys ("backoff time", "last-leader-id",
// "error") snake_case ("backoff_time", "last_leader_id", "err").
func raftKey(k string) string {
	if k == "error" {
		return "err"
	}
	return strings.NewReplacer(" ", "_", "-", "_").Replace(k)
}

func (l *raftLogger) Trace(msg string, args ...any) { l.Log(hclog.Trace, msg, args...) }
func (l *raftLogger) Debug(msg string, args ...any) { l.Log(hclog.Debug, msg, args...) }
func (l *raftLogger) Info(msg string, args ...any)  { l.Log(hclog.Info, msg, args...) }
func (l *raftLogger) Warn(msg string, args ...any)  { l.Log(hclog.Warn, msg, args...) }
func (l *raftLogger) Error(msg string, args ...any) { l.Log(hclog.Error, msg, args...) }

// IsTrace is false: raft's Trace is per RPC. The others are true when
// Debug is on: every raft level may map to Debug (raftLevel).
func (l *raftLogger) IsTrace() bool { return false }
func (l *raftLogger) IsDebug() bool { return l.log.Enabled(context.Background(), slog.LevelDebug) }
func (l *raftLogger) IsInfo() bool  { return true }
func (l *raftLogger) IsWarn() bool  { return true }
func (l *raftLogger) IsError() bool { return true }

func (l *raftLogger) ImpliedArgs() []any { return l.implied }

func (l *raftLogger) With(args ...any) hclog.Logger {
	attrs := raftAttrs(args)
	as := make([]any, len(attrs))
	for i, a := range attrs {
		as[i] = a
	}
	return &raftLogger{log: l.log.With(as...), name: l.name, implied: append(append([]any(nil), l.implied...), args...)}
}

func (l *raftLogger) Name() string { return l.name }

func (l *raftLogger) Named(name string) hclog.Logger {
	return &raftLogger{log: l.log, name: l.name + "." + name, implied: l.implied}
}

func (l *raftLogger) ResetNamed(name string) hclog.Logger {
	return &raftLogger{log: l.log, name: name, implied: l.implied}
}

// SetLevel does nothing: the slog handler's level rules.
func (l *raftLogger) SetLevel(hclog.Level) {}

func (l *raftLogger) GetLevel() hclog.Level {
	if l.IsDebug() {
		return hclog.Debug
	}
	return hclog.Info
}

func (l *raftLogger) StandardLogger(opts *hclog.StandardLoggerOptions) *log.Logger {
	return log.New(l.StandardWriter(opts), "", 0)
}

// StandardWriter logs each line written to it as a raft message at Info.
func (l *raftLogger) StandardWriter(*hclog.StandardLoggerOptions) io.Writer {
	return lineWriter(func(line string) { l.Info(line) })
}

type lineWriter func(string)

func (w lineWriter) Write(p []byte) (int, error) {
	sc := bufio.NewScanner(strings.NewReader(string(p)))
	for sc.Scan() {
		if line := strings.TrimSpace(sc.Text()); line != "" {
			w(line)
		}
	}
	return len(p), nil
}
