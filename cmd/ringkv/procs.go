package main

import (
	"os"
	"runtime"
)

// idleProcsUsage is the help text of serve's and dev's --idle-procs-after.
const idleProcsUsage = "after this long admitting no request and using under a tenth of one core, second after second, run the Go scheduler on one P (an idle node's timers then wake one thread, not two or more); back to GOMAXPROCS at the first request or a busier second; 0: never"

// setProcs gives a process that runs several nodes the Go scheduler's Ps
// of that many processes: GOMAXPROCS times nodes, unless the operator set
// GOMAXPROCS or the process runs one node. It returns the value set (0:
// left alone) and restore, which puts the value before back.
//
// Why: a node's syncers spend much of their time in fdatasync, a system
// call that keeps its P while it runs; the runtime hands such a P to
// another thread only when sysmon finds it there (it looks every 20 us to
// 10 ms) and work waits for it. One process with three nodes has six
// syncers, against one node's two, on the Ps of one process: its
// goroutines wait for a P while the cores idle (docs/BENCHMARKS.md, "Three
// nodes in one process, on the Ps of three").
func setProcs(nodes int) (procs int, restore func()) {
	if nodes <= 1 || os.Getenv("GOMAXPROCS") != "" {
		return 0, func() {}
	}
	prev := runtime.GOMAXPROCS(0)
	procs = prev * nodes
	runtime.GOMAXPROCS(procs)
	return procs, func() { runtime.GOMAXPROCS(prev) }
}
