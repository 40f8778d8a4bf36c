package testlog

import (
	"strings"
	"testing"
)

// recorder is a testing.TB that records Log calls and its cleanups.
type recorder struct {
	testing.TB
	logs     []string
	cleanups []func()
}

func (r *recorder) Log(args ...any) {
	for _, a := range args {
		s, _ := a.(string)
		r.logs = append(r.logs, s)
	}
}

func (r *recorder) Cleanup(f func()) { r.cleanups = append(r.cleanups, f) }

func TestWriterStopsAtCleanup(t *testing.T) {
	r := &recorder{TB: t}
	w := Writer(r)
	if n, err := w.Write([]byte("one\n")); err != nil || n != 4 {
		t.Fatalf("Write = %d, %v", n, err)
	}
	for _, f := range r.cleanups {
		f()
	}
	if n, err := w.Write([]byte("two\n")); err != nil || n != 4 {
		t.Fatalf("Write after cleanup = %d, %v", n, err)
	}
	if got := strings.Join(r.logs, "|"); got != "one" {
		t.Fatalf("logged %q, want %q", got, "one")
	}
}

func TestBuffer(t *testing.T) {
	var b Buffer
	done := make(chan struct{})
	go func() {
		defer close(done)
		for range 100 {
			_, _ = b.Write([]byte("x"))
		}
	}()
	_ = b.String() // concurrently with the writer
	<-done
	if got := b.String(); len(got) != 100 {
		t.Fatalf("got %d bytes, want 100", len(got))
	}
}
