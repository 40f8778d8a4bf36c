package pki

import (
	"crypto/tls"
	"crypto/x509"
	"fmt"
	"slices"
	"time"
)

// Kind is the plane a verified peer belongs to.
type Kind int

const (
	// Node is another node of the cluster: OU ringkv-node, signed by
	// ca.crt. Only nodes may use the node plane (raft, gossip, internal
	// RPCs).
	Node Kind = iota + 1
	// Client is a user of the client plane: OU ringkv-client, signed by
	// ca-client.crt if the cluster has one, else by ca.crt.
	Client
)

// String returns "node" or "client".
func (k Kind) String() string {
	switch k {
	case Node:
		return "node"
	case Client:
		return "client"
	default:
		return fmt.Sprintf("Kind(%d)", int(k))
	}
}

// Identity is who a verified peer certificate says the peer is.
type Identity struct {
	// Kind is the peer's plane.
	Kind Kind
	// Name is the certificate's CommonName: the node id or the user name.
	Name string
}

// String returns "node n1" or "client alice".
func (id Identity) String() string { return id.Kind.String() + " " + id.Name }

// Pools are the roots that decide a certificate's plane. A nil pool
// trusts nothing (never the system roots).
type Pools struct {
	// Node holds the roots for node certificates: ca.crt only.
	Node *x509.CertPool
	// Client holds the roots for client certificates: ca-client.crt if
	// the cluster has a client CA, else ca.crt.
	Client *x509.CertPool
}

// leafKind returns the plane a certificate's OU claims, or 0 when it
// claims none or both.
func leafKind(c *x509.Certificate) Kind {
	node := slices.Contains(c.Subject.OrganizationalUnit, NodeOU)
	client := slices.Contains(c.Subject.OrganizationalUnit, ClientOU)
	switch {
	case node && !client:
		return Node
	case client && !node:
		return Client
	default:
		return 0
	}
}

// Identify derives the identity of a peer from the certificates it
// presented (leaf first, then any intermediates). The leaf's OU names its
// plane (NodeOU or ClientOU, exactly one of them); the chain must then
// verify, at now and for the extended key usage usage, against that
// plane's pool: a node certificate against pools.Node, a client
// certificate against pools.Client. A CA certificate is never an identity,
// and the CommonName must be a valid name. With a separate client CA, a
// certificate signed by it cannot be a Node whatever its OU says.
//
// Identify does no I/O and is safe for concurrent use; it does not retain
// certs. Errors wrap ErrUntrusted (and the x509 verification error, if
// any).
func Identify(certs []*x509.Certificate, pools Pools, usage x509.ExtKeyUsage, now time.Time) (Identity, error) {
	if len(certs) == 0 {
		return Identity{}, fmt.Errorf("%w: no certificate", ErrUntrusted)
	}
	leaf := certs[0]
	kind := leafKind(leaf)
	var roots *x509.CertPool
	switch kind {
	case Node:
		roots = pools.Node
	case Client:
		roots = pools.Client
	default:
		return Identity{}, fmt.Errorf("%w: certificate %q has OU %q, want exactly one of %q and %q",
			ErrUntrusted, leaf.Subject.CommonName, leaf.Subject.OrganizationalUnit, NodeOU, ClientOU)
	}
	if leaf.IsCA {
		return Identity{}, fmt.Errorf("%w: certificate %q is a CA", ErrUntrusted, leaf.Subject.CommonName)
	}
	if roots == nil {
		return Identity{}, fmt.Errorf("%w: no %s CA configured", ErrUntrusted, kind)
	}
	if err := checkName(kind.String()+" name", leaf.Subject.CommonName); err != nil {
		return Identity{}, fmt.Errorf("%w: %w", ErrUntrusted, err)
	}
	opts := x509.VerifyOptions{
		Roots:         roots,
		Intermediates: x509.NewCertPool(),
		CurrentTime:   now,
		KeyUsages:     []x509.ExtKeyUsage{usage},
	}
	for _, c := range certs[1:] {
		opts.Intermediates.AddCert(c)
	}
	if _, err := leaf.Verify(opts); err != nil {
		return Identity{}, fmt.Errorf("%w: %s certificate %q: %w", ErrUntrusted, kind, leaf.Subject.CommonName, err)
	}
	return Identity{Kind: kind, Name: leaf.Subject.CommonName}, nil
}

// IdentityFromConn returns the identity of the peer of a connection
// accepted with a ServerTLS configuration, for use per request to tell
// the planes apart. ok is false when the peer presented no certificate
// (it may still authenticate otherwise, such as with a bearer token).
//
// It relies on the handshake: ServerTLS's verification refused any
// certificate that did not verify against its own plane's CA, so it only
// reads the OU and CommonName of a certificate that crypto/tls verified.
// For a state from any other configuration, or from the dialing side of
// a connection (where crypto/tls records no verified chains), or of a
// handshake that did not complete, ok is false.
func IdentityFromConn(state tls.ConnectionState) (Identity, bool) {
	if !state.HandshakeComplete || len(state.VerifiedChains) == 0 || len(state.PeerCertificates) == 0 {
		return Identity{}, false
	}
	leaf := state.PeerCertificates[0]
	kind := leafKind(leaf)
	if kind == 0 || leaf.IsCA {
		return Identity{}, false
	}
	return Identity{Kind: kind, Name: leaf.Subject.CommonName}, true
}
