package pki

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"errors"
	"io"
	"log/slog"
	"math/big"
	"net"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"go.uber.org/goleak"

	"github.com/ringkv/ringkv/internal/testlog"
)

func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m)
}

// testLogger returns a logger writing to t.Log and, if w is not nil, to w.
func testLogger(t testing.TB, w io.Writer) *slog.Logger {
	out := testlog.Writer(t)
	if w != nil {
		out = io.MultiWriter(out, w)
	}
	return slog.New(slog.NewTextHandler(out, &slog.HandlerOptions{Level: slog.LevelDebug}))
}

// fakeClock is a clock that moves only when told to.
type fakeClock struct {
	mu  sync.Mutex
	now time.Time
}

func newFakeClock() *fakeClock { return &fakeClock{now: time.Now()} }

func (c *fakeClock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.now
}

func (c *fakeClock) Advance(d time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.now = c.now.Add(d)
}

// newCertsDir returns a certs directory with a cluster CA, node n1 for
// 127.0.0.1 and localhost, and client alice.
func newCertsDir(t *testing.T) string {
	t.Helper()
	dir := t.TempDir()
	must(t, CreateCA(dir, CAOptions{}))
	must(t, CreateNode(dir, "n1", []string{"127.0.0.1", "localhost"}, CertOptions{}))
	must(t, CreateClient(dir, "alice", CertOptions{}))
	return dir
}

func must(t testing.TB, err error) {
	t.Helper()
	if err != nil {
		t.Fatal(err)
	}
}

// caOpts returns CertOptions signing with the CA of caDir (client: its
// client CA) into another directory.
func caOpts(caDir string, client bool) CertOptions {
	crt, key := CACertFile, CAKeyFile
	if client {
		crt, key = ClientCACertFile, ClientCAKeyFile
	}
	return CertOptions{CACertPath: filepath.Join(caDir, crt), CAKeyPath: filepath.Join(caDir, key)}
}

// peerDir returns a certs directory for node id, holding caDir's ca.crt
// (and ca-client.crt) and a node certificate signed by caDir's CA.
func peerDir(t *testing.T, caDir, id string, hosts ...string) string {
	t.Helper()
	dir := t.TempDir()
	must(t, CreateNode(dir, id, hosts, caOpts(caDir, false)))
	for _, name := range []string{CACertFile, ClientCACertFile} {
		if b, err := readFile(filepath.Join(caDir, name)); err == nil {
			must(t, writeAll([]output{{filepath.Join(dir, name), b, certPerm}}, false))
		}
	}
	return dir
}

// issued creates a node certificate for 127.0.0.1 (or, with client, a
// client certificate) named id, signed as opts say, in a fresh directory
// and returns it.
func issued(t *testing.T, id string, client bool, opts CertOptions) tls.Certificate {
	t.Helper()
	dir := t.TempDir()
	crt, key := NodeCertFile, NodeKeyFile
	if client {
		must(t, CreateClient(dir, id, opts))
		crt, key = ClientCertFile(id), ClientKeyFile(id)
	} else {
		must(t, CreateNode(dir, id, []string{"127.0.0.1"}, opts))
	}
	pair, err := loadPair(filepath.Join(dir, crt), filepath.Join(dir, key))
	must(t, err)
	return pair
}

// signed signs a leaf with the given subject and usages by the CA files
// crt and key in dir (self-signed when dir is ""), bypassing the checks
// of the Create functions: forged certificates for the handshake tests.
func signed(t *testing.T, dir, crt, key string, subject pkix.Name, usages ...x509.ExtKeyUsage) tls.Certificate {
	t.Helper()
	k, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	must(t, err)
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(42),
		Subject:      subject,
		NotBefore:    time.Now().Add(-time.Hour),
		NotAfter:     time.Now().Add(time.Hour),
		KeyUsage:     x509.KeyUsageDigitalSignature,
		ExtKeyUsage:  usages,
		IPAddresses:  []net.IP{net.IPv4(127, 0, 0, 1)},
	}
	parent, signer := tmpl, any(k)
	if dir != "" {
		ca, err := loadSigner(dir, CertUnknown, CertOptions{CACertPath: filepath.Join(dir, crt), CAKeyPath: filepath.Join(dir, key)})
		must(t, err)
		parent, signer = ca.cert, ca.key
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, parent, k.Public(), signer)
	must(t, err)
	leaf, err := x509.ParseCertificate(der)
	must(t, err)
	return tls.Certificate{Certificate: [][]byte{der}, PrivateKey: k, Leaf: leaf}
}

// accepted is what the server side of a test connection saw.
type accepted struct {
	state tls.ConnectionState
	err   error
}

// server accepts TLS connections on 127.0.0.1 and reports each
// handshake; after a successful one it writes one byte, so that the
// dialer learns whether the server accepted its certificate (in TLS 1.3
// the dialer's handshake completes before the server checks it).
type server struct {
	addr    string
	results chan accepted // buffered; one per connection, read by the test
}

func serve(t *testing.T, cfg *tls.Config) *server {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	must(t, err)
	s := &server{addr: l.Addr().String(), results: make(chan accepted, 16)}
	var wg sync.WaitGroup
	t.Cleanup(func() {
		_ = l.Close() // stops the accept loop
		wg.Wait()
	})
	wg.Go(func() {
		for {
			conn, err := l.Accept()
			if err != nil {
				return
			}
			wg.Go(func() {
				defer func() { _ = conn.Close() }()
				_ = conn.SetDeadline(time.Now().Add(10 * time.Second))
				tc := tls.Server(conn, cfg)
				err := tc.Handshake()
				if err == nil {
					_, err = tc.Write([]byte{'k'})
				}
				s.results <- accepted{tc.ConnectionState(), err}
			})
		}
	})
	return s
}

// dial connects to s with cfg, reads the server's byte and returns the
// dialer's state and error, and the server's view.
func (s *server) dial(t *testing.T, cfg *tls.Config) (tls.ConnectionState, error, accepted) { //nolint:staticcheck // ST1008: the dialer's result pair, then the server's view
	t.Helper()
	if cfg.ServerName == "" && !cfg.InsecureSkipVerify {
		cfg = cfg.Clone()
		cfg.ServerName = "127.0.0.1"
	}
	conn, err := net.DialTimeout("tcp", s.addr, 10*time.Second)
	must(t, err)
	defer func() { _ = conn.Close() }()
	_ = conn.SetDeadline(time.Now().Add(10 * time.Second))
	tc := tls.Client(conn, cfg)
	err = tc.Handshake()
	if err == nil {
		_, err = io.ReadFull(tc, make([]byte, 1))
	}
	state := tc.ConnectionState()
	_ = conn.Close() // unblocks a server still writing to a dialer that gave up
	ctx, cancel := context.WithTimeout(t.Context(), 10*time.Second)
	defer cancel()
	select {
	case a := <-s.results:
		return state, err, a
	case <-ctx.Done():
		t.Fatal("no server result")
		return state, err, accepted{}
	}
}

// isErr reports whether err matches want; a nil want matches any error.
func isErr(err, want error) bool {
	return err != nil && (want == nil || errors.Is(err, want))
}
