package main

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/ringkv/ringkv/internal/pki"
	"github.com/ringkv/ringkv/node"
)

// devCerts makes, under data/certs, what a secure local cluster needs
// (unless it is there from an earlier run): a CA, a certs directory per
// node (data/certs/n<i>: ca.crt, node.crt, node.key for 127.0.0.1 and
// localhost), the root user's client certificate and a gossip key. It
// returns data/certs.
func devCerts(data string, nodes int) (string, error) {
	dir := filepath.Join(data, "certs")
	ca, key := filepath.Join(dir, pki.CACertFile), filepath.Join(dir, pki.CAKeyFile)
	if _, err := os.Stat(ca); errors.Is(err, fs.ErrNotExist) {
		if err := pki.CreateCA(dir, pki.CAOptions{}); err != nil {
			return "", fmt.Errorf("dev --secure: %w", err)
		}
	}
	if _, err := os.Stat(filepath.Join(dir, pki.ClientCertFile("root"))); errors.Is(err, fs.ErrNotExist) {
		if err := pki.CreateClient(dir, "root", pki.CertOptions{}); err != nil {
			return "", fmt.Errorf("dev --secure: %w", err)
		}
	}
	if _, err := os.Stat(filepath.Join(dir, pki.GossipKeyFile)); errors.Is(err, fs.ErrNotExist) {
		if err := pki.CreateGossipKey(dir, pki.GossipKeyOptions{}); err != nil {
			return "", fmt.Errorf("dev --secure: %w", err)
		}
	}
	caPEM, err := os.ReadFile(ca)
	if err != nil {
		return "", fmt.Errorf("dev --secure: %w", err)
	}
	for i := 1; i <= nodes; i++ {
		id := fmt.Sprintf("n%d", i)
		nd := filepath.Join(dir, id)
		if _, err := os.Stat(filepath.Join(nd, pki.NodeCertFile)); err == nil {
			continue
		}
		if err := pki.CreateNode(nd, id, []string{"127.0.0.1", "localhost"}, pki.CertOptions{CACertPath: ca, CAKeyPath: key}); err != nil {
			return "", fmt.Errorf("dev --secure: %w", err)
		}
		if err := os.WriteFile(filepath.Join(nd, pki.CACertFile), caPEM, 0o644); err != nil {
			return "", fmt.Errorf("dev --secure: %w", err)
		}
	}
	return dir, nil
}

// enableAuthAsRoot turns authentication on through the node at httpAddr,
// as root by client certificate, with a random root password nobody keeps
// (the bench acts as root by its certificate).
func enableAuthAsRoot(ctx context.Context, certs, httpAddr string) error {
	tlsCfg, err := pki.ClientTLS(certs, "root")
	if err != nil {
		return fmt.Errorf("enable authentication: %w", err)
	}
	hc := &http.Client{Transport: &http.Transport{TLSClientConfig: tlsCfg}, Timeout: 30 * time.Second}
	pw := make([]byte, 18)
	_, _ = rand.Read(pw) // crypto/rand.Read never fails
	return enableAuth(ctx, hc, "https://"+httpAddr, base64.RawURLEncoding.EncodeToString(pw))
}

