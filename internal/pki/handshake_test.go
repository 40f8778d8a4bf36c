package pki

import (
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"errors"
	"path/filepath"
	"testing"
	"time"
)

// expiredOpts makes a certificate that expired a day ago.
func expiredOpts(o CertOptions) CertOptions {
	o.NotBefore = time.Now().Add(-48 * time.Hour)
	o.Lifetime = 24 * time.Hour
	return o
}

// insecureWith returns a dialer config that always presents cert and
// does not check the server: the dialer is the one under test.
// GetClientCertificate sends it even when its issuer is not among the
// server's acceptable CAs, where crypto/tls would send none.
func insecureWith(cert tls.Certificate) *tls.Config {
	return &tls.Config{
		InsecureSkipVerify:   true,
		GetClientCertificate: func(*tls.CertificateRequestInfo) (*tls.Certificate, error) { return &cert, nil },
	}
}

// TestServerTLSHandshakeMatrix dials ServerTLS over real TLS connections
// with every kind of certificate and checks which handshakes pass and
// what IdentityFromConn makes of them.
func TestServerTLSHandshakeMatrix(t *testing.T) {
	dir := newCertsDir(t)
	other := t.TempDir()
	must(t, CreateCA(other, CAOptions{}))
	r, err := OpenReloader(dir, ReloaderConfig{Logger: testLogger(t, nil)})
	must(t, err)
	srv := serve(t, r.ServerTLS())
	peer, err := OpenReloader(peerDir(t, dir, "n2", "127.0.0.1"), ReloaderConfig{})
	must(t, err)
	alice, err := ClientTLS(dir, "alice")
	must(t, err)
	anon, err := ClientTLS(dir, "")
	must(t, err)
	nodeCert := issued(t, "n3", false, caOpts(dir, false))
	tls12 := func(c *tls.Config) *tls.Config { c = c.Clone(); c.MaxVersion = tls.VersionTLS12; return c }

	for _, tc := range []struct {
		name    string
		cfg     *tls.Config
		want    Identity // zero: accepted without an identity
		wantErr error    // nil: accepted; ErrUntrusted or errAny: refused
	}{
		{name: "no certificate", cfg: anon},
		{name: "valid node via PeerTLSFor", cfg: peer.PeerTLSFor(srv.addr), want: Identity{Node, "n2"}},
		{name: "valid node via PeerTLS", cfg: peer.PeerTLS(), want: Identity{Node, "n2"}},
		{name: "valid client", cfg: alice, want: Identity{Client, "alice"}},
		{name: "valid client over TLS 1.2", cfg: tls12(alice), want: Identity{Client, "alice"}},
		{name: "node over TLS 1.2", cfg: tls12(insecureWith(nodeCert)), wantErr: ErrUntrusted},
		{name: "self-signed node OU", cfg: insecureWith(signed(t, "", "", "", pkix.Name{CommonName: "n9", OrganizationalUnit: []string{NodeOU}}, x509.ExtKeyUsageClientAuth)), wantErr: errAny},
		{name: "node from another CA", cfg: insecureWith(issued(t, "n9", false, caOpts(other, false))), wantErr: errAny},
		{name: "client from another CA", cfg: insecureWith(issued(t, "mallory", true, caOpts(other, false))), wantErr: errAny},
		{name: "expired node", cfg: insecureWith(issued(t, "n9", false, expiredOpts(caOpts(dir, false)))), wantErr: errAny},
		{name: "expired client", cfg: insecureWith(issued(t, "bob", true, expiredOpts(caOpts(dir, false)))), wantErr: errAny},
		{name: "no ringkv OU", cfg: insecureWith(signed(t, dir, CACertFile, CAKeyFile, pkix.Name{CommonName: "x"}, x509.ExtKeyUsageClientAuth)), wantErr: ErrUntrusted},
		{name: "both OUs", cfg: insecureWith(signed(t, dir, CACertFile, CAKeyFile, pkix.Name{CommonName: "x", OrganizationalUnit: []string{NodeOU, ClientOU}}, x509.ExtKeyUsageClientAuth)), wantErr: ErrUntrusted},
		{name: "bad common name", cfg: insecureWith(signed(t, dir, CACertFile, CAKeyFile, pkix.Name{CommonName: "../n1", OrganizationalUnit: []string{ClientOU}}, x509.ExtKeyUsageClientAuth)), wantErr: ErrUntrusted},
		{name: "server-auth only", cfg: insecureWith(signed(t, dir, CACertFile, CAKeyFile, pkix.Name{CommonName: "n9", OrganizationalUnit: []string{NodeOU}}, x509.ExtKeyUsageServerAuth)), wantErr: errAny},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, dialErr, got := srv.dial(t, tc.cfg)
			if tc.wantErr != nil {
				if got.err == nil || dialErr == nil {
					t.Fatalf("got server error %v, dialer error %v; want the handshake refused", got.err, dialErr)
				}
				if !isErr(got.err, unwrapAny(tc.wantErr)) {
					t.Fatalf("got server error %v, want %v", got.err, tc.wantErr)
				}
				if id, ok := IdentityFromConn(got.state); ok {
					t.Fatalf("refused connection has identity %v", id)
				}
				return
			}
			if got.err != nil || dialErr != nil {
				t.Fatalf("got server error %v, dialer error %v; want the handshake accepted", got.err, dialErr)
			}
			id, ok := IdentityFromConn(got.state)
			if ok != (tc.want != Identity{}) || id != tc.want {
				t.Fatalf("got identity %v (ok %v), want %v", id, ok, tc.want)
			}
		})
	}
}

