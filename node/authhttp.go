package node

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strings"
	"time"

	"github.com/ringkv/ringkv/auth"
	"github.com/ringkv/ringkv/coordinator"
)

// Users, roles and authentication over HTTP, served by every secure node
// (an insecure node answers 400: authentication needs TLS). Bodies are
// JSON; errors are {"error": "..."}: 400 bad input, 401 bad credentials,
// 403 not allowed, 404 unknown user or role, 409 exists already or auth
// in the wrong state, 503 the rules cannot be read.
//
//	POST   /api/auth/login     {"user","password"} -> {"token","expires"}  (open)
//	POST   /api/auth/enable    {"root_password"}    (admin; while disabled: anyone)
//	POST   /api/auth/disable                        (admin)
//	GET    /api/auth/status                         (admin)
//	GET    /api/auth/users                          (admin)
//	POST   /api/auth/users     {"name","password","roles"}
//	POST   /api/auth/passwd    {"name","password"}
//	DELETE /api/auth/users?name=
//	POST   /api/auth/users/grant  {"user","role"}
//	POST   /api/auth/users/revoke {"user","role"}
//	GET    /api/auth/roles
//	POST   /api/auth/roles     {"name","permissions":[{"access","prefix"}]}
//	DELETE /api/auth/roles?name=
//	POST   /api/auth/roles/grant  {"role","access","prefix"}
//	POST   /api/auth/roles/revoke {"role","access","prefix"}
//
// guardHTTP has already authorized the caller as admin for all but login.

// maxAuthBody bounds an auth request's body.
const maxAuthBody = 64 << 10

// LoginAnswer is the body of a successful POST /api/auth/login.
type LoginAnswer struct {
	Token   string    `json:"token"`
	Expires time.Time `json:"expires"`
}

// PermissionJSON is a permission in the auth API: access is read, write,
// readwrite, admin or metrics.
type PermissionJSON struct {
	Access string `json:"access"`
	Prefix string `json:"prefix,omitempty"`
}

// RoleJSON is a role in the auth API.
type RoleJSON struct {
	Name        string           `json:"name"`
	Permissions []PermissionJSON `json:"permissions"`
}

// UserJSON is a user in the auth API.
type UserJSON struct {
	Name  string   `json:"name"`
	Roles []string `json:"roles"`
}

// AuthStatus is the body of GET /api/auth/status.
type AuthStatus struct {
	Enabled  bool   `json:"enabled"`
	Users    int    `json:"users"`
	Roles    int    `json:"roles"`
	Revision uint64 `json:"revision"`
}

func (n *Node) registerAuth(mux *http.ServeMux) {
	mux.HandleFunc("POST /api/auth/login", n.authLogin)
	mux.HandleFunc("POST /api/auth/enable", n.authEnable)
	mux.HandleFunc("POST /api/auth/disable", n.authDo(func(r *http.Request, _ *authBody) (any, error) {
		return nil, n.authority.Disable(r.Context())
	}))
	mux.HandleFunc("GET /api/auth/status", n.authDo(func(r *http.Request, _ *authBody) (any, error) {
		st, err := n.authority.Status(r.Context())
		return AuthStatus{Enabled: st.Enabled, Users: st.Users, Roles: st.Roles, Revision: st.Revision}, err
	}))
	mux.HandleFunc("GET /api/auth/users", n.authDo(func(r *http.Request, _ *authBody) (any, error) {
		us, err := n.authority.ListUsers(r.Context())
		out := []UserJSON{}
		for _, u := range us {
			out = append(out, UserJSON{Name: u.Name, Roles: append([]string{}, u.Roles...)})
		}
		return map[string]any{"users": out}, err
	}))
	mux.HandleFunc("POST /api/auth/users", n.authDo(func(r *http.Request, b *authBody) (any, error) {
		return nil, n.authority.AddUser(r.Context(), b.Name, b.Password, b.Roles...)
	}))
	mux.HandleFunc("POST /api/auth/passwd", n.authDo(func(r *http.Request, b *authBody) (any, error) {
		return nil, n.authority.SetPassword(r.Context(), b.Name, b.Password)
	}))
	mux.HandleFunc("DELETE /api/auth/users", n.authDo(func(r *http.Request, _ *authBody) (any, error) {
		return nil, n.authority.DeleteUser(r.Context(), r.URL.Query().Get("name"))
	}))
	mux.HandleFunc("POST /api/auth/users/grant", n.authDo(func(r *http.Request, b *authBody) (any, error) {
		return nil, n.authority.GrantRole(r.Context(), b.User, b.Role)
	}))
	mux.HandleFunc("POST /api/auth/users/revoke", n.authDo(func(r *http.Request, b *authBody) (any, error) {
		return nil, n.authority.RevokeRole(r.Context(), b.User, b.Role)
	}))
	mux.HandleFunc("GET /api/auth/roles", n.authDo(func(r *http.Request, _ *authBody) (any, error) {
		rs, err := n.authority.ListRoles(r.Context())
		out := []RoleJSON{}
		for _, role := range rs {
			rj := RoleJSON{Name: role.Name, Permissions: []PermissionJSON{}}
			for _, p := range role.Permissions {
				rj.Permissions = append(rj.Permissions, PermissionJSON{Access: p.Access.String(), Prefix: p.Prefix})
			}
			out = append(out, rj)
		}
		return map[string]any{"roles": out}, err
	}))
	mux.HandleFunc("POST /api/auth/roles", n.authDo(func(r *http.Request, b *authBody) (any, error) {
		perms := make([]auth.Permission, 0, len(b.Permissions))
		for _, pj := range b.Permissions {
			p, err := parsePermission(pj.Access, pj.Prefix)
			if err != nil {
				return nil, err
			}
			perms = append(perms, p)
		}
		return nil, n.authority.AddRole(r.Context(), b.Name, perms...)
	}))
	mux.HandleFunc("DELETE /api/auth/roles", n.authDo(func(r *http.Request, _ *authBody) (any, error) {
		return nil, n.authority.DeleteRole(r.Context(), r.URL.Query().Get("name"))
	}))
	mux.HandleFunc("POST /api/auth/roles/grant", n.authDo(func(r *http.Request, b *authBody) (any, error) {
		p, err := parsePermission(b.Access, b.Prefix)
		if err != nil {
			return nil, err
		}
		return nil, n.authority.Grant(r.Context(), b.Role, p)
	}))
	mux.HandleFunc("POST /api/auth/roles/revoke", n.authDo(func(r *http.Request, b *authBody) (any, error) {
		p, err := parsePermission(b.Access, b.Prefix)
		if err != nil {
			return nil, err
		}
		return nil, n.authority.Revoke(r.Context(), b.Role, p)
	}))
	mux.HandleFunc("/api/auth/", func(w http.ResponseWriter, r *http.Request) {
		writeJSON(w, http.StatusNotFound, map[string]string{"error": "no such endpoint: " + r.Method + " " + r.URL.Path})
	})
}

