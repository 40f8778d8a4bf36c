package auth

import (
	"errors"
	"fmt"
)

var (
	// ErrAuthDisabled is returned by Authenticate, PrincipalFor, IssueToken
	// and VerifyToken while authentication is disabled (Authorize then
	// allows everything instead).
	ErrAuthDisabled = errors.New("auth: authentication is disabled")
	// ErrAlreadyEnabled is returned by Enable when authentication is enabled.
	ErrAlreadyEnabled = errors.New("auth: authentication is already enabled")
	// ErrUserExists is returned by AddUser for a name that is taken.
	ErrUserExists = errors.New("auth: user exists")
	// ErrUnknownUser is returned by the management methods for a user that
	// does not exist.
	ErrUnknownUser = errors.New("auth: unknown user")
	// ErrRoleExists is returned by AddRole for a name that is taken.
	ErrRoleExists = errors.New("auth: role exists")
	// ErrUnknownRole is returned by the management methods for a role that
	// does not exist.
	ErrUnknownRole = errors.New("auth: unknown role")
	// ErrNotGranted is returned by Revoke and RevokeRole for a permission or
	// role that was not granted.
	ErrNotGranted = errors.New("auth: not granted")
	// ErrInvalid is returned (wrapped, with the reason) for a malformed
	// argument: an empty or malformed name, a password outside the allowed
	// length, a malformed permission, or a change to what is built in (the
	// root user and the root role).
	ErrInvalid = errors.New("auth: invalid argument")
	// ErrUnauthenticated is returned by Authenticate, PrincipalFor and
	// VerifyToken for any bad credential: unknown user, wrong password,
	// expired, forged or stale token. The message says no more than that.
	// Authorize returns it for a principal whose user no longer exists.
	ErrUnauthenticated = errors.New("auth: unauthenticated")
	// ErrPermissionDenied marks the errors Authorize returns when a principal
	// lacks a permission; the concrete error is a *PermissionError.
	ErrPermissionDenied = errors.New("auth: permission denied")
	// ErrUnavailable marks a failure to read or write the auth record in the
	// Store. Reads return it only once the cached state is older than
	// Config.MaxStaleWhenUnavailable (fail closed); it wraps the Store's
	// error. A write that returns it may or may not have been applied.
	ErrUnavailable = errors.New("auth: state unavailable")
	// ErrCorrupt is returned (wrapped, and marked ErrUnavailable on the
	// read path) when the stored auth record cannot be decoded. A write is
	// never applied over a corrupt record.
	ErrCorrupt = errors.New("auth: corrupt state record")
	// ErrConflict is returned by a change that lost Config.MaxRetries
	// compare-and-set races in a row to changes made elsewhere; nothing of
	// it was applied.
	ErrConflict = errors.New("auth: too many concurrent changes")
)

// PermissionError is returned by Authorize when User lacks Need. It matches
// ErrPermissionDenied with errors.Is. For a read or a write of one key, Need
// names the key itself as the prefix: the narrowest grant that would do.
type PermissionError struct {
	User string
	Need Permission
}

// Error implements error, for example
// `auth: permission denied: user "alice" needs read on prefix "acct/"`.
func (e *PermissionError) Error() string {
	return fmt.Sprintf("%v: user %q needs %v", ErrPermissionDenied, e.User, e.Need)
}

// Is reports whether target is ErrPermissionDenied.
func (e *PermissionError) Is(target error) bool { return target == ErrPermissionDenied }
