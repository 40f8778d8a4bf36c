package main

import (
	"flag"
	"strings"
	"time"

	"github.com/ringkv/ringkv/coordinator"
	"github.com/ringkv/ringkv/node"
)

// limits are the admission bounds of a node (docs/OPERATIONS.md,
// "Admission control"): `serve` and `dev` take the same flags.
type limits struct {
	inflight, minInflight            int
	peerInflight                     int
	schedTarget                      time.Duration
	inflightBytes, peerInflightBytes int64
	proposals                        int
	retryAfter                       time.Duration
	rates                            rateFlags
}

// rateFlags is the repeatable --rate-limit flag.
type rateFlags []coordinator.RateLimit

func (r *rateFlags) String() string {
	if r == nil {
		return ""
	}
	rules := make([]string, len(*r))
	for i, l := range *r {
		rules[i] = l.String()
	}
	return strings.Join(rules, " ")
}

func (r *rateFlags) Set(v string) error {
	l, err := coordinator.ParseRateLimit(v)
	if err != nil {
		return err //nolint:wrapcheck // the flag package names the flag
	}
	*r = append(*r, l)
	return nil
}

// addLimitFlags registers the admission flags on fs, with cfg's values
// as their defaults, and returns where they are parsed into.
func addLimitFlags(fs *flag.FlagSet, cfg node.Config) *limits {
	l := &limits{}
	fs.IntVar(&l.inflight, "max-inflight", cfg.Coordinator.MaxInflight, "client requests (HTTP, drpc, Redis together) a node runs at once; beyond it a request is refused at once (HTTP 429 with Retry-After, drpc OVERLOADED, RESP -BUSY); the bound shrinks toward --min-inflight while the Go scheduler is late (--sched-latency-target); 0: no bound")
	fs.IntVar(&l.minInflight, "min-inflight", cfg.Coordinator.MinInflight, "the least the client bound shrinks to while the scheduler is late")
	fs.DurationVar(&l.schedTarget, "sched-latency-target", cfg.Coordinator.SchedLatencyTarget, "p99 of the time runnable goroutines wait for a CPU that the client bound keeps (it shrinks beyond, so that admitted work cannot starve raft's heartbeats into elections, and grows back under it); 0: a fixed bound of --max-inflight")
	fs.Int64Var(&l.inflightBytes, "max-inflight-bytes", cfg.Coordinator.MaxInflightBytes, "bytes of keys and values of the client requests in flight; beyond it requests are refused as above; 0: no bound")
	fs.IntVar(&l.peerInflight, "max-peer-inflight", cfg.Coordinator.MaxPeerInflight, "calls of other nodes' coordinators (replica reads and writes) a node runs at once, a budget apart from clients'; 0: no bound")
	fs.Int64Var(&l.peerInflightBytes, "max-peer-inflight-bytes", cfg.Coordinator.MaxPeerInflightBytes, "bytes of those calls in flight; 0: no bound")
	fs.IntVar(&l.proposals, "max-pending-proposals", cfg.Consensus.MaxPendingProposals, "writes one raft group queues on its leader; beyond it a write is refused at once (overloaded); 0: no bound")
	fs.DurationVar(&l.retryAfter, "retry-after", cfg.Coordinator.RetryAfter, "what refused clients are told to wait (HTTP Retry-After, whole seconds)")
	fs.Var(&l.rates, "rate-limit", "a rate limit, repeatable: prefix:PREFIX=RATE[,BURST] bounds the operations on keys with that prefix (the longest matching rule applies), user:NAME=RATE[,BURST] those of a user (needs authentication; user:*= gives every other user a bucket of its own); RATE is operations a second, per node; beyond it an operation is refused at once as overloaded")
	return l
}

// apply sets the parsed bounds on cfg.
func (l *limits) apply(cfg *node.Config) {
	cfg.Coordinator.MaxInflight, cfg.Coordinator.MaxInflightBytes = l.inflight, l.inflightBytes
	cfg.Coordinator.MinInflight, cfg.Coordinator.SchedLatencyTarget = l.minInflight, l.schedTarget
	cfg.Coordinator.MaxPeerInflight, cfg.Coordinator.MaxPeerInflightBytes = l.peerInflight, l.peerInflightBytes
	cfg.Consensus.MaxPendingProposals = l.proposals
	cfg.Coordinator.RetryAfter = l.retryAfter
	cfg.Coordinator.RateLimits = append([]coordinator.RateLimit(nil), l.rates...)
}
