package client

import (
	"context"
	"crypto/tls"
	"fmt"
	"log/slog"
	"net"
	"strings"
	"time"

	"github.com/ringkv/ringkv/proto/kvpb"
)

// Consistency is a per-call consistency level.
type Consistency int

// The consistency levels. Default means the Client's default level
// (Quorum unless set with WithDefaultConsistency).
const (
	// Default uses the Client's default level.
	Default Consistency = iota
	// One waits for one replica: fastest, reads may be stale.
	One
	// Quorum waits for a majority of the key's replicas; a Quorum read sees
	// every Quorum write that completed before it started.
	Quorum
	// All waits for every replica; fails while any replica is down.
	All
	// Linearizable goes through the partition's Raft leader: operations at
	// this level on a key are linearizable with respect to each other.
	Linearizable
)

// String returns the level's name: "one", "quorum", "all", "linearizable"
// or "default".
func (c Consistency) String() string {
	switch c {
	case Default:
		return "default"
	case One:
		return "one"
	case Quorum:
		return "quorum"
	case All:
		return "all"
	case Linearizable:
		return "linearizable"
	default:
		return fmt.Sprintf("Consistency(%d)", int(c))
	}
}

// ParseConsistency parses a level name, case-insensitively; "" is Default.
// Other names return an error wrapping ErrInvalidArgument.
func ParseConsistency(s string) (Consistency, error) {
	switch strings.ToLower(strings.TrimSpace(s)) {
	case "":
		return Default, nil
	case "one":
		return One, nil
	case "quorum":
		return Quorum, nil
	case "all":
		return All, nil
	case "linearizable":
		return Linearizable, nil
	default:
		return Default, fmt.Errorf("%w: unknown consistency level %q (want one, quorum, all or linearizable)", ErrInvalidArgument, s)
	}
}

func (c Consistency) wire() (kvpb.Consistency, error) {
	switch c {
	case One:
		return kvpb.Consistency_CONSISTENCY_ONE, nil
	case Quorum:
		return kvpb.Consistency_CONSISTENCY_QUORUM, nil
	case All:
		return kvpb.Consistency_CONSISTENCY_ALL, nil
	case Linearizable:
		return kvpb.Consistency_CONSISTENCY_LINEARIZABLE, nil
	default:
		return 0, fmt.Errorf("%w: unknown consistency level %d", ErrInvalidArgument, int(c))
	}
}

// Config tunes a Client. New starts from DefaultConfig and applies the
// Options; each field is also settable with its Option.
type Config struct {
	// Consistency is the level of calls that do not choose one. Default
	// Quorum.
	Consistency Consistency
	// ConnsPerNode bounds the drpc connections to each node; each carries
	// one call at a time. Default 16.
	ConnsPerNode int
	// DialTimeout bounds connecting to a node, the TLS handshake
	// included. Default 1s.
	DialTimeout time.Duration
	// Dialer, if set, makes the TCP connections to nodes (through a
	// proxy, from a network namespace); TLS, when set, runs over them.
	// Default nil: a net.Dialer.
	Dialer func(ctx context.Context, network, addr string) (net.Conn, error)
	// TLS, if set, is used for every connection (a secure cluster): it
	// should trust the cluster's CA and, for certificate authentication,
	// present a client certificate (WithCertsDir builds one). Its
	// ServerName is filled from each node's address when empty. Nil
	// dials plain TCP.
	TLS *tls.Config
	// CertsDir, if set, is a certificates directory (see `ringkv certs`)
	// New builds the TLS configuration from, in place of TLS: it trusts
	// CertsDir/ca.crt, requires a node certificate of the nodes, and
	// presents CertsDir/client.CertUser.crt (with its key) if CertUser is
	// set and that file exists. Default "".
	CertsDir string
	// CertUser names the client certificate of CertsDir to present: the
	// user a node authenticates the connection as. "" presents none.
	CertUser string
	// User and Password, if set, make the client log in (Login on any
	// node, when a call first needs it) and send the bearer token it gets
	// with every call, renewing it before it expires (auth.go). They need
	// TLS or CertsDir: the password travels in the Login request. A client
	// certificate, when presented too, takes precedence on the node.
	User     string
	Password string
	// RequestTimeout is the deadline of calls whose context has none.
	// Default 10s.
	RequestTimeout time.Duration
	// MaxAttempts bounds the attempts of one call (retries + 1). Default 8.
	MaxAttempts int
	// BackoffBase is the first retry's backoff ceiling; it doubles per
	// retry up to BackoffMax, and each wait is drawn uniformly from
	// [0, ceiling] (full jitter). Defaults 20ms and 1s.
	BackoffBase time.Duration
	BackoffMax  time.Duration
	// RefreshInterval is how often the topology is refreshed when nothing
	// prompts it. Default 5s.
	RefreshInterval time.Duration
	// NodeDownFor is how long a node that refused a connection is tried
	// only after every other. Default 1s.
	NodeDownFor time.Duration
	// BatchChunk caps the operations one Batch RPC carries. Default 256.
	BatchChunk int
	// CoalesceConns is how many RPCs carrying Gets at one level may be in
	// flight to a node at once; Gets made meanwhile wait and go together,
	// up to BatchChunk, in the next (coalesce.go). Writes always travel
	// alone. 0 sends every Get in an RPC of its own. Default 2.
	CoalesceConns int
	// PipeWrites sends writes (Set, Delete, CompareAndSet, PutIfAbsent)
	// to a node on one long-lived Pipe stream, answered as each finishes
	// (pipe.go): concurrent writes share the socket's writes and reads
	// instead of taking a connection and a stream each. false sends each
	// write in an RPC of its own. Default true.
	PipeWrites bool
	// PipeReads sends Gets on the node's Pipe stream too, answered as
	// each finishes, instead of coalescing them into Batch RPCs (lanes,
	// coalesce.go): on three serve processes a third less server CPU per
	// ONE read. Default true.
	PipeReads bool
	// ThrottleRatio turns on client-side adaptive throttling
	// (throttle.go): once a node has refused calls as overloaded, the
	// client refuses, without sending them, the calls to that node beyond
	// about ThrottleRatio times what it accepted over the last 5 s
	// (ErrOverloaded, retried elsewhere like a node's refusal). Default 2,
	// as the Google SRE book suggests; 0 turns it off.
	ThrottleRatio float64
	// Logger receives debug logs; nil discards.
	Logger *slog.Logger
}

