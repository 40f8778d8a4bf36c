package client

import (
	"context"
	"fmt"
	"sync"
	"time"

	"github.com/ringkv/ringkv/internal/rpcconn"
)

// pool is a bounded set of drpc connections to one node. drpcpool does not
// bound its connections, hence this: at most size connections exist (idle
// or in use); a caller takes an idle one, dials a new one while under the
// bound, or waits for one to be returned.
type pool struct {
	addr        string
	dialTimeout time.Duration
	dialer      rpcconn.DialFunc // nil: a net.Dialer
	tls         rpcconn.TLSFor   // nil: plain TCP
	// slots holds one token per connection that exists or is being dialed;
	// capacity size.
	slots chan struct{}
	// idle holds connections not in use; capacity size, so put never
	// blocks.
	idle chan *rpcconn.Conn

	mu struct {
		sync.Mutex
		closed bool
	}
}

func newPool(addr string, size int, dialTimeout time.Duration, dialer rpcconn.DialFunc, tlsFor rpcconn.TLSFor) *pool {
	return &pool{
		addr:        addr,
		dialTimeout: dialTimeout,
		dialer:      dialer,
		tls:         tlsFor,
		slots:       make(chan struct{}, size),
		idle:        make(chan *rpcconn.Conn, size),
	}
}

// dialError marks a failure to connect: the request was never sent.
type dialError struct{ err error }

func (e *dialError) Error() string { return e.err.Error() }
func (e *dialError) Unwrap() error { return e.err }

// get returns a connection for one call; give it back with put. It returns
// a *dialError when a new connection could not be made, ctx.Err() when ctx
// ended first, and ErrClosed after close.
func (p *pool) get(ctx context.Context) (*rpcconn.Conn, error) {
	for {
		// An idle connection first, without waiting.
		select {
		case conn := <-p.idle:
			if usable(conn) {
				return conn, nil
			}
			p.drop(conn)
			continue
		default:
		}
		if p.isClosed() {
			return nil, ErrClosed
		}
		select {
		case conn := <-p.idle:
			if usable(conn) {
				return conn, nil
			}
			p.drop(conn)
		case p.slots <- struct{}{}:
			conn, err := p.dial(ctx)
			if err != nil {
				<-p.slots
				return nil, err
			}
			return conn, nil
		case <-ctx.Done():
			return nil, ctx.Err() //nolint:wrapcheck // the caller classifies ctx errors
		}
	}
}

func usable(conn *rpcconn.Conn) bool {
	select {
	case <-conn.Closed():
		return false
	default:
		return true
	}
}

func (p *pool) dial(ctx context.Context) (*rpcconn.Conn, error) {
	return dial(ctx, p.addr, p.dialTimeout, p.dialer, p.tls)
}

// dial connects to addr within timeout; a failure is a *dialError.
func dial(ctx context.Context, addr string, timeout time.Duration, dialer rpcconn.DialFunc, tlsFor rpcconn.TLSFor) (*rpcconn.Conn, error) {
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	conn, err := rpcconn.DialWith(ctx, dialer, addr, tlsFor)
	if err != nil {
		return nil, &dialError{fmt.Errorf("dial %s: %w", addr, err)}
	}
	return conn, nil
}

// put returns conn after a call. healthy false (the call failed below the
// RPC layer) closes it instead.
func (p *pool) put(conn *rpcconn.Conn, healthy bool) {
	p.mu.Lock()
	closed := p.mu.closed
	if healthy && !closed {
		p.idle <- conn // never blocks: at most size connections exist
		p.mu.Unlock()
		return
	}
	p.mu.Unlock()
	p.drop(conn)
}

// drop closes conn and frees its slot.
func (p *pool) drop(conn *rpcconn.Conn) {
	_ = conn.Close() // broken or unwanted; nothing to report
	<-p.slots
}

func (p *pool) isClosed() bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.mu.closed
}

// close closes the idle connections; connections in use are closed when
// they are put back.
func (p *pool) close() {
	p.mu.Lock()
	p.mu.closed = true
	p.mu.Unlock()
	for {
		select {
		case conn := <-p.idle:
			p.drop(conn)
		default:
			return
		}
	}
}
