package client

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"storj.io/drpc/drpcerr"

	"github.com/ringkv/ringkv/internal/pki"
	"github.com/ringkv/ringkv/internal/rpcconn"
	"github.com/ringkv/ringkv/internal/workgroup"
	"github.com/ringkv/ringkv/proto/kvpb"
)

// Client talks to a ringkv cluster. It is safe for concurrent use; Close
// releases its connections and goroutines.
type Client struct {
	cfg   Config
	seeds []string
	log   *slog.Logger
	creds *credentials // nil: no login (auth.go)

	// lifetime ends with Close; every call's context is cut short by it.
	lifetime context.Context
	cancel   context.CancelFunc
	wg       workgroup.Group // Close refuses more and waits
	// refreshCh wakes the refresher; capacity 1 so a request is never lost
	// and senders never block. Never closed.
	refreshCh chan struct{}
	rr        atomic.Uint64 // rotates calls between a key's replicas

	mu struct {
		sync.RWMutex
		view    *view
		leaders []string         // per partition; "" unknown
		pools   map[string]*pool // by address
		lanes   map[laneKey]*lane
		pipes   map[string]*pipe // by address
		// throttles: by address, when Config.ThrottleRatio > 0
		throttles map[string]*throttle
		down      map[string]time.Time
		closed    bool
	}
	rnd struct {
		sync.Mutex
		r *rand.Rand
	}
}

// New returns a Client for the cluster reachable at addrs (drpc addresses
// of any of its nodes). It learns the topology from the first node that
// answers within cfg.RequestTimeout and returns an error wrapping
// ErrUnavailable when none does, or ErrInvalidArgument for bad addresses or
// options (a certs directory without a readable ca.crt included). It does
// not log in: the first call that needs a token does.
func New(addrs []string, opts ...Option) (*Client, error) {
	c, err := newClient(addrs, opts)
	if err != nil {
		return nil, err
	}
	ctx, cancel := context.WithTimeout(c.lifetime, c.cfg.RequestTimeout)
	defer cancel()
	if err := c.refresh(ctx); err != nil {
		_ = c.Close() // report the refresh error
		return nil, fmt.Errorf("%w: no node of %v answered: %w", ErrUnavailable, addrs, err)
	}
	return c, nil
}

// newClient builds a Client without contacting the cluster: calls made
// before the topology is known go to the seeds.
func newClient(addrs []string, opts []Option) (*Client, error) {
	cfg := DefaultConfig()
	for _, o := range opts {
		o(&cfg)
	}
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	if cfg.CertsDir != "" {
		t, err := pki.ClientTLS(cfg.CertsDir, cfg.CertUser)
		if err != nil {
			return nil, fmt.Errorf("%w: certs dir %s: %w", ErrInvalidArgument, cfg.CertsDir, err)
		}
		cfg.TLS = t
	}
	var seeds []string
	for _, a := range addrs {
		for _, s := range strings.Split(a, ",") {
			if s = strings.TrimSpace(s); s != "" {
				seeds = append(seeds, s)
			}
		}
	}
	if len(seeds) == 0 {
		return nil, fmt.Errorf("%w: no node address given", ErrInvalidArgument)
	}
	log := cfg.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	ctx, cancel := context.WithCancel(context.Background())
	c := &Client{cfg: cfg, seeds: seeds, log: log, lifetime: ctx, cancel: cancel, refreshCh: make(chan struct{}, 1)}
	if cfg.User != "" {
		c.creds = &credentials{user: cfg.User, password: cfg.Password}
	}
	c.mu.pools = make(map[string]*pool)
	c.mu.throttles = make(map[string]*throttle)
	c.mu.lanes = make(map[laneKey]*lane)
	c.mu.pipes = make(map[string]*pipe)
	c.mu.down = make(map[string]time.Time)
	c.rnd.r = rand.New(rand.NewPCG(uint64(time.Now().UnixNano()), uint64(len(seeds)))) //nolint:gosec // jitter, not security
	c.wg.Go(c.refresher)
	return c, nil
}

// Close cancels calls in progress (they return ErrClosed), stops the
// refresher and closes every connection. It always returns nil and is
// safe to call more than once; calls made after it return ErrClosed.
func (c *Client) Close() error {
	c.mu.Lock()
	if c.mu.closed {
		c.mu.Unlock()
		return nil
	}
	c.mu.closed = true
	pools := c.mu.pools
	c.mu.Unlock()
	c.cancel()
	c.wg.Close()
	for _, p := range pools {
		p.close()
	}
	return nil
}

func (c *Client) isClosed() bool {
	c.mu.RLock()
	defer c.mu.RUnlock()
	return c.mu.closed
}

func (c *Client) newTicker() *time.Ticker { return time.NewTicker(c.cfg.RefreshInterval) }

