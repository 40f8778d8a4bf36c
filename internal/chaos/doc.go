// Package chaos is ringkv's chaos harness: it runs real `ringkv serve`
// processes on loopback (through internal/testcluster), breaks the cluster
// on purpose while workloads run, and checks what the README claims.
//
// # What it owns
//
//   - Proxy and Net: a fault-injecting TCP proxy per ordered pair of nodes
//     (blackhole, drop, delay). Every node dials its peers' drpc service
//     through them (`ringkv serve --chaos-dial-overrides`, test-only), so
//     partitions cut real replica, raft and forwarding traffic, and a
//     partition severs the pooled connections that already exist. Gossip
//     (memberlist) and client-to-node traffic are not proxied: during a
//     partition gossip still sees every node alive, as with a partition of
//     the data network only.
//   - Nemesis: one fault at a time, drawn from a seeded generator:
//     isolate one node, isolate the node leading the most raft groups,
//     minority/majority split, bridge, majorities ring, slow links,
//     SIGSTOP/SIGCONT, SIGKILL and restart, clock skew within and beyond
//     the HLC's maximum offset (`--chaos-hooks`, POST /chaos/clock-offset),
//     join of a spare node and leave+remove of it. Cluster.HealAll undoes
//     everything and always runs at the end of Run, even when the test
//     fails midway.
//   - Workload: linearizable get/set/CAS with unique values on keys that
//     retire after 100 operations, through the client library and through
//     random nodes' HTTP APIs; QUORUM writes of unique keys. A key never
//     has more than 3 writes of unknown outcome (WorkloadConfig.
//     MaxUnknownPerKey): a write starts on a key only while its writes in
//     flight plus its unknown ones are fewer, else the key retires and the
//     write goes to a fresh key. That bounds porcupine's search per key,
//     which each unknown write, open to the end of the history, multiplies.
//   - Checks: porcupine per key; a key the checker gives up on is
//     unproven and fails the run like an illegal one. The summary gives
//     the keys, the most operations and unknown writes on one key, the
//     checker's time and its slowest key. The HTML visualization (illegal
//     keys) and history of failing keys and every node's log are saved on
//     failure; no acknowledged QUORUM write lost after the heal; every
//     replica of a sample of QUORUM keys holds its value within a bound,
//     with p50/p99 of the time it took.
//
// # Secure mode
//
// With ClusterConfig.Secure (TestChaos: RINGKV_CHAOS_SECURE=1) the cluster
// is testcluster's secure cluster: a CA, a node certificate for 127.0.0.1
// per node, spares included, and a gossip key. Every port speaks TLS; a
// node dials its peers with mutual TLS, and since the proxies are plain
// TCP relays the handshake and the records go end to end through them
// (the dialer names 127.0.0.1, which the node certificates carry); a
// blackhole or a drop shows in a peer's new dial as a failed handshake
// (EOF, reset, or the dial's deadline). The harness is a client like any
// other: its client library connections (Cluster.NewClient) use TLS with
// the root user's client certificate (pki.ClientTLS), and its HTTP calls
// (the workload's HTTP path, status polling, leave/remove, clock skew,
// convergence reads, evidence) go over HTTPS with the same certificate
// through one HTTP client the harness makes per cluster, which keeps 32
// idle connections per node so that a read rarely pays a handshake; raft
// state comes from testcluster.Node.Stats, HTTPS as root too.
// Authentication stays disabled (no `ringkv auth enable`): the mode
// exercises TLS and the node/client planes, not users and roles. The
// summary line then carries "secure=yes".
//
// Run prints the seed first and a one-line summary last; the same seed
// replays the same fault schedule (the timing of a real cluster does not
// replay exactly).
//
// # Goroutines
//
//   - Proxy: an accept loop and two copiers per connection; Close stops
//     them all.
//   - Workload: one loop per worker, stopped and waited for by Stop.
//   - CheckLinearizable: two checker goroutines, ended when the keys are.
//   - Cluster's HTTP client: net/http's reader and writer per kept
//     connection, closed when the test ends (t.Cleanup).
//
// Only tests import this package; see docs/RELIABILITY.md for the modes.
package chaos
