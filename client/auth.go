package client

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"sync/atomic"
	"time"

	"storj.io/drpc/drpcerr"
	"storj.io/drpc/drpcmetadata"

	"github.com/ringkv/ringkv/proto/kvpb"
)

// Logging in (Config.User and Password, WithCredentials). The client
// exchanges the password for a bearer token with the Client service's
// Login, on any node, when a call first needs one, and sends the token as
// the drpc metadata "authorization" = "Bearer TOKEN" with every call
// after: Do, Batch and List calls, the coalesced Gets, and the Pipe
// streams that carry writes (the metadata goes out when a stream opens).
//
// Renewal: a token is renewed once 80% of its lifetime has passed. The
// call that notices starts the login and goes on with the old token,
// still valid; only a call that finds no valid token waits for the login.
// A pipe whose stream was opened with an older token than the current one
// stops sending on it when it next has writes, lets the node answer what
// the stream carries (CloseSend; the node ends the stream once every
// operation is answered), and opens a new stream with the current token.
// So a renewal never makes a write's outcome unknown.
//
// An answer UNAUTHENTICATED (the token expired early, its user's password
// changed, authentication was enabled after the node said it was off)
// renews the token that call used and tries the call again, once; a
// second refusal fails the call with ErrUnauthenticated. Nothing refused
// that way was applied: nodes authorize before they act. PERMISSION_DENIED
// is final.
//
// One login runs at a time (the first caller starts it on a goroutine of
// the Client, bounded by RequestTimeout and Close; the others wait for it
// or use the token they have). A refused login (wrong user or password)
// is remembered for BackoffMax, so that a caller retrying in a loop does
// not make the nodes check a password (bcrypt) on every call. When the
// cluster answers that authentication is disabled the client sends no
// token, as every request is then allowed; the first UNAUTHENTICATED
// answer (authentication was enabled since) logs in.

// authHeader is the drpc metadata key a node reads a bearer token from.
const authHeader = "authorization"

// minTokenLife is the least lifetime the client assumes a token has, so
// that a clock ahead of the nodes' cannot make it log in on every call.
const minTokenLife = time.Second

// token is a bearer token as the client holds it. Immutable.
type token struct {
	header string // "Bearer TOKEN"; "": authentication is off, send none
	// renewAt is when to start renewing (80% of the lifetime), expires when
	// the token stops being usable, both on the client's clock.
	renewAt time.Time
	expires time.Time
}

// tokenOff is the token of a cluster whose authentication is disabled: no
// header, never renewed by time.
var tokenOff = &token{renewAt: time.Unix(1<<40, 0), expires: time.Unix(1<<40, 0)}

func newToken(bearer string, expires, now time.Time) *token {
	life := max(expires.Sub(now), minTokenLife)
	return &token{header: "Bearer " + bearer, renewAt: now.Add(life * 4 / 5), expires: now.Add(life)}
}

// credentials are the user and password of a Client and the token they
// got.
type credentials struct {
	user, password string
	cur            atomic.Pointer[token] // nil until the first login

	mu struct {
		sync.Mutex
		flight       *loginFlight // the login under way, or nil
		refused      error        // the last login's refusal
		refusedUntil time.Time    // when refused stops being returned
	}
}

// loginFlight is one login; done is closed once tok or err is set.
type loginFlight struct {
	done chan struct{}
	tok  *token
	err  error
}

// staleTokenError is an UNAUTHENTICATED answer to a call made with tok:
// call renews tok and tries again, once. It matches ErrUnauthenticated.
type staleTokenError struct {
	tok *token
	err error
}

func (e *staleTokenError) Error() string { return e.err.Error() }
func (e *staleTokenError) Unwrap() error { return e.err }

// refusedWith marks err, an answer to a call made with tok, as renewable
// when it is UNAUTHENTICATED and the Client logs in.
func (c *Client) refusedWith(tok *token, err error) error {
	if tok == nil || !errors.Is(err, ErrUnauthenticated) {
		return err
	}
	return &staleTokenError{tok: tok, err: err}
}

// token returns the token to send with a call: nil when the Client does not
// log in. It logs in when there is no usable token (waiting until ctx
// ends), and starts a renewal without waiting when the one held is due.
// Errors: ErrUnauthenticated (wrong user or password), ErrUnavailable (no
// node answered the login), ErrTimeout, ErrClosed.
func (c *Client) token(ctx context.Context) (*token, error) {
	a := c.creds
	if a == nil {
		return nil, nil
	}
	for {
		t := a.cur.Load()
		now := time.Now()
		if t != nil && now.Before(t.renewAt) {
			return t, nil
		}
		f, err := c.login(t)
		switch {
		case t != nil && now.Before(t.expires) && (f != nil || err != nil):
			return t, nil // renewing, or the renewal failed: t is still good
		case err != nil:
			return nil, err
		case f == nil:
			continue // replaced meanwhile
		}
		return c.awaitLogin(ctx, f)
	}
}