// pool returns addr's connection pool, creating it; nil after Close.
func (c *Client) pool(addr string) *pool {
	return memo(c, c.mu.pools, addr, func() *pool { return newPool(addr, c.cfg.ConnsPerNode, c.cfg.DialTimeout, c.cfg.Dialer, c.tlsFor()) })
}

// memo returns m[key], creating it with mk (called under c.mu) when
// absent; nil after Close. m is one of c.mu's maps.
func memo[K comparable, V any](c *Client, m map[K]*V, key K, mk func() *V) *V {
	c.mu.RLock()
	v, ok := m[key]
	closed := c.mu.closed
	c.mu.RUnlock()
	if ok || closed {
		return v
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.mu.closed {
		return nil
	}
	if v, ok := m[key]; ok {
		return v
	}
	v = mk()
	m[key] = v
	return v
}

// markDown makes addr a last resort for NodeDownFor and asks for a
// topology refresh (liveness may have changed).
func (c *Client) markDown(addr string) {
	c.mu.Lock()
	c.mu.down[addr] = time.Now().Add(c.cfg.NodeDownFor)
	c.mu.Unlock()
	c.requestRefresh()
}

func (c *Client) downLocked(addr string) bool {
	until, ok := c.mu.down[addr]
	return ok && time.Now().Before(until)
}

// targets returns the addresses to try for a call on key (all nodes for
// key ""), best first: for linearizable calls the partition leader, then
// the key's replicas (live ones first, rotating between them), then every
// other member; nodes marked down, believed dead or draining come after
// the others.
// The seeds come last (first, before the topology is known).
func (c *Client) targets(key string, level Consistency) []string {
	c.mu.RLock()
	defer c.mu.RUnlock()
	v := c.mu.view
	var good, bad []string
	if v != nil {
		good = make([]string, 0, len(v.ids)+len(c.seeds))
	}
	add := func(addr string, usable bool) {
		if addr == "" || slices.Contains(good, addr) || slices.Contains(bad, addr) {
			return
		}
		if usable && !c.downLocked(addr) {
			good = append(good, addr)
		} else {
			bad = append(bad, addr)
		}
	}
	if v != nil {
		rot := c.rr.Add(1)
		if key != "" {
			p := partitionOf(key, v.shift)
			if l := c.mu.leaders[p]; level == Linearizable && l != "" {
				m := v.members[l]
				add(m.addr, m.alive && !m.draining)
			}
			replicas := v.table[p]
			for i := range replicas {
				m := v.members[replicas[(int(rot%uint64(len(replicas)))+i)%len(replicas)]]
				add(m.addr, m.alive && !m.draining)
			}
		}
		// Any member can coordinate: the rest, in a rotating order.
		for i := range v.ids {
			m := v.members[v.ids[(int(rot%uint64(len(v.ids)))+i)%len(v.ids)]]
			add(m.addr, m.alive && !m.draining)
		}
	}
	for _, s := range c.seeds {
		add(s, true)
	}
	return append(good, bad...)
}

// backoff waits before retry number n (1-based): a uniform draw from
// [0, min(BackoffMax, BackoffBase*2^(n-1))]. It returns false if ctx ended
// first.
func (c *Client) backoff(ctx context.Context, n int) bool {
	ceiling := c.cfg.BackoffBase << min(n-1, 20)
	if ceiling <= 0 || ceiling > c.cfg.BackoffMax {
		ceiling = c.cfg.BackoffMax
	}
	c.rnd.Lock()
	d := time.Duration(c.rnd.r.Int64N(int64(ceiling) + 1))
	c.rnd.Unlock()
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return true
	case <-ctx.Done():
		return false
	}
}

// callContext bounds ctx by RequestTimeout when it has no deadline, and
// by the Client's lifetime.
func (c *Client) callContext(ctx context.Context) (context.Context, context.CancelFunc) {
	var cancel context.CancelFunc
	if _, ok := ctx.Deadline(); ok {
		ctx, cancel = context.WithCancel(ctx)
	} else {
		ctx, cancel = context.WithTimeout(ctx, c.cfg.RequestTimeout)
	}
	stop := context.AfterFunc(c.lifetime, cancel)
	return ctx, func() { stop(); cancel() }
}

// serverBudget is the time budget sent to the node: what is left of ctx
// minus a margin, so that the node answers (with a typed error if need be)
// before the caller's deadline.
func serverBudget(ctx context.Context) uint64 {
	dl, ok := ctx.Deadline()
	if !ok {
		return 0
	}
	left := time.Until(dl)
	margin := max(left/10, 20*time.Millisecond)
	b := left - margin
	if b < time.Millisecond {
		b = time.Millisecond
	}
	return uint64(b / time.Microsecond)
}

// outcome classifies one attempt's failure.
type outcome int

