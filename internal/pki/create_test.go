package pki

import (
	"crypto/ecdsa"
	"crypto/x509"
	"encoding/pem"
	"errors"
	"net"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"
)

func readLeaf(t *testing.T, path string) *x509.Certificate {
	t.Helper()
	certs, err := readCerts(path)
	must(t, err)
	return certs[0]
}

func checkPerm(t *testing.T, path string, want os.FileMode) {
	t.Helper()
	fi, err := os.Stat(path)
	must(t, err)
	if got := fi.Mode().Perm(); got != want {
		t.Errorf("%s: got mode %v, want %v", filepath.Base(path), got, want)
	}
}

// approx reports whether d is within a minute of want.
func approx(d, want time.Duration) bool { return d > want-time.Minute && d < want+time.Minute }

func TestCreateCertFiles(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "certs") // created by CreateCA
	must(t, CreateCA(dir, CAOptions{}))
	must(t, CreateCA(dir, CAOptions{Client: true}))
	must(t, CreateNode(dir, "n1", []string{"10.0.0.1", "node1.example.com", "[::1]", "Node1.example.com", "10.0.0.1"}, CertOptions{}))
	must(t, CreateClient(dir, "alice", CertOptions{Lifetime: 24 * time.Hour}))
	ca := readLeaf(t, filepath.Join(dir, CACertFile))
	clientCA := readLeaf(t, filepath.Join(dir, ClientCACertFile))

	for _, tc := range []struct {
		cert, key string
		isCA      bool
		cn        string
		ou        string
		usages    []x509.ExtKeyUsage
		dns       []string
		ips       []string
		life      time.Duration
		signer    *x509.Certificate
	}{
		{CACertFile, CAKeyFile, true, "ringkv CA", CAOU, nil, nil, nil, DefaultCALifetime, ca},
		{ClientCACertFile, ClientCAKeyFile, true, "ringkv client CA", ClientCAOU, nil, nil, nil, DefaultCALifetime, clientCA},
		{NodeCertFile, NodeKeyFile, false, "n1", NodeOU,
			[]x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth, x509.ExtKeyUsageClientAuth},
			[]string{"node1.example.com"}, []string{"10.0.0.1", "::1"}, DefaultCertLifetime, ca},
		{"client.alice.crt", "client.alice.key", false, "alice", ClientOU,
			[]x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth}, nil, nil, 24 * time.Hour, clientCA},
	} {
		t.Run(tc.cert, func(t *testing.T) {
			checkPerm(t, filepath.Join(dir, tc.cert), 0o644)
			checkPerm(t, filepath.Join(dir, tc.key), 0o600)
			c := readLeaf(t, filepath.Join(dir, tc.cert))
			key, err := readKey(filepath.Join(dir, tc.key))
			must(t, err)
			if !matches(c, key) {
				t.Error("key does not match the certificate")
			}
			if c.IsCA != tc.isCA {
				t.Errorf("got IsCA %v, want %v", c.IsCA, tc.isCA)
			}
			if c.Subject.CommonName != tc.cn || !slices.Equal(c.Subject.OrganizationalUnit, []string{tc.ou}) {
				t.Errorf("got CN %q OU %q, want %q %q", c.Subject.CommonName, c.Subject.OrganizationalUnit, tc.cn, tc.ou)
			}
			if !slices.Equal(c.ExtKeyUsage, tc.usages) {
				t.Errorf("got usages %v, want %v", c.ExtKeyUsage, tc.usages)
			}
			if !slices.Equal(c.DNSNames, tc.dns) {
				t.Errorf("got DNS SANs %q, want %q", c.DNSNames, tc.dns)
			}
			var ips []string
			for _, ip := range c.IPAddresses {
				ips = append(ips, ip.String())
			}
			if !slices.Equal(ips, tc.ips) {
				t.Errorf("got IP SANs %q, want %q", ips, tc.ips)
			}
			if life := c.NotAfter.Sub(c.NotBefore); !approx(life, tc.life) {
				t.Errorf("got lifetime %s, want %s", life, tc.life)
			}
			if !approx(time.Since(c.NotBefore), backdate) {
				t.Errorf("got NotBefore %s, want an hour ago", c.NotBefore)
			}
			if err := c.CheckSignatureFrom(tc.signer); err != nil {
				t.Errorf("not signed by %s: %v", tc.signer.Subject.CommonName, err)
			}
		})
	}
	checkPerm(t, dir, 0o700)
	if tmps, _ := filepath.Glob(filepath.Join(dir, ".*tmp*")); len(tmps) != 0 {
		t.Errorf("temp files left behind: %q", tmps)
	}
}

