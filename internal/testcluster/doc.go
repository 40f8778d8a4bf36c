// Package testcluster builds the ringkv binary and runs real `ringkv serve`
// processes on 127.0.0.1 with free ports and their own temporary data
// directories, for integration and chaos tests. It waits for readiness by
// polling each node's HTTP API against a deadline, never by sleeping. Each
// child's output goes to a log file that is dumped into the test log only
// when the test fails.
//
// A test that mostly waits (TTLs, grace periods, failovers) calls
// t.Parallel: go test runs those two at a time (-parallel defaults to
// GOMAXPROCS) once the sequential ones are done. Tests that burn CPU (bulk
// writes and reads, scrubs, anti-entropy of thousands of keys), bound a
// latency (TestClientSurvivesSIGKILL), use the host network
// (TestHostsCluster) or judge reads against clock bounds
// (TestExpiryUnderFaults) stay sequential. An idle three-node cluster
// costs about a third of a core (64 raft groups a node).
//
// Only tests import this package.
package testcluster
