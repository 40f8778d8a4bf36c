package pki

import (
	"crypto/tls"
	"crypto/x509"
	"fmt"
	"io/fs"
	"log/slog"
	"os"
	"path/filepath"
	"slices"
	"sync"
	"sync/atomic"
	"time"
)

// ReloaderConfig configures a Reloader. OpenReloader copies it and fills
// zero fields; it does not change afterwards.
type ReloaderConfig struct {
	// CheckInterval is how often, at most, a handshake stats the
	// certificate files to see whether they changed. Zero means one
	// second; negative disables the check, leaving only Reload. Shorter
	// picks up new files sooner at the cost of a few stat calls.
	CheckInterval time.Duration
	// Logger receives reloads (Info) and failed automatic reloads (Warn).
	// Nil discards.
	Logger *slog.Logger
	// Now is the clock for the file check and for certificate validity in
	// handshakes. Nil means time.Now; tests pass a fake.
	Now func() time.Time
}

// DefaultReloaderConfig returns a fresh configuration: files checked at
// most once a second, logs discarded, the real clock.
func DefaultReloaderConfig() ReloaderConfig {
	return ReloaderConfig{CheckInterval: time.Second}
}

// Material is one consistent load of a certs directory. It is immutable:
// callers must not modify it or anything it points to.
type Material struct {
	// CA is ca.crt: the only root of the node plane and, without
	// ClientCA, of the client plane.
	CA *x509.Certificate
	// ClientCA is ca-client.crt, or nil if the directory has none.
	ClientCA *x509.Certificate
	// Node is node.crt with node.key; Node.Leaf is set.
	Node tls.Certificate
	// Pools are the roots Identify uses: Pools.Node holds CA only,
	// Pools.Client holds ClientCA if set, else CA.
	Pools Pools

	// any holds every root some plane accepts: crypto/tls's first check
	// of a client certificate, before Identify picks the plane's own pool.
	any *x509.CertPool
}

// watched are the files whose change triggers an automatic reload.
var watched = []string{CACertFile, ClientCACertFile, NodeCertFile, NodeKeyFile}

// loadMaterial reads dir's CA certificates and node key pair and checks
// that node.crt is a node certificate valid now under ca.crt.
func loadMaterial(dir string, now time.Time) (*Material, error) {
	m := &Material{}
	var err error
	if m.CA, err = readCA(filepath.Join(dir, CACertFile)); err != nil {
		return nil, err
	}
	m.Pools.Node = x509.NewCertPool()
	m.Pools.Node.AddCert(m.CA)
	m.any = x509.NewCertPool()
	m.any.AddCert(m.CA)
	m.Pools.Client = m.Pools.Node
	if p := filepath.Join(dir, ClientCACertFile); exists(p) {
		if m.ClientCA, err = readCA(p); err != nil {
			return nil, err
		}
		m.Pools.Client = x509.NewCertPool()
		m.Pools.Client.AddCert(m.ClientCA)
		m.any.AddCert(m.ClientCA)
	}
	certPath := filepath.Join(dir, NodeCertFile)
	if m.Node, err = loadPair(certPath, filepath.Join(dir, NodeKeyFile)); err != nil {
		return nil, err
	}
	leaf := m.Node.Leaf
	if leafKind(leaf) != Node {
		return nil, fmt.Errorf("%w: %s has OU %q, want %q", ErrWrongKind, certPath, leaf.Subject.OrganizationalUnit, NodeOU)
	}
	if !slices.Contains(leaf.ExtKeyUsage, x509.ExtKeyUsageClientAuth) {
		return nil, fmt.Errorf("%w: %s cannot authenticate as a client (no client auth usage)", ErrWrongKind, certPath)
	}
	certs := []*x509.Certificate{leaf}
	for _, der := range m.Node.Certificate[1:] {
		c, err := x509.ParseCertificate(der)
		if err != nil {
			return nil, fmt.Errorf("%w: %s: %w", ErrMalformed, certPath, err)
		}
		certs = append(certs, c)
	}
	if _, err := Identify(certs, m.Pools, x509.ExtKeyUsageServerAuth, now); err != nil {
		return nil, fmt.Errorf("%s: %w", certPath, err)
	}
	return m, nil
}

// stamp is what a file looked like at a check: nil info when missing.
type stamp struct {
	info fs.FileInfo
}

func (s stamp) same(o stamp) bool {
	if s.info == nil || o.info == nil {
		return s.info == nil && o.info == nil
	}
	return os.SameFile(s.info, o.info) && s.info.ModTime().Equal(o.info.ModTime()) && s.info.Size() == o.info.Size()
}

