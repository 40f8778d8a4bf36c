// Package gossip owns cluster membership for ringkv: it runs
// hashicorp/memberlist, keeps the durable ring (joined / leaving / removed)
// on disk, spreads it by gossip and publishes immutable *ring.Ring
// snapshots.
//
// # Ownership and invariants
//
//   - Ring membership is explicit and durable. The current ring is written
//     to DataDir/ring.state (temp file, fsync, rename, fsync dir) before it
//     becomes visible through Ring or Subscribe.
//   - Liveness (alive / suspect / dead) comes from memberlist and never
//     changes the ring by itself: a dead member stays Joined until an
//     operator calls Remove.
//   - A node adopts a received ring iff received.Newer(current). Versions
//     only grow; equal versions resolve by ring hash, so every node ends on
//     the same ring.
//   - Each member's zone, RPC address and HTTP address travel in its
//     memberlist node metadata (JSON, at most 512 bytes), with the range
//     of wire protocol versions it speaks and whether it drains or is
//     starting (SetDraining, SetStarting).
//   - A peer whose wire range does not overlap this node's is refused by
//     memberlist's alive and merge delegates (wire.go): it never becomes
//     a member, and both sides log it at Error, once a minute per peer.
//   - The cluster id (cluster.go): drawn by the founder, persisted in
//     DataDir/cluster.id, advertised in the metadata, adopted by a node
//     that has none from its ring's members. A peer advertising another
//     id is refused like one of no common wire version; a peer or a node
//     without an id is let through. Both refusals are counted in
//     ringkv_gossip_peers_refused_total{reason}.
//
// # Logging
//
// A member going down or coming back is one Info line ("member down",
// "member up"); one still down after downWarnAfter (a minute, 10s under
// Local) and not removed from the ring is one Warn ("member still down").
// memberlist's own lines go through logWriter at the level logRules gives:
// its errors about sockets closing at shutdown or a peer that just stopped
// are Debug, its other errors Warn, two members with one name Error.
//
// # Deciding ring changes
//
// Every ring change is decided on one register, the Store (the node backs
// it with a reserved key at the linearizable level): Change reads it,
// judges the change against the ring in it (evaluate in decide.go: a pure
// function), and sets the next ring by compare-and-set from the bytes it
// read. A lost compare-and-set means another change came first: judge
// again. Only a change that is in the register is adopted, pushed and
// answered, so every later change, on any node, builds on it. The record
// (record.go) remembers the ids of its last 64 changes, so a decider whose
// compare-and-set ended in an error learns by reading again whether it
// was made; until it knows, it proposes only the same value again. A node
// decides one change at a time (the deciding token).
//
// The claimant is the lowest-ID member that is Joined in the current ring
// and alive in memberlist. Every ClaimInterval, and after every membership
// event or adopted ring, run looks for nodes that are alive in memberlist
// (with valid metadata) but absent from the ring, and kicks the claimer,
// which decides their joins (sorted by ID) through the register like any
// change. Members that are Leaving or Removed are never re-joined by the
// claimant: an operator re-admits them. Push-pull anti-entropy
// (LocalState / MergeRemoteState) carries the ring too, so a node that
// missed a push catches up within one PushPullInterval. Each node
// advertises the version of the ring it holds in its metadata
// (MemberInfo.RingVersion).
//
// # Bootstrap
//
//   - A persisted ring is always used (and newer ones are still gossiped in).
//   - Otherwise, a node with no Seeds creates the ring with itself as the
//     only Joined member (version 1).
//   - Otherwise it starts with an empty ring (version 0) and waits for the
//     claimant to add it. A node with seeds never bootstraps itself.
//   - A node with seeds does not act as claimant until its first successful
//     join, so a restarted node with a stale ring does not race the cluster.
//
// # Gossip encryption
//
// With Config.KeyringFile set, memberlist encrypts and authenticates every
// gossip message, UDP and TCP (probes, push-pull, ring pushes), with
// AES-GCM under the keyring's primary key, and drops every message that
// is not encrypted or that none of its keys opens (GossipVerifyIncoming
// and GossipVerifyOutgoing). A node without one of the cluster's keys can
// neither join nor be joined, and cannot hand anyone a ring. The file
// holds one base64 key per line, the primary first (keyring.go). Open
// logs the number of keys it loaded, never the keys. Encryption is on or
// off for the whole cluster: switching it takes every node restarted with
// the new setting, and the two sides do not hear each other meanwhile.
//
// ReloadKeyring (the binary calls it on SIGHUP) reads the file again and
// applies it to the running keyring: it installs every key in the file,
// makes the first one primary, and drops the installed keys the file no
// longer lists. A node reads a message iff it holds the key that
// encrypted it, so a key is rotated in three steps, each finished on
// every node before the next starts, and at every step every node still
// talks to every other:
//
//  1. Add. Make a new key (ringkv certs create-gossip-key). On every node,
//     append it to the keyring file as the last line and reload. Every
//     node now accepts the new key and still sends with the old one.
//  2. Switch. On every node, move the new key to the first line and
//     reload. A node sends with the new key from its reload on; every
//     node accepts both keys.
//  3. Retire. On every node, delete the old key's line and reload. From
//     now on a node that holds only the old key can no longer join.
//
// Each reload logs "gossip keyring reloaded" with the number of keys, how
// many it added and removed, and whether the primary changed: check it on
// every node before the next step. A file that cannot be read or parsed
// is refused with an error and the running keyring stays as it was. A
// node that was down during a rotation must get the new file before it
// starts again.
//
// # Goroutines
//
// All are started by Open through the Gossip's WaitGroup and stopped by
// Close, which cancels the lifetime context and waits for them before
// memberlist's Leave and Shutdown.
//
//   - run: the only writer of the ring. Fed by the wake channel (memberlist
//     events, received rings), the ClaimInterval ticker and the installs
//     channel (rings decided through the Store). It adopts received and
//     decided rings, persists, publishes to subscribers, kicks the claimer
//     when there are nodes to join, and updates metrics.
//   - claimer: decides the claimant's joins (Store calls may block, so
//     they are kept off run). Fed by claimKick.
//   - send: pushes the newest locally decided ring to every alive member
//     and advertises the ring version in this node's metadata. Fed by the
//     sendKick channel; SendReliable may block up to memberlist's
//     TCPTimeout per member, so it is kept off run.
//
// Operator calls to Change run on the caller's goroutine, holding the
// deciding token; ReloadKeyring runs on the caller's goroutine too.
//   - join: only when Seeds is set; retries memberlist Join with backoff
//     until one seed answers.
//   - reconnect: every second (Local) or ten (LAN), joins the ring members
//     memberlist reports dead at their last gossip addresses, with the
//     seeds, as serf's reconnect does. memberlist stops talking to a node it
//     declared dead, so otherwise a restarted node without seeds, or both
//     sides of a healed partition, could stay apart for good.
//
// Memberlist's own goroutines call the delegate (delegate.go). Those calls
// never block: they copy their input, record it under a small mutex and do
// a non-blocking send on wake.
//
// # Departures
//
// memberlist v0.7.0 has no event for suspicion and its Node.State may only
// be read under its internal lock, so Members reports Alive for suspect
// nodes until memberlist declares them dead or left; Suspect is reserved.
//
// memberlist's Keyring.RemoveKey closes the gap in place in the key slice
// that decrypting goroutines read without a copy. ReloadKeyring removes
// keys from the end first, so the retire step of a rotation (the old key
// is last) moves no key under a reader.
package gossip
