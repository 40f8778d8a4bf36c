// Package node assembles one ringkv node from its Config and owns the
// lifecycle of its components; it holds no request logic.
//
// A node is, bottom to top:
//
//	replica.Store        Badger under DataDir/replica, group-committed, fsync before ack
//	gossip.Gossip        memberlist on GossipAddr; the ring, persisted in DataDir/ring.state
//	coordinator          request path; RPCTransport to peers
//	drpc server          RPCAddr: the Replica service (coordinator.ReplicaServer) and the
//	                     others, behind peerCheck (peercheck.go: callers of another
//	                     cluster or unknown to the membership) and, secure, planeGuard
//	consensus.Manager    a raft group per partition; its drpc transport and log store
//	HTTP server          HTTPAddr: /api/* (coordinator.HTTPHandler), /health, /ready,
//	                     /api/stats, /api/cluster/* (admin.go), /metrics
//
// Open binds every listener before it returns (so a port of 0 is resolved
// and reported by the address methods) and starts serving. Close stops the
// servers first, then the coordinator, the transport, gossip and last the
// store, so that no acknowledged write is in flight when Badger closes.
//
// # Goroutines
//
// One serving drpc and one serving HTTP, both stopped by Close; one
// (announceReady) that stops advertising "starting" once the node is first
// ready and knows its peers, ending then or at Close; one (watchDisk,
// disk.go) that follows the store's disk state every 100 ms and, while the
// disk is full, failed or stalls its fsyncs, keeps the node not ready,
// advertised as draining and leading no group, ending at Close (with the
// HandOff it may start, bounded at 10 s). Drain runs on its
// caller's goroutine (drain.go). The components' own goroutines are
// documented in their packages.
package node
