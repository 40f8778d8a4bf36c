package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"strings"
	"time"

	"github.com/ringkv/ringkv/client"
)

// clientArgs are how many positional arguments each client command takes.
var clientArgs = map[string][2]int{
	"get": {1, 1}, "set": {2, 2}, "del": {1, 1}, "delete": {1, 1}, "list": {0, 1}, "cas": {2, 3},
	"ttl": {1, 1}, "expire": {2, 2}, "persist": {1, 1},
}

// clientCommand runs get, set, del, list, cas, ttl, expire and persist through the Go client
// library against any node's drpc address: over TLS with --certs-dir, as
// the user of a client certificate (--user) or logged in with a password
// (--user, --password-file). A refusal (not authenticated, permission
// denied) is an error saying what to do: exit status 1.
func clientCommand(ctx context.Context, cmd string, args []string, stdout, stderr io.Writer) (err error) {
	defer func() { err = authHint(err) }()
	fs := flag.NewFlagSet(cmd, flag.ContinueOnError)
	fs.SetOutput(stderr)
	addr := fs.String("addr", envDefault("RINGKV_ADDR", "127.0.0.1:9001"), "drpc address of any node; a comma-separated list is tried in turn (env RINGKV_ADDR)")
	secure := addSecureFlags(fs)
	levelName := fs.String("consistency", "quorum", "one, quorum, all or linearizable (cas is always linearizable)")
	limit := fs.Int("limit", 0, "list: at most this many pairs (0: server default)")
	absent := fs.Bool("absent", false, "cas: set KEY to VALUE only if KEY is absent (cas KEY VALUE --absent)")
	timeout := fs.Duration("timeout", 10*time.Second, "request timeout")
	ttl := fs.Duration("ttl", 0, "set, cas: the value expires this long after it is written (0: never)")
	pos, err := parseInterleaved(fs, args)
	if err != nil {
		return err
	}
	want := clientArgs[cmd]
	if len(pos) < want[0] || len(pos) > want[1] {
		return fmt.Errorf("%w: %s takes %d..%d arguments, got %d", errUsage, cmd, want[0], want[1], len(pos))
	}
	if cmd == "cas" && (len(pos) == 2) != *absent {
		return fmt.Errorf("%w: cas takes KEY EXPECTED NEW, or KEY VALUE --absent", errUsage)
	}
	level, err := client.ParseConsistency(*levelName)
	if err != nil {
		return fmt.Errorf("%w: %w", errUsage, err)
	}
	at := client.WithConsistency(level)
	writeOpts := []client.CallOption{at}
	switch {
	case *ttl < 0:
		return fmt.Errorf("%w: --ttl %s is negative", errUsage, *ttl)
	case *ttl > 0 && cmd != "set" && cmd != "cas":
		return fmt.Errorf("%w: --ttl is for set and cas", errUsage)
	case *ttl > 0:
		writeOpts = append(writeOpts, client.WithTTL(*ttl))
	}
	var expireAfter time.Duration
	if cmd == "expire" {
		if expireAfter, err = time.ParseDuration(pos[1]); err != nil || expireAfter <= 0 {
			return fmt.Errorf("%w: expire takes a positive duration like 30s, got %q", errUsage, pos[1])
		}
	}
	opts, err := secure.clientOptions()
	if err != nil {
		return err
	}
	c, err := client.New(strings.Split(*addr, ","), append(opts, client.WithRequestTimeout(*timeout))...)
	if err != nil {
		return fmt.Errorf("%s: %w", cmd, err)
	}
	defer func() { _ = c.Close() }()
	ctx, cancel := context.WithTimeout(ctx, *timeout)
	defer cancel()
	switch cmd {
	case "get":
		v, err := c.Get(ctx, pos[0], at)
		if err != nil {
			return err //nolint:wrapcheck // the client's errors name the call and key
		}
		fmt.Fprintln(stdout, string(v))
		return nil
	case "set":
		err = c.Set(ctx, pos[0], []byte(pos[1]), writeOpts...)
	case "ttl":
		left, err := c.TTL(ctx, pos[0], at)
		if err != nil {
			return err //nolint:wrapcheck // the client's errors name the call and key
		}
		if left == 0 {
			fmt.Fprintln(stdout, "none")
		} else {
			fmt.Fprintln(stdout, left.Round(time.Millisecond))
		}
		return nil
	case "expire":
		err = c.Expire(ctx, pos[0], expireAfter, at)
	case "persist":
		err = c.Persist(ctx, pos[0], at)
	case "del", "delete":
		err = c.Delete(ctx, pos[0], at)
	case "list":
		prefix := ""
		if len(pos) == 1 {
			prefix = pos[0]
		}
		kvs, err := c.List(ctx, prefix, at, client.WithLimit(*limit))
		if err != nil {
			return err //nolint:wrapcheck // the client's errors name the call
		}
		for _, kv := range kvs {
			fmt.Fprintf(stdout, "%s\t%s\n", kv.Key, kv.Value)
		}
		return nil
	case "cas":
		if *absent {
			err = c.PutIfAbsent(ctx, pos[0], []byte(pos[1]), writeOpts...)
		} else {
			err = c.CompareAndSet(ctx, pos[0], []byte(pos[1]), []byte(pos[2]), writeOpts...)
		}
		var me *client.MismatchError
		if errors.As(err, &me) {
			if me.Found {
				return fmt.Errorf("cas %q: not swapped: current value is %q: %w", pos[0], me.Current, err)
			}
			return fmt.Errorf("cas %q: not swapped: key is absent: %w", pos[0], err)
		}
	}
	if err != nil {
		return err //nolint:wrapcheck // the client's errors name the call and key
	}
	fmt.Fprintln(stdout, "OK")
	return nil
}

// authHint adds what to do to a refusal of the cluster.
func authHint(err error) error {
	switch {
	case errors.Is(err, client.ErrUnauthenticated):
		return fmt.Errorf("%w (not authenticated: give --certs-dir and --user for a client certificate, or --user and --password-file)", err)
	case errors.Is(err, client.ErrPermissionDenied):
		return fmt.Errorf("%w (an admin can grant it: ringkv role grant, ringkv user grant)", err)
	}
	return err
}

// clientOptions returns the client library options the flags describe:
// none without --certs-dir; TLS trusting certs-dir/ca.crt and presenting
// client.USER.crt (if there is one) with it; a login as --user with
// --password-file. Errors are usage errors.
func (f secureFlags) clientOptions() ([]client.Option, error) {
	if *f.certsDir == "" {
		if *f.passwordFile != "" {
			return nil, fmt.Errorf("%w: --password-file needs --certs-dir: passwords travel only over TLS", errUsage)
		}
		return nil, nil
	}
	opts := []client.Option{client.WithCertsDir(*f.certsDir, *f.user)}
	if *f.passwordFile != "" {
		if *f.user == "" {
			return nil, fmt.Errorf("%w: --password-file needs --user", errUsage)
		}
		pw, err := readPasswordFile(*f.passwordFile)
		if err != nil {
			return nil, err
		}
		opts = append(opts, client.WithCredentials(*f.user, pw))
	}
	return opts, nil
}
