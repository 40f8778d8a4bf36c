// Package client is the Go client library of ringkv. A Client is given the
// drpc addresses of one or more nodes (127.0.0.1:9001-9003 under
// `ringkv dev`), learns the cluster's topology from them (the ring's
// partitions and preference lists, the members' addresses and liveness, the
// leader of each partition's Raft group) and sends each call straight to a
// node that can serve it without a further hop:
//
//   - one, quorum, all: a replica of the key (the partition's preference
//     list, live members first, rotating between them), which coordinates
//     the request with its own replica as one of the N;
//   - linearizable (and compare-and-set): the partition's Raft leader.
//
// Any node can coordinate any request, so a stale view costs a hop, never
// correctness. Every answer carries the serving node's ring version and the
// leader of the key's partition as that node knows it; the client adopts a
// newer leader at once and refreshes its topology (in the background) when
// a node holds a newer ring, when a node cannot be reached, and every
// RefreshInterval.
//
// # Calls
//
// Get, Set, Delete, List, CompareAndSet and PutIfAbsent take a context and
// CallOptions (WithConsistency; WithLimit for List; WithTTL for the
// writes, making the value expire). Each has an Async form returning a
// *Future, and Batch sends many keyed operations in one round trip per
// node (the node runs them concurrently). TTL, Expire and Persist read and
// change a key's expiry (Expire and Persist are read-modify-writes; at
// Linearizable through compare-and-set). Calls whose context has no
// deadline get RequestTimeout; no call outlives its deadline.
//
// # Errors and retries
//
// Errors match, with errors.Is: ErrNotFound, ErrCASMismatch (the concrete
// error is a *MismatchError carrying the current value), ErrUnavailable
// (too few replicas or no leader), ErrTimeout (also matches
// context.DeadlineExceeded), ErrOutcomeUnknown, ErrInvalidArgument,
// ErrUnauthenticated and ErrPermissionDenied (a secure cluster refused the
// caller, see Security), ErrOverloaded (a node at its admission bound,
// returned once the retries ran out), ErrClosed.
//
// A call is retried, on another node where there is one, with exponential
// backoff and full jitter (BackoffBase doubling up to BackoffMax, at most
// MaxAttempts attempts, never past the deadline), only when the failure
// proves the request was not applied:
//
//   - the connection could not be made (the request was never sent);
//   - the node answered that it is shutting down, or that it could not
//     reach enough replicas or a leader without applying anything (reads
//     at any level; linearizable writes and CAS, which the node reports as
//     not applied unless their outcome is unknown);
//   - the node refused it at once because it was at an admission bound
//     (ErrOverloaded: requests or bytes in flight, a Raft group's queued
//     proposals), reads and writes alike. The operations of a Batch
//     refused so go again together, in Batch RPCs, not one call each.
//
// A node that refuses many calls as overloaded is throttled by the client
// itself (throttle.go, Config.ThrottleRatio): beyond about twice what the
// node accepted over the last 5 s, a call's first attempt fails here
// with ErrOverloaded without being sent (and is retried, always sent,
// like after a node's refusal), so that a flood of refusals does not take the node's
// CPU from the work it admitted.
//
// An authentication refusal is final, with one exception: a Client that
// logs in (WithCredentials) renews its token after an UNAUTHENTICATED
// answer and tries the call once more. A refused call was not applied:
// nodes authorize before they act. Permission denied is never retried.
//
// Reads are also retried after a connection failure mid-call. A write
// (Set, Delete, CompareAndSet, PutIfAbsent, Expire, Persist) is never retried once it may
// have been applied: a connection that breaks after the request was sent,
// a deadline that passes while it is in flight, or a node reporting that
// the outcome is unknown all return ErrOutcomeUnknown. Retrying such a
// write blindly could apply it twice (a CAS that succeeded would then
// fail, a Set would overwrite a later write). An eventual-level write that
// reached fewer replicas than its level needs returns ErrUnavailable and
// is not retried either: it may have reached some replicas.
//
// # Connections
//
// Each node gets a bounded pool of ConnsPerNode drpc connections, each
// carrying one call at a time; a call waits (bounded by its context) for a
// free connection. A connection that fails is closed and redialed on
// demand. A node that refuses connections is skipped for NodeDownFor.
//
// Writes and Gets travel on a pipe (pipe.go): one long-lived Pipe stream
// per node, on a connection of its own, on which every operation waiting
// for the node goes out in one message and the node answers each as it
// finishes, in any order, so no operation waits for another. A write the
// stream carried when it failed returns ErrOutcomeUnknown (a Get is
// retried); one not yet sent is retried elsewhere. A node that does not
// serve Pipe gets them as Do calls. WithPipeWrites(false) sends every
// write in an RPC of its own.
//
// With WithPipeReads(false), concurrent Gets are coalesced instead
// (coalesce.go): each node has a lane per read level, at most
// CoalesceConns RPCs of a lane are in flight, and the Gets made while
// they are go together as one Batch RPC when one returns. A Get that
// finds its lane idle is sent at once on its own goroutine, so a lone
// caller pays nothing for it; each Get keeps its own result, retries and
// deadline. WithCoalesceConns(0) turns coalescing off. On three `ringkv
// serve` processes the pipe served ONE reads with a third less server CPU
// per read than the lanes (docs/BENCHMARKS.md).
//
// # Security
//
// A secure cluster (nodes started with a certs directory) is dialed over
// TLS: WithCertsDir(dir, user) trusts dir/ca.crt, checks that every node
// presents a node certificate of that CA for the address dialed, and
// presents dir/client.USER.crt when it exists (WithTLS takes any
// *tls.Config instead). The nodes then know the caller by its
// certificate (its CN is the user) or by a bearer token:
// WithCredentials(user, password) makes the client exchange the password
// for a token with the Client service's Login, on any node, when a call
// first needs one, and send it as the drpc metadata "authorization" =
// "Bearer TOKEN" with every call after: unary calls, Batch, the coalesced
// Gets, and the Pipe streams, which carry it from when they
// open (auth.go). A token is renewed once 80% of its lifetime has passed,
// in the background while calls go on with the old one; a pipe then lets
// the node answer what its stream carries and opens a new stream with
// the new token, so no write's outcome becomes unknown for it. One login
// runs at a time; a refused one (ErrUnauthenticated: wrong user or
// password) is remembered for BackoffMax. Credentials need TLS (New
// refuses them without): the password travels in the Login request.
// While the cluster's authentication is disabled, Login says so and the
// client sends no token; every request is allowed then.
//
// # Goroutines
//
//   - One refresher per Client: fed by refresh requests and a ticker,
//     stopped by Close.
//   - One per Async call, and one per node per Batch, each ending with its
//     call (bounded by the call's deadline; Close cancels them).
//   - Under contention, one per lane sending the calls that waited, ending
//     when the lane has none left (each RPC bounded by its calls'
//     deadlines).
//   - One per node written to or read from (its pipe's sender, for the Client's life)
//     and, while the pipe's stream is open, one receiving its answers;
//     Close ends both.
//   - With credentials, one per login while it runs (at most one at a
//     time), started by the call that finds the token missing or due,
//     ending with the login (bounded by RequestTimeout; Close cuts it
//     short).
//
// The key's partition is computed here as in package ring:
// xxhash64(key) >> (64 - log2 P).
package client
