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
