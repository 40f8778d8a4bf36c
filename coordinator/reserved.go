package coordinator

import (
	"context"
	"fmt"
)

// Reserved keys hold the cluster's own records: the ring that membership
// changes are decided on, and (later) users and roles. Every key whose
// first byte is 0x00 is reserved. Requests through the front ends (HTTP,
// the client service, the Pipe) may not name one: they are refused with
// ErrInvalidArgument, and List leaves reserved keys out of what it
// returns. Components of the node itself reach them with a context made
// by System. The records are ordinary records otherwise: replicated,
// repaired and snapshotted like any other.

// ReservedPrefix is the first byte of every reserved key.
const ReservedPrefix byte = 0x00

var errReservedKey = fmt.Errorf("%w: keys that begin with byte 0x00 are reserved for the cluster's own records", ErrInvalidArgument)

// IsReserved reports whether key is a reserved key.
func IsReserved(key []byte) bool { return len(key) > 0 && key[0] == ReservedPrefix }

type systemCtxKey struct{}

// System returns a context under which the coordinator serves reserved
// keys. Only components of the node use it; no front end ever makes one
// from a request.
func System(ctx context.Context) context.Context {
	return context.WithValue(ctx, systemCtxKey{}, true)
}

func isSystem(ctx context.Context) bool {
	v, _ := ctx.Value(systemCtxKey{}).(bool)
	return v
}
