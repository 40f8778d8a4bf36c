package client_test

import (
	"encoding/base64"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/ringkv/ringkv/auth"
	"github.com/ringkv/ringkv/client"
	"github.com/ringkv/ringkv/internal/pki"
	"github.com/ringkv/ringkv/node"
	"github.com/ringkv/ringkv/ring"
)

// secureCerts makes a CA in dir/ca with client certificates for users,
// and a certs dir per node (dir/nI: ca.crt and node.crt for 127.0.0.1).
// It returns dir/ca, a certs dir for clients.
func secureCerts(t *testing.T, dir string, nodes int, users ...string) string {
	t.Helper()
	ca := filepath.Join(dir, "ca")
	if err := pki.CreateCA(ca, pki.CAOptions{}); err != nil {
		t.Fatal(err)
	}
	caCert, err := os.ReadFile(filepath.Join(ca, pki.CACertFile))
	if err != nil {
		t.Fatal(err)
	}
	for i := 1; i <= nodes; i++ {
		nd := filepath.Join(dir, fmt.Sprintf("n%d", i))
		if err := pki.CreateNode(nd, fmt.Sprintf("n%d", i), []string{"127.0.0.1", "localhost"}, pki.CertOptions{
			CACertPath: filepath.Join(ca, pki.CACertFile), CAKeyPath: filepath.Join(ca, pki.CAKeyFile),
		}); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(nd, pki.CACertFile), caCert, 0o644); err != nil { //nolint:gosec // a certificate
			t.Fatal(err)
		}
	}
	for _, u := range users {
		if err := pki.CreateClient(ca, u, pki.CertOptions{}); err != nil {
			t.Fatal(err)
		}
	}
	return ca
}

// startSecure starts n nodes with the certificates secureCerts made under
// dir, a cheap bcrypt cost and tokens that live ttl.
func startSecure(t *testing.T, n int, dir string, ttl time.Duration) []*node.Node {
	t.Helper()
	return startClusterWith(t, n, func(c *node.Config) {
		c.CertsDir = filepath.Join(dir, c.ID)
		c.Auth = auth.LocalConfig()
		c.Auth.TokenTTL = ttl
		c.Ring = ring.Config{Partitions: 16, ReplicationFactor: 3}
	})
}

// admin calls a node's HTTP API over HTTPS, presenting the client
// certificate of cert ("" none), with basic auth when user is not "".
type admin struct {
	t        *testing.T
	hc       *http.Client
	base     string
	user, pw string
}

func newAdmin(t *testing.T, ca, cert string, nd *node.Node) *admin {
	t.Helper()
	cfg, err := pki.ClientTLS(ca, cert)
	if err != nil {
		t.Fatal(err)
	}
	cfg.ServerName = "127.0.0.1"
	hc := &http.Client{Transport: &http.Transport{TLSClientConfig: cfg}, Timeout: 30 * time.Second}
	t.Cleanup(hc.CloseIdleConnections)
	return &admin{t: t, hc: hc, base: "https://" + nd.HTTPAddr()}
}

// post sends body to path and returns the status and the body answered.
func (a *admin) post(path, body string) (int, string) {
	a.t.Helper()
	return a.do(http.MethodPost, path, body)
}

func (a *admin) do(method, path, body string) (int, string) {
	a.t.Helper()
	req, err := http.NewRequestWithContext(a.t.Context(), method, a.base+path, strings.NewReader(body))
	if err != nil {
		a.t.Fatal(err)
	}
	if a.user != "" {
		req.Header.Set("Authorization", "Basic "+base64.StdEncoding.EncodeToString([]byte(a.user+":"+a.pw)))
	}
	resp, err := a.hc.Do(req)
	if err != nil {
		a.t.Fatalf("POST %s: %v", path, err)
	}
	defer func() { _ = resp.Body.Close() }() // read fully below
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		a.t.Fatal(err)
	}
	return resp.StatusCode, string(b)
}

// mustPost posts and fails the test unless the answer is 200.
func (a *admin) mustPost(path, body string) {
	a.t.Helper()
	if code, out := a.post(path, body); code != http.StatusOK {
		a.t.Fatalf("POST %s %s: %d %s", path, body, code, out)
	}
}

