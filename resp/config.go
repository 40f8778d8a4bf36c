package resp

import (
	"context"
	"fmt"
	"log/slog"
	"net"
	"time"

	"github.com/ringkv/ringkv/coordinator"
)

// Config configures a Server. Start from DefaultConfig.
type Config struct {
	// MaxRequestBytes bounds what a client may send without waiting for a
	// reply (one request, or the unanswered part of a pipeline); beyond
	// it the connection is closed as garbage. Values and keys over the
	// coordinator's own limits (smaller) are answered with -ERR and the
	// connection stays open.
	MaxRequestBytes int
	// ScanCursors is how many SCAN cursors the server remembers (oldest
	// forgotten first); a forgotten cursor answers -ERR invalid cursor.
	ScanCursors int
	// ScanCount is SCAN's page size when COUNT is not given.
	ScanCount int
	// MaxScanCount caps COUNT (SCAN) and a page of KEYS and DBSIZE.
	MaxScanCount int
	// MaxKeys caps how many keys KEYS returns; a larger answer is -ERR
	// (use SCAN).
	MaxKeys int
	// CASRetries bounds the compare-and-set rounds of one
	// read-modify-write command under contention (each lost round backs
	// off a random 0..min(2^round, 32) ms; RequestTimeout bounds them
	// too).
	CASRetries int
	// RequestTimeout bounds each command's store calls.
	RequestTimeout time.Duration
	// Logger receives protocol errors (rate limited per address) and
	// nothing per request. Nil: discarded.
	Logger *slog.Logger
	// Version is reported by INFO and HELLO.
	Version string
}

// DefaultConfig returns the defaults.
func DefaultConfig() Config {
	return Config{
		MaxRequestBytes: 64 << 20,
		ScanCursors:     65536,
		ScanCount:       10,
		MaxScanCount:    1000,
		MaxKeys:         100000,
		CASRetries:      1000,
		RequestTimeout:  10 * time.Second,
		Version:         "dev",
	}
}

// Validate reports the first invalid field, wrapping ErrInvalidConfig.
func (c Config) Validate() error {
	switch {
	case c.MaxRequestBytes < 1<<10:
		return fmt.Errorf("%w: MaxRequestBytes %d below 1 KiB", ErrInvalidConfig, c.MaxRequestBytes)
	case c.ScanCursors < 1:
		return fmt.Errorf("%w: ScanCursors %d < 1", ErrInvalidConfig, c.ScanCursors)
	case c.ScanCount < 1 || c.MaxScanCount < c.ScanCount:
		return fmt.Errorf("%w: ScanCount %d must be in 1..MaxScanCount (%d)", ErrInvalidConfig, c.ScanCount, c.MaxScanCount)
	case c.MaxKeys < 1:
		return fmt.Errorf("%w: MaxKeys %d < 1", ErrInvalidConfig, c.MaxKeys)
	case c.CASRetries < 1:
		return fmt.Errorf("%w: CASRetries %d < 1", ErrInvalidConfig, c.CASRetries)
	case c.RequestTimeout <= 0:
		return fmt.Errorf("%w: RequestTimeout %v <= 0", ErrInvalidConfig, c.RequestTimeout)
	}
	return nil
}

// Expiry is a write's expiry: TTL from the store's clock when it writes,
// or the absolute time At; both zero: never.
type Expiry struct {
	TTL time.Duration
	At  time.Time
}

// Store is what the server needs of the node's coordinator (the node
// adapts *coordinator.Coordinator, turning Expiry into WithTTL or
// WithExpiresAt).
type Store interface {
	GetItem(ctx context.Context, key []byte, level coordinator.Level) (coordinator.Item, bool, error)
	Set(ctx context.Context, key, value []byte, level coordinator.Level, exp Expiry) error
	Delete(ctx context.Context, key []byte, level coordinator.Level) error
	CompareAndSet(ctx context.Context, key []byte, expected *[]byte, value []byte, exp Expiry) (coordinator.CASResult, error)
	Expire(ctx context.Context, key []byte, ttl time.Duration, level coordinator.Level) (bool, error)
	Persist(ctx context.Context, key []byte, level coordinator.Level) (bool, error)
	ListFrom(ctx context.Context, prefix, from []byte, limit int, level coordinator.Level) ([]coordinator.Pair, error)
	// Txn runs a transaction at linearizable (GETDEL's compare-and-delete).
	Txn(ctx context.Context, req *coordinator.TxnRequest) (coordinator.TxnResult, error)
}

// MultiStore is an optional ability of a Store: multi-key reads and
// writes (coordinator.Coordinator's MGet and MSet: at linearizable a
// snapshot and one transaction, at the other levels reads key by key and
// a logged batch). With it MGET and MSET go through them; without it they
// run key by key.
type MultiStore interface {
	MGet(ctx context.Context, keys [][]byte, level coordinator.Level) ([]coordinator.MGetResult, error)
	MSet(ctx context.Context, pairs []coordinator.MSetPair, level coordinator.Level) error
}

// Authenticator checks AUTH's credentials. Nil in Deps: the node has no
// users, and AUTH answers as a Redis without a password does.
type Authenticator interface {
	// Login checks user's password and returns ctx carrying the caller,
	// for the Store's authorization of the connection's later commands.
	// Errors matching auth.ErrUnauthenticated answer -WRONGPASS.
	Login(ctx context.Context, user, password string) (context.Context, error)
	// Conn returns the context of a new connection's commands: it may
	// carry the caller a TLS client certificate names. Called on the
	// connection's first command, after the TLS handshake.
	Conn(ctx context.Context, c net.Conn) context.Context
}

// Admitter bounds the commands in flight (the node's admission control,
// coordinator.Coordinator.Admit on the Redis plane). Nil in Deps: no
// bound.
type Admitter interface {
	// Admit takes one command of n bytes (its arguments) without
	// waiting. It returns the function that gives it back, called once
	// the command is answered, or an error (matching
	// coordinator.ErrOverloaded) that the server answers with -BUSY.
	Admit(n int64) (release func(), err error)
}

// Deps are the server's collaborators.
type Deps struct {
	Store Store // required
	Auth  Authenticator
	Admit Admitter
}
