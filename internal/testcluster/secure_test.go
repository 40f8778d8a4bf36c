package testcluster

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"storj.io/drpc/drpcerr"

	"github.com/ringkv/ringkv/internal/pki"
	"github.com/ringkv/ringkv/internal/rpcconn"
	"github.com/ringkv/ringkv/proto/kvpb"
)

// identity is one way to present oneself to a secure node.
type identity struct {
	name string
	tls  *tls.Config
	// want: which planes let it in. A handshake refusal fails all three.
	handshake, client, peer, https bool
}

// identities builds the matrix's callers: no certificate, a self-signed
// certificate, a certificate of another CA, an expired one, a client
// certificate, a node certificate, a valid client certificate (on both
// planes: the peer plane must refuse it).
func identities(t *testing.T, certs string) []identity {
	t.Helper()
	roots := x509.NewCertPool()
	ca, err := pki.List(certs)
	if err != nil || len(ca) == 0 {
		t.Fatalf("list %s: %v", certs, err)
	}
	pem := mustRead(t, filepath.Join(certs, pki.CACertFile))
	if !roots.AppendCertsFromPEM(pem) {
		t.Fatal("ca.crt")
	}
	withCert := func(dir, crt, key string) *tls.Config {
		pair, err := tls.LoadX509KeyPair(filepath.Join(dir, crt), filepath.Join(dir, key))
		if err != nil {
			t.Fatal(err)
		}
		return &tls.Config{RootCAs: roots, Certificates: []tls.Certificate{pair}, ServerName: "127.0.0.1", MinVersion: tls.VersionTLS12}
	}
	rogue := t.TempDir()
	if err := pki.CreateCA(rogue, pki.CAOptions{}); err != nil {
		t.Fatal(err)
	}
	if err := pki.CreateClient(rogue, "root", pki.CertOptions{}); err != nil {
		t.Fatal(err)
	}
	if err := pki.CreateClient(certs, "old", pki.CertOptions{NotBefore: time.Now().Add(-48 * time.Hour), Lifetime: time.Hour}); err != nil {
		t.Fatal(err)
	}
	node, err := pki.OpenReloader(filepath.Join(certs, "n2"), pki.DefaultReloaderConfig())
	if err != nil {
		t.Fatal(err)
	}
	return []identity{
		{name: "no certificate", tls: &tls.Config{RootCAs: roots, ServerName: "127.0.0.1", MinVersion: tls.VersionTLS12},
			handshake: true, client: true, https: true},
		{name: "self-signed", tls: withCert(rogue, pki.CACertFile, pki.CAKeyFile)},
		{name: "another CA", tls: withCert(rogue, pki.ClientCertFile("root"), pki.ClientKeyFile("root"))},
		{name: "expired", tls: withCert(certs, pki.ClientCertFile("old"), pki.ClientKeyFile("old"))},
		{name: "client certificate", tls: withCert(certs, pki.ClientCertFile("root"), pki.ClientKeyFile("root")),
			handshake: true, client: true, https: true},
		{name: "node certificate", tls: node.PeerTLSFor("127.0.0.1:1"),
			handshake: true, client: true, peer: true, https: true},
	}
}

