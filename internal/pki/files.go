package pki

import (
	"crypto"
	"crypto/ecdsa"
	"crypto/tls"
	"crypto/x509"
	"encoding/pem"
	"errors"
	"fmt"
	"io/fs"
	"net"
	"os"
	"path/filepath"
	"strings"
	"unicode"
	"unicode/utf8"
)

// File names inside a certs directory. See the package documentation for
// what each one is for.
const (
	CACertFile       = "ca.crt"
	CAKeyFile        = "ca.key"
	ClientCACertFile = "ca-client.crt"
	ClientCAKeyFile  = "ca-client.key"
	NodeCertFile     = "node.crt"
	NodeKeyFile      = "node.key"
	GossipKeyFile    = "gossip.key"
)

// Subject OrganizationalUnit values that mark what a certificate is for.
// The plane of a peer is decided by its certificate's OU together with
// the CA that signed it (see Identify).
const (
	NodeOU     = "ringkv-node"
	ClientOU   = "ringkv-client"
	CAOU       = "ringkv-ca"
	ClientCAOU = "ringkv-client-ca"
)

// File permissions: private keys are readable by their owner only.
const (
	keyPerm  fs.FileMode = 0o600
	certPerm fs.FileMode = 0o644
	dirPerm  fs.FileMode = 0o700
)

// maxNameBytes bounds node ids and user names: the X.509 upper bound for
// a CommonName is 64 characters.
const maxNameBytes = 64

// ClientCertFile returns the name of user's certificate file,
// "client.<user>.crt". It does not validate user.
func ClientCertFile(user string) string { return "client." + user + ".crt" }

// ClientKeyFile returns the name of user's key file, "client.<user>.key".
// It does not validate user.
func ClientKeyFile(user string) string { return "client." + user + ".key" }

