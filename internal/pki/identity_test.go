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

// TestIdentify runs the pure classification over certificates and pools
// without a network.
func TestPKIIdentify(t *testing.T) {
	dir := newCertsDir(t)
	must(t, CreateCA(dir, CAOptions{Client: true}))
	must(t, CreateClient(dir, "bob", CertOptions{}))
	m, err := loadMaterial(dir, time.Now())
	must(t, err)
	leaf := func(name string) []*x509.Certificate {
		certs, err := readCerts(filepath.Join(dir, name))
		must(t, err)
		return certs
	}
	node, alice, bob, ca := leaf(NodeCertFile), leaf(ClientCertFile("alice")), leaf(ClientCertFile("bob")), leaf(CACertFile)
	caWithOU := signed(t, dir, CACertFile, CAKeyFile, pkix.Name{CommonName: "n9", OrganizationalUnit: []string{NodeOU}}, x509.ExtKeyUsageClientAuth)
	caWithOU.Leaf.IsCA = true // as parsed from a CA certificate carrying a node OU
	now := time.Now()

	for _, tc := range []struct {
		name  string
		certs []*x509.Certificate
		pools Pools
		usage x509.ExtKeyUsage
		at    time.Time
		want  Identity
	}{
		{"node", node, m.Pools, x509.ExtKeyUsageClientAuth, now, Identity{Node, "n1"}},
		{"node as server", node, m.Pools, x509.ExtKeyUsageServerAuth, now, Identity{Node, "n1"}},
		{"client from client CA", bob, m.Pools, x509.ExtKeyUsageClientAuth, now, Identity{Client, "bob"}},
		{"client as server", bob, m.Pools, x509.ExtKeyUsageServerAuth, now, Identity{}},
		{"client from cluster CA with a client CA", alice, m.Pools, x509.ExtKeyUsageClientAuth, now, Identity{}},
		{"client from cluster CA without a client CA", alice, Pools{Node: m.Pools.Node, Client: m.Pools.Node}, x509.ExtKeyUsageClientAuth, now, Identity{Client, "alice"}},
		{"node with client pool only", node, Pools{Client: m.Pools.Client}, x509.ExtKeyUsageClientAuth, now, Identity{}},
		{"nil pools", node, Pools{}, x509.ExtKeyUsageClientAuth, now, Identity{}},
		{"no certificate", nil, m.Pools, x509.ExtKeyUsageClientAuth, now, Identity{}},
		{"CA as leaf", ca, m.Pools, x509.ExtKeyUsageClientAuth, now, Identity{}},
		{"CA flag with node OU", []*x509.Certificate{caWithOU.Leaf}, m.Pools, x509.ExtKeyUsageClientAuth, now, Identity{}},
		{"node after expiry", node, m.Pools, x509.ExtKeyUsageClientAuth, node[0].NotAfter.Add(time.Second), Identity{}},
		{"node before validity", node, m.Pools, x509.ExtKeyUsageClientAuth, node[0].NotBefore.Add(-time.Second), Identity{}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got, err := Identify(tc.certs, tc.pools, tc.usage, tc.at)
			if tc.want == (Identity{}) {
				if !errors.Is(err, ErrUntrusted) {
					t.Fatalf("got %v, %v; want ErrUntrusted", got, err)
				}
				return
			}
			if err != nil || got != tc.want {
				t.Fatalf("got %v, %v; want %v", got, err, tc.want)
			}
		})
	}
}

func TestPKIIdentityFromConnWithoutVerification(t *testing.T) {
	dir := newCertsDir(t)
	certs, err := readCerts(filepath.Join(dir, NodeCertFile))
	must(t, err)
	for _, tc := range []struct {
		name  string
		state tls.ConnectionState
		want  bool
	}{
		{"verified", tls.ConnectionState{HandshakeComplete: true, PeerCertificates: certs, VerifiedChains: [][]*x509.Certificate{certs}}, true},
		{"not verified", tls.ConnectionState{HandshakeComplete: true, PeerCertificates: certs}, false},
		{"handshake failed", tls.ConnectionState{PeerCertificates: certs, VerifiedChains: [][]*x509.Certificate{certs}}, false},
		{"no certificate", tls.ConnectionState{HandshakeComplete: true}, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			id, ok := IdentityFromConn(tc.state)
			if ok != tc.want || ok && id != (Identity{Node, "n1"}) {
				t.Fatalf("got %v, %v; want ok %v", id, ok, tc.want)
			}
		})
	}
}

func TestPKIKindString(t *testing.T) {
	for _, tc := range []struct {
		id   Identity
		want string
	}{
		{Identity{Node, "n1"}, "node n1"},
		{Identity{Client, "alice"}, "client alice"},
		{Identity{Kind(7), "x"}, "Kind(7) x"},
	} {
		if got := tc.id.String(); got != tc.want {
			t.Errorf("got %q, want %q", got, tc.want)
		}
	}
}
