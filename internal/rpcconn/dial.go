package rpcconn

import (
	"context"
	"crypto/tls"
	"fmt"
	"net"
)

// TLSFor returns the TLS configuration for dialing addr ("host:port"); a
// nil TLSFor, or a nil configuration, dials plain TCP. The caller keeps
// ownership of the returned configuration: Dial clones it.
type TLSFor func(addr string) *tls.Config

// DialFunc makes a TCP connection, as net.Dialer.DialContext does; a
// caller passes one to dial through something of its own (a proxy, a
// network namespace).
type DialFunc func(ctx context.Context, network, addr string) (net.Conn, error)

// Dial connects to addr over TCP, and over TLS when tlsFor gives a
// configuration: the handshake completes before Dial returns, bounded by
// ctx, so a peer that refuses this node's certificate (or presents one
// this node refuses) is a dial error, not a failure of the first call. A
// configuration without ServerName gets addr's host. Errors wrap the
// net or crypto/tls error.
func Dial(ctx context.Context, addr string, tlsFor TLSFor) (*Conn, error) {
	return DialWith(ctx, nil, addr, tlsFor)
}

// DialWith is Dial with the TCP connection made by dial (nil: a
// net.Dialer).
func DialWith(ctx context.Context, dial DialFunc, addr string, tlsFor TLSFor) (*Conn, error) {
	if dial == nil {
		dial = (&net.Dialer{}).DialContext
	}
	nc, err := dial(ctx, "tcp", addr)
	if err != nil {
		return nil, err //nolint:wrapcheck // net.OpError names the address; callers add context
	}
	if tlsFor == nil {
		return New(nc), nil
	}
	cfg := tlsFor(addr)
	if cfg == nil {
		return New(nc), nil
	}
	if cfg.ServerName == "" {
		cfg = cfg.Clone()
		if host, _, err := net.SplitHostPort(addr); err == nil {
			cfg.ServerName = host
		}
	}
	tc := tls.Client(nc, cfg)
	if err := tc.HandshakeContext(ctx); err != nil {
		_ = nc.Close() // the handshake failed; nothing to keep
		return nil, fmt.Errorf("tls handshake with %s: %w", addr, err)
	}
	return New(tc), nil
}
