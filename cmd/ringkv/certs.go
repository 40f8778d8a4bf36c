package main

import (
	"errors"
	"flag"
	"fmt"
	"io"
	iofs "io/fs"
	"os"
	"path/filepath"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/ringkv/ringkv/internal/pki"
)

const certsUsage = `Usage:
  ringkv certs create-ca [--client] [flags]      the cluster CA (ca.crt, ca.key) or,
                                                 with --client, the client CA (ca-client.*)
  ringkv certs create-node --id ID HOST... [flags]
                                                 this host's node.crt/node.key; HOST is
                                                 an IP address or a DNS name (SANs)
  ringkv certs create-client USER [flags]        client.USER.crt/client.USER.key
  ringkv certs create-gossip-key [flags]         gossip.key (memberlist encryption)
  ringkv certs list [flags]                      the certificates in --certs-dir

Flags:
`

// certsCommand runs `ringkv certs create-ca|create-node|create-client|
// create-gossip-key|list` on a certs directory (internal/pki).
func certsCommand(args []string, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("certs", flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.Usage = func() {
		fmt.Fprint(stderr, certsUsage)
		fs.PrintDefaults()
	}
	dir := fs.String("certs-dir", envDefault("RINGKV_CERTS_DIR", "./ringkv-certs"), "certificates directory (env RINGKV_CERTS_DIR)")
	caKey := fs.String("ca-key", "", "CA private key: to sign with (default CERTS-DIR/ca.key; create-client: CERTS-DIR/ca-client.key\nwhen ca-client.crt exists) or, for create-ca, where to write it")
	lifetime := fs.Duration("lifetime", 0, "certificate lifetime (default 87600h = 10 years for a CA, 43800h = 5 years otherwise)")
	overwrite := fs.Bool("overwrite", false, "replace existing files")
	clientCA := fs.Bool("client", false, "create-ca: create the separate client CA (ca-client.crt, ca-client.key)")
	id := fs.String("id", "", "create-node: the node id (the certificate's common name)")
	pos, err := parseInterleaved(fs, args)
	if err != nil {
		return err
	}
	if len(pos) == 0 {
		return fmt.Errorf("%w: certs needs a subcommand: create-ca, create-node, create-client, create-gossip-key or list", errUsage)
	}
	sub, pos := pos[0], pos[1:]
	// --client and --id belong to one subcommand each.
	var misplaced error
	fs.Visit(func(f *flag.Flag) {
		if f.Name == "client" && sub != "create-ca" || f.Name == "id" && sub != "create-node" {
			misplaced = fmt.Errorf("%w: certs %s does not take --%s", errUsage, sub, f.Name)
		}
	})
	if misplaced != nil {
		return misplaced
	}
	certOpts := pki.CertOptions{Lifetime: *lifetime, CAKeyPath: *caKey, Overwrite: *overwrite}
	wrote := func(names ...string) error {
		paths := make([]string, len(names))
		for i, n := range names {
			paths[i] = filepath.Join(*dir, n)
		}
		fmt.Fprintf(stdout, "wrote %s\n", strings.Join(paths, ", "))
		return nil
	}
	switch sub {
	case "create-ca":
		if len(pos) != 0 {
			return fmt.Errorf("%w: certs create-ca takes no arguments, got %q", errUsage, pos)
		}
		if err := pki.CreateCA(*dir, pki.CAOptions{Lifetime: *lifetime, Client: *clientCA, KeyPath: *caKey, Overwrite: *overwrite}); err != nil {
			return fmt.Errorf("certs create-ca: %w", err)
		}
		crt, key := pki.CACertFile, filepath.Join(*dir, pki.CAKeyFile)
		if *clientCA {
			crt, key = pki.ClientCACertFile, filepath.Join(*dir, pki.ClientCAKeyFile)
		}
		if *caKey != "" {
			key = *caKey
		}
		fmt.Fprintf(stdout, "wrote %s, %s\n", filepath.Join(*dir, crt), key)
		return nil
	case "create-node":
		if *id == "" || len(pos) == 0 {
			return fmt.Errorf("%w: certs create-node takes --id ID and at least one HOST (IP address or DNS name)", errUsage)
		}
		// A host's directory is made on the CA's machine: with --ca-key
		// and no ca.crt in it yet, the CA certificate next to the key
		// signs, and is copied in, so the directory is complete.
		hostCA := filepath.Join(*dir, pki.CACertFile)
		_, statErr := os.Stat(hostCA)
		copyCA := *caKey != "" && errors.Is(statErr, iofs.ErrNotExist)
		if copyCA {
			certOpts.CACertPath = filepath.Join(filepath.Dir(*caKey), pki.CACertFile)
		}
		if err := pki.CreateNode(*dir, *id, pos, certOpts); err != nil {
			return fmt.Errorf("certs create-node: %w", err)
		}
		if !copyCA {
			return wrote(pki.NodeCertFile, pki.NodeKeyFile)
		}
		b, err := os.ReadFile(certOpts.CACertPath)
		if err == nil {
			err = os.WriteFile(hostCA, b, 0o644)
		}
		if err != nil {
			return fmt.Errorf("certs create-node: copy the CA certificate: %w", err)
		}
		return wrote(pki.NodeCertFile, pki.NodeKeyFile, pki.CACertFile)
	case "create-client":
		if len(pos) != 1 {
			return fmt.Errorf("%w: certs create-client takes one USER, got %d arguments", errUsage, len(pos))
		}
		if err := pki.CreateClient(*dir, pos[0], certOpts); err != nil {
			return fmt.Errorf("certs create-client: %w", err)
		}
		return wrote(pki.ClientCertFile(pos[0]), pki.ClientKeyFile(pos[0]))
	case "create-gossip-key":
		if len(pos) != 0 {
			return fmt.Errorf("%w: certs create-gossip-key takes no arguments, got %q", errUsage, pos)
		}
		if err := pki.CreateGossipKey(*dir, pki.GossipKeyOptions{Overwrite: *overwrite}); err != nil {
			return fmt.Errorf("certs create-gossip-key: %w", err)
		}
		return wrote(pki.GossipKeyFile)
	case "list":
		if len(pos) != 0 {
			return fmt.Errorf("%w: certs list takes no arguments, got %q", errUsage, pos)
		}
		return certsList(*dir, stdout)
	default:
		return fmt.Errorf("%w: unknown certs subcommand %q", errUsage, sub)
	}
}

// certsList prints one line per certificate file in dir: file, kind,
// common name, SANs, expiry (RFC 3339) and flags (EXPIRED, untrusted, or
// the error reading it).
func certsList(dir string, stdout io.Writer) error {
	infos, err := pki.List(dir)
	if err != nil {
		return fmt.Errorf("certs list: %w", err)
	}
	if len(infos) == 0 {
		fmt.Fprintf(stdout, "no certificates in %s\n", dir)
		return nil
	}
	tw := tabwriter.NewWriter(stdout, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "FILE\tKIND\tCN\tSANS\tEXPIRES\tFLAGS")
	for _, in := range infos {
		if in.Err != nil {
			fmt.Fprintf(tw, "%s\t%s\t-\t-\t-\tERROR: %v\n", in.File, in.Kind, in.Err)
			continue
		}
		sans := append([]string(nil), in.DNSNames...)
		for _, ip := range in.IPAddresses {
			sans = append(sans, ip.String())
		}
		var flags []string
		if in.Expired {
			flags = append(flags, "EXPIRED")
		}
		if !in.Trusted {
			flags = append(flags, "untrusted")
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\n", in.File, in.Kind, orDash(in.CommonName),
			orDash(strings.Join(sans, ",")), in.NotAfter.UTC().Format(time.RFC3339), orDash(strings.Join(flags, ",")))
	}
	if err := tw.Flush(); err != nil {
		return fmt.Errorf("certs list: %w", err)
	}
	return nil
}
