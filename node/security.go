package node

import (
	"context"
	"crypto/tls"
	"encoding/base64"
	"errors"
	"fmt"
	"net"
	"net/http"
	"strings"
	"sync"
	"time"

	"storj.io/drpc"
	"storj.io/drpc/drpcctx"
	"storj.io/drpc/drpcerr"
	"storj.io/drpc/drpcmetadata"

	"github.com/ringkv/ringkv/auth"
	"github.com/ringkv/ringkv/coordinator"
	"github.com/ringkv/ringkv/internal/pki"
)

// Security of a node, when Config.CertsDir is set (see docs/SECURITY.md):
//
//   - Both listeners serve TLS with the node certificate of CertsDir
//     (pki.Reloader: a certificate replaced on disk, or reloaded on
//     SIGHUP through ReloadCerts, is used from the next handshake on).
//   - Every peer connection (replica, raft, anti-entropy, linearizable
//     forwarding) is dialed with pki's PeerTLS: TLS 1.3, the cluster CA,
//     a node certificate on both ends.
//   - planeGuard refuses the peer services (Replica, Linearizable,
//     Repair, Raft) to any caller that did not present a node
//     certificate; the Client and Backup services are open to clients, who are then
//     authorized per request.
//   - Users and roles live in the cluster (package auth, one record under
//     a reserved key, written at linearizable). A request's caller is a
//     TLS client certificate (its CN names the user), a bearer token
//     (from POST /api/auth/login or the Client service's Login), or HTTP
//     basic auth. A caller presenting a node certificate is trusted as a
//     node. While authentication is disabled (the default until
//     `ringkv auth enable`), every authenticated-or-not request is
//     allowed; TLS still protects the wire.
//
// Without CertsDir the node is insecure: plaintext, no authentication.

// peerServices are the drpc services only nodes may call.
var peerServices = []string{"/ringkv.v1.Replica/", "/ringkv.v1.Linearizable/", "/ringkv.v1.Repair/", "/ringkv.v1.Raft/"}

// errNeedNodeCert is the answer of a peer service to a caller without a
// node certificate.
var errNeedNodeCert = errors.New("node: permission denied: peer services accept only node certificates of this cluster")

// codePermissionDenied is the drpc code of errNeedNodeCert.
const codePermissionDenied uint64 = 403

// planeGuard is the drpc handler of a secure node: peer services answer
// only callers that presented a node certificate.
type planeGuard struct {
	next drpc.Handler
	warn func(peer string, rpc string)
}

func (g planeGuard) HandleRPC(stream drpc.Stream, rpc string) error {
	for _, s := range peerServices {
		if !strings.HasPrefix(rpc, s) {
			continue
		}
		if id, ok := connIdentity(stream.Context()); !ok || id.Kind != pki.Node {
			g.warn(remoteAddr(stream.Context()), rpc)
			return drpcerr.WithCode(errNeedNodeCert, codePermissionDenied)
		}
		break
	}
	return g.next.HandleRPC(stream, rpc) //nolint:wrapcheck // the services' own errors
}

// connIdentity returns who the TLS peer of a drpc request is.
func connIdentity(ctx context.Context) (pki.Identity, bool) {
	tr, ok := drpcctx.Transport(ctx)
	if !ok {
		return pki.Identity{}, false
	}
	tc, ok := tr.(interface{ ConnectionState() tls.ConnectionState })
	if !ok {
		return pki.Identity{}, false
	}
	return pki.IdentityFromConn(tc.ConnectionState())
}

func remoteAddr(ctx context.Context) string {
	if tr, ok := drpcctx.Transport(ctx); ok {
		if c, ok := tr.(net.Conn); ok {
			return c.RemoteAddr().String()
		}
	}
	return "unknown"
}

// openSecurity loads the node's certificates and wraps the listeners in
// TLS. It does nothing for an insecure node.
func (n *Node) openSecurity(rpcLis, httpLis net.Listener) (net.Listener, net.Listener, error) {
	if n.cfg.CertsDir == "" {
		return rpcLis, httpLis, nil
	}
	rcfg := pki.DefaultReloaderConfig()
	rcfg.Logger = n.log.With("component", "pki")
	r, err := pki.OpenReloader(n.cfg.CertsDir, rcfg)
	if err != nil {
		return nil, nil, fmt.Errorf("node: certificates: %w", err)
	}
	n.pki = r
	httpTLS := r.ServerTLS()
	httpTLS.NextProtos = []string{"http/1.1"}
	rpc := handshakeListener{Listener: tls.NewListener(rpcLis, r.ServerTLS()), port: "rpc", failed: n.handshakeFailed}
	return rpc, tls.NewListener(httpLis, httpTLS), nil
}