const (
	final      outcome = iota // return the error
	retry                     // not applied: try again, elsewhere
	retryReads                // a transport failure: reads retry, writes are outcome unknown
)

// codeError turns a node's error code into a typed error and says whether
// the operation may be retried.
func codeError(code kvpb.ErrorCode, msg string) (outcome, error) {
	switch code {
	case kvpb.ErrorCode_ERROR_CODE_INVALID_ARGUMENT:
		return final, fmt.Errorf("%w: %s", ErrInvalidArgument, msg)
	case kvpb.ErrorCode_ERROR_CODE_UNAVAILABLE:
		return final, fmt.Errorf("%w: %s", ErrUnavailable, msg)
	case kvpb.ErrorCode_ERROR_CODE_UNAVAILABLE_NOT_APPLIED:
		return retry, fmt.Errorf("%w: %s", ErrUnavailable, msg)
	case kvpb.ErrorCode_ERROR_CODE_OUTCOME_UNKNOWN:
		return final, fmt.Errorf("%w: %s", ErrOutcomeUnknown, msg)
	case kvpb.ErrorCode_ERROR_CODE_TIMEOUT:
		return final, fmt.Errorf("%w: %w: %s", ErrTimeout, context.DeadlineExceeded, msg)
	case kvpb.ErrorCode_ERROR_CODE_CORRUPT:
		return final, fmt.Errorf("%w: %s", ErrCorrupt, msg)
	case kvpb.ErrorCode_ERROR_CODE_CLOSED:
		return retry, fmt.Errorf("%w: node shutting down: %s", ErrUnavailable, msg)
	case kvpb.ErrorCode_ERROR_CODE_UNAUTHENTICATED:
		return final, fmt.Errorf("%w: %s", ErrUnauthenticated, msg)
	case kvpb.ErrorCode_ERROR_CODE_PERMISSION_DENIED:
		return final, fmt.Errorf("%w: %s", ErrPermissionDenied, msg)
	case kvpb.ErrorCode_ERROR_CODE_NOT_IMPLEMENTED:
		return final, fmt.Errorf("%w: %s", ErrNotImplemented, msg)
	case kvpb.ErrorCode_ERROR_CODE_CONFLICT:
		return final, fmt.Errorf("%w: %s", ErrConflict, msg)
	case kvpb.ErrorCode_ERROR_CODE_INSUFFICIENT_STORAGE:
		return final, fmt.Errorf("%w: %s", ErrInsufficientStorage, msg)
	case kvpb.ErrorCode_ERROR_CODE_OVERLOADED:
		// Refused before anything was done: safe to retry, after the
		// backoff call applies before every retry.
		return retry, fmt.Errorf("%w: %s", ErrOverloaded, msg)
	default:
		return final, fmt.Errorf("%w: code %d: %s", errInternal, int32(code), msg)
	}
}

// attemptFunc makes one call on conn. It returns the header and, for data
// calls, the result code and message of the answer, or the RPC's error.
type attemptFunc func(ctx context.Context, cl kvpb.DRPCClientClient, budget uint64) (hdr *kvpb.ClientHeader, code kvpb.ErrorCode, msg, leader string, err error)

// tryFunc makes one attempt of a call at addr.
type tryFunc func(ctx context.Context, addr string) (outcome, error)

// call runs one operation on key ("" for List) with retries. write tells
// whether it changes state (never retried once it may have been applied).
func (c *Client) call(ctx context.Context, key string, level Consistency, write bool, try tryFunc) error {
	if c.isClosed() {
		return ErrClosed
	}
	ctx, cancel := c.callContext(ctx)
	defer cancel()
	var tried []string
	var last error
	renewed := false // a refused token was renewed for this call
	for attempt := 1; ; attempt++ {
		if attempt > 1 {
			if attempt > c.cfg.MaxAttempts {
				return fmt.Errorf("%w after %d attempts: %w", ErrUnavailable, c.cfg.MaxAttempts, last)
			}
			if !c.backoff(ctx, attempt-1) {
				return timeoutError(ctx, c.isClosed(), last)
			}
		}
		addrs := c.targets(key, level)
		addr := ""
		for _, a := range addrs {
			if !slices.Contains(tried, a) {
				addr = a
				break
			}
		}
		if addr == "" { // every node tried: start over
			tried = tried[:0]
			addr = addrs[0]
		}
		tried = append(tried, addr)
		how, err := c.throttled(ctx, addr, try, attempt == 1)
		if err == nil {
			return nil
		}
		last = err
		// Close cancels ctx through an AfterFunc, which may not have run
		// yet when an attempt it cut short returns: either way, a call
		// cut short by Close reports ErrClosed.
		if ctx.Err() != nil || c.isClosed() {
			if how == final {
				return err
			}
			if write && how == retryReads {
				return fmt.Errorf("%w: %w", ErrOutcomeUnknown, timeoutError(ctx, c.isClosed(), err))
			}
			return timeoutError(ctx, c.isClosed(), err)
		}
		var stale *staleTokenError
		switch {
		case how == final && errors.As(err, &stale) && !renewed:
			// Not applied: nodes authorize before they act. Renew the
			// token refused and try once more.
			renewed = true
			if _, rerr := c.renewToken(ctx, stale.tok); rerr != nil {
				return rerr
			}
		case how == final:
			return err
		case how == retryReads && write:
			return fmt.Errorf("%w: %w", ErrOutcomeUnknown, err)
		}
		c.log.Debug("retrying call", "addr", addr, "attempt", attempt, "err", err)
	}
}

