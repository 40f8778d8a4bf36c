package coordinator

import (
	"errors"
	"fmt"
	"log/slog"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/ringkv/ringkv/consensus"
	"github.com/ringkv/ringkv/replica"
	"github.com/ringkv/ringkv/ring"
)

// Config tunes a Coordinator. Build it with DefaultConfig and change fields;
// New validates it and does not change it afterwards.
type Config struct {
	// NodeID is this node's id in the ring. Required.
	NodeID string
	// MaxKeyBytes bounds key length. Default 4096.
	MaxKeyBytes int
	// MaxValueBytes bounds value length. Default 1 MiB.
	MaxValueBytes int
	// RequestTimeout is the deadline given to requests that carry none.
	// Default 5s.
	RequestTimeout time.Duration
	// ReplicaWriteTimeout bounds how long a write keeps trying to reach the
	// replicas beyond the W it waited for. Default 5s.
	ReplicaWriteTimeout time.Duration
	// SpeculativeDelay is how long a read waits on the replicas it asked
	// before also asking the next one. Lower cuts tail latency when a
	// replica stalls, at the cost of extra reads. Default 50ms.
	SpeculativeDelay time.Duration
	// ListPageSize is how many records per partition one list round asks
	// each replica for. Default 256.
	ListPageSize int
	// MaxListLimit caps the limit a list request may ask for. Default 100000.
	MaxListLimit int
	// DefaultListLimit is the limit of list requests that give none.
	// Default 1000.
	DefaultListLimit int
	// HintedHandoff makes the coordinator keep a durable hint for each
	// replica a write did not reach and replay it once gossip sees that
	// replica alive again (see hints.go). Hints never count toward W.
	// Default true.
	HintedHandoff bool
	// HintWindow is how old a hint may grow before it is dropped and the
	// difference left to anti-entropy (Cassandra's max_hint_window).
	// Longer keeps a replica that was down longer repairable by hints
	// alone, at the cost of disk. Default 3h.
	HintWindow time.Duration
	// HintReplayRate bounds the hint records this node replays per second,
	// all targets together, so that a returning replica is not flooded.
	// Default 5000.
	HintReplayRate int
	// HintReplayBatch is how many hints one replay Merge RPC carries (fewer
	// if they add up to more than 4 MiB). Default 256.
	HintReplayBatch int
	// HintReplayInterval is how often the coordinator looks at the targets
	// it holds hints for: it starts a replay for each alive one, drops the
	// hints of removed members and expires old hints. A failed replay is
	// retried after it. Default 1s.
	HintReplayInterval time.Duration
	// MaxHintBytesPerTarget bounds the hints (keys and values) stored for
	// one target; a hint that would exceed it is dropped and counted.
	// Default 1 GiB.
	MaxHintBytesPerTarget int64
	// BatchReplayAge is how old a logged batch's entry (MSet at an
	// eventual level, batchlog.go) must be before the replayer writes its
	// records again and clears it: a batch whose coordinator died midway.
	// Shorter repairs sooner, at the cost of replaying batches still being
	// written (harmless: replays are idempotent). Default 1m.
	BatchReplayAge time.Duration
	// BatchReplayInterval is how often the replayer scans the batch
	// entries of the partitions this node is primary for. Default 10s.
	BatchReplayInterval time.Duration
	// MaxInflight bounds the client requests (HTTP data API, Client drpc
	// service, Redis protocol together) this node runs at once; beyond
	// it a request is refused at once with ErrOverloaded (HTTP 429,
	// ERROR_CODE_OVERLOADED, RESP -BUSY). Higher admits more concurrency
	// at the cost of latency and memory under overload. 0: no bound.
	// Default 1024. With SchedLatencyTarget the bound moves between
	// MinInflight and MaxInflight (adaptive.go).
	MaxInflight int
	// MinInflight is the least the client bound shrinks to when the
	// scheduler is late; a MaxInflight below it is the floor as well (a
	// fixed bound). Default 16.
	MinInflight int
	// SchedLatencyTarget is the p99 of the time runnable goroutines wait
	// for a CPU that the client bound keeps: beyond it, the bound shrinks
	// toward MinInflight so that raft's heartbeats are not starved into
	// elections by admitted work; under it, a bound that refused grows
	// back toward MaxInflight. Default 25ms; 0: a fixed bound of
	// MaxInflight.
	SchedLatencyTarget time.Duration
	// MaxInflightBytes bounds the keys and values of the client requests
	// in flight, as MaxInflight bounds their number. 0: no bound. Default
	// 64 MiB.
	MaxInflightBytes int64
	// MaxPeerInflight bounds the calls of other nodes' coordinators
	// (replica reads and writes, forwarded linearizable operations) this
	// node runs at once: a budget of its own, so that a client flood
	// cannot take it. 0: no bound. Default 4096.
	MaxPeerInflight int
	// MaxPeerInflightBytes bounds the records of those calls in flight.
	// 0: no bound. Default 128 MiB.
	MaxPeerInflightBytes int64
	// RetryAfter is what a refused client is told to wait (HTTP
	// Retry-After, rounded up to whole seconds). Default 1s.
	RetryAfter time.Duration
	// RateLimits bound the rate of client operations on key prefixes and
	// of users (ratelimit.go): beyond a rule's rate an operation is
	// refused at once with ErrOverloaded. Per node. None by default.
	RateLimits []RateLimit
	// UnsafeStaleReads is a deliberately broken mode for testing the chaos
	// harness's linearizability checker (internal/chaos): linearizable
	// reads are served from this node's local replica, without read-index
	// and without going to the partition's leader, so they can be stale.
	// Never set it outside tests. Default false.
	UnsafeStaleReads bool
	// Logger receives debug and warning logs; nil discards them.
	Logger *slog.Logger
}