func TestPKICreateRefusesOverwrite(t *testing.T) {
	dir := newCertsDir(t)
	must(t, CreateGossipKey(dir, GossipKeyOptions{}))
	for _, tc := range []struct {
		name   string
		file   string
		create func(overwrite bool) error
	}{
		{"ca", CACertFile, func(o bool) error { return CreateCA(dir, CAOptions{Overwrite: o}) }},
		{"node", NodeCertFile, func(o bool) error {
			return CreateNode(dir, "n1", []string{"127.0.0.1"}, CertOptions{Overwrite: o})
		}},
		{"client", ClientCertFile("alice"), func(o bool) error { return CreateClient(dir, "alice", CertOptions{Overwrite: o}) }},
		{"gossip key", GossipKeyFile, func(o bool) error { return CreateGossipKey(dir, GossipKeyOptions{Overwrite: o}) }},
	} {
		t.Run(tc.name, func(t *testing.T) {
			path := filepath.Join(dir, tc.file)
			before, err := os.ReadFile(path)
			must(t, err)
			err = tc.create(false)
			if !errors.Is(err, ErrExists) {
				t.Fatalf("got %v, want ErrExists", err)
			}
			// The key is checked first; either way the message names a file of the pair.
			if stem := strings.TrimSuffix(tc.file, filepath.Ext(tc.file)); !strings.Contains(err.Error(), filepath.Join(dir, stem)) {
				t.Errorf("got %q, want it to name the file", err)
			}
			if after, _ := os.ReadFile(path); string(after) != string(before) {
				t.Fatal("file changed although overwrite was refused")
			}
			must(t, tc.create(true))
			if after, _ := os.ReadFile(path); string(after) == string(before) {
				t.Fatal("file unchanged after overwrite")
			}
		})
	}
}

func TestPKICreateErrors(t *testing.T) {
	dir := newCertsDir(t)
	empty := t.TempDir()
	other := t.TempDir()
	must(t, CreateCA(other, CAOptions{}))
	node := func(id string, hosts ...string) func() error {
		return func() error { return CreateNode(t.TempDir(), id, hosts, caOpts(dir, false)) }
	}
	for _, tc := range []struct {
		name   string
		create func() error
		want   []error
	}{
		{"empty id", node("", "127.0.0.1"), []error{ErrInvalid}},
		{"id with slash", node("a/b", "127.0.0.1"), []error{ErrInvalid}},
		{"id with backslash", node(`a\b`, "127.0.0.1"), []error{ErrInvalid}},
		{"id dot dot", node("..", "127.0.0.1"), []error{ErrInvalid}},
		{"id with space", node("a b", "127.0.0.1"), []error{ErrInvalid}},
		{"id with control", node("a\x01", "127.0.0.1"), []error{ErrInvalid}},
		{"id not UTF-8", node("a\xff", "127.0.0.1"), []error{ErrInvalid}},
		{"id too long", node(strings.Repeat("n", 65), "127.0.0.1"), []error{ErrInvalid}},
		{"no hosts", node("n1"), []error{ErrInvalid}},
		{"empty host", node("n1", ""), []error{ErrInvalid}},
		{"host with port", node("n1", "127.0.0.1:9001"), []error{ErrInvalid}},
		{"host with bad char", node("n1", "bad!host"), []error{ErrInvalid}},
		{"host with empty label", node("n1", "a..b"), []error{ErrInvalid}},
		{"host label dash", node("n1", "-a.b"), []error{ErrInvalid}},
		{"host too long", node("n1", strings.Repeat("a.", 127)+"a"), []error{ErrInvalid}},
		{"bad user", func() error { return CreateClient(dir, "x/y", CertOptions{}) }, []error{ErrInvalid}},
		{"negative node lifetime", func() error {
			return CreateNode(dir, "n1", []string{"h"}, CertOptions{Lifetime: -time.Hour, Overwrite: true})
		}, []error{ErrInvalid}},
		{"negative CA lifetime", func() error { return CreateCA(t.TempDir(), CAOptions{Lifetime: -1}) }, []error{ErrInvalid}},
		{"no CA", func() error { return CreateNode(empty, "n1", []string{"h"}, CertOptions{}) }, []error{ErrNoCA, ErrNotFound}},
		{"no CA key", func() error {
			crtOnly := peerDir(t, dir, "n1", "h") // has ca.crt, not ca.key
			return CreateClient(crtOnly, "u", CertOptions{})
		}, []error{ErrNoCA, ErrNotFound}},
		{"CA key of another CA", func() error {
			return CreateClient(t.TempDir(), "u", CertOptions{CACertPath: filepath.Join(dir, CACertFile), CAKeyPath: filepath.Join(other, CAKeyFile)})
		}, []error{ErrKeyMismatch}},
		{"CA certificate is a node's", func() error {
			return CreateClient(t.TempDir(), "u", CertOptions{CACertPath: filepath.Join(dir, NodeCertFile), CAKeyPath: filepath.Join(dir, NodeKeyFile)})
		}, []error{ErrWrongKind}},
		{"CA key is garbage", func() error {
			return CreateClient(t.TempDir(), "u", CertOptions{CACertPath: filepath.Join(dir, CACertFile), CAKeyPath: filepath.Join(dir, CACertFile)})
		}, []error{ErrMalformed}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			err := tc.create()
			for _, want := range tc.want {
				if !errors.Is(err, want) {
					t.Fatalf("got %v, want %v", err, want)
				}
			}
		})
	}
}