// authBody is every field an auth request may carry.
type authBody struct {
	User         string           `json:"user"`
	Password     string           `json:"password"`
	Name         string           `json:"name"`
	Roles        []string         `json:"roles"`
	Role         string           `json:"role"`
	Access       string           `json:"access"`
	Prefix       string           `json:"prefix"`
	Permissions  []PermissionJSON `json:"permissions"`
	RootPassword string           `json:"root_password"`
}

// errNeedsTLS answers the auth API of an insecure node.
var errNeedsTLS = fmt.Errorf("%w: authentication needs TLS: start every node with --certs-dir", auth.ErrInvalid)

// authDo serves one auth endpoint: it decodes the body (if any), calls
// do and answers its result (or {"ok":true}) or its error.
func (n *Node) authDo(do func(r *http.Request, b *authBody) (any, error)) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		var b authBody
		if n.authority == nil {
			writeAuthError(w, errNeedsTLS)
			return
		}
		if r.Method == http.MethodPost {
			if err := decodeAuthBody(r, &b); err != nil {
				writeAuthError(w, err)
				return
			}
		}
		out, err := do(r, &b)
		if err != nil {
			writeAuthError(w, err)
			return
		}
		if out == nil {
			out = map[string]bool{"ok": true}
		}
		writeJSON(w, http.StatusOK, out)
	}
}

func decodeAuthBody(r *http.Request, b *authBody) error {
	dec := json.NewDecoder(io.LimitReader(r.Body, maxAuthBody))
	dec.DisallowUnknownFields()
	if err := dec.Decode(b); err != nil && !errors.Is(err, io.EOF) {
		return fmt.Errorf("%w: body: %w", auth.ErrInvalid, err)
	}
	return nil
}

func (n *Node) authLogin(w http.ResponseWriter, r *http.Request) {
	if n.authority == nil {
		writeAuthError(w, errNeedsTLS)
		return
	}
	var b authBody
	if err := decodeAuthBody(r, &b); err != nil {
		writeAuthError(w, err)
		return
	}
	token, exp, err := login{n}.Login(r.Context(), b.User, b.Password)
	if err != nil {
		writeAuthError(w, err)
		return
	}
	writeJSON(w, http.StatusOK, LoginAnswer{Token: token, Expires: exp})
}

// authEnable turns authentication on. guardHTTP lets anyone through while
// it is off (everything is allowed then); once on, only an admin.
func (n *Node) authEnable(w http.ResponseWriter, r *http.Request) {
	n.authDo(func(r *http.Request, b *authBody) (any, error) {
		if b.RootPassword == "" {
			return nil, fmt.Errorf("%w: root_password is required", auth.ErrInvalid)
		}
		return nil, n.authority.Enable(r.Context(), b.RootPassword)
	})(w, r)
}

// parsePermission parses an access name and prefix.
func parsePermission(access, prefix string) (auth.Permission, error) {
	for _, a := range []auth.Access{auth.Read, auth.Write, auth.ReadWrite, auth.Admin, auth.Metrics} {
		if strings.EqualFold(a.String(), access) {
			return auth.Permission{Access: a, Prefix: prefix}, nil
		}
	}
	return auth.Permission{}, fmt.Errorf("%w: unknown access %q (read, write, readwrite, admin or metrics)", auth.ErrInvalid, access)
}

// writeAuthError maps an auth error to its HTTP status.
func writeAuthError(w http.ResponseWriter, err error) {
	code := coordinator.StatusFor(err)
	switch {
	case errors.Is(err, auth.ErrInvalid):
		code = http.StatusBadRequest
	case errors.Is(err, auth.ErrUnknownUser), errors.Is(err, auth.ErrUnknownRole):
		code = http.StatusNotFound
	case errors.Is(err, auth.ErrUserExists), errors.Is(err, auth.ErrRoleExists), errors.Is(err, auth.ErrAlreadyEnabled),
		errors.Is(err, auth.ErrAuthDisabled), errors.Is(err, auth.ErrNotGranted), errors.Is(err, auth.ErrConflict):
		code = http.StatusConflict
	}
	if errors.Is(err, auth.ErrUnauthenticated) {
		w.Header().Set("WWW-Authenticate", `Bearer realm="ringkv", Basic realm="ringkv"`)
	}
	writeJSON(w, code, map[string]string{"error": err.Error()})
}