// devSecure enables authentication on a fresh secure local cluster (the
// root password, made at random, goes to certs/root.password), prints how
// to reach it, and waits for ctx.
func devSecure(ctx context.Context, running []*node.Node, certs string, stdout io.Writer) error {
	tlsCfg, err := pki.ClientTLS(certs, "root")
	if err != nil {
		return fmt.Errorf("dev --secure: %w", err)
	}
	hc := &http.Client{Transport: &http.Transport{TLSClientConfig: tlsCfg}, Timeout: 30 * time.Second}
	pwFile := filepath.Join(certs, "root.password")
	if _, err := os.Stat(pwFile); errors.Is(err, fs.ErrNotExist) {
		pw := make([]byte, 18)
		_, _ = rand.Read(pw) // crypto/rand.Read never fails
		password := base64.RawURLEncoding.EncodeToString(pw)
		if err := enableAuth(ctx, hc, "https://"+running[0].HTTPAddr(), password); err != nil {
			return err
		}
		if err := os.WriteFile(pwFile, []byte(password+"\n"), 0o600); err != nil {
			return fmt.Errorf("dev --secure: %w", err)
		}
	}
	addrs := make([]string, len(running))
	for i, n := range running {
		addrs[i] = fmt.Sprintf("%q", n.RPCAddr())
	}
	fmt.Fprintf(stdout, "ringkv dev --secure: %d nodes ready, TLS everywhere, authentication on (certificates in %s)\n", len(running), certs)
	for _, n := range running {
		fmt.Fprintf(stdout, "  %s  https://%s  drpc+tls %s  gossip %s\n", n.ID(), n.HTTPAddr(), n.RPCAddr(), n.GossipAddr())
	}
	c := "--cacert " + filepath.Join(certs, pki.CACertFile) + " --cert " + filepath.Join(certs, pki.ClientCertFile("root")) + " --key " + filepath.Join(certs, pki.ClientKeyFile("root"))
	fmt.Fprintf(stdout, "curl, as root by client certificate:\n  curl -s %s -XPOST https://%s/api/set -d '{\"key\":\"user:1001\",\"value\":\"John Doe\"}'\n", c, running[0].HTTPAddr())
	fmt.Fprintf(stdout, "curl, as root by password (%s):\n  curl -s --cacert %s -u root:\"$(cat %s)\" 'https://%s/api/get?key=user:1001'\n",
		pwFile, filepath.Join(certs, pki.CACertFile), pwFile, running[0].HTTPAddr())
	fmt.Fprintf(stdout, "CLI:\n  ringkv get user:1001 --addr %s --certs-dir %s --user root\n", running[0].RPCAddr(), certs)
	fmt.Fprintf(stdout, "Go client:\n  client.New([]string{%s}, client.WithCertsDir(%q, \"root\"))\n", strings.Join(addrs, ", "), certs)
	fmt.Fprintln(stdout, "Ctrl-C stops the cluster; the next 'ringkv dev --secure' reuses the data and the certificates.")
	<-ctx.Done()
	fmt.Fprintln(stdout, "ringkv dev: stopping")
	return nil
}

// enableAuth turns authentication on with the root password, retrying
// until the cluster can write its users record (its Raft groups elect
// leaders first).
func enableAuth(ctx context.Context, hc *http.Client, base, password string) error {
	body, err := json.Marshal(map[string]string{"root_password": password})
	if err != nil {
		return fmt.Errorf("dev --secure: %w", err)
	}
	// Two minutes, as waitReady: on two busy cores (CI, under the race
	// detector) a fresh secure cluster can take tens of seconds to answer
	// its first linearizable read and compare-and-set.
	ctx, cancel := context.WithTimeout(ctx, 2*time.Minute)
	defer cancel()
	var last error // the last answer that was not ctx's own end
	for {
		req, err := http.NewRequestWithContext(ctx, http.MethodPost, base+"/api/auth/enable", bytes.NewReader(body))
		if err != nil {
			return fmt.Errorf("dev --secure: %w", err)
		}
		resp, err := hc.Do(req)
		if err == nil {
			msg, _ := io.ReadAll(resp.Body)
			_ = resp.Body.Close()
			switch resp.StatusCode {
			case http.StatusOK:
				return nil
			case http.StatusConflict:
				return fmt.Errorf("dev --secure: authentication is already on, but %s has no root password: %s", base, strings.TrimSpace(string(msg)))
			}
			err = fmt.Errorf("HTTP %d: %s", resp.StatusCode, strings.TrimSpace(string(msg)))
		}
		cut := ctx.Err() != nil // this attempt was cut off by ctx
		if !cut {
			last = err
		}
		t := time.NewTimer(200 * time.Millisecond)
		select {
		case <-ctx.Done():
			t.Stop()
			if cut && last != nil {
				return fmt.Errorf("dev --secure: enable authentication: %w (the answer before: %w)", err, last)
			}
			return fmt.Errorf("dev --secure: enable authentication: %w", err)
		case <-t.C:
		}
	}
}