func TestPKICreateHostsAccepted(t *testing.T) {
	dir := newCertsDir(t)
	must(t, CreateNode(dir, "n-1_x.y@z", []string{"*.example.com", "under_score.local", "[fe80::1]", "2001:db8::1"}, CertOptions{Overwrite: true}))
	c := readLeaf(t, filepath.Join(dir, NodeCertFile))
	if want := []string{"*.example.com", "under_score.local"}; !slices.Equal(c.DNSNames, want) {
		t.Fatalf("got DNS SANs %q, want %q", c.DNSNames, want)
	}
	if len(c.IPAddresses) != 2 || !c.IPAddresses[0].Equal(net.ParseIP("fe80::1")) {
		t.Fatalf("got IP SANs %v, want fe80::1 and 2001:db8::1", c.IPAddresses)
	}
}

func TestPKICreateSignerChoice(t *testing.T) {
	dir := t.TempDir()
	must(t, CreateCA(dir, CAOptions{}))
	must(t, CreateClient(dir, "before", CertOptions{}))
	keyDir := t.TempDir()
	must(t, CreateCA(dir, CAOptions{Client: true, KeyPath: filepath.Join(keyDir, "client-ca.key")}))
	if exists(filepath.Join(dir, ClientCAKeyFile)) {
		t.Fatal("client CA key written into the certs dir despite KeyPath")
	}
	// The client CA exists, its key lives elsewhere.
	if err := CreateClient(dir, "x", CertOptions{}); !errors.Is(err, ErrNoCA) {
		t.Fatalf("client CA key missing: got %v, want ErrNoCA", err)
	}
	if err := CreateClient(dir, "x", CertOptions{CAKeyPath: filepath.Join(dir, CAKeyFile)}); !errors.Is(err, ErrKeyMismatch) {
		t.Fatalf("cluster CA key for the client CA: got %v, want ErrKeyMismatch", err)
	}
	must(t, CreateClient(dir, "after", CertOptions{CAKeyPath: filepath.Join(keyDir, "client-ca.key")}))
	must(t, CreateNode(dir, "n1", []string{"h"}, CertOptions{}))
	ca := readLeaf(t, filepath.Join(dir, CACertFile))
	clientCA := readLeaf(t, filepath.Join(dir, ClientCACertFile))
	for _, tc := range []struct {
		file string
		by   *x509.Certificate
	}{
		{ClientCertFile("before"), ca},
		{ClientCertFile("after"), clientCA},
		{NodeCertFile, ca},
	} {
		if err := readLeaf(t, filepath.Join(dir, tc.file)).CheckSignatureFrom(tc.by); err != nil {
			t.Errorf("%s: not signed by %s: %v", tc.file, tc.by.Subject.CommonName, err)
		}
	}
}

