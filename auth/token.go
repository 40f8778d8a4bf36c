package auth

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/golang-jwt/jwt/v5"
)

// claims are a token's claims: sub is the user, iat and exp its lifetime,
// gen the user's generation when the token was issued and rev the state's
// revision.
type claims struct {
	jwt.RegisteredClaims
	Generation uint64 `json:"gen"`
	Revision   uint64 `json:"rev"`
}

// errBehind is returned by verify for a well-signed token issued from a
// newer state than the cached one.
var errBehind = errors.New("auth: token is newer than the cached state")

// IssueToken returns a token for p, an HS256 JWT signed with the cluster's
// signing key, and when it expires (Config.TokenTTL from now, to the
// second). Any node of the cluster verifies it until it expires, the
// user's password changes, the user is deleted or authentication is
// disabled. Errors: ErrUnauthenticated (p's user no longer exists),
// ErrAuthDisabled, ErrUnavailable.
func (a *Authority) IssueToken(ctx context.Context, p Principal) (token string, expires time.Time, err error) {
	st, err := a.current(ctx)
	if err != nil {
		return "", time.Time{}, err
	}
	if !st.enabled {
		return "", time.Time{}, ErrAuthDisabled
	}
	u, ok := st.users[p.User]
	if !ok {
		return "", time.Time{}, fmt.Errorf("%w: user %q no longer exists", ErrUnauthenticated, p.User)
	}
	now := a.now()
	expires = now.Add(a.cfg.TokenTTL).Truncate(time.Second)
	c := claims{
		RegisteredClaims: jwt.RegisteredClaims{
			Subject:   p.User,
			IssuedAt:  jwt.NewNumericDate(now),
			ExpiresAt: jwt.NewNumericDate(expires),
		},
		Generation: u.generation,
		Revision:   st.revision,
	}
	token, err = jwt.NewWithClaims(jwt.SigningMethodHS256, c).SignedString(st.signingKey)
	if err != nil {
		return "", time.Time{}, fmt.Errorf("auth: sign token: %w", err)
	}
	return token, expires, nil
}

// VerifyToken returns the principal a token from IssueToken names. A token
// signed from a newer state than the cached one (issued on another node
// just after a change) makes it re-read the state once, so such a token is
// accepted at once everywhere. Errors: ErrUnauthenticated (malformed,
// forged, expired, or its user deleted or its password changed since),
// ErrAuthDisabled, ErrUnavailable.
func (a *Authority) VerifyToken(ctx context.Context, token string) (Principal, error) {
	st, err := a.current(ctx)
	if err != nil {
		return Principal{}, err
	}
	if !st.enabled {
		return Principal{}, ErrAuthDisabled
	}
	p, err := a.verify(st, token)
	if errors.Is(err, errBehind) {
		if st, err = a.load(ctx); err != nil {
			return Principal{}, err
		}
		if !st.enabled {
			return Principal{}, ErrAuthDisabled
		}
		p, err = a.verify(st, token)
	}
	if errors.Is(err, errBehind) {
		// The Store answered with an older state than the token's: it
		// cannot be, unless the record was rolled back.
		return Principal{}, fmt.Errorf("%w: token is from a newer state than the store's", ErrUnauthenticated)
	}
	return p, err
}

func (a *Authority) verify(st *state, token string) (Principal, error) {
	var c claims
	_, err := jwt.ParseWithClaims(token, &c,
		func(*jwt.Token) (any, error) { return st.signingKey, nil },
		jwt.WithValidMethods([]string{jwt.SigningMethodHS256.Alg()}),
		jwt.WithExpirationRequired(),
		jwt.WithTimeFunc(a.now),
	)
	if err != nil {
		return Principal{}, fmt.Errorf("%w: %w", ErrUnauthenticated, err)
	}
	if c.Revision > st.revision {
		return Principal{}, errBehind
	}
	u, ok := st.users[c.Subject]
	if !ok || u.generation != c.Generation {
		return Principal{}, fmt.Errorf("%w: token no longer valid", ErrUnauthenticated)
	}
	return Principal{User: c.Subject, Method: MethodToken}, nil
}