// errAny stands for "some error": crypto/tls refuses these itself.
var errAny = errAnyT{}

type errAnyT struct{}

func (errAnyT) Error() string { return "any error" }

func unwrapAny(err error) error {
	if errors.Is(err, errAny) {
		return nil
	}
	return err
}

// TestServerTLSWithClientCA checks that with a separate client CA a
// client certificate can never be a node, and a client certificate from
// the cluster CA is no longer accepted.
func TestServerTLSWithClientCA(t *testing.T) {
	dir := t.TempDir()
	must(t, CreateCA(dir, CAOptions{}))
	must(t, CreateNode(dir, "n1", []string{"127.0.0.1"}, CertOptions{}))
	must(t, CreateClient(dir, "old", CertOptions{})) // signed by ca.crt
	must(t, CreateCA(dir, CAOptions{Client: true}))
	must(t, CreateClient(dir, "alice", CertOptions{})) // signed by ca-client.crt
	r, err := OpenReloader(dir, ReloaderConfig{})
	must(t, err)
	if r.Material().ClientCA == nil {
		t.Fatal("got no client CA in the material")
	}
	srv := serve(t, r.ServerTLS())
	alice, err := ClientTLS(dir, "alice")
	must(t, err)
	old, err := ClientTLS(dir, "old")
	must(t, err)
	peer, err := OpenReloader(peerDir(t, dir, "n2", "127.0.0.1"), ReloaderConfig{})
	must(t, err)
	forged := signed(t, dir, ClientCACertFile, ClientCAKeyFile,
		pkix.Name{CommonName: "n9", OrganizationalUnit: []string{NodeOU}}, x509.ExtKeyUsageClientAuth, x509.ExtKeyUsageServerAuth)

	for _, tc := range []struct {
		name string
		cfg  *tls.Config
		want Identity // zero: refused
	}{
		{"client from client CA", alice, Identity{Client, "alice"}},
		{"node", peer.PeerTLSFor(srv.addr), Identity{Node, "n2"}},
		{"client from cluster CA", old, Identity{}},
		{"node OU from client CA", insecureWith(forged), Identity{}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, dialErr, got := srv.dial(t, tc.cfg)
			if tc.want == (Identity{}) {
				if !isErr(got.err, ErrUntrusted) || dialErr == nil {
					t.Fatalf("got server error %v, dialer error %v; want refused with ErrUntrusted", got.err, dialErr)
				}
				return
			}
			if got.err != nil || dialErr != nil {
				t.Fatalf("got server error %v, dialer error %v; want accepted", got.err, dialErr)
			}
			if id, ok := IdentityFromConn(got.state); !ok || id != tc.want {
				t.Fatalf("got identity %v (ok %v), want %v", id, ok, tc.want)
			}
		})
	}

	// The forged node certificate also cannot serve the node plane.
	psrv := serve(t, &tls.Config{Certificates: []tls.Certificate{forged}})
	if _, err, _ := psrv.dial(t, peer.PeerTLSFor(psrv.addr)); !isErr(err, ErrUntrusted) {
		t.Fatalf("PeerTLS to a node OU signed by the client CA: got %v, want ErrUntrusted", err)
	}
}

