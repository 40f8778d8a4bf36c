package auth

import (
	"encoding/base64"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/golang-jwt/jwt/v5"
)

func TestTokens(t *testing.T) {
	ctx := t.Context()
	issue := func(t *testing.T, a *Authority, user string) string {
		t.Helper()
		tok, _, err := a.IssueToken(ctx, Principal{User: user, Method: MethodPassword})
		if err != nil {
			t.Fatalf("IssueToken(%s): %v", user, err)
		}
		return tok
	}
	// sign returns a token with the given claims, signed with key by method.
	sign := func(t *testing.T, m jwt.SigningMethod, key any, c claims) string {
		t.Helper()
		tok, err := jwt.NewWithClaims(m, c).SignedString(key)
		if err != nil {
			t.Fatal(err)
		}
		return tok
	}
	// claimsFor returns the claims a genuine token for alice would carry.
	claimsFor := func(a *Authority, clock *fakeClock) claims {
		st, _ := a.current(ctx)
		return claims{
			RegisteredClaims: jwt.RegisteredClaims{
				Subject:   "alice",
				IssuedAt:  jwt.NewNumericDate(clock.Now()),
				ExpiresAt: jwt.NewNumericDate(clock.Now().Add(time.Minute)),
			},
			Generation: st.users["alice"].generation,
			Revision:   st.revision,
		}
	}

	tests := []struct {
		name string
		// token returns the token to verify, after changing whatever it changes.
		token func(t *testing.T, a *Authority, clock *fakeClock) string
		want  error // nil = verifies as alice
	}{
		{"valid", func(t *testing.T, a *Authority, _ *fakeClock) string { return issue(t, a, "alice") }, nil},
		{"just before expiry", func(t *testing.T, a *Authority, clock *fakeClock) string {
			tok := issue(t, a, "alice")
			clock.Advance(a.cfg.TokenTTL - time.Second)
			return tok
		}, nil},
		{"expired", func(t *testing.T, a *Authority, clock *fakeClock) string {
			tok := issue(t, a, "alice")
			clock.Advance(a.cfg.TokenTTL)
			return tok
		}, ErrUnauthenticated},
		{"tampered subject", func(t *testing.T, a *Authority, _ *fakeClock) string {
			parts := strings.Split(issue(t, a, "alice"), ".")
			payload, err := base64.RawURLEncoding.DecodeString(parts[1])
			must(t, err)
			forged := strings.Replace(string(payload), `"sub":"alice"`, `"sub":"root"`, 1)
			if forged == string(payload) {
				t.Fatalf("payload %s has no sub claim to change", payload)
			}
			parts[1] = base64.RawURLEncoding.EncodeToString([]byte(forged))
			return strings.Join(parts, ".")
		}, ErrUnauthenticated},
		{"tampered signature", func(t *testing.T, a *Authority, _ *fakeClock) string {
			return tamper(issue(t, a, "alice"))
		}, ErrUnauthenticated},
		{"signed with another key", func(t *testing.T, a *Authority, clock *fakeClock) string {
			return sign(t, jwt.SigningMethodHS256, []byte("0123456789abcdef0123456789abcdef"), claimsFor(a, clock))
		}, ErrUnauthenticated},
		{"signed with the right key by HS512", func(t *testing.T, a *Authority, clock *fakeClock) string {
			st, _ := a.current(ctx)
			return sign(t, jwt.SigningMethodHS512, st.signingKey, claimsFor(a, clock))
		}, ErrUnauthenticated},
		{"unsigned", func(t *testing.T, a *Authority, clock *fakeClock) string {
			return sign(t, jwt.SigningMethodNone, jwt.UnsafeAllowNoneSignatureType, claimsFor(a, clock))
		}, ErrUnauthenticated},
		{"no expiry", func(t *testing.T, a *Authority, clock *fakeClock) string {
			c := claimsFor(a, clock)
			c.ExpiresAt = nil
			st, _ := a.current(ctx)
			return sign(t, jwt.SigningMethodHS256, st.signingKey, c)
		}, ErrUnauthenticated},
		{"garbage", func(*testing.T, *Authority, *fakeClock) string { return "not.a.token" }, ErrUnauthenticated},
		{"empty", func(*testing.T, *Authority, *fakeClock) string { return "" }, ErrUnauthenticated},
		{"after password change", func(t *testing.T, a *Authority, _ *fakeClock) string {
			tok := issue(t, a, "alice")
			must(t, a.SetPassword(ctx, "alice", "new-password"))
			return tok
		}, ErrUnauthenticated},
		{"after user deletion", func(t *testing.T, a *Authority, _ *fakeClock) string {
			tok := issue(t, a, "alice")
			must(t, a.DeleteUser(ctx, "alice"))
			return tok
		}, ErrUnauthenticated},
		{"after deletion and a new user of the same name", func(t *testing.T, a *Authority, _ *fakeClock) string {
			tok := issue(t, a, "alice")
			must(t, a.DeleteUser(ctx, "alice"))
			must(t, a.AddUser(ctx, "alice", "alice-password"))
			return tok
		}, ErrUnauthenticated},
		{"after a role change", func(t *testing.T, a *Authority, _ *fakeClock) string {
			tok := issue(t, a, "alice")
			must(t, a.AddRole(ctx, "r"))
			must(t, a.GrantRole(ctx, "alice", "r"))
			return tok
		}, nil},
		{"after disable", func(t *testing.T, a *Authority, _ *fakeClock) string {
			tok := issue(t, a, "alice")
			must(t, a.Disable(ctx))
			return tok
		}, ErrAuthDisabled},
		{"after disable and enable", func(t *testing.T, a *Authority, _ *fakeClock) string {
			tok := issue(t, a, "alice")
			must(t, a.Disable(ctx))
			must(t, a.Enable(ctx, rootPassword))
			return tok
		}, ErrUnauthenticated},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			_, clock, a := enabled(t)
			must(t, a.AddUser(ctx, "alice", "alice-password"))
			tok := tc.token(t, a, clock)
			p, err := a.VerifyToken(ctx, tok)
			if !errors.Is(err, tc.want) {
				t.Fatalf("got %+v, %v; want %v", p, err, tc.want)
			}
			if tc.want == nil && p != (Principal{User: "alice", Method: MethodToken}) {
				t.Fatalf("got %+v, want alice by token", p)
			}
		})
	}
}

