package pki

import (
	"crypto/tls"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/ringkv/ringkv/internal/testlog"
)

// reloadRig serves ServerTLS of a fresh certs directory with a fake clock.
type reloadRig struct {
	dir   string
	clock *fakeClock
	r     *Reloader
	srv   *server
	log   *testlog.Buffer
	dial  *tls.Config
}

func newReloadRig(t *testing.T) *reloadRig {
	t.Helper()
	g := &reloadRig{dir: newCertsDir(t), clock: newFakeClock(), log: &testlog.Buffer{}}
	var err error
	g.r, err = OpenReloader(g.dir, ReloaderConfig{Logger: testLogger(t, g.log), Now: g.clock.Now})
	must(t, err)
	g.srv = serve(t, g.r.ServerTLS())
	g.dial, err = ClientTLS(g.dir, "alice")
	must(t, err)
	return g
}

// serial handshakes and returns the serial of the certificate served.
func (g *reloadRig) serial(t *testing.T) string {
	t.Helper()
	state, err, got := g.srv.dial(t, g.dial)
	if err != nil || got.err != nil {
		t.Fatalf("handshake: dialer %v, server %v", err, got.err)
	}
	return state.PeerCertificates[0].SerialNumber.String()
}

func (g *reloadRig) renewNode(t *testing.T) {
	t.Helper()
	must(t, CreateNode(g.dir, "n1", []string{"127.0.0.1", "localhost"}, CertOptions{Overwrite: true}))
}

func TestReloadExplicit(t *testing.T) {
	g := newReloadRig(t)
	first := g.serial(t)
	g.renewNode(t)
	// The clock does not move: only Reload can switch the certificate.
	if got := g.serial(t); got != first {
		t.Fatalf("before Reload: got serial %s, want the old %s", got, first)
	}
	must(t, g.r.Reload())
	second := g.serial(t)
	if second == first {
		t.Fatalf("after Reload: got the old serial %s", first)
	}
	if want := g.r.Material().Node.Leaf.SerialNumber.String(); second != want {
		t.Fatalf("got serial %s, want Material's %s", second, want)
	}
	if !strings.Contains(g.log.String(), "tls certificates reloaded") {
		t.Fatalf("got log %q, want a reload line", g.log.String())
	}
}

func TestReloadOnFileChange(t *testing.T) {
	g := newReloadRig(t)
	first := g.serial(t)
	g.renewNode(t)
	if got := g.serial(t); got != first {
		t.Fatalf("within the check interval: got serial %s, want the old %s", got, first)
	}
	g.clock.Advance(time.Second)
	second := g.serial(t)
	if second == first {
		t.Fatalf("after the check interval: got the old serial %s", first)
	}
	// Nothing changed: another check keeps the material.
	m := g.r.Material()
	g.clock.Advance(time.Second)
	if got := g.serial(t); got != second || g.r.Material() != m {
		t.Fatalf("unchanged files: got serial %s, material replaced %v; want %s kept", got, g.r.Material() != m, second)
	}

	// PeerTLS presents the new certificate too.
	peerDir := peerDir(t, g.dir, "n2", "127.0.0.1")
	peer, err := OpenReloader(peerDir, ReloaderConfig{})
	must(t, err)
	psrv := serve(t, &tls.Config{Certificates: []tls.Certificate{peer.Material().Node}, ClientAuth: tls.RequireAnyClientCert})
	_, err, got := psrv.dial(t, g.r.PeerTLSFor(psrv.addr))
	if err != nil || got.err != nil {
		t.Fatalf("peer handshake: dialer %v, server %v", err, got.err)
	}
	if s := got.state.PeerCertificates[0].SerialNumber.String(); s != second {
		t.Fatalf("PeerTLS presented serial %s, want %s", s, second)
	}
}