// checkName validates a node id or user name: it becomes a CommonName and
// part of a file name. Errors wrap ErrInvalid.
func checkName(what, s string) error {
	switch {
	case s == "":
		return fmt.Errorf("%w: %s is empty", ErrInvalid, what)
	case len(s) > maxNameBytes:
		return fmt.Errorf("%w: %s %q is longer than %d bytes", ErrInvalid, what, s, maxNameBytes)
	case s == "." || s == "..":
		return fmt.Errorf("%w: %s %q is not a name", ErrInvalid, what, s)
	case strings.ContainsAny(s, `/\`) || strings.ContainsRune(s, filepath.Separator):
		return fmt.Errorf("%w: %s %q contains a path separator", ErrInvalid, what, s)
	case !utf8.ValidString(s):
		return fmt.Errorf("%w: %s %q is not UTF-8", ErrInvalid, what, s)
	}
	for _, r := range s {
		if !unicode.IsPrint(r) || unicode.IsSpace(r) {
			return fmt.Errorf("%w: %s %q contains a space or an unprintable character", ErrInvalid, what, s)
		}
	}
	return nil
}

// parseHosts splits hosts into IP and DNS SANs, in the order given,
// without duplicates. An IP literal may be in brackets ("[::1]"). Errors
// wrap ErrInvalid.
func parseHosts(hosts []string) (dns []string, ips []net.IP, err error) {
	seen := map[string]bool{}
	for _, h := range hosts {
		if len(h) > 2 && h[0] == '[' && h[len(h)-1] == ']' {
			h = h[1 : len(h)-1]
		}
		if ip := net.ParseIP(h); ip != nil {
			if !seen[ip.String()] {
				seen[ip.String()] = true
				ips = append(ips, ip)
			}
			continue
		}
		if err := checkDNSName(h); err != nil {
			return nil, nil, err
		}
		if name := strings.ToLower(h); !seen[name] {
			seen[name] = true
			dns = append(dns, name)
		}
	}
	return dns, ips, nil
}

// checkDNSName accepts host names made of letters, digits, '-' and '_'
// in dot-separated labels, with an optional leading "*." wildcard.
func checkDNSName(h string) error {
	bad := func(why string) error {
		return fmt.Errorf("%w: host %q: %s (want an IP address or a DNS name, without a port)", ErrInvalid, h, why)
	}
	if h == "" {
		return bad("empty")
	}
	if len(h) > 253 {
		return bad("longer than 253 bytes")
	}
	for i, label := range strings.Split(h, ".") {
		if label == "*" && i == 0 && strings.Contains(h, ".") {
			continue
		}
		if label == "" || len(label) > 63 {
			return bad("empty or overlong label")
		}
		if label[0] == '-' || label[len(label)-1] == '-' {
			return bad("label starts or ends with '-'")
		}
		for _, r := range label {
			if (r < 'a' || r > 'z') && (r < 'A' || r > 'Z') && (r < '0' || r > '9') && r != '-' && r != '_' { //nolint:staticcheck // QF1001: the ranges read better as they are
				return bad(fmt.Sprintf("character %q", r))
			}
		}
	}
	return nil
}

// exists reports whether path exists. Errors other than "does not exist"
// count as existing, so that the caller reads the file and reports them.
func exists(path string) bool {
	_, err := os.Stat(path)
	return !errors.Is(err, fs.ErrNotExist)
}

// readFile reads path; a missing file is ErrNotFound naming it.
func readFile(path string) ([]byte, error) {
	b, err := os.ReadFile(path)
	if errors.Is(err, fs.ErrNotExist) {
		return nil, fmt.Errorf("%w: %s", ErrNotFound, path)
	}
	if err != nil {
		return nil, fmt.Errorf("read %s: %w", path, err)
	}
	return b, nil
}

// readCerts returns every CERTIFICATE block in path, leaf first. Errors:
// ErrNotFound, ErrMalformed.
func readCerts(path string) ([]*x509.Certificate, error) {
	b, err := readFile(path)
	if err != nil {
		return nil, err
	}
	var certs []*x509.Certificate
	for {
		var blk *pem.Block
		blk, b = pem.Decode(b)
		if blk == nil {
			break
		}
		if blk.Type != "CERTIFICATE" {
			continue
		}
		c, err := x509.ParseCertificate(blk.Bytes)
		if err != nil {
			return nil, fmt.Errorf("%w: %s: %w", ErrMalformed, path, err)
		}
		certs = append(certs, c)
	}
	if len(certs) == 0 {
		return nil, fmt.Errorf("%w: %s: no PEM certificate", ErrMalformed, path)
	}
	return certs, nil
}

// readCA reads a CA certificate. Errors: ErrNotFound, ErrMalformed,
// ErrWrongKind.
func readCA(path string) (*x509.Certificate, error) {
	certs, err := readCerts(path)
	if err != nil {
		return nil, err
	}
	if c := certs[0]; !c.IsCA || !c.BasicConstraintsValid {
		return nil, fmt.Errorf("%w: %s is not a CA certificate", ErrWrongKind, path)
	}
	return certs[0], nil
}

// readKey reads the first private key in path: PKCS #8 ("PRIVATE KEY", as
// written here), SEC 1 ("EC PRIVATE KEY") or PKCS #1 ("RSA PRIVATE KEY").
// Errors: ErrNotFound, ErrMalformed.
func readKey(path string) (crypto.Signer, error) {
	b, err := readFile(path)
	if err != nil {
		return nil, err
	}
	for {
		var blk *pem.Block
		blk, b = pem.Decode(b)
		if blk == nil {
			return nil, fmt.Errorf("%w: %s: no PEM private key", ErrMalformed, path)
		}
		var key any
		switch blk.Type {
		case "PRIVATE KEY":
			key, err = x509.ParsePKCS8PrivateKey(blk.Bytes)
		case "EC PRIVATE KEY":
			key, err = x509.ParseECPrivateKey(blk.Bytes)
		case "RSA PRIVATE KEY":
			key, err = x509.ParsePKCS1PrivateKey(blk.Bytes)
		default:
			continue
		}
		if err != nil {
			return nil, fmt.Errorf("%w: %s: %w", ErrMalformed, path, err)
		}
		s, ok := key.(crypto.Signer)
		if !ok {
			return nil, fmt.Errorf("%w: %s: unsupported key type %T", ErrMalformed, path, key)
		}
		return s, nil
	}
}

// matches reports whether key is the private half of cert's public key.
func matches(cert *x509.Certificate, key crypto.Signer) bool {
	pub, ok := key.Public().(interface{ Equal(crypto.PublicKey) bool })
	return ok && pub.Equal(cert.PublicKey)
}

// loadPair reads a certificate file (leaf first, then any intermediates)
// and its key. The returned certificate's Leaf is set. Errors:
// ErrNotFound, ErrMalformed, ErrKeyMismatch.
func loadPair(certPath, keyPath string) (tls.Certificate, error) {
	certs, err := readCerts(certPath)
	if err != nil {
		return tls.Certificate{}, err
	}
	key, err := readKey(keyPath)
	if err != nil {
		return tls.Certificate{}, err
	}
	if !matches(certs[0], key) {
		return tls.Certificate{}, fmt.Errorf("%w: %s is not the key of %s", ErrKeyMismatch, keyPath, certPath)
	}
	pair := tls.Certificate{PrivateKey: key, Leaf: certs[0]}
	for _, c := range certs {
		pair.Certificate = append(pair.Certificate, c.Raw)
	}
	return pair, nil
}

// encodeCert returns der as a PEM CERTIFICATE block.
func encodeCert(der []byte) []byte {
	return pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der})
}

// encodeKey returns key as a PEM PKCS #8 "PRIVATE KEY" block.
func encodeKey(key *ecdsa.PrivateKey) ([]byte, error) {
	der, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		return nil, fmt.Errorf("marshal key: %w", err)
	}
	return pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: der}), nil
}

// output is one file to write.
type output struct {
	path string
	data []byte
	perm fs.FileMode
}

// writeAll writes files atomically, each through a temp file in its own
// directory (write, fsync, chmod, rename, fsync the directory), creating
// missing directories with mode 0700. Unless overwrite, it first checks
// that none of them exists (ErrExists naming the first that does). All
// temp files are written before the first rename, so a failure while
// staging leaves every old file in place.
func writeAll(files []output, overwrite bool) (err error) {
	if !overwrite {
		for _, f := range files {
			_, err := os.Lstat(f.path)
			if err == nil {
				return fmt.Errorf("%w: %s (set overwrite to replace it)", ErrExists, f.path)
			}
			if !errors.Is(err, fs.ErrNotExist) {
				return fmt.Errorf("stat %s: %w", f.path, err)
			}
		}
	}
	tmps := make([]string, len(files))
	defer func() {
		for _, tmp := range tmps {
			if tmp != "" {
				_ = os.Remove(tmp) // best effort: the error being returned matters more
			}
		}
	}()
	dirs := map[string]bool{}
	for i, f := range files {
		dir := filepath.Dir(f.path)
		if err := os.MkdirAll(dir, dirPerm); err != nil {
			return fmt.Errorf("create %s: %w", dir, err)
		}
		dirs[dir] = true
		if tmps[i], err = writeTemp(f); err != nil {
			return err
		}
	}
	for i, f := range files {
		if err := os.Rename(tmps[i], f.path); err != nil {
			return fmt.Errorf("rename %s: %w", tmps[i], err)
		}
		tmps[i] = ""
	}
	for dir := range dirs {
		if err := syncDir(dir); err != nil {
			return err
		}
	}
	return nil
}

// writeTemp writes f's data to a new temp file next to f.path with f's
// permissions and returns the temp file's name.
func writeTemp(f output) (string, error) {
	t, err := os.CreateTemp(filepath.Dir(f.path), "."+filepath.Base(f.path)+".tmp*")
	if err != nil {
		return "", fmt.Errorf("write %s: %w", f.path, err)
	}
	name := t.Name()
	if err := writeSync(t, f); err != nil {
		_ = t.Close()
		_ = os.Remove(name)
		return "", fmt.Errorf("write %s: %w", name, err)
	}
	if err := t.Close(); err != nil {
		_ = os.Remove(name)
		return "", fmt.Errorf("close %s: %w", name, err)
	}
	return name, nil
}

func writeSync(t *os.File, f output) error {
	// CreateTemp makes the file 0600; Chmod sets the exact mode, whatever
	// the umask.
	if err := t.Chmod(f.perm); err != nil {
		return fmt.Errorf("chmod %s: %w", t.Name(), err)
	}
	if _, err := t.Write(f.data); err != nil {
		return fmt.Errorf("write %s: %w", t.Name(), err)
	}
	if err := t.Sync(); err != nil {
		return fmt.Errorf("sync %s: %w", t.Name(), err)
	}
	return nil
}

func syncDir(dir string) error {
	d, err := os.Open(dir)
	if err != nil {
		return fmt.Errorf("sync dir %s: %w", dir, err)
	}
	err = d.Sync()
	if cerr := d.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return fmt.Errorf("sync dir %s: %w", dir, err)
	}
	return nil
}
