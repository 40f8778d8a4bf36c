package resp

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/tidwall/redcon"

	"github.com/ringkv/ringkv/coordinator"
	"github.com/ringkv/ringkv/internal/loglimit"
)

// Server answers the Redis protocol on the listeners given to Serve. It
// is safe for concurrent use.
type Server struct {
	cfg      Config
	deps     Deps
	log      *slog.Logger
	commands map[string]command

	// lifetime bounds every command; cancelled by Close.
	lifetime context.Context
	cancel   context.CancelFunc

	mu      sync.Mutex
	servers []*redcon.Server
	closed  bool
	conns   sync.WaitGroup // one per accepted connection

	nextID  atomic.Int64
	cursors cursorTable
	logs    loglimit.Limiter
	clients atomic.Int64 // connected clients (INFO)
	started time.Time
}

// New returns a Server. Errors: ErrInvalidConfig.
func New(cfg Config, deps Deps) (*Server, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	if deps.Store == nil {
		return nil, fmt.Errorf("%w: Deps.Store is nil", ErrInvalidConfig)
	}
	log := cfg.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	ctx, cancel := context.WithCancel(context.Background())
	return &Server{
		cfg: cfg, deps: deps, log: log, commands: commandTable(),
		lifetime: ctx, cancel: cancel,
		cursors: newCursorTable(cfg.ScanCursors),
		started: time.Now(),
	}, nil
}

// Serve accepts connections on lis until Close; it returns nil then, or
// ErrClosed if Close came first. The caller wraps lis in TLS for a secure
// node.
func (s *Server) Serve(lis net.Listener) error {
	rs := redcon.NewServerNetwork("tcp", lis.Addr().String(), s.handle, s.accept, s.closedConn)
	s.mu.Lock()
	if s.closed {
		s.mu.Unlock()
		_ = lis.Close() // never served
		return ErrClosed
	}
	s.servers = append(s.servers, rs)
	s.mu.Unlock()
	return rs.Serve(limitListener{Listener: lis, max: s.cfg.MaxRequestBytes}) //nolint:wrapcheck // redcon's accept errors
}

// Close stops accepting, cancels the commands running, closes every
// connection and waits for their goroutines.
func (s *Server) Close() error {
	s.mu.Lock()
	if s.closed {
		s.mu.Unlock()
		return nil
	}
	s.closed = true
	servers := s.servers
	s.mu.Unlock()
	s.cancel()
	for _, rs := range servers {
		_ = rs.Close() // "not serving" when Serve has not started: nothing to close
	}
	s.conns.Wait()
	return nil
}

// session is one connection's state; only its connection's goroutine
// touches it.
type session struct {
	id         int64
	name       string
	level      coordinator.Level
	resp3      bool
	ctx        context.Context // carries the caller (AUTH, a client certificate)
	identified bool            // ctx has been through Authenticator.Conn
	quit       bool
	multi      multiState // MULTI ... EXEC
}

func (s *Server) accept(c redcon.Conn) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return false
	}
	s.conns.Add(1)
	s.clients.Add(1)
	c.SetContext(&session{id: s.nextID.Add(1), level: coordinator.Quorum, ctx: s.lifetime})
	return true
}

func (s *Server) closedConn(c redcon.Conn, err error) {
	defer s.conns.Done()
	s.clients.Add(-1)
	if err == nil {
		return
	}
	protocol := strings.HasPrefix(err.Error(), "Protocol error")
	if !protocol && !errors.Is(err, ErrRequestTooLarge) {
		return // a connection reset, a closed server: nothing to say
	}
	if s.logs.Allow(c.RemoteAddr(), time.Now()) {
		s.log.Warn("redis protocol: closed a connection that sent garbage (logged at most once a minute per address)", "peer", c.RemoteAddr(), "err", err)
	}
}

// limitListener wraps each connection in a limitConn.
type limitListener struct {
	net.Listener
	max int
}

func (l limitListener) Accept() (net.Conn, error) {
	c, err := l.Listener.Accept()
	if err != nil {
		return nil, err //nolint:wrapcheck // the listener's own error
	}
	return &limitConn{Conn: c, max: l.max}, nil
}

// limitConn fails a read once its client has sent more than max bytes
// since the last reply: redcon buffers a request whole, so this bounds a
// connection's memory. Only the connection's goroutine reads and writes.
type limitConn struct {
	net.Conn
	max    int
	unread int // bytes read since the last write
}

func (c *limitConn) Read(b []byte) (int, error) {
	if c.unread > c.max {
		return 0, fmt.Errorf("%w: over %d bytes without a reply", ErrRequestTooLarge, c.max)
	}
	n, err := c.Conn.Read(b)
	c.unread += n
	return n, err //nolint:wrapcheck // the connection's own error
}

func (c *limitConn) Write(b []byte) (int, error) {
	c.unread = 0
	return c.Conn.Write(b) //nolint:wrapcheck // the connection's own error
}

// cursorTable remembers where SCAN cursors stand: cursor -> the last key
// returned. Cursors are numbers because clients parse them as such.
type cursorTable struct {
	mu    sync.Mutex
	next  uint64
	pos   map[uint64][]byte
	order []uint64 // ring buffer of cursors, oldest at head
	head  int
}

func newCursorTable(n int) cursorTable {
	return cursorTable{next: uint64(time.Now().UnixNano()) & (1<<40 - 1), pos: make(map[uint64][]byte), order: make([]uint64, n)}
}

// put remembers key and returns its cursor (never 0).
func (t *cursorTable) put(key []byte) uint64 {
	t.mu.Lock()
	defer t.mu.Unlock()
	t.next++
	if t.next == 0 {
		t.next = 1
	}
	if old := t.order[t.head]; old != 0 {
		delete(t.pos, old)
	}
	t.order[t.head] = t.next
	t.head = (t.head + 1) % len(t.order)
	t.pos[t.next] = append([]byte(nil), key...)
	return t.next
}

func (t *cursorTable) get(c uint64) ([]byte, bool) {
	t.mu.Lock()
	defer t.mu.Unlock()
	k, ok := t.pos[c]
	return k, ok
}

func (s *Server) sinceStart() time.Duration { return time.Since(s.started) }
