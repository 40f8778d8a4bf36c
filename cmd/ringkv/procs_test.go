package main

import (
	"runtime"
	"strconv"
	"testing"
)

func TestSetProcs(t *testing.T) {
	t.Setenv("GOMAXPROCS", "") // unset for the runtime and for setProcs
	before := runtime.GOMAXPROCS(0)
	t.Cleanup(func() { runtime.GOMAXPROCS(before) })

	if procs, restore := setProcs(1); procs != 0 {
		t.Fatalf("one node: setProcs set %d", procs)
	} else {
		restore()
	}
	if got := runtime.GOMAXPROCS(0); got != before {
		t.Fatalf("one node: GOMAXPROCS %d, want %d unchanged", got, before)
	}
	procs, restore := setProcs(3)
	if got := runtime.GOMAXPROCS(0); got != 3*before || procs != got {
		t.Fatalf("three nodes: GOMAXPROCS %d (setProcs said %d), want %d", got, procs, 3*before)
	}
	restore()
	if got := runtime.GOMAXPROCS(0); got != before {
		t.Fatalf("after restore: GOMAXPROCS %d, want %d", got, before)
	}

	t.Setenv("GOMAXPROCS", strconv.Itoa(before)) // the operator's choice stands
	procs, restore = setProcs(3)
	if got := runtime.GOMAXPROCS(0); got != before || procs != 0 {
		t.Fatalf("GOMAXPROCS set by the operator: %d, want %d unchanged", got, before)
	}
	restore()
}
