package pki

import "errors"

var (
	// ErrExists is returned (wrapped, naming the file) by CreateCA,
	// CreateNode, CreateClient and CreateGossipKey when a file they would
	// write already exists and Overwrite is not set. Nothing is written.
	ErrExists = errors.New("pki: file exists")
	// ErrNotFound is returned (wrapped, naming the file) when a file that
	// is needed does not exist: ca.crt, node.crt or node.key for
	// OpenReloader and Reload, ca.crt for ClientTLS, the path given to
	// LoadGossipKey, the directory given to List.
	ErrNotFound = errors.New("pki: file not found")
	// ErrInvalid is returned (wrapped) for a bad argument: an empty or
	// unprintable node id or user name, one with a path separator, a host
	// that is neither an IP address nor a DNS name, a negative lifetime, an
	// invalid ReloaderConfig.
	ErrInvalid = errors.New("pki: invalid argument")
	// ErrNoCA is returned (wrapped) by CreateNode and CreateClient when the
	// CA certificate or key to sign with is missing; the error also matches
	// ErrNotFound and names the missing file.
	ErrNoCA = errors.New("pki: no CA to sign with")
	// ErrMalformed is returned (wrapped, naming the file) when a file does
	// not hold what its name says: no PEM certificate in a .crt, no private
	// key in a .key, a gossip key that is not base64 of 16, 24 or 32 bytes.
	ErrMalformed = errors.New("pki: malformed file")
	// ErrKeyMismatch is returned (wrapped, naming both files) when a
	// private key does not belong to the certificate it is paired with:
	// node.key and node.crt, a client key pair, or the CA key and the CA
	// certificate used for signing.
	ErrKeyMismatch = errors.New("pki: key does not match certificate")
	// ErrWrongKind is returned (wrapped, naming the file) when a file holds
	// a certificate of another kind than its name says: a ca.crt that is
	// not a CA, a node.crt that is not a node certificate, a
	// client.<user>.crt that is not a client certificate.
	ErrWrongKind = errors.New("pki: wrong kind of certificate")
	// ErrUntrusted marks every certificate this package refuses itself:
	// in Identify (unknown CA, expired, no ringkv OU or both, a CA as a
	// leaf, a bad CommonName); in handshakes with PeerTLS (also: a server
	// that is not a node, a host name not in its SANs) and ClientTLS (a
	// server that is not a node); in handshakes with ServerTLS (a
	// certificate that does not verify against its own plane's CA, a node
	// certificate below TLS 1.3; an unknown CA or an expired certificate
	// is refused before that by crypto/tls with its own x509 error); and
	// from OpenReloader and Reload for a node.crt that does not verify
	// against ca.crt now.
	ErrUntrusted = errors.New("pki: certificate not trusted")
)
