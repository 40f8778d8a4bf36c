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

	setProcs(1)()
	if got := runtime.GOMAXPROCS(0); got != before {
		t.Fatalf("one node: GOMAXPROCS %d, want %d unchanged", got, before)
	}
	restore := setProcs(3)
	if got := runtime.GOMAXPROCS(0); got != 3*before {
		t.Fatalf("three nodes: GOMAXPROCS %d, want %d", got, 3*before)
	}
	restore()
	if got := runtime.GOMAXPROCS(0); got != before {
		t.Fatalf("after restore: GOMAXPROCS %d, want %d", got, before)
	}

	t.Setenv("GOMAXPROCS", strconv.Itoa(before)) // the operator's choice stands
	restore = setProcs(3)
	if got := runtime.GOMAXPROCS(0); got != before {
		t.Fatalf("GOMAXPROCS set by the operator: %d, want %d unchanged", got, before)
	}
	restore()
}