// stampAll stats the watched files of dir.
func stampAll(dir string) []stamp {
	st := make([]stamp, len(watched))
	for i, name := range watched {
		// A file that cannot be stat'ed counts as missing; the load
		// that its change triggers reports why.
		if fi, err := os.Stat(filepath.Join(dir, name)); err == nil {
			st[i].info = fi
		}
	}
	return st
}

// Reloader holds a node's TLS material and replaces it when the files
// change. Its methods are safe for concurrent use. It starts no
// goroutines and needs no Close: files are checked lazily, on handshakes,
// and on Reload.
type Reloader struct {
	dir      string
	cfg      ReloaderConfig
	log      *slog.Logger
	interval time.Duration

	// cur is the material handshakes use; replaced whole by a successful load.
	cur atomic.Pointer[Material]
	// nextCheck is the Now().UnixNano() before which handshakes do not
	// stat the files. A handshake that moves it forward with
	// CompareAndSwap does the check.
	nextCheck atomic.Int64

	// load serializes loads. Unlike a data mutex it is held across file
	// I/O: Reload waits for it, handshakes only TryLock it and skip the
	// check if a load is under way.
	load struct {
		sync.Mutex
		// stamps are the watched files as the last load attempt saw them,
		// successful or not: a failed load is retried only once the files
		// change again.
		stamps []stamp
	}
}

// OpenReloader loads dir's ca.crt, ca-client.crt (if present), node.crt
// and node.key and returns a Reloader serving them. The configuration is
// copied; every value of it is valid.
//
// Errors: ErrNotFound (ca.crt, node.crt or node.key is missing),
// ErrMalformed, ErrKeyMismatch, ErrWrongKind (a CA file is not a CA,
// node.crt is not a node certificate), ErrUntrusted (node.crt does not
// verify against ca.crt now, for example because it expired), or a
// wrapped I/O error.
func OpenReloader(dir string, cfg ReloaderConfig) (*Reloader, error) {
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	log := cfg.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	r := &Reloader{dir: dir, cfg: cfg, log: log, interval: cfg.CheckInterval}
	if r.interval == 0 {
		r.interval = time.Second
	}
	r.load.Lock()
	defer r.load.Unlock()
	if err := r.reloadLocked(); err != nil {
		return nil, fmt.Errorf("open certs %s: %w", dir, err)
	}
	r.nextCheck.Store(r.now().Add(r.interval).UnixNano())
	return r, nil
}

func (r *Reloader) now() time.Time { return r.cfg.Now() }

// Material returns the material in use now. It is never nil and must not
// be modified.
func (r *Reloader) Material() *Material { return r.cur.Load() }

// Reload reads the files again now, whether or not they changed, and
// switches to them: the next handshake uses them, connections already
// established are not affected. The binary calls it on SIGHUP. On error
// the previous material stays in use. It waits for a load under way.
//
// Errors: as OpenReloader.
func (r *Reloader) Reload() error {
	r.load.Lock()
	defer r.load.Unlock()
	if err := r.reloadLocked(); err != nil {
		return fmt.Errorf("reload certs %s: %w", r.dir, err)
	}
	return nil
}

// reloadLocked loads the files and, if they are good, switches to them.
// The stamps are taken before reading, so a change during the load is
// seen by the next check.
func (r *Reloader) reloadLocked() error {
	r.load.stamps = stampAll(r.dir)
	m, err := loadMaterial(r.dir, r.now())
	if err != nil {
		return err
	}
	if old := r.cur.Swap(m); old != nil {
		r.log.Info("tls certificates reloaded", "dir", r.dir,
			"serial", m.Node.Leaf.SerialNumber.String(), "not_after", m.Node.Leaf.NotAfter)
	}
	return nil
}

// maybeReload is called on handshakes: at most once per interval it
// stats the watched files and reloads if any changed. A failure is
// logged and the previous material stays in use.
func (r *Reloader) maybeReload() {
	if r.interval < 0 {
		return
	}
	now := r.now()
	next := r.nextCheck.Load()
	if now.UnixNano() < next || !r.nextCheck.CompareAndSwap(next, now.Add(r.interval).UnixNano()) {
		return
	}
	if !r.load.TryLock() {
		return // a Reload is under way
	}
	defer r.load.Unlock()
	if slices.EqualFunc(r.load.stamps, stampAll(r.dir), stamp.same) {
		return
	}
	if err := r.reloadLocked(); err != nil {
		r.log.Warn("tls certificate reload failed, keeping the previous certificates", "dir", r.dir, "err", err)
	}
}
