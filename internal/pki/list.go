package pki

import (
	"crypto/x509"
	"errors"
	"fmt"
	"io/fs"
	"net"
	"os"
	"path/filepath"
	"slices"
	"time"
)

// CertKind is what a certificate file holds, as List reports it.
type CertKind int

const (
	// CertUnknown is a certificate that is none of the kinds below, or a
	// file that could not be read.
	CertUnknown CertKind = iota
	// CertCA is the cluster CA (ca.crt).
	CertCA
	// CertClientCA is the separate client CA (ca-client.crt).
	CertClientCA
	// CertNode is a node certificate (OU ringkv-node).
	CertNode
	// CertClient is a client certificate (OU ringkv-client).
	CertClient
)

// String returns "ca", "client-ca", "node", "client" or "unknown".
func (k CertKind) String() string {
	switch k {
	case CertCA:
		return "ca"
	case CertClientCA:
		return "client-ca"
	case CertNode:
		return "node"
	case CertClient:
		return "client"
	default:
		return "unknown"
	}
}

// CertInfo describes one certificate file, as List reports it.
type CertInfo struct {
	// File is the file's base name, such as "node.crt".
	File string
	// Kind is what the certificate is, from its content: a CA's OU (or,
	// for a CA without a ringkv OU, the file name) and a leaf's OU.
	Kind CertKind
	// CommonName is the Subject CN: the node id or user name of a leaf.
	CommonName string
	// DNSNames and IPAddresses are the SANs.
	DNSNames    []string
	IPAddresses []net.IP
	// NotBefore and NotAfter bound the validity.
	NotBefore, NotAfter time.Time
	// Expired is set when NotAfter has passed (or NotBefore has not come).
	Expired bool
	// SignedBy is the CA file in the directory whose key signed the
	// certificate ("ca.crt" or "ca-client.crt"; a CA signs itself), or ""
	// if neither did.
	SignedBy string
	// Trusted is set when the certificate is signed by the CA that the
	// planes accept for its kind: a CA when it is the directory's ca.crt
	// or ca-client.crt, a node when signed by ca.crt, a
	// client by ca-client.crt if the directory has one, else by ca.crt.
	// Expiry does not affect it.
	Trusted bool
	// Err is set when the file could not be read or parsed; the other
	// fields except File and Kind (CertUnknown) are then zero.
	Err error
}

// List describes every *.crt file in dir, sorted by file name. A file
// that cannot be parsed is listed with Err set rather than failing the
// whole listing. The caller owns the returned slice.
//
// Errors: ErrNotFound (dir does not exist), or a wrapped I/O error
// reading the directory.
func List(dir string) ([]CertInfo, error) {
	if _, err := os.Stat(dir); errors.Is(err, fs.ErrNotExist) {
		return nil, fmt.Errorf("%w: %s", ErrNotFound, dir)
	}
	paths, err := filepath.Glob(filepath.Join(dir, "*.crt"))
	if err != nil {
		return nil, fmt.Errorf("list %s: %w", dir, err)
	}
	slices.Sort(paths)
	cas := map[string]*x509.Certificate{}
	for _, name := range []string{CACertFile, ClientCACertFile} {
		if certs, err := readCerts(filepath.Join(dir, name)); err == nil {
			cas[name] = certs[0]
		}
	}
	now := time.Now()
	infos := make([]CertInfo, 0, len(paths))
	for _, p := range paths {
		infos = append(infos, describe(p, cas, now))
	}
	return infos, nil
}

// describe reads one certificate file; cas holds the directory's CA
// certificates by file name.
func describe(path string, cas map[string]*x509.Certificate, now time.Time) CertInfo {
	info := CertInfo{File: filepath.Base(path)}
	certs, err := readCerts(path)
	if err != nil {
		info.Err = err
		return info
	}
	c := certs[0]
	info.Kind = certKind(c, info.File)
	info.CommonName = c.Subject.CommonName
	info.DNSNames = c.DNSNames
	info.IPAddresses = c.IPAddresses
	info.NotBefore, info.NotAfter = c.NotBefore, c.NotAfter
	info.Expired = now.After(c.NotAfter) || now.Before(c.NotBefore)
	for _, name := range []string{CACertFile, ClientCACertFile} {
		if ca := cas[name]; ca != nil && c.CheckSignatureFrom(ca) == nil {
			info.SignedBy = name
			break
		}
	}
	switch info.Kind {
	case CertCA, CertClientCA:
		info.Trusted = cas[info.File] != nil && cas[info.File].Equal(c)
	case CertNode:
		info.Trusted = info.SignedBy == CACertFile
	case CertClient:
		want := CACertFile
		if cas[ClientCACertFile] != nil {
			want = ClientCACertFile
		}
		info.Trusted = info.SignedBy == want
	}
	return info
}

// certKind classifies c, found in the file named file.
func certKind(c *x509.Certificate, file string) CertKind {
	if c.IsCA && c.BasicConstraintsValid {
		if slices.Contains(c.Subject.OrganizationalUnit, ClientCAOU) ||
			!slices.Contains(c.Subject.OrganizationalUnit, CAOU) && file == ClientCACertFile {
			return CertClientCA
		}
		return CertCA
	}
	switch leafKind(c) {
	case Node:
		return CertNode
	case Client:
		return CertClient
	default:
		return CertUnknown
	}
}
