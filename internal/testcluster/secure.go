package testcluster

import (
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"time"

	"github.com/ringkv/ringkv/internal/pki"
)

// makeCerts lays out a secure cluster's files under dir: a CA, the root
// user's client certificate, a gossip key, and dir/n<i> for each node
// (ca.crt, and node.crt for 127.0.0.1 and localhost).
func makeCerts(dir string, nodes int) error {
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
		if err := MakeNodeCert(dir, fmt.Sprintf("n%d", i), pki.CertOptions{}); err != nil {
			return err
		}
	}
	return nil
}

// MakeNodeCert writes (or, with opts.Overwrite, replaces) the node
// certificate of id in dir/id, signed by the CA in dir, for 127.0.0.1 and
// localhost, with a copy of ca.crt beside it.
func MakeNodeCert(dir, id string, opts pki.CertOptions) error {
	nd := filepath.Join(dir, id)
	opts.CACertPath = filepath.Join(dir, pki.CACertFile)
	opts.CAKeyPath = filepath.Join(dir, pki.CAKeyFile)
	if err := pki.CreateNode(nd, id, []string{"127.0.0.1", "localhost"}, opts); err != nil {
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
// presents user's client certificate.
func secureHTTP(dir, user string) (*http.Client, error) {
	cfg, err := pki.ClientTLS(dir, user)
	if err != nil {
		return nil, fmt.Errorf("testcluster: %w", err)
	}
	return &http.Client{Transport: &http.Transport{TLSClientConfig: cfg}, Timeout: time.Minute}, nil
}

// URL returns the URL of path on the node's HTTP port: https on a secure
// cluster.
func (nd *Node) URL(path string) string {
	if nd.http != nil {
		return "https://" + nd.HTTPAddr + path
	}
	return "http://" + nd.HTTPAddr + path
}