func TestReloadKeepsOldMaterialOnError(t *testing.T) {
	for _, tc := range []struct {
		name   string
		damage func(t *testing.T, dir string)
		want   error
	}{
		{"corrupt node.crt", func(t *testing.T, dir string) {
			must(t, os.WriteFile(filepath.Join(dir, NodeCertFile), []byte("not a certificate"), 0o644))
		}, ErrMalformed},
		{"node.crt removed", func(t *testing.T, dir string) {
			must(t, os.Remove(filepath.Join(dir, NodeCertFile)))
		}, ErrNotFound},
		{"foreign node.key", func(t *testing.T, dir string) {
			other := t.TempDir()
			must(t, CreateNode(other, "n1", []string{"127.0.0.1"}, caOpts(dir, false)))
			b, err := os.ReadFile(filepath.Join(other, NodeKeyFile))
			must(t, err)
			must(t, os.WriteFile(filepath.Join(dir, NodeKeyFile), b, 0o600))
		}, ErrKeyMismatch},
		{"client certificate as node.crt", func(t *testing.T, dir string) {
			for _, ext := range []string{".crt", ".key"} {
				b, err := os.ReadFile(filepath.Join(dir, "client.alice"+ext))
				must(t, err)
				must(t, os.WriteFile(filepath.Join(dir, "node"+ext), b, 0o600))
			}
		}, ErrWrongKind},
		{"corrupt ca-client.crt", func(t *testing.T, dir string) {
			must(t, os.WriteFile(filepath.Join(dir, ClientCACertFile), []byte("junk"), 0o644))
		}, ErrMalformed},
		{"node.crt from another CA", func(t *testing.T, dir string) {
			other := t.TempDir()
			must(t, CreateCA(other, CAOptions{}))
			must(t, CreateNode(dir, "n1", []string{"127.0.0.1"}, CertOptions{
				CACertPath: filepath.Join(other, CACertFile), CAKeyPath: filepath.Join(other, CAKeyFile), Overwrite: true}))
		}, ErrUntrusted},
	} {
		t.Run(tc.name, func(t *testing.T) {
			g := newReloadRig(t)
			first := g.serial(t)
			tc.damage(t, g.dir)
			// The automatic check fails, only logs, and keeps the material.
			g.clock.Advance(time.Second)
			if got := g.serial(t); got != first {
				t.Fatalf("after a failed check: got serial %s, want the old %s", got, first)
			}
			if !strings.Contains(g.log.String(), "tls certificate reload failed") {
				t.Fatalf("got log %q, want a failed reload", g.log.String())
			}
			// Reload reports the error and keeps the material too.
			if err := g.r.Reload(); !errors.Is(err, tc.want) {
				t.Fatalf("Reload: got %v, want %v", err, tc.want)
			}
			if got := g.serial(t); got != first {
				t.Fatalf("after a failed Reload: got serial %s, want the old %s", got, first)
			}
			// Repaired files are picked up by the next check.
			must(t, os.RemoveAll(filepath.Join(g.dir, ClientCACertFile)))
			g.renewNode(t)
			g.clock.Advance(time.Second)
			if got := g.serial(t); got == first {
				t.Fatalf("after repair: got the old serial %s", first)
			}
		})
	}
}

func TestReloadFailedFilesNotRetried(t *testing.T) {
	g := newReloadRig(t)
	first := g.serial(t)
	must(t, os.WriteFile(filepath.Join(g.dir, NodeCertFile), []byte("junk"), 0o644))
	for range 3 {
		g.clock.Advance(time.Second)
		if got := g.serial(t); got != first {
			t.Fatalf("got serial %s, want the old %s", got, first)
		}
	}
	if n := strings.Count(g.log.String(), "tls certificate reload failed"); n != 1 {
		t.Fatalf("got %d failed reloads logged, want 1 (unchanged broken files are not retried)", n)
	}
}