// DefaultConfig returns a fresh Config with every default filled in except
// NodeID.
func DefaultConfig() Config {
	return Config{
		MaxKeyBytes:         4096,
		MaxValueBytes:       1 << 20,
		RequestTimeout:      5 * time.Second,
		ReplicaWriteTimeout: 5 * time.Second,
		SpeculativeDelay:    50 * time.Millisecond,
		ListPageSize:        256,
		MaxListLimit:        100000,
		DefaultListLimit:    1000,

		HintedHandoff:         true,
		HintWindow:            3 * time.Hour,
		HintReplayRate:        5000,
		HintReplayBatch:       256,
		HintReplayInterval:    time.Second,
		MaxHintBytesPerTarget: 1 << 30,

		BatchReplayAge:      time.Minute,
		BatchReplayInterval: 10 * time.Second,

		MaxInflight:          1024,
		MinInflight:          16,
		SchedLatencyTarget:   25 * time.Millisecond,
		MaxInflightBytes:     64 << 20,
		MaxPeerInflight:      4096,
		MaxPeerInflightBytes: 128 << 20,
		RetryAfter:           time.Second,
	}
}

// Validate reports every problem with c, joined.
func (c Config) Validate() error {
	var errs []error
	if c.NodeID == "" {
		errs = append(errs, errors.New("coordinator: NodeID is required"))
	}
	positive := []struct {
		name string
		v    int64
	}{
		{"MaxKeyBytes", int64(c.MaxKeyBytes)},
		{"MaxValueBytes", int64(c.MaxValueBytes)},
		{"RequestTimeout", int64(c.RequestTimeout)},
		{"ReplicaWriteTimeout", int64(c.ReplicaWriteTimeout)},
		{"SpeculativeDelay", int64(c.SpeculativeDelay)},
		{"ListPageSize", int64(c.ListPageSize)},
		{"MaxListLimit", int64(c.MaxListLimit)},
		{"DefaultListLimit", int64(c.DefaultListLimit)},
		{"HintWindow", int64(c.HintWindow)},
		{"HintReplayRate", int64(c.HintReplayRate)},
		{"HintReplayBatch", int64(c.HintReplayBatch)},
		{"HintReplayInterval", int64(c.HintReplayInterval)},
		{"MaxHintBytesPerTarget", c.MaxHintBytesPerTarget},
		{"BatchReplayAge", int64(c.BatchReplayAge)},
		{"BatchReplayInterval", int64(c.BatchReplayInterval)},
		{"RetryAfter", int64(c.RetryAfter)},
	}
	for _, p := range positive {
		if p.v <= 0 {
			errs = append(errs, fmt.Errorf("coordinator: %s must be positive, got %d", p.name, p.v))
		}
	}
	for _, b := range []struct {
		name string
		v    int64
	}{
		{"MaxInflight", int64(c.MaxInflight)},
		{"MinInflight", int64(c.MinInflight)},
		{"SchedLatencyTarget", int64(c.SchedLatencyTarget)},
		{"MaxInflightBytes", c.MaxInflightBytes},
		{"MaxPeerInflight", int64(c.MaxPeerInflight)},
		{"MaxPeerInflightBytes", c.MaxPeerInflightBytes},
	} {
		if b.v < 0 {
			errs = append(errs, fmt.Errorf("coordinator: %s must not be negative (0: no bound), got %d", b.name, b.v))
		}
	}
	if err := validateRateLimits(c.RateLimits); err != nil {
		errs = append(errs, err)
	}
	if c.SchedLatencyTarget > 0 && c.MaxInflight > 0 && c.MinInflight < 1 {
		errs = append(errs, fmt.Errorf("coordinator: MinInflight must be at least 1 when the client bound adapts (SchedLatencyTarget %s), got %d", c.SchedLatencyTarget, c.MinInflight))
	}
	if c.DefaultListLimit > c.MaxListLimit {
		errs = append(errs, fmt.Errorf("coordinator: DefaultListLimit %d exceeds MaxListLimit %d", c.DefaultListLimit, c.MaxListLimit))
	}
	return errors.Join(errs...)
}

