package pki

import (
	"errors"
	"os"
	"path/filepath"
	"slices"
	"testing"
	"time"
)

func TestPKIList(t *testing.T) {
	dir := newCertsDir(t) // ca, node n1, client alice (from ca.crt)
	must(t, CreateCA(dir, CAOptions{Client: true}))
	must(t, CreateClient(dir, "bob", CertOptions{})) // from ca-client.crt
	must(t, CreateClient(dir, "carol", expiredOpts(CertOptions{})))
	other := t.TempDir()
	must(t, CreateCA(other, CAOptions{}))
	must(t, CreateClient(other, "mallory", CertOptions{}))
	for _, name := range []string{ClientCertFile("mallory")} {
		b, err := os.ReadFile(filepath.Join(other, name))
		must(t, err)
		must(t, os.WriteFile(filepath.Join(dir, name), b, 0o644))
	}
	b, err := os.ReadFile(filepath.Join(other, CACertFile))
	must(t, err)
	must(t, os.WriteFile(filepath.Join(dir, "old-ca.crt"), b, 0o644))
	must(t, os.WriteFile(filepath.Join(dir, "broken.crt"), []byte("junk"), 0o644))
	must(t, os.WriteFile(filepath.Join(dir, "notes.txt"), []byte("not listed"), 0o644))

	type row struct {
		file     string
		kind     CertKind
		cn       string
		sans     []string
		expired  bool
		signedBy string
		trusted  bool
		err      error
	}
	want := []row{
		{file: "broken.crt", err: ErrMalformed},
		{file: ClientCACertFile, kind: CertClientCA, cn: "ringkv client CA", signedBy: ClientCACertFile, trusted: true},
		{file: CACertFile, kind: CertCA, cn: "ringkv CA", signedBy: CACertFile, trusted: true},
		// alice was signed by ca.crt before the client CA existed.
		{file: "client.alice.crt", kind: CertClient, cn: "alice", signedBy: CACertFile},
		{file: "client.bob.crt", kind: CertClient, cn: "bob", signedBy: ClientCACertFile, trusted: true},
		{file: "client.carol.crt", kind: CertClient, cn: "carol", expired: true, signedBy: ClientCACertFile, trusted: true},
		{file: "client.mallory.crt", kind: CertClient, cn: "mallory"},
		{file: NodeCertFile, kind: CertNode, cn: "n1", sans: []string{"localhost", "127.0.0.1"}, signedBy: CACertFile, trusted: true},
		{file: "old-ca.crt", kind: CertCA, cn: "ringkv CA"},
	}
	infos, err := List(dir)
	must(t, err)
	var got []row
	for _, in := range infos {
		r := row{file: in.File, kind: in.Kind, cn: in.CommonName, sans: in.DNSNames, expired: in.Expired,
			signedBy: in.SignedBy, trusted: in.Trusted, err: in.Err}
		for _, ip := range in.IPAddresses {
			r.sans = append(r.sans, ip.String())
		}
		got = append(got, r)
		if in.Err == nil && !in.NotAfter.After(in.NotBefore) {
			t.Errorf("%s: got validity %s..%s", in.File, in.NotBefore, in.NotAfter)
		}
	}
	if len(got) != len(want) {
		t.Fatalf("got %d files %v, want %d", len(got), got, len(want))
	}
	for i := range want {
		g, w := got[i], want[i]
		if g.file != w.file || g.kind != w.kind || g.cn != w.cn || !slices.Equal(g.sans, w.sans) ||
			g.expired != w.expired || g.signedBy != w.signedBy || g.trusted != w.trusted ||
			(w.err == nil) != (g.err == nil) || w.err != nil && !errors.Is(g.err, w.err) {
			t.Errorf("row %d: got %+v, want %+v", i, g, w)
		}
	}
	if !infos[6].NotAfter.After(time.Now()) {
		t.Errorf("mallory: got NotAfter %s, want in the future", infos[6].NotAfter)
	}
}

func TestPKIListErrors(t *testing.T) {
	if _, err := List(filepath.Join(t.TempDir(), "missing")); !errors.Is(err, ErrNotFound) {
		t.Fatalf("missing dir: got %v, want ErrNotFound", err)
	}
	infos, err := List(t.TempDir())
	if err != nil || len(infos) != 0 {
		t.Fatalf("empty dir: got %v, %v; want nothing", infos, err)
	}
}

func TestCertKindString(t *testing.T) {
	for k, want := range map[CertKind]string{
		CertUnknown: "unknown", CertCA: "ca", CertClientCA: "client-ca", CertNode: "node", CertClient: "client", 99: "unknown",
	} {
		if got := k.String(); got != want {
			t.Errorf("got %q, want %q", got, want)
		}
	}
}