func TestReloadClientCAAppears(t *testing.T) {
	g := newReloadRig(t)
	if g.r.Material().ClientCA != nil {
		t.Fatal("got a client CA before creating one")
	}
	must(t, CreateCA(g.dir, CAOptions{Client: true}))
	g.clock.Advance(time.Second)
	anon, err := ClientTLS(g.dir, "")
	must(t, err)
	if _, err, got := g.srv.dial(t, anon); err != nil || got.err != nil {
		t.Fatalf("anonymous handshake: dialer %v, server %v", err, got.err)
	}
	m := g.r.Material()
	if m.ClientCA == nil {
		t.Fatal("got no client CA after creating one")
	}
	// alice's certificate is from ca.crt: no longer a client.
	_, err, got := g.srv.dial(t, g.dial)
	if !errors.Is(got.err, ErrUntrusted) || err == nil {
		t.Fatalf("old client after the client CA appeared: got server %v, dialer %v; want ErrUntrusted", got.err, err)
	}
}

func TestReloadCheckDisabled(t *testing.T) {
	dir := newCertsDir(t)
	clock := newFakeClock()
	r, err := OpenReloader(dir, ReloaderConfig{CheckInterval: -1, Now: clock.Now})
	must(t, err)
	m := r.Material()
	must(t, CreateNode(dir, "n1", []string{"127.0.0.1"}, CertOptions{Overwrite: true}))
	clock.Advance(time.Hour)
	r.maybeReload()
	if r.Material() != m {
		t.Fatal("got material replaced with the check disabled")
	}
}

func TestOpenReloaderErrors(t *testing.T) {
	for _, tc := range []struct {
		name  string
		setup func(t *testing.T) string
		want  error
	}{
		{"empty dir", func(t *testing.T) string { return t.TempDir() }, ErrNotFound},
		{"no node", func(t *testing.T) string {
			dir := t.TempDir()
			must(t, CreateCA(dir, CAOptions{}))
			return dir
		}, ErrNotFound},
		{"ca.crt is a node certificate", func(t *testing.T) string {
			dir := newCertsDir(t)
			b, err := os.ReadFile(filepath.Join(dir, NodeCertFile))
			must(t, err)
			must(t, os.WriteFile(filepath.Join(dir, CACertFile), b, 0o644))
			return dir
		}, ErrWrongKind},
		{"expired node", func(t *testing.T) string {
			dir := t.TempDir()
			must(t, CreateCA(dir, CAOptions{}))
			must(t, CreateNode(dir, "n1", []string{"127.0.0.1"}, expiredOpts(CertOptions{})))
			return dir
		}, ErrUntrusted},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if _, err := OpenReloader(tc.setup(t), DefaultReloaderConfig()); !errors.Is(err, tc.want) {
				t.Fatalf("got %v, want %v", err, tc.want)
			}
		})
	}
}

// TestReloadConcurrent runs handshake callbacks on several goroutines
// while the files change and Reload runs; -race checks the hand-over.
func TestReloadConcurrent(t *testing.T) {
	dir := newCertsDir(t)
	clock := newFakeClock()
	r, err := OpenReloader(dir, ReloaderConfig{Now: clock.Now})
	must(t, err)
	server, peer := r.ServerTLS(), r.PeerTLS()
	var wg sync.WaitGroup
	for range 4 {
		wg.Go(func() {
			for range 50 {
				clock.Advance(100 * time.Millisecond)
				c, err := server.GetConfigForClient(&tls.ClientHelloInfo{})
				if err != nil || len(c.Certificates) != 1 || c.Certificates[0].Leaf == nil {
					t.Errorf("GetConfigForClient: got %v, %v", c, err)
					return
				}
				if _, err := peer.GetClientCertificate(&tls.CertificateRequestInfo{}); err != nil {
					t.Errorf("GetClientCertificate: %v", err)
					return
				}
			}
		})
	}
	for range 3 {
		must(t, CreateNode(dir, "n1", []string{"127.0.0.1"}, CertOptions{Overwrite: true}))
		must(t, r.Reload())
	}
	wg.Wait()
}
