// Package pki creates, loads and serves ringkv's TLS certificates: a
// cluster CA, an optional separate client CA, one node certificate per
// host and client certificates per user, plus the gossip encryption key.
// It uses the standard library only (ECDSA P-256 keys, crypto/x509,
// crypto/tls).
//
// # Layout of a certs directory
//
// As in CockroachDB, one directory per host (default ./ringkv-certs):
//
//	ca.crt              cluster CA certificate; every host needs it
//	ca.key              cluster CA key; only where certificates are made
//	ca-client.crt       optional client CA certificate
//	ca-client.key       optional client CA key
//	node.crt, node.key  this host's node certificate: CN = node id,
//	                    OU = ringkv-node, server+client auth, one SAN per
//	                    host name (DNS) or IP address (IP)
//	client.USER.crt     a client certificate: CN = USER, OU = ringkv-client,
//	client.USER.key     client auth only
//	gossip.key          32 random bytes, standard base64 on one line, for
//	                    memberlist's keyring
//
// Keys are PEM PKCS #8 ("PRIVATE KEY") with mode 0600, certificates PEM
// with mode 0644; reading also accepts SEC 1 and PKCS #1 keys. Every file
// is written atomically (temp file, fsync, rename, fsync of the
// directory); a key is renamed into place before its certificate. The
// Create functions refuse to replace an existing file (ErrExists naming
// it) unless Overwrite is set. Node ids and user names must be non-empty,
// at most 64 bytes, printable, without spaces or path separators. The
// CA key may live elsewhere (CAOptions.KeyPath, CertOptions.CAKeyPath);
// ca.crt must be copied to every host.
//
// # Two planes, one port
//
// A node serves two planes on one TLS port. The node plane (raft, gossip,
// internal RPCs) is for other nodes only; the client plane (the client
// API, HTTP) is for users. ServerTLS asks for, but does not require, a
// client certificate; IdentityFromConn tells the server per request who
// the peer is: Identity{Node, id}, Identity{Client, user}, or ok=false
// for a peer without a certificate, which may still authenticate with a
// bearer token or basic auth on the client plane.
//
// # Trust rules
//
// The OU of a certificate names its plane, the CA that signed it decides
// whether that claim holds (Identify):
//
//   - A node certificate (OU ringkv-node) must chain to ca.crt. It is
//     accepted only over TLS 1.3.
//   - A client certificate (OU ringkv-client) must chain to ca-client.crt
//     if the directory has one, else to ca.crt. TLS 1.2 is enough.
//   - A certificate with neither OU, or both, is refused; so is a CA
//     certificate presented as a leaf, an expired one, a self-signed one
//     and one from any other CA. A nil pool trusts nothing: the system
//     roots are never used.
//
// So a client certificate can authenticate a user on the client plane
// and nothing else. It can never be a node: its OU says client, it lacks
// the server-auth usage that PeerTLS requires of a server, and with a
// separate client CA even a node OU forged by a holder of ca-client.key
// fails, because node certificates must chain to ca.crt alone. Without a
// separate client CA the OU is the only difference, which is safe as long
// as only the holder of ca.key issues certificates; the client CA lets an
// operator delegate issuing client certificates without that risk.
//
// PeerTLS (node to node) trusts only ca.crt, presents node.crt, requires
// TLS 1.3 and a node certificate on the server; PeerTLSFor(addr) also
// checks that the server's SANs contain the dialed host. ClientTLS (users)
// trusts ca.crt, requires a node certificate on the server (with the usual
// host name check of crypto/tls) and presents client.USER.crt if it
// exists.
//
// # Reload
//
// A Reloader holds one immutable Material (ca.crt, ca-client.crt,
// node.crt, node.key) and replaces it whole when a load succeeds:
//
//   - Reload reads the files now (the binary calls it on SIGHUP) and
//     returns the error if they are not a consistent set.
//   - Handshakes check lazily: at most once per CheckInterval (default
//     1s), the handshake that comes due stats the four files and reloads
//     if any changed (inode, mtime or size, or appeared or vanished). A
//     failure is logged at Warn; the same broken files are not retried
//     until they change again.
//
// A failed load always keeps the previous material, so a half-copied
// certificate or a key that does not match never takes a node down. A
// successful load applies to the next handshake, in both directions,
// without a restart; established connections keep the certificates they
// were made with. The files of a pair should be replaced key first, as
// the Create functions do: in between, the load fails with
// ErrKeyMismatch and is retried when the certificate changes.
//
// # Goroutines
//
// None. The Create functions, List and ClientTLS are plain calls. A
// Reloader's checks run on the goroutines that crypto/tls calls its
// callbacks on; loads are serialized by one mutex that handshakes only
// TryLock (they skip the check while a load is under way), and the
// material in use is an atomic pointer. A Reloader needs no Close.
package pki
