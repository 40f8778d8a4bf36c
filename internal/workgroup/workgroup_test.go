package workgroup

import (
	"sync"
	"sync/atomic"
	"testing"
)

func TestGoRunsAndCloseWaits(t *testing.T) {
	var g Group
	release := make(chan struct{})
	var ran atomic.Int32
	if !g.Go(func() { <-release; ran.Add(1) }) {
		t.Fatal("Go refused before Close")
	}
	closed := make(chan struct{})
	go func() { g.Close(); close(closed) }()
	select {
	case <-closed:
		t.Fatal("Close returned while work ran")
	default:
	}
	close(release)
	<-closed
	if ran.Load() != 1 {
		t.Fatalf("ran %d times, want 1", ran.Load())
	}
	if !g.Closed() {
		t.Fatal("Closed is false after Close")
	}
	if g.Go(func() { t.Error("ran after Close") }) {
		t.Fatal("Go accepted after Close")
	}
	if g.Add(1) {
		t.Fatal("Add accepted after Close")
	}
	g.Close() // again: nothing runs, returns at once
}

// TestNoWorkAfterClose races many adders against Close: every unit that
// was counted ends before Close returns, and none is counted after it.
func TestNoWorkAfterClose(t *testing.T) {
	for range 200 {
		var g Group
		var afterClose, running atomic.Int32
		var closedDone atomic.Bool
		var wg sync.WaitGroup
		start := make(chan struct{})
		for range 8 {
			wg.Go(func() {
				<-start
				for g.Go(func() {
					running.Add(1)
					if closedDone.Load() {
						afterClose.Add(1)
					}
					running.Add(-1)
				}) {
				}
			})
		}
		close(start)
		g.Close()
		closedDone.Store(true)
		if n := running.Load(); n != 0 {
			t.Fatalf("%d units running after Close returned", n)
		}
		wg.Wait()
		if n := afterClose.Load(); n != 0 {
			t.Fatalf("%d units ran after Close returned", n)
		}
	}
}
