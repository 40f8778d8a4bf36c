package node

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"net"

	"github.com/ringkv/ringkv/auth"
	"github.com/ringkv/ringkv/coordinator"
	"github.com/ringkv/ringkv/internal/pki"
	"github.com/ringkv/ringkv/resp"
)

// listenRESP binds the Redis protocol's listener (Config.RESPAddr), in
// TLS with the node certificate on a secure node; a failed handshake is
// logged as the drpc port's are, at most once a minute per host.
func (n *Node) listenRESP() error {
	if n.cfg.RESPAddr == "" {
		return nil
	}
	lis, err := net.Listen("tcp", n.cfg.RESPAddr)
	if err != nil {
		return fmt.Errorf("node: listen resp: %w", err)
	}
	if n.pki != nil {
		lis = handshakeListener{Listener: tls.NewListener(lis, n.pki.ServerTLS()), port: "resp", failed: n.handshakeFailed}
	}
	n.respLis = lis
	return nil
}

// serveRESP starts the Redis protocol server on the coordinator.
// Goroutine: one, the accept loop, until Close.
func (n *Node) serveRESP() error {
	if n.respLis == nil {
		return nil
	}
	cfg := resp.DefaultConfig()
	cfg.Logger = n.log.With("component", "resp")
	cfg.RequestTimeout = n.cfg.Coordinator.RequestTimeout
	deps := resp.Deps{Store: respStore{n.coord}, Admit: respAdmit{n.coord}}
	if n.pki != nil {
		deps.Auth = respAuth{n}
	}
	srv, err := resp.New(cfg, deps)
	if err != nil {
		return fmt.Errorf("node: resp: %w", err)
	}
	n.respSrv = srv
	lis := n.respLis
	n.wg.Add(1)
	go func() {
		defer n.wg.Done()
		if err := srv.Serve(lis); err != nil && !errors.Is(err, resp.ErrClosed) {
			n.log.Error("resp server stopped", "err", err)
		}
	}()
	return nil
}

// respStore adapts the coordinator to resp.Store.
// respStore has the coordinator's MGet and MSet: MGET and MSET go through them.
var _ resp.MultiStore = respStore{}

type respStore struct{ *coordinator.Coordinator }

func expiryOptions(e resp.Expiry) []coordinator.WriteOption {
	switch {
	case e.TTL > 0:
		return []coordinator.WriteOption{coordinator.WithTTL(e.TTL)}
	case !e.At.IsZero():
		return []coordinator.WriteOption{coordinator.WithExpiresAt(e.At)}
	}
	return nil
}

func (s respStore) Set(ctx context.Context, key, value []byte, level coordinator.Level, e resp.Expiry) error {
	return s.Coordinator.Set(ctx, key, value, level, expiryOptions(e)...) //nolint:wrapcheck // the coordinator's errors are the API
}

func (s respStore) CompareAndSet(ctx context.Context, key []byte, expected *[]byte, value []byte, e resp.Expiry) (coordinator.CASResult, error) {
	return s.Coordinator.CompareAndSet(ctx, key, expected, value, expiryOptions(e)...) //nolint:wrapcheck // as above
}

// respAdmit takes the Redis protocol's commands from the coordinator's
// client budget.
type respAdmit struct{ c *coordinator.Coordinator }

func (a respAdmit) Admit(n int64) (func(), error) {
	return a.c.Admit(coordinator.PlaneRESP, n) //nolint:wrapcheck // ErrOverloaded is the API
}

// RESPAddr returns the bound Redis protocol address, or "" when it is
// not served.
func (n *Node) RESPAddr() string {
	if n.respLis == nil {
		return ""
	}
	return n.respLis.Addr().String()
}

// respAuth authenticates the Redis protocol's callers of a secure node
// with the cluster's users (AUTH user password) and client certificates.
type respAuth struct{ n *Node }

func (a respAuth) Login(ctx context.Context, user, password string) (context.Context, error) {
	p, err := a.n.authority.Authenticate(ctx, user, password)
	if errors.Is(err, auth.ErrAuthDisabled) {
		return withCaller(ctx, caller{anonymous: true}), nil
	}
	if err != nil {
		return nil, err //nolint:wrapcheck // auth's errors are the API
	}
	return withCaller(ctx, caller{principal: p}), nil
}

func (a respAuth) Conn(ctx context.Context, c net.Conn) context.Context {
	tc, ok := c.(interface{ ConnectionState() tls.ConnectionState }) // a *handshakeConn
	if !ok {
		return withCaller(ctx, caller{anonymous: true})
	}
	id, ok := pki.IdentityFromConn(tc.ConnectionState())
	if !ok {
		return withCaller(ctx, caller{anonymous: true})
	}
	cl, err := a.n.callerFor(ctx, id)
	if err != nil {
		a.n.log.Debug("resp: client certificate not accepted", "peer", c.RemoteAddr().String(), "err", err)
		return withCaller(ctx, caller{anonymous: true})
	}
	return withCaller(ctx, cl)
}