func TestIssueToken(t *testing.T) {
	ctx := t.Context()
	store, clock := newMemStore(), newFakeClock()
	clock.Advance(300 * time.Millisecond) // expiry is rounded down to the second
	a := newTestAuthority(t, store, clock, nil)
	if _, _, err := a.IssueToken(ctx, Principal{User: RootName}); !errors.Is(err, ErrAuthDisabled) {
		t.Fatalf("IssueToken while disabled: got %v, want ErrAuthDisabled", err)
	}
	if _, err := a.VerifyToken(ctx, "x"); !errors.Is(err, ErrAuthDisabled) {
		t.Fatalf("VerifyToken while disabled: got %v, want ErrAuthDisabled", err)
	}
	must(t, a.Enable(ctx, rootPassword))
	tok, exp, err := a.IssueToken(ctx, Principal{User: RootName})
	must(t, err)
	if want := clock.Now().Add(a.cfg.TokenTTL).Truncate(time.Second); !exp.Equal(want) {
		t.Fatalf("expires %v, want %v", exp, want)
	}
	var c claims
	if _, _, err := jwt.NewParser().ParseUnverified(tok, &c); err != nil {
		t.Fatal(err)
	}
	if c.Subject != RootName || !c.ExpiresAt.Equal(exp) || c.Revision != 1 || c.Generation != 1 {
		t.Fatalf("claims: got %+v", c)
	}
	if _, _, err := a.IssueToken(ctx, Principal{User: "ghost"}); !errors.Is(err, ErrUnauthenticated) {
		t.Fatalf("IssueToken for an unknown user: got %v, want ErrUnauthenticated", err)
	}
}

// TestTokenFromNewerState: a user added on A gets a token from A and uses
// it on B at once, though B's cache predates the user: the token's revision
// tells B to re-read.
func TestTokenFromNewerState(t *testing.T) {
	ctx := t.Context()
	store, clock, a := enabled(t)
	b := newTestAuthority(t, store, clock, nil)
	if _, err := b.Status(ctx); err != nil { // warm B's cache
		t.Fatal(err)
	}
	must(t, a.AddUser(ctx, "alice", "alice-password"))
	tok, _, err := a.IssueToken(ctx, Principal{User: "alice"})
	must(t, err)

	getsBefore, _ := store.counts()
	p, err := b.VerifyToken(ctx, tok)
	if err != nil || p.User != "alice" {
		t.Fatalf("B: got %+v, %v; want alice", p, err)
	}
	if gets, _ := store.counts(); gets-getsBefore != 1 {
		t.Fatalf("B read the store %d times, want 1", gets-getsBefore)
	}
	// A second use needs no read.
	if _, err := b.VerifyToken(ctx, tok); err != nil {
		t.Fatal(err)
	}
	if gets, _ := store.counts(); gets-getsBefore != 1 {
		t.Fatalf("B read the store %d times, want still 1", gets-getsBefore)
	}
	// A forged token does not make B read.
	forged := tamper(tok)
	if _, err := b.VerifyToken(ctx, forged); !errors.Is(err, ErrUnauthenticated) {
		t.Fatalf("forged: got %v, want ErrUnauthenticated", err)
	}
	if gets, _ := store.counts(); gets-getsBefore != 1 {
		t.Fatalf("a forged token made B read the store (%d reads)", gets-getsBefore)
	}
	// B fails closed if the re-read fails.
	c := newTestAuthority(t, store, clock, nil)
	if _, err := c.Status(ctx); err != nil {
		t.Fatal(err)
	}
	must(t, a.AddUser(ctx, "bob", "bob-password"))
	tok, _, err = a.IssueToken(ctx, Principal{User: "bob"})
	must(t, err)
	store.setErrs(errors.New("down"), nil)
	if _, err := c.VerifyToken(ctx, tok); !errors.Is(err, ErrUnavailable) {
		t.Fatalf("re-read failing: got %v, want ErrUnavailable", err)
	}
}

// tamper changes one character of a token's signature. It is the third
// from last: the last carries padding bits that decoding may ignore.
func tamper(tok string) string {
	b := []byte(tok)
	i := len(b) - 3
	if b[i] == 'A' {
		b[i] = 'B'
	} else {
		b[i] = 'A'
	}
	return string(b)
}