// RingSource gives the current ring snapshot. gossip.Gossip implements it.
type RingSource interface {
	Ring() *ring.Ring
}

// Liveness tells whether a member is believed alive. Reads ask live
// replicas first; writes are still sent to every replica.
type Liveness interface {
	Alive(nodeID string) bool
}

// Deps are the components a Coordinator uses. Store, Clock, Ring and
// Transport are required.
type Deps struct {
	// Store is this node's replica store.
	Store *replica.Store
	// Clock stamps writes.
	Clock *replica.Clock
	// Ring gives placement.
	Ring RingSource
	// Transport reaches other nodes' replicas.
	Transport Transport
	// Liveness orders read replicas; nil treats every member as alive.
	Liveness Liveness
	// Registerer receives the coordinator's metrics; nil keeps them private.
	Registerer prometheus.Registerer
	// Groups are this node's Raft groups; nil disables the linearizable
	// level (requests at it fail as unavailable).
	Groups *consensus.Manager
	// Lin forwards linearizable operations to other nodes' group leaders;
	// required with Groups. RPCTransport implements it.
	Lin LinTransport
	// Auth authorizes every request of the front ends (Set, Get, Delete,
	// List, CompareAndSet not made under System's context); nil allows
	// everything.
	Auth Authorizer
	// Login serves the Client service's Login; nil answers that
	// authentication is off.
	Login Authenticator
	// Busy, if set, is called for every request admitted (client or
	// peer), before it runs: the node's idle-procs controller gives the
	// process its normal GOMAXPROCS back on it (internal/idleprocs). It
	// must be cheap and safe for concurrent use.
	Busy func()
}

func (d Deps) validate() error {
	var errs []error
	if d.Store == nil {
		errs = append(errs, errors.New("coordinator: Deps.Store is required"))
	}
	if d.Clock == nil {
		errs = append(errs, errors.New("coordinator: Deps.Clock is required"))
	}
	if d.Ring == nil {
		errs = append(errs, errors.New("coordinator: Deps.Ring is required"))
	}
	if d.Transport == nil {
		errs = append(errs, errors.New("coordinator: Deps.Transport is required"))
	}
	if d.Groups != nil && d.Lin == nil {
		errs = append(errs, errors.New("coordinator: Deps.Lin is required with Deps.Groups"))
	}
	return errors.Join(errs...)
}
