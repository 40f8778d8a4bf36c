package pki

import (
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/base64"
	"errors"
	"fmt"
	"math/big"
	"path/filepath"
	"strings"
	"time"
)

// Default lifetimes of created certificates.
const (
	DefaultCALifetime   = 10 * 365 * 24 * time.Hour
	DefaultCertLifetime = 5 * 365 * 24 * time.Hour
)

// backdate is how far before now a certificate's validity starts by
// default, so that a host whose clock is a little behind accepts it.
const backdate = time.Hour

// organization is the Subject Organization of every certificate created here.
const organization = "ringkv"

// CAOptions configures CreateCA. The zero value creates the cluster CA
// (ca.crt, ca.key) valid for DefaultCALifetime.
type CAOptions struct {
	// Lifetime is how long the CA certificate is valid, from NotBefore.
	// Zero means DefaultCALifetime (10 years). Certificates signed by the
	// CA never outlive it, so a short CA lifetime caps theirs.
	Lifetime time.Duration
	// NotBefore is when validity starts. Zero means one hour before now,
	// to tolerate clock skew between hosts.
	NotBefore time.Time
	// Client creates the separate client CA (ca-client.crt,
	// ca-client.key) instead of the cluster CA. Once it exists, client
	// certificates are signed by it and no client certificate can pass
	// as a node.
	Client bool
	// KeyPath is where the CA key is written, for operators who keep it
	// out of the certs directory. Empty means dir/ca.key (Client:
	// dir/ca-client.key).
	KeyPath string
	// Overwrite replaces existing files instead of failing with ErrExists.
	// Replacing a CA invalidates every certificate it signed.
	Overwrite bool
}

// CertOptions configures CreateNode and CreateClient. The zero value signs
// with the CA in the certs directory and makes a certificate valid for
// DefaultCertLifetime.
type CertOptions struct {
	// Lifetime is how long the certificate is valid, from NotBefore. Zero
	// means DefaultCertLifetime (5 years). It is cut short to end with the
	// signing CA.
	Lifetime time.Duration
	// NotBefore is when validity starts. Zero means one hour before now,
	// to tolerate clock skew between hosts. Tests set it in the past to
	// make expired certificates.
	NotBefore time.Time
	// CACertPath is the CA certificate to sign with. Empty means
	// dir/ca.crt; for CreateClient, dir/ca-client.crt if that exists.
	CACertPath string
	// CAKeyPath is the CA private key to sign with. Empty means the
	// ".key" file next to the CA certificate (dir/ca.key or
	// dir/ca-client.key).
	CAKeyPath string
	// Overwrite replaces existing files instead of failing with ErrExists.
	Overwrite bool
}

// GossipKeyOptions configures CreateGossipKey.
type GossipKeyOptions struct {
	// Overwrite replaces an existing gossip.key instead of failing with
	// ErrExists. Every node must then be given the new key.
	Overwrite bool
}

// CreateCA creates a CA key pair in dir (created with mode 0700 if
// missing): ca.crt and ca.key, or with opts.Client ca-client.crt and
// ca-client.key. The key is an ECDSA P-256 key written with mode 0600,
// the certificate is written with mode 0644.
//
// Errors: ErrExists (a file exists and opts.Overwrite is not set),
// ErrInvalid (negative Lifetime), or a wrapped I/O error.
func CreateCA(dir string, opts CAOptions) error {
	life, err := lifetime(opts.Lifetime, DefaultCALifetime)
	if err != nil {
		return err
	}
	certName, keyName, cn, ou := CACertFile, CAKeyFile, "ringkv CA", CAOU
	if opts.Client {
		certName, keyName, cn, ou = ClientCACertFile, ClientCAKeyFile, "ringkv client CA", ClientCAOU
	}
	keyPath := opts.KeyPath
	if keyPath == "" {
		keyPath = filepath.Join(dir, keyName)
	}
	nb := notBefore(opts.NotBefore)
	tmpl := &x509.Certificate{
		Subject:               pkix.Name{CommonName: cn, Organization: []string{organization}, OrganizationalUnit: []string{ou}},
		NotBefore:             nb,
		NotAfter:              nb.Add(life),
		IsCA:                  true,
		BasicConstraintsValid: true,
		MaxPathLenZero:        true,
		KeyUsage:              x509.KeyUsageCertSign | x509.KeyUsageCRLSign | x509.KeyUsageDigitalSignature,
	}
	return issue(filepath.Join(dir, certName), keyPath, tmpl, nil, opts.Overwrite)
}