// DefaultConfig returns a fresh Config with every default filled in.
func DefaultConfig() Config {
	return Config{
		Consistency:     Quorum,
		ConnsPerNode:    16,
		DialTimeout:     time.Second,
		RequestTimeout:  10 * time.Second,
		MaxAttempts:     8,
		BackoffBase:     20 * time.Millisecond,
		BackoffMax:      time.Second,
		RefreshInterval: 5 * time.Second,
		NodeDownFor:     time.Second,
		BatchChunk:      256,
		CoalesceConns:   2,
		PipeWrites:      true,
		PipeReads:       true,
		ThrottleRatio:   2,
	}
}

// Validate reports the problems of c, joined into one error wrapping
// ErrInvalidArgument.
func (c Config) Validate() error {
	var problems []string
	if c.Consistency < One || c.Consistency > Linearizable {
		problems = append(problems, fmt.Sprintf("Consistency %v is not a level", c.Consistency))
	}
	for name, v := range map[string]int64{
		"ConnsPerNode": int64(c.ConnsPerNode), "DialTimeout": int64(c.DialTimeout),
		"RequestTimeout": int64(c.RequestTimeout), "MaxAttempts": int64(c.MaxAttempts),
		"BackoffBase": int64(c.BackoffBase), "BackoffMax": int64(c.BackoffMax),
		"RefreshInterval": int64(c.RefreshInterval), "NodeDownFor": int64(c.NodeDownFor),
		"BatchChunk": int64(c.BatchChunk),
	} {
		if v <= 0 {
			problems = append(problems, fmt.Sprintf("%s must be positive, got %d", name, v))
		}
	}
	if c.TLS != nil && c.CertsDir != "" {
		problems = append(problems, "set TLS or CertsDir, not both")
	}
	if c.CertUser != "" && c.CertsDir == "" {
		problems = append(problems, "CertUser needs CertsDir")
	}
	if (c.User == "") != (c.Password == "") {
		problems = append(problems, "User and Password go together")
	}
	if c.User != "" && c.TLS == nil && c.CertsDir == "" {
		problems = append(problems, "User and Password need TLS or CertsDir: the password would travel in the clear")
	}
	if c.ThrottleRatio < 0 || c.ThrottleRatio != c.ThrottleRatio {
		problems = append(problems, fmt.Sprintf("ThrottleRatio must be 0 (off) or positive, got %v", c.ThrottleRatio))
	}
	if c.CoalesceConns < 0 {
		problems = append(problems, fmt.Sprintf("CoalesceConns must not be negative, got %d", c.CoalesceConns))
	}
	if len(problems) == 0 {
		return nil
	}
	return fmt.Errorf("%w: config: %s", ErrInvalidArgument, strings.Join(problems, "; "))
}

// Option changes the Config of New.
type Option func(*Config)

// WithConfig replaces the whole Config (later Options still apply).
func WithConfig(cfg Config) Option { return func(c *Config) { *c = cfg } }

// WithDefaultConsistency sets the level of calls that do not choose one.
func WithDefaultConsistency(level Consistency) Option {
	return func(c *Config) { c.Consistency = level }
}

// WithThrottleRatio sets Config.ThrottleRatio (0 turns client-side
// throttling off).
func WithThrottleRatio(k float64) Option { return func(c *Config) { c.ThrottleRatio = k } }

// WithConnsPerNode sets the connection pool size per node.
func WithConnsPerNode(n int) Option { return func(c *Config) { c.ConnsPerNode = n } }

