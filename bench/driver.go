package bench

import (
	"context"
	"errors"
)

// Driver is a store under test. Implementations must be safe for
// concurrent use. level is Spec.Level, passed through unchanged.
type Driver interface {
	// Name labels the driver's results ("ringkv", "etcd").
	Name() string
	// Get reads key; found is false when it is absent.
	Get(ctx context.Context, key, level string) (value []byte, found bool, err error)
	// Put writes key.
	Put(ctx context.Context, key string, value []byte, level string) error
	// CompareAndSet replaces key's value with value if it currently
	// equals expected, or, when expected is nil, if key is absent. A
	// mismatch is swapped == false with a nil error.
	CompareAndSet(ctx context.Context, key string, expected, value []byte, level string) (swapped bool, err error)
	// List returns how many pairs with prefix it read, at most limit.
	List(ctx context.Context, prefix string, limit int, level string) (int, error)
	// ErrorKind names err's kind for the report ("timeout",
	// "unavailable", ...). Kinds are the driver's own; "other" is fine.
	ErrorKind(err error) string
}

// TxnDriver is a Driver that runs workload T: a read of K keys, then a
// transaction that writes them all only if none changed since.
type TxnDriver interface {
	Driver
	// ReadVersions reads keys in one snapshot and returns each one's
	// version (0: absent) as CommitIfVersions compares it.
	ReadVersions(ctx context.Context, keys []string, level string) ([]uint64, error)
	// CommitIfVersions atomically sets every key to value if each key's
	// version still equals versions[i], else reads them. A version that
	// changed is committed == false with a nil error.
	CommitIfVersions(ctx context.Context, keys []string, versions []uint64, value []byte) (committed bool, err error)
}

// ErrorKindOf is a fallback classifier for drivers: context deadlines are
// "timeout", cancellation "canceled", anything else "other".
func ErrorKindOf(err error) string {
	switch {
	case errors.Is(err, context.DeadlineExceeded):
		return "timeout"
	case errors.Is(err, context.Canceled):
		return "canceled"
	default:
		return "other"
	}
}
