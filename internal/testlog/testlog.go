// Package testlog sends log output to a test's log, and stops at the end
// of the test: goroutines that outlive a test (memberlist does not wait
// for a probe in flight at Shutdown) may still log, and testing.T.Log
// after the test has completed panics.
package testlog

import (
	"bytes"
	"io"
	"strings"
	"sync"
	"testing"
)

// Writer returns a writer that passes each write, trailing newlines
// trimmed, to t.Log until t's cleanups run, and drops it afterwards. Call
// it before registering the cleanups that stop what logs through it:
// cleanups run last-in first-out, so it keeps logging until they are done.
func Writer(t testing.TB) io.Writer {
	w := &writer{t: t}
	t.Cleanup(func() {
		w.mu.Lock()
		w.done = true
		w.mu.Unlock()
	})
	return w
}

type writer struct {
	t    testing.TB
	mu   sync.Mutex
	done bool
}

func (w *writer) Write(p []byte) (int, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	if !w.done {
		w.t.Log(strings.TrimRight(string(p), "\n"))
	}
	return len(p), nil
}

// Buffer is a bytes.Buffer that a logger (or a child process's output)
// may write to while the test reads it. Safe for concurrent use.
type Buffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

// Write appends p.
func (b *Buffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.b.Write(p) //nolint:wrapcheck // bytes.Buffer never fails
}

// String returns everything written so far.
func (b *Buffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.b.String()
}