// handshakeFailed logs a failed TLS handshake, at most once a minute per
// host (a scanner or a misconfigured peer cannot flood the log).
func (n *Node) handshakeFailed(port, peer string, err error) {
	host, _, splitErr := net.SplitHostPort(peer)
	if splitErr != nil {
		host = peer
	}
	if n.handshakes.Allow(port+" "+host, time.Now()) {
		n.log.Warn("tls handshake failed", "port", port, "peer", peer, "err", err)
	}
}

// handshakeListener makes the TLS handshake of each connection of the
// drpc and Redis protocol ports happen on its first read, and reports a
// failure with the port's name and the peer's address (neither server
// reports it: drpc gives connection errors without the peer, redcon
// drops them).
type handshakeListener struct {
	net.Listener
	port   string // "rpc" or "resp", for the log line
	failed func(port, peer string, err error)
}

func (l handshakeListener) Accept() (net.Conn, error) {
	c, err := l.Listener.Accept()
	if err != nil {
		return nil, err //nolint:wrapcheck // the listener's own error
	}
	tc, ok := c.(*tls.Conn)
	if !ok {
		return c, nil // not a TLS listener's connection: nothing to report
	}
	return &handshakeConn{Conn: tc, port: l.port, failed: l.failed}, nil
}

// handshakeConn is a server-side TLS connection that reports a failed
// handshake once.
type handshakeConn struct {
	*tls.Conn
	once   sync.Once
	port   string
	failed func(port, peer string, err error)
}

func (c *handshakeConn) Read(b []byte) (int, error) {
	c.once.Do(func() {
		if err := c.Handshake(); err != nil {
			c.failed(c.port, c.RemoteAddr().String(), err)
		}
	})
	return c.Conn.Read(b) //nolint:wrapcheck // the connection's own error
}

// httpErrorLog is the http.Server's ErrorLog of a secure node: its TLS
// handshake errors ("http: TLS handshake error from ADDR: ...") are rate
// limited per host like the drpc port's; anything else is logged as is.
type httpErrorLog struct{ n *Node }

func (w httpErrorLog) Write(p []byte) (int, error) {
	msg := strings.TrimSpace(string(p))
	if rest, ok := strings.CutPrefix(msg, "http: TLS handshake error from "); ok {
		peer, cause, _ := strings.Cut(rest, ": ")
		w.n.handshakeFailed("http", peer, errors.New(cause))
		return len(p), nil
	}
	w.n.log.Warn("http server", "err", msg)
	return len(p), nil
}

// peerTLS returns how this node dials its peers: nil (plain TCP) for an
// insecure node.
func (n *Node) peerTLS() func(addr string) *tls.Config {
	if n.cfg.CertsDir == "" {
		return nil
	}
	return func(addr string) *tls.Config { return n.pki.PeerTLSFor(addr) }
}

// Secure reports whether the node serves TLS (Config.CertsDir set).
func (n *Node) Secure() bool { return n.pki != nil }

// ReloadCerts re-reads the node's certificates now (the binary calls it on
// SIGHUP); the next handshakes use them. On error the node keeps the
// certificates it had. An insecure node has nothing to reload.
func (n *Node) ReloadCerts() error {
	if n.pki == nil {
		return nil
	}
	if err := n.pki.Reload(); err != nil {
		return fmt.Errorf("node: reload certificates: %w", err)
	}
	return nil
}

// reservedStore reads and writes reserved keys at the linearizable level
// through the coordinator (auth.Store).
type reservedStore struct{ n *Node }

func (s reservedStore) Get(ctx context.Context, key []byte) ([]byte, bool, error) {
	v, found, err := s.n.coord.Get(coordinator.System(ctx), key, coordinator.Linearizable)
	if err != nil {
		return nil, false, fmt.Errorf("read %q: %w", key, err)
	}
	return v, found, nil
}

