package auth

import (
	"fmt"
	"strconv"
)

// Access is what a Permission allows.
type Access uint8

const (
	// Read allows reading every key that begins with the permission's
	// prefix, one at a time or by listing.
	Read Access = iota + 1
	// Write allows writing (setting, deleting) every key that begins with
	// the permission's prefix.
	Write
	// ReadWrite is Read and Write together.
	ReadWrite
	// Admin allows cluster administration: membership, repair, users and
	// roles. Its prefix is always empty. A holder can grant itself anything
	// else, so treat it as equivalent to root.
	Admin
	// Metrics allows reading the node's metrics. Its prefix is always empty.
	Metrics
)

// String returns the lowercase name used in error messages.
func (a Access) String() string {
	switch a {
	case Read:
		return "read"
	case Write:
		return "write"
	case ReadWrite:
		return "readwrite"
	case Admin:
		return "admin"
	case Metrics:
		return "metrics"
	}
	return "Access(" + strconv.Itoa(int(a)) + ")"
}

// keyed reports whether permissions of this kind carry a key prefix.
func (a Access) keyed() bool { return a == Read || a == Write || a == ReadWrite }

// MaxPrefixBytes is the longest key prefix a Permission may carry.
const MaxPrefixBytes = 4096

// Permission is one grant held by a Role. Prefix is a key prefix (any
// bytes; "" means every key) for Read, Write and ReadWrite, and must be ""
// for Admin and Metrics.
type Permission struct {
	Access Access
	Prefix string
}

// shownPrefixBytes bounds how much of a prefix String prints.
const shownPrefixBytes = 64

// String returns, for example, `read on prefix "acct/"` or `admin`. A
// prefix longer than 64 bytes is cut short and marked with "...".
func (p Permission) String() string {
	if !p.Access.keyed() {
		return p.Access.String()
	}
	if len(p.Prefix) > shownPrefixBytes {
		return fmt.Sprintf("%v on prefix %q...", p.Access, p.Prefix[:shownPrefixBytes])
	}
	return fmt.Sprintf("%v on prefix %q", p.Access, p.Prefix)
}

func (p Permission) validate() error {
	if why := p.problem(); why != "" {
		return fmt.Errorf("%w: %s", ErrInvalid, why)
	}
	return nil
}

// problem says what is wrong with p, or "" if nothing is.
func (p Permission) problem() string {
	switch {
	case p.Access < Read || p.Access > Metrics:
		return fmt.Sprintf("unknown access %v", p.Access)
	case !p.Access.keyed() && p.Prefix != "":
		return fmt.Sprintf("%v takes no prefix", p.Access)
	case len(p.Prefix) > MaxPrefixBytes:
		return fmt.Sprintf("prefix of %d bytes exceeds %d", len(p.Prefix), MaxPrefixBytes)
	}
	return ""
}

// comparePermission orders permissions by access, then prefix.
func comparePermission(a, b Permission) int {
	if a.Access != b.Access {
		return int(a.Access) - int(b.Access)
	}
	switch {
	case a.Prefix < b.Prefix:
		return -1
	case a.Prefix > b.Prefix:
		return 1
	}
	return 0
}

// Op is the kind of an Action.
type Op uint8

const (
	// OpRead reads the one key Action.Key. It needs Read or ReadWrite on a
	// prefix of the key.
	OpRead Op = iota + 1
	// OpList lists the keys that begin with Action.Key. It needs Read or
	// ReadWrite on a prefix of the whole requested prefix: a grant on "a/"
	// allows listing "a/" and "a/b/", never "" or "b". Nothing is filtered.
	OpList
	// OpWrite writes (sets or deletes) the one key Action.Key. It needs
	// Write or ReadWrite on a prefix of the key. An operation that also
	// returns what it found (compare-and-set) is authorized as OpRead and
	// OpWrite, both.
	OpWrite
	// OpAdmin is a cluster administration call. It needs Admin.
	OpAdmin
	// OpMetrics reads metrics. It needs Metrics.
	OpMetrics
)

// String returns the lowercase name of o.
func (o Op) String() string {
	switch o {
	case OpRead:
		return "read"
	case OpList:
		return "list"
	case OpWrite:
		return "write"
	case OpAdmin:
		return "admin"
	case OpMetrics:
		return "metrics"
	}
	return "Op(" + strconv.Itoa(int(o)) + ")"
}

// Action is what a principal asks to do. Key is the key for OpRead and
// OpWrite, the prefix for OpList, and ignored otherwise. Authorize does not
// keep Key.
type Action struct {
	Op  Op
	Key []byte
}

// Method is how a Principal proved who it is.
type Method uint8

const (
	// MethodPassword is a user name and password (Authenticate).
	MethodPassword Method = iota + 1
	// MethodCertificate is a verified TLS client certificate whose common
	// name names the user (PrincipalFor).
	MethodCertificate
	// MethodToken is a token from IssueToken (VerifyToken).
	MethodToken
)

// String returns the lowercase name of m.
func (m Method) String() string {
	switch m {
	case MethodPassword:
		return "password"
	case MethodCertificate:
		return "certificate"
	case MethodToken:
		return "token"
	}
	return "Method(" + strconv.Itoa(int(m)) + ")"
}

// Principal is an authenticated user. It holds no permissions: Authorize
// looks the user's roles up in the current state, so a revoked role stops
// working within the staleness bound even for a principal made before.
type Principal struct {
	User   string
	Method Method
}

// User is a user as ListUsers shows it: its name and its roles, sorted.
// The password hash is never returned.
type User struct {
	Name  string
	Roles []string
}

// Role is a named set of permissions, sorted by access then prefix.
type Role struct {
	Name        string
	Permissions []Permission
}

// Status summarizes the auth state.
type Status struct {
	Enabled bool
	Users   int
	Roles   int
	// Revision counts the changes ever made to the auth record; 0 means it
	// was never written.
	Revision uint64
}

// RootName is the name of the built-in user and role. User root always
// holds role root; role root holds every permission and cannot be changed.
const RootName = "root"