// renewToken replaces used, a token a node refused, and returns the token
// to try again with: the current one if it is already another, else the
// one a new login gets. Errors are those of token.
func (c *Client) renewToken(ctx context.Context, used *token) (*token, error) {
	a := c.creds
	for {
		t := a.cur.Load()
		if t != used && t != nil && time.Now().Before(t.expires) {
			return t, nil
		}
		f, err := c.login(t)
		if err != nil {
			return nil, err
		}
		if f != nil {
			return c.awaitLogin(ctx, f)
		}
	}
}

func (c *Client) awaitLogin(ctx context.Context, f *loginFlight) (*token, error) {
	select {
	case <-f.done:
		return f.tok, f.err
	case <-ctx.Done():
		return nil, timeoutError(ctx, c.isClosed(), errors.New("waiting for login"))
	}
}

// login returns the login under way, or starts one to replace stale (the
// token the caller saw). It returns nil, nil when the token is no longer
// stale (another login replaced it: look again), and the last refusal
// while it is remembered.
func (c *Client) login(stale *token) (*loginFlight, error) {
	a := c.creds
	a.mu.Lock()
	defer a.mu.Unlock()
	if f := a.mu.flight; f != nil {
		return f, nil
	}
	if a.cur.Load() != stale {
		return nil, nil
	}
	if a.mu.refused != nil && time.Now().Before(a.mu.refusedUntil) {
		return nil, a.mu.refused
	}
	c.mu.RLock()
	defer c.mu.RUnlock()
	if c.mu.closed {
		return nil, ErrClosed
	}
	f := &loginFlight{done: make(chan struct{})}
	a.mu.flight = f
	// Under c.mu, checked open: Close has not begun, so Go runs it.
	c.wg.Go(func() {
		tok, err := c.loginCall()
		a.mu.Lock()
		a.mu.flight = nil
		a.mu.refused = nil
		switch {
		case err == nil:
			a.cur.Store(tok)
		case errors.Is(err, ErrUnauthenticated):
			a.mu.refused, a.mu.refusedUntil = err, time.Now().Add(c.cfg.BackoffMax)
		}
		a.mu.Unlock()
		f.tok, f.err = tok, err
		close(f.done)
	})
	return f, nil
}

// loginCall logs in on any node, with the retries of a read, within
// RequestTimeout.
func (c *Client) loginCall() (*token, error) {
	ctx, cancel := c.callContext(context.Background())
	defer cancel()
	var tok *token
	err := c.call(ctx, "", One, false, func(ctx context.Context, addr string) (outcome, error) {
		t, how, err := c.loginAt(ctx, addr)
		tok = t
		return how, err
	})
	if err != nil {
		return nil, fmt.Errorf("login as %q: %w", c.creds.user, err)
	}
	return tok, nil
}

// loginAt makes one Login call to addr.
func (c *Client) loginAt(ctx context.Context, addr string) (*token, outcome, error) {
	p := c.pool(addr)
	if p == nil {
		return nil, final, ErrClosed
	}
	conn, how, err := c.conn(ctx, p)
	if err != nil {
		return nil, how, err
	}
	resp, err := kvpb.NewDRPCClientClient(conn).Login(ctx, &kvpb.LoginRequest{User: c.creds.user, Password: c.creds.password})
	switch code := drpcerr.Code(err); {
	case err == nil:
		p.put(conn, true)
		return newToken(resp.GetToken(), time.Unix(0, resp.GetExpiresUnixNanos()), time.Now()), final, nil
	case code == uint64(kvpb.ErrorCode_ERROR_CODE_AUTH_DISABLED):
		p.put(conn, true)
		c.log.Debug("authentication is off; calls carry no token", "addr", addr)
		return tokenOff, final, nil
	case code == drpcerr.Unimplemented: // an older node: another may serve it
		p.put(conn, true)
		return nil, retry, fmt.Errorf("%w: %s does not serve Login: %w", ErrUnavailable, addr, err)
	}
	how, err = c.rpcFailed(addr, p, conn, err)
	return nil, how, err
}

// metadataKey is the context key under which drpcmetadata keeps a call's
// metadata (unexported there), found by asking drpcmetadata.Get; nil if
// it could not be found.
var metadataKey = func() any {
	var p keyProbe
	drpcmetadata.Get(&p)
	return p.key
}()

// keyProbe is a context that remembers the key it was asked for.
type keyProbe struct {
	context.Context
	key any
}

func (p *keyProbe) Value(key any) any {
	p.key = key
	return nil
}

// withToken returns ctx carrying tok's authorization header as drpc
// metadata, in place of any metadata ctx carried: drpcmetadata.Add would
// write into the caller's map, which other calls may be reading (and
// would forward whatever else it holds to the node).
func withToken(ctx context.Context, tok *token) context.Context {
	if tok == nil || tok.header == "" {
		return ctx
	}
	if metadataKey == nil {
		return drpcmetadata.Add(ctx, authHeader, tok.header)
	}
	return context.WithValue(ctx, metadataKey, map[string]string{authHeader: tok.header})
}