// WithDialTimeout sets the timeout of connecting to a node.
func WithDialTimeout(d time.Duration) Option { return func(c *Config) { c.DialTimeout = d } }

// WithRequestTimeout sets the deadline of calls whose context has none.
func WithRequestTimeout(d time.Duration) Option { return func(c *Config) { c.RequestTimeout = d } }

// WithRetry sets the attempts per call and the backoff bounds.
func WithRetry(maxAttempts int, base, maxBackoff time.Duration) Option {
	return func(c *Config) { c.MaxAttempts, c.BackoffBase, c.BackoffMax = maxAttempts, base, maxBackoff }
}

// WithRefreshInterval sets the periodic topology refresh interval.
func WithRefreshInterval(d time.Duration) Option { return func(c *Config) { c.RefreshInterval = d } }

// WithCoalesceConns sets how many RPCs carrying Gets at one level may be
// in flight to a node at once (0: no coalescing; see
// Config.CoalesceConns).
func WithCoalesceConns(n int) Option { return func(c *Config) { c.CoalesceConns = n } }

// WithPipeWrites sets whether writes travel on a Pipe stream per node
// (see Config.PipeWrites).
func WithPipeWrites(on bool) Option { return func(c *Config) { c.PipeWrites = on } }

// WithPipeReads sets whether Gets travel on the node's Pipe stream
// rather than in coalesced Batch RPCs (see Config.PipeReads).
func WithPipeReads(on bool) Option { return func(c *Config) { c.PipeReads = on } }

// WithDialer makes every TCP connection to a node with dial (see
// Config.Dialer).
func WithDialer(dial func(ctx context.Context, network, addr string) (net.Conn, error)) Option {
	return func(c *Config) { c.Dialer = dial }
}

// WithTLS dials every node over TLS with cfg (see Config.TLS).
func WithTLS(cfg *tls.Config) Option { return func(c *Config) { c.TLS = cfg } }

// WithCertsDir dials every node over TLS as a certificates directory
// allows: trusting dir/ca.crt and presenting dir/client.USER.crt, if it
// exists, as user ("" presents none). See Config.CertsDir. New returns an
// error wrapping ErrInvalidArgument when dir has no readable ca.crt or
// the certificate of user does not load.
func WithCertsDir(dir, user string) Option {
	return func(c *Config) { c.CertsDir, c.CertUser = dir, user }
}

// WithCredentials logs in as user with password and sends the token with
// every call (see Config.User). It needs WithCertsDir or WithTLS. A wrong
// user or password makes calls fail with ErrUnauthenticated.
func WithCredentials(user, password string) Option {
	return func(c *Config) { c.User, c.Password = user, password }
}

// WithLogger sets the logger for debug logs.
func WithLogger(l *slog.Logger) Option { return func(c *Config) { c.Logger = l } }

// CallOption changes one call.
type CallOption func(*callConfig)

type callConfig struct {
	level Consistency
	limit int
	// ttl is WithTTL's, 0 without it; ttlSet tells a bad WithTTL(0)
	// from none.
	ttl    time.Duration
	ttlSet bool
}

// WithTTL makes a write (Set, SetOp, CompareAndSet, PutIfAbsent) expire
// ttl after the node that coordinates it writes it: from then on every
// read at every level finds the key absent, and a PutIfAbsent takes it.
// ttl must be positive (at most 100 years); otherwise the call fails with
// ErrInvalidArgument. It rounds up to whole microseconds. Other calls
// ignore it.
func WithTTL(ttl time.Duration) CallOption {
	return func(cc *callConfig) { cc.ttl, cc.ttlSet = ttl, true }
}

// maxTTL is the node's bound (coordinator.MaxTTL).
const maxTTL = 100 * 365 * 24 * time.Hour

// ttlMicros returns the call's TTL as the wire carries it (0: none).
func (cc callConfig) ttlMicros() (int64, error) {
	if !cc.ttlSet {
		return 0, nil
	}
	return ttlToMicros(cc.ttl)
}

// ttlToMicros checks ttl and rounds it up to microseconds.
func ttlToMicros(ttl time.Duration) (int64, error) {
	if ttl <= 0 || ttl > maxTTL {
		return 0, fmt.Errorf("%w: ttl %s outside (0, %s]", ErrInvalidArgument, ttl, maxTTL)
	}
	return int64((ttl + time.Microsecond - 1) / time.Microsecond), nil
}

// WithConsistency sets the call's consistency level.
func WithConsistency(level Consistency) CallOption {
	return func(cc *callConfig) { cc.level = level }
}

// WithLimit caps how many pairs List returns (0: the node's default,
// 1000).
func WithLimit(n int) CallOption { return func(cc *callConfig) { cc.limit = n } }

func (c *Client) callConfig(opts []CallOption) callConfig {
	cc := callConfig{}
	for _, o := range opts {
		o(&cc)
	}
	if cc.level == Default {
		cc.level = c.cfg.Consistency
	}
	return cc
}