// TestSecureMatrix starts three `ringkv serve` processes with TLS and
// tries every identity against the client service, a peer service and
// HTTPS: only the right pairs pass, and every refusal is an error that
// says why.
func TestSecureMatrix(t *testing.T) {
	c := StartOptions(t, Options{Nodes: 3, Secure: true, NoRace: true})
	nd := c.Nodes[0]
	if code, err := nd.Set(t.Context(), "k", "v", "quorum"); err != nil || code != http.StatusOK {
		t.Fatalf("set as root: %d %v", code, err)
	}
	for _, id := range identities(t, c.Certs) {
		t.Run(id.name, func(t *testing.T) {
			ctx, cancel := context.WithTimeout(t.Context(), 10*time.Second)
			defer cancel()
			cfg := id.tls
			conn, err := rpcconn.Dial(ctx, nd.RPCAddr, func(string) *tls.Config { return cfg })
			if !id.handshake {
				if err == nil {
					_, err = kvpb.NewDRPCClientClient(conn).Topology(ctx, &kvpb.TopologyRequest{})
					_ = conn.Close()
				}
				if err == nil {
					t.Fatalf("drpc: the node accepted %s", id.name)
				}
				t.Logf("drpc refusal: %v", err)
				resp, err := (&http.Client{Transport: &http.Transport{TLSClientConfig: cfg}}).Get(nd.URL("/health"))
				if err == nil {
					_ = resp.Body.Close()
					t.Fatalf("https: the node accepted %s", id.name)
				}
				t.Logf("https refusal: %v", err)
				return
			}
			if err != nil {
				t.Fatalf("handshake: %v", err)
			}
			defer func() { _ = conn.Close() }()
			_, err = kvpb.NewDRPCClientClient(conn).Topology(ctx, &kvpb.TopologyRequest{})
			if (err == nil) != id.client {
				t.Fatalf("client service: got %v, want allowed=%v", err, id.client)
			}
			_, err = kvpb.NewDRPCReplicaClient(conn).Read(ctx, &kvpb.ReadRequest{Keys: []*kvpb.ReadKey{{Key: []byte("k")}}})
			if id.peer && err != nil {
				t.Fatalf("peer service: %v", err)
			}
			if !id.peer && (err == nil || drpcerr.Code(err) != 403) {
				t.Fatalf("peer service: got %v (code %d), want the refusal with code 403", err, drpcerr.Code(err))
			}
			resp, err := (&http.Client{Transport: &http.Transport{TLSClientConfig: cfg}}).Get(nd.URL("/api/get?key=k"))
			if err != nil {
				t.Fatalf("https: %v", err)
			}
			_ = resp.Body.Close()
			if (resp.StatusCode == http.StatusOK) != id.https {
				t.Fatalf("https: got %d, want allowed=%v", resp.StatusCode, id.https)
			}
		})
	}
	// Plain TCP: neither port speaks without TLS.
	ctx, cancel := context.WithTimeout(t.Context(), 5*time.Second)
	defer cancel()
	if conn, err := rpcconn.Dial(ctx, nd.RPCAddr, nil); err == nil {
		_, err = kvpb.NewDRPCClientClient(conn).Topology(ctx, &kvpb.TopologyRequest{})
		_ = conn.Close()
		if err == nil {
			t.Fatal("plain drpc was served")
		}
	}
}

// TestSecureStrangersCannotJoin: a node with the wrong gossip key, and a
// node with the right gossip key but certificates of another CA, try to
// join a running secure cluster; neither becomes a member, and the
// cluster keeps serving writes meanwhile.
func TestSecureStrangersCannotJoin(t *testing.T) {
	c := StartOptions(t, Options{Nodes: 3, Spares: 2, Secure: true, NoRace: true, ConvergeTimeout: 90 * time.Second})
	n4, n5 := c.Nodes[3], c.Nodes[4]
	// n4: its own gossip key.
	other := t.TempDir()
	if err := pki.CreateGossipKey(other, pki.GossipKeyOptions{}); err != nil {
		t.Fatal(err)
	}
	n4.Args = []string{"--certs-dir", filepath.Join(c.Certs, "n4"), "--gossip-key-file", filepath.Join(other, pki.GossipKeyFile)}
	// n5: the gossip key, but a node certificate of another CA.
	rogue := t.TempDir()
	if err := pki.CreateCA(rogue, pki.CAOptions{}); err != nil {
		t.Fatal(err)
	}
	if err := MakeNodeCert(rogue, "n5", pki.CertOptions{}); err != nil {
		t.Fatal(err)
	}
	n5.Args = []string{"--certs-dir", filepath.Join(rogue, "n5"), "--gossip-key-file", filepath.Join(c.Certs, pki.GossipKeyFile)}
	n4.Start()
	n5.Start()

	// For 10 s the cluster serves writes and the strangers stay out. (A
	// fixed wait is the point here: the condition must hold throughout.)
	deadline := time.Now().Add(10 * time.Second)
	writes := 0
	for time.Now().Before(deadline) {
		ctx, cancel := context.WithTimeout(t.Context(), 10*time.Second)
		code, err := c.Nodes[writes%3].Set(ctx, fmt.Sprintf("k%d", writes), "v", "quorum")
		cancel()
		if err != nil || code != http.StatusOK {
			t.Fatalf("write %d while strangers knock: %d %v", writes, code, err)
		}
		writes++
		for _, nd := range c.Nodes[:3] {
			s, err := nd.Stats(t.Context())
			if err != nil {
				t.Fatal(err)
			}
			for _, m := range s.Members {
				if (m.ID == "n4" || m.ID == "n5") && m.Status != "none" {
					t.Fatalf("%s lists %s as %s", nd.ID, m.ID, m.Status)
				}
				if m.ID == "n4" {
					t.Fatalf("%s knows n4, whose gossip key is another", nd.ID)
				}
			}
		}
	}
	// n5 did reach the claimant (n1) through gossip, and was refused by
	// the certificate check, not by chance.
	logs := string(mustRead(t, c.Nodes[0].LogPath))
	if !strings.Contains(logs, "not joining a node that failed the check") || !strings.Contains(logs, "peer=n5") {
		t.Fatalf("n1's log does not show n5 refused by the certificate check")
	}
	t.Logf("%d writes while the strangers tried to join", writes)
}

