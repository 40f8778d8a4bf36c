package auth

import (
	"context"
	"fmt"

	"golang.org/x/crypto/bcrypt"
)

// Authenticate checks a user's password. A wrong password and an unknown
// user give the same error after about the same work: an unknown user's
// password is checked against a throwaway hash of the configured cost.
// Errors: ErrUnauthenticated, ErrAuthDisabled, ErrUnavailable.
func (a *Authority) Authenticate(ctx context.Context, user, password string) (Principal, error) {
	st, err := a.current(ctx)
	if err != nil {
		return Principal{}, err
	}
	if !st.enabled {
		return Principal{}, ErrAuthDisabled
	}
	hash := a.dummyHash
	u, known := st.users[user]
	if known {
		hash = u.hash
	}
	if err := bcrypt.CompareHashAndPassword(hash, []byte(password)); err != nil || !known {
		return Principal{}, ErrUnauthenticated
	}
	return Principal{User: user, Method: MethodPassword}, nil
}

// PrincipalFor returns the principal for a verified TLS client certificate
// whose common name is user. The caller has verified the certificate
// against the cluster's client CA; PrincipalFor only checks that the user
// exists. Errors: ErrUnauthenticated, ErrAuthDisabled, ErrUnavailable.
func (a *Authority) PrincipalFor(ctx context.Context, user string) (Principal, error) {
	st, err := a.current(ctx)
	if err != nil {
		return Principal{}, err
	}
	if !st.enabled {
		return Principal{}, ErrAuthDisabled
	}
	if _, ok := st.users[user]; !ok {
		return Principal{}, ErrUnauthenticated
	}
	return Principal{User: user, Method: MethodCertificate}, nil
}

// Authorize returns nil if p may do act, and otherwise a *PermissionError
// (matching ErrPermissionDenied) naming what p lacks. It looks p's roles up
// in a state at most MaxStaleness old. While authentication is disabled it
// allows everything. Errors: ErrPermissionDenied, ErrUnauthenticated (p's
// user no longer exists), ErrInvalid (unknown Op), ErrUnavailable. It does
// not keep act.Key.
func (a *Authority) Authorize(ctx context.Context, p Principal, act Action) error {
	st, err := a.current(ctx)
	if err != nil {
		return err
	}
	if !st.enabled {
		return nil
	}
	return st.authorize(p.User, act)
}

func (s *state) authorize(user string, act Action) error {
	u, ok := s.users[user]
	if !ok {
		return fmt.Errorf("%w: user %q no longer exists", ErrUnauthenticated, user)
	}
	var need Access
	switch act.Op {
	case OpRead, OpList:
		need = Read
	case OpWrite:
		need = Write
	case OpAdmin:
		need = Admin
	case OpMetrics:
		need = Metrics
	default:
		return fmt.Errorf("%w: unknown %v", ErrInvalid, act.Op)
	}
	for _, r := range u.roles {
		if r == RootName {
			return nil
		}
		for _, have := range s.roles[r] {
			if covers(have, need, act.Key) {
				return nil
			}
		}
	}
	p := Permission{Access: need}
	if need.keyed() {
		p.Prefix = string(act.Key)
	}
	return &PermissionError{User: user, Need: p}
}

// covers reports whether have allows need on key (or on every key that
// begins with key, for a list): have's access must include need, and have's
// prefix must be a prefix of key.
func covers(have Permission, need Access, key []byte) bool {
	switch need {
	case Read:
		if have.Access != Read && have.Access != ReadWrite {
			return false
		}
	case Write:
		if have.Access != Write && have.Access != ReadWrite {
			return false
		}
	default:
		return have.Access == need
	}
	return len(key) >= len(have.Prefix) && string(key[:len(have.Prefix)]) == have.Prefix
}
