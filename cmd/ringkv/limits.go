package main

import (
	"flag"
	"time"

	"github.com/ringkv/ringkv/node"
)

// limits are the admission bounds of a node (docs/OPERATIONS.md,
// "Admission control"): `serve` and `dev` take the same flags.
type limits struct {
	inflight, peerInflight           int
	inflightBytes, peerInflightBytes int64
	proposals                        int
	retryAfter                       time.Duration
}

// addLimitFlags registers the admission flags on fs, with cfg's values
// as their defaults, and returns where they are parsed into.
func addLimitFlags(fs *flag.FlagSet, cfg node.Config) *limits {
	l := &limits{}
	fs.IntVar(&l.inflight, "max-inflight", cfg.Coordinator.MaxInflight, "client requests (HTTP, drpc, Redis together) a node runs at once; beyond it a request is refused at once (HTTP 429 with Retry-After, drpc OVERLOADED, RESP -BUSY); 0: no bound")
	fs.Int64Var(&l.inflightBytes, "max-inflight-bytes", cfg.Coordinator.MaxInflightBytes, "bytes of keys and values of the client requests in flight; beyond it requests are refused as above; 0: no bound")
	fs.IntVar(&l.peerInflight, "max-peer-inflight", cfg.Coordinator.MaxPeerInflight, "calls of other nodes' coordinators (replica reads and writes) a node runs at once, a budget apart from clients'; 0: no bound")
	fs.Int64Var(&l.peerInflightBytes, "max-peer-inflight-bytes", cfg.Coordinator.MaxPeerInflightBytes, "bytes of those calls in flight; 0: no bound")
	fs.IntVar(&l.proposals, "max-pending-proposals", cfg.Consensus.MaxPendingProposals, "writes one raft group queues on its leader; beyond it a write is refused at once (overloaded); 0: no bound")
	fs.DurationVar(&l.retryAfter, "retry-after", cfg.Coordinator.RetryAfter, "what refused clients are told to wait (HTTP Retry-After, whole seconds)")
	return l
}

// apply sets the parsed bounds on cfg.
func (l *limits) apply(cfg *node.Config) {
	cfg.Coordinator.MaxInflight, cfg.Coordinator.MaxInflightBytes = l.inflight, l.inflightBytes
	cfg.Coordinator.MaxPeerInflight, cfg.Coordinator.MaxPeerInflightBytes = l.peerInflight, l.peerInflightBytes
	cfg.Consensus.MaxPendingProposals = l.proposals
	cfg.Coordinator.RetryAfter = l.retryAfter
}
