package testcluster

import (
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"time"

	"github.com/ringkv/ringkv/internal/pki"
	"github.com/ringkv/ringkv/internal/rpcconn"
)

// makeCerts lays out a secure cluster's files under dir: a CA, the root
// user's client certificate, a gossip key, and dir/n<i> for each node
// (ca.crt, and node.crt for 127.0.0.1, localhost and hostIP(i) unless
// that is "").
func makeCerts(dir string, nodes int, hostIP func(i int) string) error {
	if err := pki.CreateCA(dir, pki.CAOptions{}); err != nil {
		return fmt.Errorf("testcluster: %w", err)
	}
	if err := pki.CreateClient(dir, "root", pki.CertOptions{}); err != nil {
		return fmt.Errorf("testcluster: %w", err)
	}
	if err := pki.CreateGossipKey(dir, pki.GossipKeyOptions{}); err != nil {
		return fmt.Errorf("testcluster: %w", err)
	}
	for i := 1; i <= nodes; i++ {
		names := []string{"127.0.0.1", "localhost"}
		if ip := hostIP(i); ip != "" {
			names = append(names, ip)
		}
		if err := makeNodeCert(dir, fmt.Sprintf("n%d", i), names, pki.CertOptions{}); err != nil {
			return err
		}
	}
	return nil
}

// MakeNodeCert writes (or, with opts.Overwrite, replaces) the node
// certificate of id in dir/id, signed by the CA in dir, for 127.0.0.1 and
// localhost, with a copy of ca.crt beside it.
func MakeNodeCert(dir, id string, opts pki.CertOptions) error {
	return makeNodeCert(dir, id, []string{"127.0.0.1", "localhost"}, opts)
}

// makeNodeCert is MakeNodeCert for the given IPs and DNS names.
func makeNodeCert(dir, id string, names []string, opts pki.CertOptions) error {
	nd := filepath.Join(dir, id)
	opts.CACertPath = filepath.Join(dir, pki.CACertFile)
	opts.CAKeyPath = filepath.Join(dir, pki.CAKeyFile)
	if err := pki.CreateNode(nd, id, names, opts); err != nil {
		return fmt.Errorf("testcluster: %w", err)
	}
	b, err := os.ReadFile(opts.CACertPath)
	if err == nil {
		err = os.WriteFile(filepath.Join(nd, pki.CACertFile), b, 0o644)
	}
	if err != nil {
		return fmt.Errorf("testcluster: copy ca.crt: %w", err)
	}
	return nil
}

// secureHTTP returns an HTTPS client that trusts the CA in dir and
// presents user's client certificate, dialing with dial (nil: a
// net.Dialer).
func secureHTTP(dir, user string, dial rpcconn.DialFunc) (*http.Client, error) {
	cfg, err := pki.ClientTLS(dir, user)
	if err != nil {
		return nil, fmt.Errorf("testcluster: %w", err)
	}
	return &http.Client{Transport: &http.Transport{TLSClientConfig: cfg, DialContext: dial}, Timeout: time.Minute}, nil
}

// URL returns the URL of path on the node's HTTP port: https on a secure
// cluster.
func (nd *Node) URL(path string) string {
	if nd.secure {
		return "https://" + nd.HTTPAddr + path
	}
	return "http://" + nd.HTTPAddr + path
}
