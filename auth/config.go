package auth

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"time"

	"golang.org/x/crypto/bcrypt"
)

// DefaultKey is the reserved key that holds the auth record by default. Its
// first byte 0x00 puts it among the cluster's reserved keys, out of reach
// of client requests.
const DefaultKey = "\x00ringkv/auth"

// maxPasswordBytes is bcrypt's limit: it refuses longer passwords.
const maxPasswordBytes = 72

// signingKeyBytes is the size of the HS256 token signing key.
const signingKeyBytes = 32

// Config tunes an Authority. DefaultConfig returns the defaults; New fills
// zero fields with them.
type Config struct {
	// Key is the reserved key under which the auth record is stored. Default
	// DefaultKey. Every node of a cluster must use the same key.
	Key string
	// BcryptCost is the bcrypt work factor for new password hashes, between
	// bcrypt.MinCost (4) and bcrypt.MaxCost (31). Default bcrypt.DefaultCost
	// (10, about 50-100 ms per hash or check on one core). Each step doubles
	// the work of a login and of a password guess alike. Hashes keep the
	// cost they were made with; a change applies to passwords set after it.
	BcryptCost int
	// MinPasswordBytes is the shortest password accepted, in bytes. Default
	// 8; at most 72, bcrypt's limit, which is also the longest accepted.
	MinPasswordBytes int
	// TokenTTL is how long a token from IssueToken stays valid. Default 10m;
	// at least 1s (token times have one-second precision). Longer means
	// fewer logins, and a stolen token that lasts longer.
	TokenTTL time.Duration
	// MaxStaleness bounds how old the cached auth state may be before a
	// call re-reads it from the Store: a change made on another node takes
	// effect here within this bound. Default 1s. Shorter costs one
	// linearizable read per node per MaxStaleness while requests arrive.
	MaxStaleness time.Duration
	// MaxStaleWhenUnavailable is how old the cached state may grow while the
	// Store cannot be read before calls fail closed with ErrUnavailable.
	// Default 30s; at least MaxStaleness. Longer rides out longer outages,
	// and keeps honoring a revoked grant longer during one.
	MaxStaleWhenUnavailable time.Duration
	// MaxRetries is how many compare-and-set races a change may lose to
	// concurrent changes before it gives up with ErrConflict. Default 8.
	MaxRetries int
	// Logger receives enable/disable and recovery (Info), the first failed
	// refresh while the cache is still usable (Warn) and the switch to
	// failing closed (Error). Nil discards.
	Logger *slog.Logger
}

// DefaultConfig returns fresh defaults.
func DefaultConfig() Config {
	return Config{
		Key:                     DefaultKey,
		BcryptCost:              bcrypt.DefaultCost,
		MinPasswordBytes:        8,
		TokenTTL:                10 * time.Minute,
		MaxStaleness:            time.Second,
		MaxStaleWhenUnavailable: 30 * time.Second,
		MaxRetries:              8,
	}
}

// LocalConfig returns DefaultConfig with the cheapest bcrypt cost, for
// loopback tests. Never use it in production.
func LocalConfig() Config {
	c := DefaultConfig()
	c.BcryptCost = bcrypt.MinCost
	return c
}

func (c Config) withDefaults() Config {
	d := DefaultConfig()
	if c.Key == "" {
		c.Key = d.Key
	}
	if c.BcryptCost == 0 {
		c.BcryptCost = d.BcryptCost
	}
	if c.MinPasswordBytes == 0 {
		c.MinPasswordBytes = d.MinPasswordBytes
	}
	if c.TokenTTL == 0 {
		c.TokenTTL = d.TokenTTL
	}
	if c.MaxStaleness == 0 {
		c.MaxStaleness = d.MaxStaleness
	}
	if c.MaxStaleWhenUnavailable == 0 {
		c.MaxStaleWhenUnavailable = max(d.MaxStaleWhenUnavailable, c.MaxStaleness)
	}
	if c.MaxRetries == 0 {
		c.MaxRetries = d.MaxRetries
	}
	if c.Logger == nil {
		c.Logger = slog.New(slog.DiscardHandler)
	}
	return c
}

// Validate reports every problem with c, joined. Zero fields are problems
// here; New fills them with defaults before it validates.
func (c Config) Validate() error {
	var errs []error
	if c.Key == "" {
		errs = append(errs, errors.New("auth: Key is required"))
	}
	if c.BcryptCost < bcrypt.MinCost || c.BcryptCost > bcrypt.MaxCost {
		errs = append(errs, fmt.Errorf("auth: BcryptCost %d is outside [%d, %d]", c.BcryptCost, bcrypt.MinCost, bcrypt.MaxCost))
	}
	if c.MinPasswordBytes < 1 || c.MinPasswordBytes > maxPasswordBytes {
		errs = append(errs, fmt.Errorf("auth: MinPasswordBytes %d is outside [1, %d]", c.MinPasswordBytes, maxPasswordBytes))
	}
	if c.TokenTTL < time.Second {
		errs = append(errs, fmt.Errorf("auth: TokenTTL %v is shorter than 1s", c.TokenTTL))
	}
	if c.MaxStaleness <= 0 {
		errs = append(errs, fmt.Errorf("auth: MaxStaleness %v must be positive", c.MaxStaleness))
	}
	if c.MaxStaleWhenUnavailable < c.MaxStaleness {
		errs = append(errs, fmt.Errorf("auth: MaxStaleWhenUnavailable %v is shorter than MaxStaleness %v", c.MaxStaleWhenUnavailable, c.MaxStaleness))
	}
	if c.MaxRetries < 0 {
		errs = append(errs, fmt.Errorf("auth: MaxRetries %d is negative", c.MaxRetries))
	}
	return errors.Join(errs...)
}

// Store holds the auth record. The node implements it over the cluster's
// linearizable reads and compare-and-set on one reserved key. Both methods
// must be safe for concurrent use. The Authority does not modify the slices
// it passes or receives, and keeps neither after the call returns.
type Store interface {
	// Get reads key linearizably; found=false if absent.
	Get(ctx context.Context, key []byte) (value []byte, found bool, err error)
	// CompareAndSet sets key to value iff its current value equals
	// *expected (expected nil: iff absent). It reports whether it swapped;
	// when it did not, current is the value found (nil, false if absent).
	CompareAndSet(ctx context.Context, key []byte, expected *[]byte, value []byte) (swapped bool, current []byte, found bool, err error)
}

// Deps are what an Authority uses but does not own.
type Deps struct {
	// Store holds the auth record. Required.
	Store Store
	// Now returns the time, for cache ages and token times; nil means
	// time.Now.
	Now func() time.Time
	// Rand is the source of signing keys; nil means crypto/rand.Reader.
	// Password salts always come from crypto/rand (inside bcrypt).
	Rand io.Reader
}
