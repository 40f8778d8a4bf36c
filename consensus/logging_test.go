package consensus

import (
	"bytes"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/hashicorp/go-hclog"
	"github.com/hashicorp/raft"
)

// TestRaftLevel is the level of each of raft's messages as a node logs it:
// routine chatter of elections, catching up and stopping at Debug, calls
// failing for other reasons at Warn, a failing store at Error.
func TestRaftLevel(t *testing.T) {
	const (
		debug = slog.LevelDebug
		info  = slog.LevelInfo
		warn  = slog.LevelWarn
		erro  = slog.LevelError
	)
	for _, tc := range []struct {
		level hclog.Level
		msg   string
		err   string
		want  slog.Level
	}{
		// A fresh or recovering group electing.
		{hclog.Warn, "heartbeat timeout reached, starting election", "", debug},
		{hclog.Warn, "Election timeout reached, restarting election", "", debug},
		{hclog.Warn, "rejecting vote request since our last term is greater", "", debug},
		{hclog.Warn, "rejecting pre-vote request since we have a leader", "", debug},
		{hclog.Error, "peer has newer term, stopping replication", "", debug},
		{hclog.Info, "entering leader state", "", debug},
		{hclog.Info, "election won", "", debug},
		// A new follower catching up.
		{hclog.Warn, "failed to get previous log", "log not found", debug},
		{hclog.Warn, "appendEntries rejected, sending older logs", "", debug},
		{hclog.Error, "failed to appendEntries to", "consensus: unknown raft group: 3 on n2", debug},
		// A peer stopping, or this node's transport closing.
		{hclog.Error, "failed to heartbeat to", "dial raft peer 127.0.0.1:9002: dial tcp 127.0.0.1:9002: connect: connection refused", debug},
		{hclog.Error, "failed to heartbeat to", "raft stream to 127.0.0.1:9002 failed: context canceled", debug},
		{hclog.Error, "failed to pipeline appendEntries", "raft stream to 127.0.0.1:9002 failed: context canceled", debug},
		{hclog.Error, "failed to pipeline appendEntries", "raft pipeline stream to 127.0.0.1:9002: consensus: raft transport closed", debug},
		{hclog.Error, "failed to make requestVote RPC", "read tcp 127.0.0.1:1->127.0.0.1:2: read: connection reset by peer", debug},
		{hclog.Warn, "failed to contact", "", debug},
		{hclog.Info, "aborting pipeline replication", "", debug},
		// The same calls failing otherwise.
		{hclog.Error, "failed to heartbeat to", "heartbeat to n2: context deadline exceeded", warn},
		{hclog.Error, "failed to appendEntries to", "tls: bad certificate", warn},
		{hclog.Error, "failed to install snapshot", "consensus: raft peer error: no space left on device", warn},
		// Worth an Info line: a lost quorum, snapshots installed.
		{hclog.Warn, "failed to contact quorum of nodes, stepping down", "", info},
		{hclog.Info, "installing snapshot on", "", info},
		{hclog.Info, "restored from snapshot", "", info},
		// The store failing.
		{hclog.Error, "failed to append to logs", "badger: disk full", erro},
		{hclog.Error, "failed to persist vote", "x", erro},
		{hclog.Error, "failed to take snapshot", "x", erro},
		{hclog.Error, "failed to get log", "badger: corrupt", erro},
		{hclog.Error, "failed to get log", "log not found", warn},
		// Anything else: by raft's level.
		{hclog.Warn, "a message raft may add one day", "", warn},
		{hclog.Error, "another one", "x", warn},
		{hclog.Info, "and another", "", debug},
		{hclog.Debug, "accepted connection", "", debug},
		{hclog.Trace, "x", "", debug},
	} {
		if got := raftLevel(tc.level, tc.msg, tc.err); got != tc.want {
			t.Errorf("raftLevel(%v, %q, %q) = %v, want %v", tc.level, tc.msg, tc.err, got, tc.want)
		}
	}
}

