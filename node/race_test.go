//go:build race

package node

// raceEnabled: the race detector slows everything several times; on a
// shared 2-core machine raft then misses heartbeats with or without load.
const raceEnabled = true