// throttled makes the attempt try at addr unless addr's throttle refuses
// it here (throttle.go), and counts the node's answer. Only a call's
// first attempt may be refused here: its retries, already spaced by the
// backoff, always go to a node, so that a burst refused by a bound that
// shrank for a moment is not failed by the client's memory of it.
func (c *Client) throttled(ctx context.Context, addr string, try tryFunc, first bool) (outcome, error) {
	if c.cfg.ThrottleRatio <= 0 {
		return try(ctx, addr)
	}
	th := memo(c, c.mu.throttles, addr, func() *throttle { return newThrottle(c.cfg.ThrottleRatio) })
	if th == nil {
		return final, ErrClosed
	}
	if first && !th.allow() {
		th.done(false)
		return retry, fmt.Errorf("%w: refused by the client, not sent: node %s refuses most calls (client-side throttling)", ErrOverloaded, addr)
	}
	how, err := try(ctx, addr)
	th.done(!errors.Is(err, ErrOverloaded))
	return how, err
}

// attempt makes one call to addr, logging in first if need be.
func (c *Client) attempt(ctx context.Context, addr, key string, fn attemptFunc) (outcome, error) {
	tok, err := c.token(ctx)
	if err != nil {
		return final, err
	}
	return c.attemptWith(ctx, addr, key, tok, fn)
}

// attemptWith makes one call to addr with tok (nil: none).
func (c *Client) attemptWith(ctx context.Context, addr, key string, tok *token, fn attemptFunc) (outcome, error) {
	p := c.pool(addr)
	if p == nil {
		return final, ErrClosed
	}
	conn, how, err := c.conn(ctx, p)
	if err != nil {
		return how, err
	}
	hdr, code, msg, leader, err := fn(withToken(ctx, tok), kvpb.NewDRPCClientClient(conn), serverBudget(ctx))
	if err != nil {
		how, err = c.rpcFailed(addr, p, conn, err)
		return how, c.refusedWith(tok, err)
	}
	p.put(conn, true)
	c.observe(hdr, key, leader)
	if code == kvpb.ErrorCode_ERROR_CODE_UNSPECIFIED {
		return final, nil
	}
	if code == kvpb.ErrorCode_ERROR_CODE_CLOSED {
		// The node drains or stops: try the others first for a while.
		c.markDown(addr)
	}
	how, err = codeError(code, fmt.Sprintf("%s (node %s)", msg, hdr.GetNodeId()))
	return how, c.refusedWith(tok, err)
}

// conn takes a connection from p, or says how the attempt failed.
func (c *Client) conn(ctx context.Context, p *pool) (*rpcconn.Conn, outcome, error) {
	conn, err := p.get(ctx)
	if err == nil {
		return conn, final, nil
	}
	var de *dialError
	switch {
	case errors.As(err, &de):
		c.markDown(p.addr)
		return nil, retry, fmt.Errorf("%w: %w", ErrUnavailable, err)
	case errors.Is(err, ErrClosed):
		return nil, final, ErrClosed
	default: // ctx ended while waiting for a connection: not sent
		return nil, retry, timeoutError(ctx, c.isClosed(), nil)
	}
}

// rpcFailed classifies the failure of an RPC made on conn (from p, to addr)
// and returns conn to p, or closes it when the failure was below the RPC
// layer.
func (c *Client) rpcFailed(addr string, p *pool, conn *rpcconn.Conn, err error) (outcome, error) {
	if code := drpcerr.Code(err); code != 0 { // the node refused the call itself
		p.put(conn, true)
		return codeError(kvpb.ErrorCode(code), fmt.Sprintf("%s: %v", addr, err)) //nolint:gosec // codes are small
	}
	p.put(conn, false)
	c.requestRefresh()
	return retryReads, fmt.Errorf("call to %s failed: %w", addr, err)
}

// tlsFor returns the TLS configuration for dialing a node, or nil for
// plain TCP.
func (c *Client) tlsFor() rpcconn.TLSFor {
	if c.cfg.TLS == nil {
		return nil
	}
	return func(string) *tls.Config { return c.cfg.TLS }
}