// TestPeerTLS dials servers presenting various certificates with PeerTLS:
// only a node certificate from ca.crt, for the dialed host, over TLS 1.3
// passes.
func TestPeerTLS(t *testing.T) {
	dir := newCertsDir(t)
	other := t.TempDir()
	must(t, CreateCA(other, CAOptions{}))
	r, err := OpenReloader(dir, ReloaderConfig{})
	must(t, err)
	clientPair, err := loadPair(filepath.Join(dir, ClientCertFile("alice")), filepath.Join(dir, ClientKeyFile("alice")))
	must(t, err)
	// A client certificate that also claims server auth: only the OU
	// keeps it out.
	clientServerAuth := signed(t, dir, CACertFile, CAKeyFile,
		pkix.Name{CommonName: "alice", OrganizationalUnit: []string{ClientOU}}, x509.ExtKeyUsageServerAuth)
	node := issued(t, "n2", false, caOpts(dir, false)) // SAN 127.0.0.1 only

	for _, tc := range []struct {
		name    string
		server  *tls.Config
		dialer  func(addr string) *tls.Config
		wantErr error // nil: accepted
	}{
		{"node", &tls.Config{Certificates: []tls.Certificate{node}}, r.PeerTLSFor, nil},
		{"node, PeerTLS without host", &tls.Config{Certificates: []tls.Certificate{node}}, func(string) *tls.Config { return r.PeerTLS() }, nil},
		{"node, wrong host", &tls.Config{Certificates: []tls.Certificate{node}}, func(string) *tls.Config { return r.PeerTLSFor("localhost:1") }, ErrUntrusted},
		{"node, bare host", &tls.Config{Certificates: []tls.Certificate{node}}, func(string) *tls.Config { return r.PeerTLSFor("127.0.0.1") }, nil},
		{"client certificate", &tls.Config{Certificates: []tls.Certificate{clientPair}}, r.PeerTLSFor, ErrUntrusted},
		{"client certificate with server auth", &tls.Config{Certificates: []tls.Certificate{clientServerAuth}}, r.PeerTLSFor, ErrUntrusted},
		{"node from another CA", &tls.Config{Certificates: []tls.Certificate{issued(t, "n2", false, caOpts(other, false))}}, r.PeerTLSFor, ErrUntrusted},
		{"expired node", &tls.Config{Certificates: []tls.Certificate{issued(t, "n2", false, expiredOpts(caOpts(dir, false)))}}, r.PeerTLSFor, ErrUntrusted},
		{"TLS 1.2 only", &tls.Config{Certificates: []tls.Certificate{node}, MaxVersion: tls.VersionTLS12}, r.PeerTLSFor, errAny},
	} {
		t.Run(tc.name, func(t *testing.T) {
			tc.server.ClientAuth = tls.RequireAnyClientCert
			srv := serve(t, tc.server)
			state, err, got := srv.dial(t, tc.dialer(srv.addr))
			if tc.wantErr != nil {
				if !isErr(err, unwrapAny(tc.wantErr)) {
					t.Fatalf("got %v, want %v", err, tc.wantErr)
				}
				return
			}
			if err != nil || got.err != nil {
				t.Fatalf("got dialer error %v, server error %v; want accepted", err, got.err)
			}
			if cn := state.PeerCertificates[0].Subject.CommonName; cn != "n2" {
				t.Fatalf("got server %q, want n2", cn)
			}
			if cn := got.state.PeerCertificates[0].Subject.CommonName; cn != "n1" {
				t.Fatalf("server saw dialer %q, want n1", cn)
			}
		})
	}
}

// TestClientTLS checks the client side: it refuses a server that is not a
// node and presents the user's certificate only if it exists.
func TestClientTLS(t *testing.T) {
	dir := newCertsDir(t)
	clientPair, err := loadPair(filepath.Join(dir, ClientCertFile("alice")), filepath.Join(dir, ClientKeyFile("alice")))
	must(t, err)
	serverAuthClient := signed(t, dir, CACertFile, CAKeyFile,
		pkix.Name{CommonName: "alice", OrganizationalUnit: []string{ClientOU}}, x509.ExtKeyUsageServerAuth)
	node := issued(t, "n2", false, caOpts(dir, false))

	for _, tc := range []struct {
		name     string
		user     string
		server   tls.Certificate
		wantErr  error
		wantCert bool
	}{
		{"node, no user", "", node, nil, false},
		{"node, user without certificate", "bob", node, nil, false},
		{"node, alice", "alice", node, nil, true},
		{"client as server", "", clientPair, errAny, false},
		{"client OU with server auth as server", "", serverAuthClient, ErrUntrusted, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			cfg, err := ClientTLS(dir, tc.user)
			must(t, err)
			srv := serve(t, &tls.Config{Certificates: []tls.Certificate{tc.server}, ClientAuth: tls.RequestClientCert})
			_, err, got := srv.dial(t, cfg)
			if tc.wantErr != nil {
				if !isErr(err, unwrapAny(tc.wantErr)) {
					t.Fatalf("got %v, want %v", err, tc.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatalf("got %v, want accepted", err)
			}
			if sent := len(got.state.PeerCertificates) > 0; sent != tc.wantCert {
				t.Fatalf("got client certificate sent %v, want %v", sent, tc.wantCert)
			}
		})
	}
}
