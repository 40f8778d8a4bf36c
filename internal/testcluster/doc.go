// Package testcluster builds the ringkv binary and runs real `ringkv serve`
// processes on 127.0.0.1 with free ports and their own temporary data
// directories, for integration and chaos tests. It waits for readiness by
// polling each node's HTTP API against a deadline, never by sleeping. Each
// child's output goes to a log file that is dumped into the test log only
// when the test fails.
//
// Only tests import this package.
package testcluster
