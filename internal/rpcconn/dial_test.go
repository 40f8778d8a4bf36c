package rpcconn

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"net"
	"strings"
	"testing"
	"time"

	"github.com/ringkv/ringkv/internal/pki"
)

// tlsServer listens on loopback with a node certificate and completes the
// handshake of every connection it accepts; it returns the address and
// the directory holding ca.crt.
func tlsServer(t *testing.T) (string, string) {
	t.Helper()
	dir := t.TempDir()
	if err := pki.CreateCA(dir, pki.CAOptions{}); err != nil {
		t.Fatal(err)
	}
	if err := pki.CreateNode(dir, "n1", []string{"127.0.0.1"}, pki.CertOptions{}); err != nil {
		t.Fatal(err)
	}
	r, err := pki.OpenReloader(dir, pki.DefaultReloaderConfig())
	if err != nil {
		t.Fatal(err)
	}
	lis, err := tls.Listen("tcp", "127.0.0.1:0", r.ServerTLS())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = lis.Close() })
	go func() {
		for {
			c, err := lis.Accept()
			if err != nil {
				return
			}
			go func() {
				defer func() { _ = c.Close() }()
				_ = c.(*tls.Conn).Handshake() //nolint:errcheck,forcetypeassert // the client reports the outcome
				_, _ = c.Read(make([]byte, 1))
			}()
		}
	}()
	return lis.Addr().String(), dir
}

func TestDial(t *testing.T) {
	addr, dir := tlsServer(t)
	trusting, err := pki.ClientTLS(dir, "")
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(t.Context(), 10*time.Second)
	defer cancel()

	// TLS, ServerName filled from the address (the certificate names
	// 127.0.0.1).
	conn, err := Dial(ctx, addr, func(string) *tls.Config { return trusting })
	if err != nil {
		t.Fatalf("tls dial: %v", err)
	}
	_ = conn.Close()
	if trusting.ServerName != "" {
		t.Fatal("Dial changed the caller's configuration")
	}

	// A server this client does not trust: the handshake fails in Dial.
	strict := &tls.Config{RootCAs: x509.NewCertPool(), MinVersion: tls.VersionTLS12}
	if _, err := Dial(ctx, addr, func(string) *tls.Config { return strict }); err == nil || !strings.Contains(err.Error(), "tls handshake with "+addr) {
		t.Fatalf("untrusted server: got %v, want a handshake error naming the address", err)
	}

	// Plain TCP: no TLSFor, or one that gives nil.
	plain, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = plain.Close() }()
	for name, f := range map[string]TLSFor{"nil TLSFor": nil, "nil config": func(string) *tls.Config { return nil }} {
		conn, err := Dial(ctx, plain.Addr().String(), f)
		if err != nil {
			t.Fatalf("%s: %v", name, err)
		}
		_ = conn.Close()
	}

	// Nothing listening.
	closed := plain.Addr().String()
	_ = plain.Close()
	if _, err := Dial(ctx, closed, nil); err == nil {
		t.Fatal("dial of a closed port succeeded")
	}
}