func TestPKICreateLifetimeClampedToCA(t *testing.T) {
	dir := t.TempDir()
	must(t, CreateCA(dir, CAOptions{Lifetime: 48 * time.Hour}))
	must(t, CreateNode(dir, "n1", []string{"h"}, CertOptions{}))
	ca, node := readLeaf(t, filepath.Join(dir, CACertFile)), readLeaf(t, filepath.Join(dir, NodeCertFile))
	if !node.NotAfter.Equal(ca.NotAfter) {
		t.Fatalf("got node NotAfter %s, want the CA's %s", node.NotAfter, ca.NotAfter)
	}
}

func TestPKIGossipKey(t *testing.T) {
	dir := t.TempDir()
	must(t, CreateGossipKey(dir, GossipKeyOptions{}))
	path := filepath.Join(dir, GossipKeyFile)
	checkPerm(t, path, 0o600)
	b, err := os.ReadFile(path)
	must(t, err)
	if n := strings.Count(string(b), "\n"); n != 1 || !strings.HasSuffix(string(b), "\n") {
		t.Fatalf("got %q, want one line", b)
	}
	key, err := LoadGossipKey(path)
	must(t, err)
	if len(key) != 32 {
		t.Fatalf("got a %d-byte key, want 32", len(key))
	}
	must(t, CreateGossipKey(dir, GossipKeyOptions{Overwrite: true}))
	key2, err := LoadGossipKey(path)
	must(t, err)
	if string(key2) == string(key) {
		t.Fatal("got the same key after overwrite")
	}

	for _, tc := range []struct {
		name    string
		content string
		want    error
	}{
		{"16 bytes", "MDEyMzQ1Njc4OWFiY2RlZg==", nil},
		{"not base64", "not base64!", ErrMalformed},
		{"wrong length", "YWJj", ErrMalformed},
		{"missing", "", ErrNotFound},
	} {
		t.Run(tc.name, func(t *testing.T) {
			p := filepath.Join(t.TempDir(), GossipKeyFile)
			if tc.content != "" {
				must(t, os.WriteFile(p, []byte(tc.content+"\n"), 0o600))
			}
			_, err := LoadGossipKey(p)
			if tc.want == nil && err != nil || tc.want != nil && !errors.Is(err, tc.want) {
				t.Fatalf("got %v, want %v", err, tc.want)
			}
		})
	}
}

func TestPKIReadKeyFormats(t *testing.T) {
	dir := newCertsDir(t)
	key, err := readKey(filepath.Join(dir, NodeKeyFile))
	must(t, err)
	for _, tc := range []struct {
		name string
		pem  string
		want error
	}{
		{"no PEM", "junk", ErrMalformed},
		{"bad PKCS8", "-----BEGIN PRIVATE KEY-----\nAAAA\n-----END PRIVATE KEY-----\n", ErrMalformed},
		{"bad EC", "-----BEGIN EC PRIVATE KEY-----\nAAAA\n-----END EC PRIVATE KEY-----\n", ErrMalformed},
		{"bad RSA", "-----BEGIN RSA PRIVATE KEY-----\nAAAA\n-----END RSA PRIVATE KEY-----\n", ErrMalformed},
		{"bad certificate", "-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n", ErrMalformed},
	} {
		t.Run(tc.name, func(t *testing.T) {
			p := filepath.Join(t.TempDir(), "f")
			must(t, os.WriteFile(p, []byte(tc.pem), 0o600))
			_, kerr := readKey(p)
			_, cerr := readCerts(p)
			if !errors.Is(kerr, tc.want) || !errors.Is(cerr, tc.want) {
				t.Fatalf("got key %v, certs %v; want %v", kerr, cerr, tc.want)
			}
		})
	}
	// SEC 1 keys, as other tools write them, are read too.
	ecKey, ok := key.(*ecdsa.PrivateKey)
	if !ok {
		t.Fatalf("key is %T, want ECDSA", key)
	}
	ec, err := x509.MarshalECPrivateKey(ecKey)
	must(t, err)
	p := filepath.Join(t.TempDir(), "ec.key")
	must(t, os.WriteFile(p, pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: ec}), 0o600))
	got, err := readKey(p)
	must(t, err)
	if pub, ok := got.Public().(*ecdsa.PublicKey); !ok || !pub.Equal(key.Public()) {
		t.Fatal("SEC 1 key read back differently")
	}
}
