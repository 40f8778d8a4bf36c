package auth

import (
	"errors"
	"strings"
	"testing"
)

func TestAuthorize(t *testing.T) {
	ctx := t.Context()
	_, _, a := enabled(t)
	for _, r := range []struct {
		name  string
		perms []Permission
	}{
		{"reader-a", []Permission{{Access: Read, Prefix: "a/"}}},
		{"rw-c", []Permission{{Access: ReadWrite, Prefix: "c/"}}},
		{"writer-w", []Permission{{Access: Write, Prefix: "w/"}}},
		{"reader-all", []Permission{{Access: Read}}},
		{"reader-bin", []Permission{{Access: Read, Prefix: "\x00\xff"}}},
		{"admin", []Permission{{Access: Admin}}},
		{"metrics", []Permission{{Access: Metrics}}},
	} {
		must(t, a.AddRole(ctx, r.name, r.perms...))
	}
	for user, roles := range map[string][]string{
		"alice":  {"reader-a"},
		"carol":  {"rw-c"},
		"walt":   {"writer-w"},
		"rhea":   {"reader-all"},
		"bina":   {"reader-bin"},
		"adam":   {"admin"},
		"mia":    {"metrics"},
		"multi":  {"reader-a", "writer-w"},
		"nobody": nil,
		"boss":   {RootName},
	} {
		must(t, a.AddUser(ctx, user, "password", roles...))
	}

	get := func(k string) Action { return Action{Op: OpRead, Key: []byte(k)} }
	list := func(p string) Action { return Action{Op: OpList, Key: []byte(p)} }
	put := func(k string) Action { return Action{Op: OpWrite, Key: []byte(k)} }
	admin, metrics := Action{Op: OpAdmin}, Action{Op: OpMetrics}

	tests := []struct {
		user string
		act  Action
		need string // "" = allowed; else the missing permission as the error names it
	}{
		// Read on a prefix: keys and lists at or under it, nothing above or beside.
		{"alice", get("a/x"), ""},
		{"alice", get("a/"), ""},
		{"alice", list("a/"), ""},
		{"alice", list("a/b/"), ""},
		{"alice", list(""), `read on prefix ""`},
		{"alice", list("a"), `read on prefix "a"`},
		{"alice", list("b"), `read on prefix "b"`},
		{"alice", get("a"), `read on prefix "a"`},
		{"alice", get("b/x"), `read on prefix "b/x"`},
		{"alice", put("a/x"), `write on prefix "a/x"`},
		{"alice", admin, "admin"},
		{"alice", metrics, "metrics"},
		// ReadWrite covers both.
		{"carol", get("c/1"), ""},
		{"carol", list("c/"), ""},
		{"carol", put("c/1"), ""},
		{"carol", put("d/1"), `write on prefix "d/1"`},
		{"carol", list("c"), `read on prefix "c"`},
		// Write alone does not read.
		{"walt", put("w/1"), ""},
		{"walt", get("w/1"), `read on prefix "w/1"`},
		{"walt", list("w/"), `read on prefix "w/"`},
		// Read on "" reads everything, writes nothing.
		{"rhea", list(""), ""},
		{"rhea", get("anything"), ""},
		{"rhea", get(""), ""},
		{"rhea", put("anything"), `write on prefix "anything"`},
		// Prefixes are bytes.
		{"bina", get("\x00\xff\x01"), ""},
		{"bina", get("\x00\xfe"), `read on prefix "\x00\xfe"`},
		// Admin and metrics are separate and grant no keys.
		{"adam", admin, ""},
		{"adam", metrics, "metrics"},
		{"adam", get("a/x"), `read on prefix "a/x"`},
		{"mia", metrics, ""},
		{"mia", admin, "admin"},
		// Several roles add up.
		{"multi", get("a/1"), ""},
		{"multi", put("w/1"), ""},
		{"multi", put("a/1"), `write on prefix "a/1"`},
		// No roles, nothing.
		{"nobody", get("a/x"), `read on prefix "a/x"`},
		{"nobody", list(""), `read on prefix ""`},
		// Root (the user, or another holder of the role) does everything.
		{RootName, list(""), ""},
		{RootName, put("\x00ringkv/x"), ""},
		{RootName, admin, ""},
		{RootName, metrics, ""},
		{"boss", put("z"), ""},
		{"boss", admin, ""},
	}
	for _, tc := range tests {
		t.Run(tc.user+"/"+tc.act.Op.String()+"/"+string(tc.act.Key), func(t *testing.T) {
			err := a.Authorize(ctx, Principal{User: tc.user, Method: MethodPassword}, tc.act)
			if tc.need == "" {
				if err != nil {
					t.Fatalf("got %v, want allowed", err)
				}
				return
			}
			var pe *PermissionError
			if !errors.Is(err, ErrPermissionDenied) || !errors.As(err, &pe) {
				t.Fatalf("got %v, want a *PermissionError", err)
			}
			if pe.User != tc.user || pe.Need.String() != tc.need {
				t.Fatalf("got user %q need %q, want %q need %q", pe.User, pe.Need, tc.user, tc.need)
			}
			if want := `auth: permission denied: user "` + tc.user + `" needs ` + tc.need; err.Error() != want {
				t.Fatalf("got message %q, want %q", err, want)
			}
		})
	}

	t.Run("deleted user", func(t *testing.T) {
		must(t, a.DeleteUser(ctx, "alice"))
		err := a.Authorize(ctx, Principal{User: "alice"}, get("a/x"))
		if !errors.Is(err, ErrUnauthenticated) {
			t.Fatalf("got %v, want ErrUnauthenticated", err)
		}
	})
	t.Run("unknown op", func(t *testing.T) {
		err := a.Authorize(ctx, Principal{User: RootName}, Action{Op: 99})
		if !errors.Is(err, ErrInvalid) {
			t.Fatalf("got %v, want ErrInvalid", err)
		}
	})
	t.Run("revoked grant", func(t *testing.T) {
		must(t, a.Revoke(ctx, "rw-c", Permission{Access: ReadWrite, Prefix: "c/"}))
		if err := a.Authorize(ctx, Principal{User: "carol"}, get("c/1")); !errors.Is(err, ErrPermissionDenied) {
			t.Fatalf("got %v, want ErrPermissionDenied at once on the Authority that made the change", err)
		}
	})
}

func TestNames(t *testing.T) {
	tests := []struct {
		got, want string
	}{
		{Read.String(), "read"},
		{Write.String(), "write"},
		{ReadWrite.String(), "readwrite"},
		{Admin.String(), "admin"},
		{Metrics.String(), "metrics"},
		{Access(0).String(), "Access(0)"},
		{OpRead.String(), "read"},
		{OpList.String(), "list"},
		{OpWrite.String(), "write"},
		{OpAdmin.String(), "admin"},
		{OpMetrics.String(), "metrics"},
		{Op(0).String(), "Op(0)"},
		{MethodPassword.String(), "password"},
		{MethodCertificate.String(), "certificate"},
		{MethodToken.String(), "token"},
		{Method(0).String(), "Method(0)"},
		{Permission{Access: ReadWrite, Prefix: "acct/"}.String(), `readwrite on prefix "acct/"`},
		{Permission{Access: Read, Prefix: strings.Repeat("k", 100)}.String(), `read on prefix "` + strings.Repeat("k", 64) + `"...`},
		{Permission{Access: Admin}.String(), "admin"},
	}
	for _, tc := range tests {
		if tc.got != tc.want {
			t.Errorf("got %q, want %q", tc.got, tc.want)
		}
	}
}