func (s reservedStore) CompareAndSet(ctx context.Context, key []byte, expected *[]byte, value []byte) (bool, []byte, bool, error) {
	res, err := s.n.coord.CompareAndSet(coordinator.System(ctx), key, expected, value)
	if err != nil {
		return false, nil, false, fmt.Errorf("propose %q: %w", key, err)
	}
	return res.Swapped, res.Current, res.Found, nil
}

// caller is who made a request, as the node authenticated it.
type caller struct {
	principal auth.Principal
	node      bool // presented a node certificate: trusted as a node
	anonymous bool // presented no credentials
}

type callerKey struct{}

func withCaller(ctx context.Context, c caller) context.Context {
	return context.WithValue(ctx, callerKey{}, c)
}

// authenticate finds the caller of a request: the one an HTTP middleware
// stored in ctx, else a bearer token in the drpc metadata
// ("authorization"; given, it must be valid), else the drpc connection's
// client certificate, else anonymous.
func (n *Node) authenticate(ctx context.Context) (caller, error) {
	if c, ok := ctx.Value(callerKey{}).(caller); ok {
		return c, nil
	}
	if md, ok := drpcmetadata.Get(ctx); ok {
		if h := md["authorization"]; h != "" {
			return n.callerFromHeader(ctx, h)
		}
	}
	if id, ok := connIdentity(ctx); ok {
		return n.callerFor(ctx, id)
	}
	return caller{anonymous: true}, nil
}

// callerFor maps a verified certificate to a caller.
func (n *Node) callerFor(ctx context.Context, id pki.Identity) (caller, error) {
	if id.Kind == pki.Node {
		return caller{node: true}, nil
	}
	p, err := n.authority.PrincipalFor(ctx, id.Name)
	if errors.Is(err, auth.ErrAuthDisabled) {
		return caller{anonymous: true}, nil
	}
	if err != nil {
		return caller{}, fmt.Errorf("client certificate %q: %w", id.Name, err)
	}
	return caller{principal: p}, nil
}

// callerFromHeader authenticates an Authorization header: "Bearer TOKEN"
// or "Basic base64(user:password)".
func (n *Node) callerFromHeader(ctx context.Context, h string) (caller, error) {
	scheme, cred, _ := strings.Cut(h, " ")
	var p auth.Principal
	var err error
	switch strings.ToLower(scheme) {
	case "bearer":
		p, err = n.authority.VerifyToken(ctx, strings.TrimSpace(cred))
	case "basic":
		raw, derr := base64.StdEncoding.DecodeString(strings.TrimSpace(cred))
		user, password, ok := strings.Cut(string(raw), ":")
		if derr != nil || !ok {
			return caller{}, fmt.Errorf("%w: malformed basic credentials", auth.ErrUnauthenticated)
		}
		p, err = n.authority.Authenticate(ctx, user, password)
	default:
		return caller{}, fmt.Errorf("%w: unsupported authorization scheme %q", auth.ErrUnauthenticated, scheme)
	}
	if errors.Is(err, auth.ErrAuthDisabled) {
		return caller{anonymous: true}, nil
	}
	if err != nil {
		return caller{}, err //nolint:wrapcheck // auth's errors are the API
	}
	return caller{principal: p}, nil
}

// authorizer implements coordinator.Authorizer for a secure node.
type authorizer struct{ n *Node }

func (z authorizer) Authorize(ctx context.Context, act auth.Action) error {
	c, err := z.n.authenticate(ctx)
	if err != nil {
		return err
	}
	return z.n.authorize(ctx, c, act)
}

// CallerName names the user who made the request in ctx, for per-user
// rate limits (coordinator.CallerNamer): "" for a node, an anonymous
// caller or one whose credentials do not verify (Authorize refuses it).
func (z authorizer) CallerName(ctx context.Context) string {
	c, err := z.n.authenticate(ctx)
	if err != nil || c.node || c.anonymous {
		return ""
	}
	return c.principal.User
}

