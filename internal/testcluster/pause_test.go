package testcluster

import (
	"os/exec"
	"syscall"
	"testing"
)

func TestThreadState(t *testing.T) {
	for _, tc := range []struct {
		stat string
		want byte
		ok   bool
	}{
		{"123 (ringkv) S 1 123", 'S', true},
		{"123 (a) b) T 1 123", 'T', true}, // a command name with a parenthesis
		{"123 (ringkv)", 0, false},
		{"garbage", 0, false},
	} {
		got, ok := threadState([]byte(tc.stat))
		if got != tc.want || ok != tc.ok {
			t.Errorf("threadState(%q) = %c %v, want %c %v", tc.stat, got, ok, tc.want, tc.ok)
		}
	}
}

// TestAllThreadsStopped stops a real process and sees every thread of it
// stopped, and sees it running again after SIGCONT.
func TestAllThreadsStopped(t *testing.T) {
	cmd := exec.Command("sleep", "30")
	if err := cmd.Start(); err != nil {
		t.Fatalf("start sleep: %v", err)
	}
	t.Cleanup(func() {
		_ = cmd.Process.Kill() // ends the test's process
		_ = cmd.Wait()         // reaps it; its status is a kill
	})
	pid := cmd.Process.Pid
	if stopped, err := allThreadsStopped(pid); stopped {
		t.Fatalf("a running process reported stopped (%v)", err)
	}
	nd := &Node{ID: "sleep", t: t, cmd: cmd, done: make(chan struct{})}
	nd.Pause()
	if stopped, err := allThreadsStopped(pid); !stopped {
		t.Fatalf("after Pause the process is not stopped: %v", err)
	}
	if err := cmd.Process.Signal(syscall.SIGCONT); err != nil {
		t.Fatalf("SIGCONT: %v", err)
	}
	if _, err := allThreadsStopped(1 << 30); err == nil {
		t.Fatal("a missing process gave no error")
	}
}