// CreateNode creates node.crt and node.key in dir (created with mode 0700
// if missing) for the node id, signed by the cluster CA (see
// CertOptions). The certificate has CommonName id, OrganizationalUnit
// NodeOU, extended key usages server and client authentication, and one
// SAN per host: an IP SAN for an IP literal, a DNS SAN otherwise. hosts
// must not be empty; the slice is not retained.
//
// Errors: ErrInvalid (bad id, host or Lifetime, no hosts), ErrNoCA (and
// ErrNotFound) when the CA certificate or key is missing, ErrWrongKind
// (the CA certificate is not a CA), ErrKeyMismatch (the CA key is not the
// CA certificate's), ErrMalformed, ErrExists, or a wrapped I/O error.
func CreateNode(dir, id string, hosts []string, opts CertOptions) error {
	if err := checkName("node id", id); err != nil {
		return err
	}
	if len(hosts) == 0 {
		return fmt.Errorf("%w: node %s: no hosts: a node certificate needs at least one host name or IP address", ErrInvalid, id)
	}
	dns, ips, err := parseHosts(hosts)
	if err != nil {
		return err
	}
	tmpl := &x509.Certificate{
		Subject:     pkix.Name{CommonName: id, Organization: []string{organization}, OrganizationalUnit: []string{NodeOU}},
		DNSNames:    dns,
		IPAddresses: ips,
		KeyUsage:    x509.KeyUsageDigitalSignature,
		ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth, x509.ExtKeyUsageClientAuth},
	}
	return createLeaf(dir, NodeCertFile, NodeKeyFile, tmpl, CertNode, opts)
}

// CreateClient creates client.<user>.crt and client.<user>.key in dir
// (created with mode 0700 if missing), signed by the client CA
// (ca-client.crt/ca-client.key) if dir has one, else by the cluster CA
// (see CertOptions). The certificate has CommonName user,
// OrganizationalUnit ClientOU and only the client authentication extended
// key usage.
//
// Errors: ErrInvalid (bad user or Lifetime), ErrNoCA (and ErrNotFound),
// ErrWrongKind, ErrKeyMismatch, ErrMalformed, ErrExists, or a wrapped I/O
// error.
func CreateClient(dir, user string, opts CertOptions) error {
	if err := checkName("user", user); err != nil {
		return err
	}
	tmpl := &x509.Certificate{
		Subject:     pkix.Name{CommonName: user, Organization: []string{organization}, OrganizationalUnit: []string{ClientOU}},
		KeyUsage:    x509.KeyUsageDigitalSignature,
		ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth},
	}
	return createLeaf(dir, ClientCertFile(user), ClientKeyFile(user), tmpl, CertClient, opts)
}

// CreateGossipKey writes dir/gossip.key (mode 0600, dir created with mode
// 0700 if missing): 32 random bytes, standard base64 on one line, for
// memberlist's keyring.
//
// Errors: ErrExists (and opts.Overwrite is not set), or a wrapped I/O
// error.
func CreateGossipKey(dir string, opts GossipKeyOptions) error {
	key := make([]byte, 32)
	if _, err := rand.Read(key); err != nil {
		return fmt.Errorf("gossip key: %w", err)
	}
	data := base64.StdEncoding.EncodeToString(key) + "\n"
	return writeAll([]output{{filepath.Join(dir, GossipKeyFile), []byte(data), keyPerm}}, opts.Overwrite)
}

// LoadGossipKey reads a gossip key written by CreateGossipKey and returns
// the raw key (16, 24 or 32 bytes, the sizes memberlist accepts). The
// caller owns the returned slice.
//
// Errors: ErrNotFound, ErrMalformed (not base64, or a wrong length), or a
// wrapped I/O error.
func LoadGossipKey(path string) ([]byte, error) {
	b, err := readFile(path)
	if err != nil {
		return nil, err
	}
	key, err := base64.StdEncoding.DecodeString(strings.TrimSpace(string(b)))
	if err != nil {
		return nil, fmt.Errorf("%w: %s: %w", ErrMalformed, path, err)
	}
	switch len(key) {
	case 16, 24, 32:
		return key, nil
	default:
		return nil, fmt.Errorf("%w: %s: key is %d bytes, want 16, 24 or 32", ErrMalformed, path, len(key))
	}
}