// TestSecureCertRotation replaces every node's certificate on a running
// three-node cluster under writes, with SIGHUP and no restart: no request
// fails, and every node then serves its new certificate.
func TestSecureCertRotation(t *testing.T) {
	c := StartOptions(t, Options{Nodes: 3, Secure: true, NoRace: true})
	serial := func(nd *Node) string {
		cfg, err := pki.ClientTLS(c.Certs, "root")
		if err != nil {
			t.Fatal(err)
		}
		conn, err := tls.Dial("tcp", nd.RPCAddr, cfg)
		if err != nil {
			t.Fatal(err)
		}
		defer func() { _ = conn.Close() }()
		return conn.ConnectionState().PeerCertificates[0].SerialNumber.String()
	}
	before := map[string]string{}
	for _, nd := range c.Nodes {
		before[nd.ID] = serial(nd)
	}

	ctx, stop := context.WithCancel(t.Context())
	var wg sync.WaitGroup
	var ok, failed atomic.Int64
	var firstErr atomic.Value
	for w := range 4 {
		level := []string{"quorum", "linearizable"}[w%2]
		wg.Go(func() {
			for i := 0; ctx.Err() == nil; i++ {
				rctx, cancel := context.WithTimeout(context.Background(), 15*time.Second)
				code, err := c.Nodes[(w+i)%3].Set(rctx, fmt.Sprintf("w%d-%d", w, i), "v", level)
				cancel()
				if err != nil || code != http.StatusOK {
					failed.Add(1)
					firstErr.CompareAndSwap(nil, fmt.Sprintf("%s write: %d %v", level, code, err))
					continue
				}
				ok.Add(1)
			}
		})
	}
	for _, nd := range c.Nodes {
		if err := MakeNodeCert(c.Certs, nd.ID, pki.CertOptions{Overwrite: true}); err != nil {
			t.Fatal(err)
		}
		nd.signal(syscall.SIGHUP)
		c.WaitFor(30*time.Second, nd.ID+" serves its new certificate", func(context.Context) error {
			if s := serial(nd); s == before[nd.ID] {
				return errors.New("still the old serial")
			}
			return nil
		})
		// Writes go on between rotations: raft, replica and forwarding
		// connections are made with the new certificates.
		c.WaitFor(30*time.Second, "writes after "+nd.ID, func(ctx context.Context) error {
			code, err := c.Nodes[0].Set(ctx, "after-"+nd.ID, "v", "linearizable")
			if err != nil || code != http.StatusOK {
				return fmt.Errorf("HTTP %d: %w", code, err)
			}
			return nil
		})
	}
	stop()
	wg.Wait()
	if failed.Load() > 0 {
		t.Fatalf("%d of %d writes failed during the rotation; first: %v", failed.Load(), ok.Load()+failed.Load(), firstErr.Load())
	}
	t.Logf("%d writes, none failed, across the rotation of 3 node certificates", ok.Load())
}

func mustRead(t *testing.T, path string) []byte {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return b
}
