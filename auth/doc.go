// Package auth keeps a cluster's users, roles and permissions, checks
// credentials (passwords, client certificates, tokens) and decides whether
// a principal may do an action. It is the pure part of ringkv's access
// control: it imports no other ringkv package and knows nothing of HTTP or
// drpc. The node builds one Authority over a Store that reads and writes
// one reserved key at the linearizable level; the front ends call
// Authenticate, PrincipalFor or VerifyToken to learn who is asking, then
// Authorize before serving the request (an admin call too: the management
// methods of Authority check nothing themselves).
//
// # Model
//
// A Permission is an Access on a key prefix: Read, Write or ReadWrite on
// every key that begins with Prefix ("" = every key), or Admin
// (membership, repair, users and roles) or Metrics, which take no prefix.
// A Role is a named set of permissions; a user has a password hash and
// role names. Authorize allows an action iff one permission of one of the
// user's roles covers it:
//
//	OpRead key k      Read or ReadWrite on a prefix of k
//	OpList prefix q   Read or ReadWrite on a prefix of q (the whole range
//	                  asked for; nothing is silently filtered out)
//	OpWrite key k     Write or ReadWrite on a prefix of k
//	OpAdmin           Admin
//	OpMetrics         Metrics
//
// The role root holds ReadWrite on "", Admin and Metrics and cannot be
// changed or deleted. The user root is made by Enable, always holds role
// root and cannot be deleted. Other users may be given role root.
//
// Passwords are hashed with bcrypt (golang.org/x/crypto/bcrypt) rather
// than argon2id. bcrypt's work is pure CPU in 4 KiB of memory, so a burst
// of logins against a node costs CPU time only; argon2id is stronger
// against GPU guessing only when given tens of MiB per hash, which a
// storage node serving concurrent logins cannot spare safely. A bcrypt
// hash also records its own cost and salt, so Config.BcryptCost can be
// raised without invalidating stored hashes. The price is bcrypt's
// 72-byte limit on passwords, enforced as the maximum length.
//
// While authentication is disabled (before the first Enable, after
// Disable) Authorize allows everything and the credential methods return
// ErrAuthDisabled. Users and roles can be managed either way.
//
// # Storage
//
// The whole state (enabled flag, users, roles, the token signing key and a
// revision counting changes) is one record under Config.Key (default
// "\x00ringkv/auth", a reserved key). Its encoding is binary, begins with
// a format version byte (1), and is canonical: maps are written in sorted
// order and the decoder refuses anything the encoder would not write (see
// state.go for the layout). Every change is a read-modify-write: a
// linearizable Get, the change applied to a private copy, then
// CompareAndSet with the bytes read as the expected value. A lost race
// returns the winner's bytes; the change is applied to them again, up to
// Config.MaxRetries times (then ErrConflict). So changes made at the same
// time on different nodes never lose one another, and validation (user
// exists, role known) is always against the state the change lands on. A
// change whose CompareAndSet fails with an error (a timeout) may or may not
// have been applied: it returns ErrUnavailable, and a retry of, say,
// AddUser may then report ErrUserExists. A record that fails to decode is
// never overwritten (ErrCorrupt).
//
// # Staleness
//
// Reads (Authenticate, PrincipalFor, Authorize, tokens, Status, List*) use
// a cached decoded state. When it is older than Config.MaxStaleness
// (default 1s) the next call re-reads the record; concurrent callers share
// that one read (see Goroutines). Age is counted from when the read began,
// so:
//
//   - a change made through this Authority takes effect on it at once;
//   - a change made on another node takes effect here within
//     MaxStaleness of when it was applied (once a request arrives), plus
//     the time the read takes when that is more than 200 ms (callers with
//     a usable cached state wait that long for the read, then use the
//     cached state while it goes on);
//   - if the record cannot be read, the cached state keeps being used
//     until it is Config.MaxStaleWhenUnavailable old (default 30s); after
//     that every read method fails closed with ErrUnavailable, including
//     Authorize while auth is disabled (the node cannot know it still is).
//     Nothing ever falls open.
//
// A token issued on another node from a newer state than the cached one
// (its rev claim is higher, and its signature checks with the cached key)
// makes VerifyToken re-read at once, so a user created on one node can use
// its token on any node immediately. A token signed with a key this node
// does not know yet (right after Enable elsewhere) is refused until the
// next refresh.
//
// # Tokens
//
// IssueToken returns an HS256 JWT signed with the cluster's 32-byte random
// signing key, drawn by Enable and kept in the record (as etcd's JWT
// tokens, but with a shared symmetric key). Claims: sub (user), iat, exp
// (Config.TokenTTL later, default 10m, one-second precision), gen (the
// user's generation) and rev (the revision it was issued from). A token is
// valid until exp, and stops verifying when its user is deleted, its
// password is changed (both change the generation; generations are drawn
// from the revision, so a user deleted and added again never matches an
// old token), or auth is disabled or enabled again (new key). Role changes
// do not touch tokens: Authorize reads the roles each time.
//
// # Threat notes
//
// What is protected: passwords at rest (bcrypt), token forgery and
// tampering (HMAC-SHA256, algorithm pinned to HS256), user enumeration by
// error or by timing in Authenticate (an unknown user is checked against a
// throwaway hash of the configured cost; a user whose hash has another
// cost differs in timing), lost updates between nodes (CAS).
//
// What is not:
//
//   - The signing key and the hashes are stored in the cluster like any
//     record: anyone who can read a replica's disk, a snapshot or a backup,
//     or any reserved key through a System context, can mint tokens for
//     any user and guess passwords offline. Reserved keys must stay out of
//     reach of client requests (the coordinator refuses them).
//   - Passwords and tokens travel in the clear unless the front ends use
//     TLS. Tokens are bearer tokens: a stolen one works until it expires
//     or its user's password changes.
//   - Revocation is not instant: another node honors a removed grant, a
//     changed password or a deleted user for up to MaxStaleness, and up to
//     MaxStaleWhenUnavailable while it cannot read the record.
//   - No rate limiting or lockout of password guessing; the front end must
//     add it. Each check costs bcrypt work, which is also a CPU
//     denial-of-service lever.
//   - PrincipalFor trusts its caller to have verified the certificate
//     chain; it only checks the user exists.
//   - Admin implies everything: an Admin can grant itself any permission.
//
// # Goroutines
//
// One at a time, and only while the cached state is being refreshed: the
// Store read, started by the first call that finds the cache older than
// MaxStaleness and shared by every call until it ends; its context is its
// own (not the caller's), bounded by max(2*MaxStaleness, 2s), so the read
// ends by itself. A caller whose cached state is still usable waits for it
// at most 200 ms from the read's start and then goes on with the cached
// state: a read stuck behind an unreachable Raft leader no longer holds
// every request of the node until its deadline. Everything else runs on
// its caller's goroutine. An Authority needs no Close.
package auth