// caSigner is a CA certificate with its private key.
type caSigner struct {
	cert *x509.Certificate
	key  crypto.Signer
}

// loadSigner finds the CA that signs a certificate of kind in dir, as
// CertOptions describes.
func loadSigner(dir string, kind CertKind, opts CertOptions) (caSigner, error) {
	certPath := opts.CACertPath
	if certPath == "" {
		certPath = filepath.Join(dir, CACertFile)
		if kind == CertClient && exists(filepath.Join(dir, ClientCACertFile)) {
			certPath = filepath.Join(dir, ClientCACertFile)
		}
	}
	keyPath := opts.CAKeyPath
	if keyPath == "" {
		keyPath = strings.TrimSuffix(certPath, ".crt") + ".key"
	}
	cert, err := readCA(certPath)
	if err != nil {
		return caSigner{}, noCA(err)
	}
	key, err := readKey(keyPath)
	if err != nil {
		return caSigner{}, noCA(err)
	}
	if !matches(cert, key) {
		return caSigner{}, fmt.Errorf("%w: CA key %s is not the key of %s", ErrKeyMismatch, keyPath, certPath)
	}
	return caSigner{cert, key}, nil
}

// noCA marks a missing CA file with ErrNoCA.
func noCA(err error) error {
	if !errors.Is(err, ErrNotFound) {
		return err
	}
	return fmt.Errorf("%w: %w", ErrNoCA, err)
}

// createLeaf signs tmpl with the CA that loadSigner picks and writes the
// certificate and a new key as dir/certName and dir/keyName.
func createLeaf(dir, certName, keyName string, tmpl *x509.Certificate, kind CertKind, opts CertOptions) error {
	life, err := lifetime(opts.Lifetime, DefaultCertLifetime)
	if err != nil {
		return err
	}
	ca, err := loadSigner(dir, kind, opts)
	if err != nil {
		return err
	}
	tmpl.NotBefore = notBefore(opts.NotBefore)
	tmpl.NotAfter = tmpl.NotBefore.Add(life)
	if tmpl.NotAfter.After(ca.cert.NotAfter) {
		tmpl.NotAfter = ca.cert.NotAfter
	}
	return issue(filepath.Join(dir, certName), filepath.Join(dir, keyName), tmpl, &ca, opts.Overwrite)
}

// issue makes a P-256 key, signs tmpl with ca (nil: self-signed) and
// writes the certificate and key.
func issue(certPath, keyPath string, tmpl *x509.Certificate, ca *caSigner, overwrite bool) error {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return fmt.Errorf("generate key: %w", err)
	}
	if tmpl.SerialNumber, err = rand.Int(rand.Reader, new(big.Int).Lsh(big.NewInt(1), 127)); err != nil {
		return fmt.Errorf("serial number: %w", err)
	}
	parent, signer := tmpl, crypto.Signer(key)
	if ca != nil {
		parent, signer = ca.cert, ca.key
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, parent, key.Public(), signer)
	if err != nil {
		return fmt.Errorf("sign %s: %w", certPath, err)
	}
	keyPEM, err := encodeKey(key)
	if err != nil {
		return err
	}
	// The key goes first: a reader that sees the new certificate also
	// sees its key.
	return writeAll([]output{
		{keyPath, keyPEM, keyPerm},
		{certPath, encodeCert(der), certPerm},
	}, overwrite)
}

func lifetime(d, def time.Duration) (time.Duration, error) {
	switch {
	case d < 0:
		return 0, fmt.Errorf("%w: lifetime %s is negative", ErrInvalid, d)
	case d == 0:
		return def, nil
	default:
		return d, nil
	}
}

func notBefore(t time.Time) time.Time {
	if t.IsZero() {
		return time.Now().Add(-backdate).UTC().Truncate(time.Second)
	}
	return t
}