// authorize decides whether c may do act.
func (n *Node) authorize(ctx context.Context, c caller, act auth.Action) error {
	if c.node {
		return nil
	}
	if c.anonymous {
		st, err := n.authority.Status(ctx)
		if err != nil {
			return err //nolint:wrapcheck // auth's errors are the API
		}
		if st.Enabled {
			return fmt.Errorf("%w: no credentials (a client certificate, a bearer token or basic auth)", auth.ErrUnauthenticated)
		}
		return nil
	}
	return n.authority.Authorize(ctx, c.principal, act) //nolint:wrapcheck // auth's errors are the API
}

// login implements coordinator.Authenticator.
type login struct{ n *Node }

func (l login) Login(ctx context.Context, user, password string) (string, time.Time, error) {
	p, err := l.n.authority.Authenticate(ctx, user, password)
	if err != nil {
		return "", time.Time{}, err //nolint:wrapcheck // auth's errors are the API
	}
	return l.n.authority.IssueToken(ctx, p) //nolint:wrapcheck // as above
}

// guardHTTP authenticates every HTTP request of a secure node and
// authorizes the node's own endpoints: /health, /ready and
// /api/auth/login are open; /metrics and /api/stats need the metrics
// permission (unless Config.MetricsOpen); /api/cluster/, /api/auth/ (but
// login) and /chaos/ need admin. The data endpoints are authorized by
// the coordinator, per key, with the caller this stores in the request's
// context.
func (n *Node) guardHTTP(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		path := r.URL.Path
		if path == "/health" || path == "/ready" || path == "/api/auth/login" {
			next.ServeHTTP(w, r)
			return
		}
		c, err := n.httpCaller(r)
		if err == nil {
			var act *auth.Action
			switch {
			case path == "/metrics" || path == "/api/stats":
				if !n.cfg.MetricsOpen {
					act = &auth.Action{Op: auth.OpMetrics}
				}
			case strings.HasPrefix(path, "/api/cluster/"), strings.HasPrefix(path, "/api/auth/"), strings.HasPrefix(path, "/chaos/"):
				act = &auth.Action{Op: auth.OpAdmin}
			}
			if act != nil {
				err = n.authorize(r.Context(), c, *act)
			}
		}
		if err != nil {
			if errors.Is(err, auth.ErrUnauthenticated) {
				w.Header().Set("WWW-Authenticate", `Bearer realm="ringkv", Basic realm="ringkv"`)
			}
			writeJSON(w, coordinator.StatusFor(err), map[string]string{"error": err.Error()})
			return
		}
		next.ServeHTTP(w, r.WithContext(withCaller(r.Context(), c)))
	})
}

// httpCaller authenticates an HTTP request: its Authorization header if
// it has one (credentials given must be right: a wrong password is 401
// even over a connection with a client certificate), else its TLS client
// certificate, else anonymous.
func (n *Node) httpCaller(r *http.Request) (caller, error) {
	if h := r.Header.Get("Authorization"); h != "" {
		return n.callerFromHeader(r.Context(), h)
	}
	if r.TLS != nil {
		if id, ok := pki.IdentityFromConn(*r.TLS); ok {
			return n.callerFor(r.Context(), id)
		}
	}
	return caller{anonymous: true}, nil
}

// vetPeer is gossip's Deps.Vet on a secure node: before a node is joined
// to the ring, its RPC address must complete a mutual-TLS handshake with
// a node certificate of this cluster whose common name is its id. A node
// that shares the gossip key but not the CA is never given partitions.
func (n *Node) vetPeer(ctx context.Context, id, rpcAddr string) error {
	if rpcAddr == "" {
		return fmt.Errorf("node %s advertises no RPC address", id)
	}
	ctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	d := tls.Dialer{Config: n.pki.PeerTLSFor(rpcAddr)}
	c, err := d.DialContext(ctx, "tcp", rpcAddr)
	if err != nil {
		return fmt.Errorf("tls handshake with %s at %s: %w", id, rpcAddr, err)
	}
	defer func() { _ = c.Close() }() // a probe: nothing was sent
	tc, ok := c.(*tls.Conn)
	if !ok {
		return fmt.Errorf("%s at %s: not a TLS connection", id, rpcAddr)
	}
	certs := tc.ConnectionState().PeerCertificates
	if len(certs) == 0 || certs[0].Subject.CommonName != id {
		return fmt.Errorf("%s at %s presents the certificate of another node", id, rpcAddr)
	}
	return nil
}
