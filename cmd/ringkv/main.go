// Command ringkv is the single ringkv binary: a server (serve), a local
// three-node cluster in one process (dev), and client subcommands.
//
//	ringkv serve --id n1 --data ./data/n1 --http 127.0.0.1:8081 --rpc 127.0.0.1:9001 --gossip 127.0.0.1:7001
//	ringkv dev
//	ringkv set user:1001 "John Doe"
//	ringkv get user:1001
//	ringkv list user:
//	ringkv del user:1001
//	ringkv cas lock old new
//	ringkv cluster status
//	ringkv cluster remove n3
//	ringkv cluster repair --partition 7
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"syscall"
)

const usage = `ringkv: a distributed key-value store

Usage:
  ringkv serve [flags]              run one node
  ringkv dev [flags]                run a local 3-node cluster in this process
  ringkv get KEY [flags]            read a key
  ringkv set KEY VALUE [flags]      write a key (--ttl 30s: expiring)
  ringkv del KEY [flags]            delete a key
  ringkv list [PREFIX] [flags]      list keys with a prefix
  ringkv cas KEY EXPECTED NEW       compare-and-set (linearizable)
  ringkv cas KEY VALUE --absent     put-if-absent (linearizable)
  ringkv txn [FILE]                 run a transaction given as /api/txn's JSON
                                    (stdin without FILE); prints the answer
  ringkv ttl KEY                    time a key has left ("none": never expires)
  ringkv expire KEY DURATION        make a key expire; persist KEY: never
  ringkv cluster status [flags]     show members and raft convergence
  ringkv cluster leave|remove|admit ID [flags]
                                    change a member's ring membership
  ringkv cluster repair [--partition P]  run anti-entropy on every member now
  ringkv cluster drain|undrain ID   take a member out of service (and back)
                                    without stopping it
  ringkv cluster split              double the partitions online (each
                                    partition's keys and group split in two)
  ringkv backup --to DIR [--since T0|DIR]
                                    back up the cluster as of one timestamp
                                    (--since: incremental), with a manifest
  ringkv backup verify DIR          check a backup's manifest and checksums
  ringkv restore --from DIR [--from DIR ...]
                                    merge backups into a running cluster
  ringkv certs create-ca|create-node|create-client|create-gossip-key|list [flags]
                                    make and list TLS certificates (--certs-dir)
  ringkv auth enable|disable|status [flags]   turn authentication on or off
  ringkv user add|passwd|del|list|grant|revoke ...   manage users
  ringkv role add|del|list|grant|revoke ...          manage roles
  ringkv dev --secure               a local cluster with TLS and authentication
  ringkv version                    print the version, wire protocol and data format
  ringkv bench [flags]              load a cluster (a local one by default,
                                    --secure for a secure one), optionally
                                    beside etcd (--compare), and report
  ringkv ring simulate [flags]      run the claim on a made-up ring of many
                                    members (--members 1000 --partitions 4096):
                                    balance, movement of a join and a leave,
                                    the claim's run time

The data, backup and restore commands talk drpc to any node (--addr, env RINGKV_ADDR, default
127.0.0.1:9001) through the Go client library and take
--consistency one|quorum|all|linearizable. The cluster, auth, user and role
commands talk HTTP to any node (--http-addr, env RINGKV_HTTP_ADDR, default
127.0.0.1:8081). Against a secure cluster every client command takes
--certs-dir (ca.crt, client.USER.crt), --user and --password-file.
serve and dev log to stderr: --log-level debug|info|warn|error,
--log-format text|json (env RINGKV_LOG_LEVEL, RINGKV_LOG_FORMAT).
Run 'ringkv COMMAND -h' for a command's flags.
`

// errUsage marks command-line mistakes (exit status 2).
var errUsage = errors.New("usage")

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	err := run(ctx, os.Args[1:], os.Stdout, os.Stderr)
	stop()
	switch {
	case err == nil:
	case errors.Is(err, flag.ErrHelp):
	case errors.Is(err, errUsage):
		fmt.Fprintln(os.Stderr, "ringkv:", err)
		os.Exit(2)
	default:
		fmt.Fprintln(os.Stderr, "ringkv:", err)
		os.Exit(1)
	}
}

func run(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	if len(args) == 0 {
		fmt.Fprint(stderr, usage)
		return fmt.Errorf("%w: no command given", errUsage)
	}
	cmd, rest := args[0], args[1:]
	switch cmd {
	case "serve":
		return serve(ctx, rest, stderr)
	case "dev":
		return dev(ctx, rest, stdout, stderr)
	case "get", "set", "del", "delete", "list", "cas", "ttl", "expire", "persist":
		return clientCommand(ctx, cmd, rest, stdout, stderr)
	case "txn":
		return txnCommand(ctx, rest, os.Stdin, stdout, stderr)
	case "cluster":
		return clusterCommand(ctx, rest, stdout, stderr)
	case "bench":
		return benchCommand(ctx, rest, stdout, stderr)
	case "ring":
		return ringCommand(rest, stdout, stderr)
	case "backup":
		return backupCommand(ctx, rest, stdout, stderr)
	case "restore":
		return restoreCommand(ctx, rest, stdout, stderr)
	case "certs":
		return certsCommand(rest, stdout, stderr)
	case "auth", "user", "role":
		return authCommand(ctx, cmd, rest, stdout, stderr)
	case "version", "--version":
		return versionCommand(rest, stdout)
	case "help", "-h", "--help":
		fmt.Fprint(stdout, usage)
		return nil
	default:
		fmt.Fprint(stderr, usage)
		return fmt.Errorf("%w: unknown command %q", errUsage, cmd)
	}
}