// TestSecureClient drives the client against real secure nodes: TLS with
// a client certificate while authentication is disabled, then with it
// enabled the certificate's user, a user logging in with a password, a
// wrong password and no credentials at all, and tokens renewed past two
// lifetimes on every call path.
func TestSecureClient(t *testing.T) {
	dir := t.TempDir()
	ca := secureCerts(t, dir, 3, "alice")
	const ttl = 3 * time.Second
	nodes := startSecure(t, 3, dir, ttl)
	addrs := []string{nodes[0].RPCAddr(), nodes[1].RPCAddr(), nodes[2].RPCAddr()}
	ctx := t.Context()
	newClient := func(opts ...client.Option) *client.Client {
		t.Helper()
		c, err := client.New(addrs, append([]client.Option{client.WithRequestTimeout(20 * time.Second)}, opts...)...)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { _ = c.Close() })
		return c
	}

	// Authentication disabled: TLS protects the wire, everything is
	// allowed, the certificate or the credentials are simply carried.
	alice := newClient(client.WithCertsDir(ca, "alice"))
	bob := newClient(client.WithCertsDir(ca, ""), client.WithCredentials("bob", "bobpass1"))
	for name, c := range map[string]*client.Client{"certificate": alice, "credentials": bob} {
		key := "acct/" + name
		if err := c.Set(ctx, key, []byte("v0")); err != nil {
			t.Fatalf("%s, auth disabled: set: %v", name, err)
		}
		if v, err := c.Get(ctx, key); err != nil || string(v) != "v0" {
			t.Fatalf("%s, auth disabled: get: %q %v", name, v, err)
		}
	}

	// Enable authentication; root adds roles and users.
	adm := newAdmin(t, ca, "", nodes[0])
	waitFor(t, 60*time.Second, "auth enable", func() error {
		if code, out := adm.post("/api/auth/enable", `{"root_password":"rootpass1"}`); code != http.StatusOK {
			return fmt.Errorf("%d %s", code, out)
		}
		return nil
	})
	adm.user, adm.pw = "root", "rootpass1"
	adm.mustPost("/api/auth/roles", `{"name":"acct-reader","permissions":[{"access":"read","prefix":"acct/"}]}`)
	adm.mustPost("/api/auth/roles", `{"name":"acct-writer","permissions":[{"access":"readwrite","prefix":"acct/"}]}`)
	adm.mustPost("/api/auth/users", `{"name":"alice","password":"alicepass","roles":["acct-reader"]}`)
	adm.mustPost("/api/auth/users", `{"name":"bob","password":"bobpass1","roles":["acct-writer"]}`)
	// A node sees the change within MaxStaleness (1s) of a request: wait
	// until every node refuses an anonymous read and lets alice (her
	// certificate) and bob (his password) read, over HTTPS.
	for _, nd := range nodes {
		anon := newAdmin(t, ca, "", nd)
		byCert := newAdmin(t, ca, "alice", nd)
		byPassword := newAdmin(t, ca, "", nd)
		byPassword.user, byPassword.pw = "bob", "bobpass1"
		waitFor(t, 30*time.Second, "authentication enabled on "+nd.ID(), func() error {
			for _, s := range []struct {
				name string
				a    *admin
				want int
			}{{"anonymous", anon, http.StatusUnauthorized}, {"alice", byCert, http.StatusOK}, {"bob", byPassword, http.StatusOK}} {
				if code, out := s.a.do(http.MethodGet, "/api/get?key=acct/certificate", ""); code != s.want {
					return fmt.Errorf("%s: got %d %s, want %d", s.name, code, out, s.want)
				}
			}
			return nil
		})
	}

	t.Run("certificate user lacks write", func(t *testing.T) {
		for _, level := range []client.Consistency{client.Quorum, client.Linearizable} {
			err := alice.Set(ctx, "acct/certificate", []byte("stolen"), client.WithConsistency(level))
			if !errors.Is(err, client.ErrPermissionDenied) || !strings.Contains(err.Error(), "needs") {
				t.Fatalf("set at %v: got %v, want ErrPermissionDenied naming the permission", level, err)
			}
		}
		if err := alice.CompareAndSet(ctx, "acct/certificate", []byte("v0"), []byte("stolen")); !errors.Is(err, client.ErrPermissionDenied) {
			t.Fatalf("cas: got %v, want ErrPermissionDenied", err)
		}
		res := alice.Batch(ctx, []client.Op{client.SetOp("acct/certificate", []byte("stolen")), client.GetOp("acct/certificate")})
		if !errors.Is(res[0].Err, client.ErrPermissionDenied) || res[1].Err != nil || string(res[1].Value) != "v0" {
			t.Fatalf("batch: got %v, %q %v; want ErrPermissionDenied, then v0", res[0].Err, res[1].Value, res[1].Err)
		}
		if _, err := alice.List(ctx, "acct/"); err != nil {
			t.Fatalf("list of her prefix: %v", err)
		}
		if _, err := alice.List(ctx, ""); !errors.Is(err, client.ErrPermissionDenied) {
			t.Fatalf("list of everything: got %v, want ErrPermissionDenied", err)
		}
		if v, err := bob.Get(ctx, "acct/certificate", client.WithConsistency(client.All)); err != nil || string(v) != "v0" {
			t.Fatalf("after refused writes: %q %v, want v0", v, err)
		}
	})

	t.Run("no credentials", func(t *testing.T) {
		anon := newClient(client.WithCertsDir(ca, ""))
		if _, err := anon.Get(ctx, "acct/certificate"); !errors.Is(err, client.ErrUnauthenticated) {
			t.Fatalf("get: got %v, want ErrUnauthenticated", err)
		}
		if err := anon.Set(ctx, "acct/anon", []byte("x")); !errors.Is(err, client.ErrUnauthenticated) {
			t.Fatalf("set: got %v, want ErrUnauthenticated", err)
		}
		if res := anon.Batch(ctx, []client.Op{client.SetOp("acct/anon", []byte("x"))}); !errors.Is(res[0].Err, client.ErrUnauthenticated) {
			t.Fatalf("batch: got %v, want ErrUnauthenticated", res[0].Err)
		}
	})

	t.Run("wrong password", func(t *testing.T) {
		c := newClient(client.WithCertsDir(ca, ""), client.WithCredentials("bob", "wrong"))
		if _, err := c.Get(ctx, "acct/credentials"); !errors.Is(err, client.ErrUnauthenticated) {
			t.Fatalf("get: got %v, want ErrUnauthenticated", err)
		}
		if err := c.Set(ctx, "acct/credentials", []byte("x")); !errors.Is(err, client.ErrUnauthenticated) {
			t.Fatalf("set: got %v, want ErrUnauthenticated", err)
		}
	})

	// bob's client learnt while authentication was disabled that it needs
	// no token; its first refusal logs in. Then its tokens are renewed as
	// they age: every path keeps working past two lifetimes.
	t.Run("credentials past two lifetimes", func(t *testing.T) {
		if err := bob.Set(ctx, "acct/credentials", []byte("v1")); err != nil {
			t.Fatalf("first call since authentication was enabled: %v", err)
		}
		fresh := newClient(client.WithCertsDir(ca, ""), client.WithCredentials("bob", "bobpass1"))
		// A round every 100ms, for two lifetimes and a second.
		end := time.Now().Add(2*ttl + time.Second)
		pace := time.NewTicker(100 * time.Millisecond)
		defer pace.Stop()
		for i := 0; time.Now().Before(end); i++ {
			for name, c := range map[string]*client.Client{"renewed": bob, "fresh": fresh} {
				key := fmt.Sprintf("acct/%s/%d", name, i%4)
				val := []byte(fmt.Sprint(i))
				if err := c.Set(ctx, key, val); err != nil { // the Pipe
					t.Fatalf("%s, round %d: set: %v", name, i, err)
				}
				if v, err := c.Get(ctx, key); err != nil || string(v) != string(val) {
					t.Fatalf("%s, round %d: get: %q %v", name, i, v, err)
				}
				lin := client.WithConsistency(client.Linearizable)
				if err := c.Set(ctx, key+"l", val, lin); err != nil {
					t.Fatalf("%s, round %d: linearizable set: %v", name, i, err)
				}
				if err := c.CompareAndSet(ctx, key+"l", val, append(val, '!')); err != nil {
					t.Fatalf("%s, round %d: cas: %v", name, i, err)
				}
				res := c.Batch(ctx, []client.Op{client.SetOp(key+"b", val), client.GetOp(key)})
				if res[0].Err != nil || res[1].Err != nil {
					t.Fatalf("%s, round %d: batch: %v %v", name, i, res[0].Err, res[1].Err)
				}
				if _, err := c.List(ctx, "acct/"+name+"/"); err != nil {
					t.Fatalf("%s, round %d: list: %v", name, i, err)
				}
			}
			<-pace.C
		}
	})
}

// TestWithCertsDirErrors: a certs dir that cannot be loaded fails New
// with ErrInvalidArgument, without contacting anything.
func TestWithCertsDirErrors(t *testing.T) {
	dir := t.TempDir()
	ca := secureCerts(t, dir, 0, "alice")
	for _, tc := range []struct {
		name string
		opts []client.Option
	}{
		{"no ca.crt", []client.Option{client.WithCertsDir(t.TempDir(), "")}},
		{"missing dir", []client.Option{client.WithCertsDir(filepath.Join(dir, "missing"), "alice")}},
		{"bad user name", []client.Option{client.WithCertsDir(ca, "a b")}},
		{"credentials without TLS", []client.Option{client.WithCredentials("bob", "pw")}},
		{"user without password", []client.Option{client.WithCertsDir(ca, ""), client.WithCredentials("bob", "")}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c, err := client.New([]string{"127.0.0.1:1"}, tc.opts...)
			if !errors.Is(err, client.ErrInvalidArgument) {
				if c != nil {
					_ = c.Close()
				}
				t.Fatalf("got %v, want ErrInvalidArgument", err)
			}
		})
	}
}
