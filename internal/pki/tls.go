package pki

import (
	"crypto/tls"
	"crypto/x509"
	"fmt"
	"net"
	"path/filepath"
	"time"
)

// ServerTLS returns a configuration for a listener that serves both
// planes on one port. It:
//
//   - presents node.crt of the material current at each handshake (after
//     the lazy file check), so a reload applies to the next handshake;
//   - accepts TLS 1.2 and later;
//   - asks for a client certificate but does not require one, so that
//     HTTPS with a bearer token or basic auth still works;
//   - verifies a presented certificate against the pool of the plane its
//     OU names (Identify) and refuses a node certificate negotiated below
//     TLS 1.3. Expired, unknown-CA and self-signed certificates fail the
//     handshake.
//
// Use IdentityFromConn on the accepted connection's state to tell the
// planes apart. Each handshake runs on a copy of the returned Config made
// by GetConfigForClient: fields set on the returned Config before use
// (NextProtos, for example) carry over, fields set on a copy of it (as
// http.Server.ServeTLS makes) do not; serve net/http through
// tls.NewListener. Do not modify the Config once it is in use.
func (r *Reloader) ServerTLS() *tls.Config {
	base := &tls.Config{
		MinVersion: tls.VersionTLS12,
		ClientAuth: tls.VerifyClientCertIfGiven,
		Time:       r.now,
		// GetConfigForClient replaces the certificate; this serves it
		// for a caller that clears GetConfigForClient.
		GetCertificate: func(*tls.ClientHelloInfo) (*tls.Certificate, error) {
			return &r.Material().Node, nil
		},
	}
	base.GetConfigForClient = func(*tls.ClientHelloInfo) (*tls.Config, error) {
		r.maybeReload()
		m := r.Material()
		c := base.Clone()
		c.GetConfigForClient = nil
		c.GetCertificate = nil
		c.Certificates = []tls.Certificate{m.Node}
		// crypto/tls checks the chain against every root some plane
		// accepts; VerifyConnection then checks the plane's own.
		c.ClientCAs = m.any
		c.VerifyConnection = func(cs tls.ConnectionState) error {
			return verifyClient(cs, m, r.now())
		}
		return c, nil
	}
	return base
}

// verifyClient checks the certificate a client of ServerTLS presented, if
// any.
func verifyClient(cs tls.ConnectionState, m *Material, now time.Time) error {
	if len(cs.PeerCertificates) == 0 {
		return nil
	}
	id, err := Identify(cs.PeerCertificates, m.Pools, x509.ExtKeyUsageClientAuth, now)
	if err != nil {
		return err
	}
	if id.Kind == Node && cs.Version < tls.VersionTLS13 {
		return fmt.Errorf("%w: %s over %s, want TLS 1.3", ErrUntrusted, id, tls.VersionName(cs.Version))
	}
	return nil
}

// PeerTLS returns a configuration for dialing another node: TLS 1.3
// only, presenting node.crt of the material current at each handshake,
// and accepting only a server whose certificate is a node certificate
// signed by ca.crt (a client certificate never passes, whichever CA
// signed it). When the dialer sets a DNS ServerName (tls.Dial does, from
// the address), the certificate must also carry it in its SANs; an IP
// address is only checked by PeerTLSFor. Each call returns a new Config
// that the caller may modify.
func (r *Reloader) PeerTLS() *tls.Config { return r.peerTLS("") }

// PeerTLSFor is PeerTLS for dialing addr ("host:port" or a bare host):
// ServerName is set to the host, and the server's certificate must carry
// it as a DNS or IP SAN.
func (r *Reloader) PeerTLSFor(addr string) *tls.Config {
	host, _, err := net.SplitHostPort(addr)
	if err != nil {
		host = addr
	}
	c := r.peerTLS(host)
	c.ServerName = host
	return c
}

func (r *Reloader) peerTLS(host string) *tls.Config {
	return &tls.Config{
		MinVersion: tls.VersionTLS13,
		Time:       r.now,
		// The chain is verified in VerifyConnection against the node CA
		// of the material current at the handshake: RootCAs would be
		// fixed here and not follow a reload.
		InsecureSkipVerify: true,
		GetClientCertificate: func(*tls.CertificateRequestInfo) (*tls.Certificate, error) {
			return &r.Material().Node, nil
		},
		VerifyConnection: func(cs tls.ConnectionState) error {
			r.maybeReload()
			return verifyServer(cs, r.Material().Pools, host, r.now())
		},
	}
}

// verifyServer checks that the server's certificate is a node
// certificate for host (empty: cs.ServerName, if any).
func verifyServer(cs tls.ConnectionState, pools Pools, host string, now time.Time) error {
	id, err := Identify(cs.PeerCertificates, pools, x509.ExtKeyUsageServerAuth, now)
	if err != nil {
		return err
	}
	if id.Kind != Node {
		return fmt.Errorf("%w: server presented a %s certificate, want a node's", ErrUntrusted, id)
	}
	if host == "" {
		host = cs.ServerName
	}
	if host != "" {
		if err := cs.PeerCertificates[0].VerifyHostname(host); err != nil {
			return fmt.Errorf("%w: %s: %w", ErrUntrusted, id, err)
		}
	}
	return nil
}

// ClientTLS returns a configuration for a client of the cluster (the Go
// client library, the CLI): it trusts dir/ca.crt, accepts only a server
// presenting a node certificate, and presents dir/client.<user>.crt if
// user is not empty and that file exists; otherwise the connection is
// server-authenticated only. The files are read once; the caller owns
// the returned Config and sets ServerName when dialing by IP without
// tls.Dial.
//
// Errors: ErrInvalid (a bad user name), ErrNotFound (ca.crt, or the key
// of an existing client certificate, is missing), ErrMalformed,
// ErrKeyMismatch, ErrWrongKind (the client certificate is not one), or a
// wrapped I/O error.
func ClientTLS(dir, user string) (*tls.Config, error) {
	ca, err := readCA(filepath.Join(dir, CACertFile))
	if err != nil {
		return nil, err
	}
	roots := x509.NewCertPool()
	roots.AddCert(ca)
	c := &tls.Config{
		MinVersion: tls.VersionTLS12,
		RootCAs:    roots,
		VerifyConnection: func(cs tls.ConnectionState) error {
			if len(cs.PeerCertificates) == 0 {
				return fmt.Errorf("%w: server presented no certificate", ErrUntrusted)
			}
			if leaf := cs.PeerCertificates[0]; leafKind(leaf) != Node {
				return fmt.Errorf("%w: server certificate %q is not a node certificate", ErrUntrusted, leaf.Subject.CommonName)
			}
			return nil
		},
	}
	if user == "" {
		return c, nil
	}
	if err := checkName("user", user); err != nil {
		return nil, err
	}
	certPath := filepath.Join(dir, ClientCertFile(user))
	if !exists(certPath) {
		return c, nil // no certificate for user: server-authenticated TLS only
	}
	pair, err := loadPair(certPath, filepath.Join(dir, ClientKeyFile(user)))
	if err != nil {
		return nil, err
	}
	if leafKind(pair.Leaf) != Client {
		return nil, fmt.Errorf("%w: %s has OU %q, want %q", ErrWrongKind, certPath, pair.Leaf.Subject.OrganizationalUnit, ClientOU)
	}
	c.Certificates = []tls.Certificate{pair}
	return c, nil
}
