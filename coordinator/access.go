package coordinator

import (
	"context"
	"time"

	"github.com/ringkv/ringkv/auth"
)

// Authorizer decides whether the caller of a request may do it. The node's
// implementation finds the caller in ctx (a TLS client certificate, a
// bearer token, the user an HTTP middleware authenticated) and answers
// nil, or an error matching auth.ErrUnauthenticated (who is this?),
// auth.ErrPermissionDenied (not allowed; the error names the permission
// missing) or auth.ErrUnavailable (the rules cannot be read: refused, never
// allowed). Deps.Auth nil allows everything (an insecure cluster).
type Authorizer interface {
	Authorize(ctx context.Context, act auth.Action) error
}

// Authenticator exchanges a user's password for a bearer token: the Client
// service's Login. It returns auth.ErrUnauthenticated for a bad user or
// password and auth.ErrAuthDisabled when authentication is off.
type Authenticator interface {
	Login(ctx context.Context, user, password string) (token string, expires time.Time, err error)
}

// allow asks Deps.Auth whether the caller in ctx may do op on key (for
// OpList: on every key with prefix key), then takes the operation's
// tokens from the rate limits that apply (ratelimit.go): an error
// wrapping ErrOverloaded when one is spent. The node's own components,
// calling with System's context, are always allowed.
func (c *Coordinator) allow(ctx context.Context, op auth.Op, key []byte) error {
	if err := c.permit(ctx, op, key); err != nil {
		return err
	}
	if c.rates != nil && op != auth.OpAdmin && !isSystem(ctx) {
		return c.rates.take(ctx, key, time.Now())
	}
	return nil
}

// permit is allow without the rate limits: for the second permission an
// operation needs on a key it already paid for (a compare-and-set reads
// and writes its key; a transaction may compare and write one key).
func (c *Coordinator) permit(ctx context.Context, op auth.Op, key []byte) error {
	if c.deps.Auth == nil || isSystem(ctx) {
		return nil
	}
	return c.deps.Auth.Authorize(ctx, auth.Action{Op: op, Key: key}) //nolint:wrapcheck // the Authorizer's errors are the API
}