// TestRaftRulesNameRaftMessages keeps raftRules in step with the raft
// version in go.mod: every message a rule names is one raft logs.
func TestRaftRulesNameRaftMessages(t *testing.T) {
	out, err := exec.Command("go", "list", "-m", "-f", "{{.Dir}}", "github.com/hashicorp/raft").Output()
	if err != nil {
		t.Skipf("go list: %v", err)
	}
	dir := strings.TrimSpace(string(out))
	files, err := filepath.Glob(filepath.Join(dir, "*.go"))
	if err != nil || len(files) == 0 {
		t.Skipf("raft sources in %q: %v", dir, err)
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
	for _, r := range raftRules {
		if !bytes.Contains(src.Bytes(), []byte(fmt.Sprintf("%q", r.msg))) {
			t.Errorf("raftRules: raft (%s) never logs %q", dir, r.msg)
		}
	}
}

// TestRaftLogger checks the records raft's logger writes: message "raft",
// raft's message as detail, its arguments as snake_case attributes, and
// nothing below the handler's level.
func TestRaftLogger(t *testing.T) {
	var buf bytes.Buffer
	base := slog.New(slog.NewTextHandler(&buf, &slog.HandlerOptions{Level: slog.LevelInfo}))
	l := newHCLogger(base.With("group_id", 7))
	l.Warn("heartbeat timeout reached, starting election", "last-leader-addr", "", "last-leader-id", "")
	l.Info("entering follower state", "follower", "x")
	l.Error("failed to heartbeat to", "peer", raft.ServerAddress("n2"), "backoff time", 10*time.Millisecond,
		"error", errors.New("tls: bad certificate"))
	l.With("id", "snap-1").Info("restored from snapshot")
	l.Error("failed to append to logs", "error", "disk full")
	l.Warn("odd", "odd-args")
	got := buf.String()
	t.Logf("records:\n%s", got)
	for _, hidden := range []string{"starting election", "entering follower state"} {
		if strings.Contains(got, hidden) {
			t.Errorf("%q logged at Info", hidden)
		}
	}
	for _, want := range []string{
		`level=WARN msg=raft group_id=7 detail="failed to heartbeat to" peer=n2 backoff_time=10ms err="tls: bad certificate"`,
		`level=INFO msg=raft group_id=7 id=snap-1 detail="restored from snapshot"`,
		`level=ERROR msg=raft group_id=7 detail="failed to append to logs" err="disk full"`,
		`level=WARN msg=raft group_id=7 detail=odd odd_args=(missing)`,
	} {
		if !strings.Contains(got, want) {
			t.Errorf("records lack %s", want)
		}
	}
	if l.IsDebug() || l.IsTrace() {
		t.Error("IsDebug or IsTrace true at Info")
	}
	var sw bytes.Buffer
	sl := newHCLogger(slog.New(slog.NewTextHandler(&sw, &slog.HandlerOptions{Level: slog.LevelDebug}))).StandardLogger(nil)
	sl.Print("one line")
	if !strings.Contains(sw.String(), `level=DEBUG msg=raft detail="one line"`) {
		t.Errorf("standard logger: got %q", sw.String())
	}
}

// TestLeaderWatch: ready once when every group first has a leader; a
// warning (naming every group without a leader) once one has had none for
// stuckAfter, repeated every repeat; recovered when none is stuck any more;
// groups the node leaves are forgotten.
func TestLeaderWatch(t *testing.T) {
	t0 := time.Unix(1000, 0)
	at := func(s float64) time.Time { return t0.Add(time.Duration(s * float64(time.Second))) }
	w := newLeaderWatch(20*time.Second, time.Minute)
	steps := []struct {
		at   float64
		led  map[uint32]bool
		want leaderReport
	}{
		{0, map[uint32]bool{}, leaderReport{}}, // no groups yet: not ready
		{0, map[uint32]bool{1: false, 2: false}, leaderReport{}},
		{1, map[uint32]bool{1: true, 2: false}, leaderReport{}},
		{2, map[uint32]bool{1: true, 2: true}, leaderReport{ready: true}},
		{3, map[uint32]bool{1: true, 2: true}, leaderReport{}}, // ready only once
		{4, map[uint32]bool{1: false, 2: true}, leaderReport{}},
		{24, map[uint32]bool{1: false, 2: true}, leaderReport{}}, // exactly stuckAfter: not yet
		{25, map[uint32]bool{1: false, 2: false}, leaderReport{leaderless: []uint32{1, 2}, longest: 21 * time.Second}},
		{50, map[uint32]bool{1: false, 2: false}, leaderReport{}}, // the repeat is a minute
		{85, map[uint32]bool{1: false, 2: false}, leaderReport{leaderless: []uint32{1, 2}, longest: 81 * time.Second}},
		{86, map[uint32]bool{1: true, 2: false}, leaderReport{}},
		{87, map[uint32]bool{1: true}, leaderReport{recovered: true}}, // 2 left the node
		{88, map[uint32]bool{1: true}, leaderReport{}},
		{89, map[uint32]bool{1: true, 2: false}, leaderReport{}}, // 2 is back: its clock starts again
		{108, map[uint32]bool{1: true, 2: false}, leaderReport{}},
		{110, map[uint32]bool{1: true, 2: false}, leaderReport{leaderless: []uint32{2}, longest: 21 * time.Second}},
	}
	for i, s := range steps {
		got := w.observe(at(s.at), s.led)
		if fmt.Sprint(got) != fmt.Sprint(s.want) {
			t.Fatalf("step %d (t=%vs, %v): got %+v, want %+v", i, s.at, s.led, got, s.want)
		}
	}
}
