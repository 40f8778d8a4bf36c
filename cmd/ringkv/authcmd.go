package main

import (
	"context"
	"flag"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/ringkv/ringkv/node"
)

const authUsage = `ringkv auth enable --new-password-file F   turn authentication on; F holds root's password
ringkv auth disable|status
ringkv user add NAME --new-password-file F [--roles r1,r2]
ringkv user passwd NAME --new-password-file F
ringkv user del NAME | list | grant USER ROLE | revoke USER ROLE
ringkv role add NAME [ACCESS[:PREFIX]...]          ACCESS: read, write, readwrite, admin, metrics
ringkv role del NAME | list | grant ROLE ACCESS [PREFIX] | revoke ROLE ACCESS [PREFIX]
(all take --http-addr HOST:PORT (a node's HTTP address, env RINGKV_HTTP_ADDR), --certs-dir, --user, --password-file)`

// authCommand runs `ringkv auth|user|role ...` against a node's
// /api/auth endpoints (node/authhttp.go).
func authCommand(ctx context.Context, cmd string, args []string, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet(cmd, flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.Usage = func() { fmt.Fprintln(stderr, authUsage); fs.PrintDefaults() }
	httpAddr := addHTTPAddrFlag(fs)
	timeout := fs.Duration("timeout", 30*time.Second, "request timeout")
	newPassword := fs.String("new-password-file", "", "file whose first line is the new password (auth enable, user add, user passwd)")
	roles := fs.String("roles", "", "user add: comma-separated roles")
	sec := addSecureFlags(fs)
	pos, err := parseInterleaved(fs, args)
	if err != nil {
		return err
	}
	if len(pos) == 0 {
		return fmt.Errorf("%w: %s needs a subcommand\n%s", errUsage, cmd, authUsage)
	}
	addr, err := httpAddr.value(fs, stderr)
	if err != nil {
		return err
	}
	api, err := sec.newHTTPAPI()
	if err != nil {
		return err
	}
	ctx, cancel := context.WithTimeout(ctx, *timeout)
	defer cancel()
	password := func() (string, error) {
		if *newPassword == "" {
			return "", fmt.Errorf("%w: %s %s needs --new-password-file", errUsage, cmd, pos[0])
		}
		return readPasswordFile(*newPassword)
	}
	args = pos[1:]
	nargs := func(n ...int) error {
		for _, k := range n {
			if len(args) == k {
				return nil
			}
		}
		return fmt.Errorf("%w: %s %s: wrong number of arguments\n%s", errUsage, cmd, pos[0], authUsage)
	}
	post := func(path string, body any) error {
		if err := api.callJSON(ctx, http.MethodPost, api.url(addr, path), body, nil); err != nil {
			return fmt.Errorf("%s %s: %w", cmd, pos[0], err)
		}
		fmt.Fprintln(stdout, "OK")
		return nil
	}
	del := func(path, name string) error {
		u := api.url(addr, path+"?"+url.Values{"name": {name}}.Encode())
		if err := api.callJSON(ctx, http.MethodDelete, u, nil, nil); err != nil {
			return fmt.Errorf("%s %s: %w", cmd, pos[0], err)
		}
		fmt.Fprintln(stdout, "OK")
		return nil
	}
	switch cmd + " " + pos[0] {
	case "auth enable":
		pw, err := password()
		if err != nil {
			return err
		}
		return post("/api/auth/enable", map[string]string{"root_password": pw})
	case "auth disable":
		return post("/api/auth/disable", nil)
	case "auth status":
		var st node.AuthStatus
		if err := api.callJSON(ctx, http.MethodGet, api.url(addr, "/api/auth/status"), nil, &st); err != nil {
			return fmt.Errorf("auth status: %w", err)
		}
		state := "disabled"
		if st.Enabled {
			state = "enabled"
		}
		fmt.Fprintf(stdout, "authentication %s: %d users, %d roles (revision %d)\n", state, st.Users, st.Roles, st.Revision)
		return nil
	case "user add":
		if err := nargs(1); err != nil {
			return err
		}
		pw, err := password()
		if err != nil {
			return err
		}
		return post("/api/auth/users", map[string]any{"name": args[0], "password": pw, "roles": splitList(*roles)})
	case "user passwd":
		if err := nargs(1); err != nil {
			return err
		}
		pw, err := password()
		if err != nil {
			return err
		}
		return post("/api/auth/passwd", map[string]string{"name": args[0], "password": pw})
	case "user del":
		if err := nargs(1); err != nil {
			return err
		}
		return del("/api/auth/users", args[0])
	case "user grant", "user revoke":
		if err := nargs(2); err != nil {
			return err
		}
		return post("/api/auth/users/"+pos[0], map[string]string{"user": args[0], "role": args[1]})
	case "user list":
		var out struct {
			Users []node.UserJSON `json:"users"`
		}
		if err := api.callJSON(ctx, http.MethodGet, api.url(addr, "/api/auth/users"), nil, &out); err != nil {
			return fmt.Errorf("user list: %w", err)
		}
		tw := tabwriter.NewWriter(stdout, 0, 4, 2, ' ', 0)
		fmt.Fprintln(tw, "USER\tROLES")
		for _, u := range out.Users {
			fmt.Fprintf(tw, "%s\t%s\n", u.Name, orDash(strings.Join(u.Roles, ",")))
		}
		return tw.Flush() //nolint:wrapcheck // writing to the terminal
	case "role add":
		if len(args) < 1 {
			return nargs(1)
		}
		var perms []node.PermissionJSON
		for _, a := range args[1:] {
			access, prefix, _ := strings.Cut(a, ":")
			perms = append(perms, node.PermissionJSON{Access: access, Prefix: prefix})
		}
		return post("/api/auth/roles", map[string]any{"name": args[0], "permissions": perms})
	case "role del":
		if err := nargs(1); err != nil {
			return err
		}
		return del("/api/auth/roles", args[0])
	case "role grant", "role revoke":
		if err := nargs(2, 3); err != nil {
			return err
		}
		body := map[string]string{"role": args[0], "access": args[1]}
		if len(args) == 3 {
			body["prefix"] = args[2]
		}
		return post("/api/auth/roles/"+pos[0], body)
	case "role list":
		var out struct {
			Roles []node.RoleJSON `json:"roles"`
		}
		if err := api.callJSON(ctx, http.MethodGet, api.url(addr, "/api/auth/roles"), nil, &out); err != nil {
			return fmt.Errorf("role list: %w", err)
		}
		tw := tabwriter.NewWriter(stdout, 0, 4, 2, ' ', 0)
		fmt.Fprintln(tw, "ROLE\tPERMISSIONS")
		for _, r := range out.Roles {
			var ps []string
			for _, p := range r.Permissions {
				if p.Prefix != "" {
					ps = append(ps, fmt.Sprintf("%s:%q", p.Access, p.Prefix))
				} else {
					ps = append(ps, p.Access)
				}
			}
			fmt.Fprintf(tw, "%s\t%s\n", r.Name, orDash(strings.Join(ps, " ")))
		}
		return tw.Flush() //nolint:wrapcheck // writing to the terminal
	default:
		return fmt.Errorf("%w: unknown subcommand %s %s\n%s", errUsage, cmd, pos[0], authUsage)
	}
}
