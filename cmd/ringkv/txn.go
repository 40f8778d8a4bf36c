package main

import (
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"os"
	"strings"
	"time"

	"github.com/ringkv/ringkv/client"
	"github.com/ringkv/ringkv/consensus"
	"github.com/ringkv/ringkv/coordinator"
)

// maxTxnInputBytes bounds what `ringkv txn` reads: the transaction's own
// limit (2 MiB of keys and values) with room for JSON escaping.
const maxTxnInputBytes = 16 << 20

// txnCommand runs `ringkv txn [FILE]`: a transaction in POST /api/txn's
// JSON form, read from FILE or stdin ("-" or none), through the Go client,
// printed as /api/txn answers it. A transaction whose compares fail is
// not an error (succeeded false); a refusal or unknown outcome is (exit
// status 1).
func txnCommand(ctx context.Context, args []string, stdin io.Reader, stdout, stderr io.Writer) (err error) {
	defer func() { err = authHint(err) }()
	fs := flag.NewFlagSet("txn", flag.ContinueOnError)
	fs.SetOutput(stderr)
	addr := fs.String("addr", envDefault("RINGKV_ADDR", "127.0.0.1:9001"), "drpc address of any node; a comma-separated list is tried in turn (env RINGKV_ADDR)")
	secure := addSecureFlags(fs)
	timeout := fs.Duration("timeout", 10*time.Second, "request timeout")
	pos, err := parseInterleaved(fs, args)
	if err != nil {
		return err
	}
	if len(pos) > 1 {
		return fmt.Errorf("%w: txn takes at most one argument (FILE, or - for stdin), got %d", errUsage, len(pos))
	}
	in := stdin
	if len(pos) == 1 && pos[0] != "-" {
		f, err := os.Open(pos[0])
		if err != nil {
			return fmt.Errorf("txn: %w", err)
		}
		defer func() { _ = f.Close() }() // read only
		in = f
	}
	req, err := coordinator.DecodeTxnJSON(io.LimitReader(in, maxTxnInputBytes))
	if err != nil {
		return fmt.Errorf("%w: %w", errUsage, err)
	}
	opts, err := secure.clientOptions()
	if err != nil {
		return err
	}
	c, err := client.New(strings.Split(*addr, ","), append(opts, client.WithRequestTimeout(*timeout))...)
	if err != nil {
		return fmt.Errorf("txn: %w", err)
	}
	defer func() { _ = c.Close() }()
	ctx, cancel := context.WithTimeout(ctx, *timeout)
	defer cancel()
	t := c.Txn(ctx)
	for _, cmp := range req.Compares {
		k := string(cmp.Key)
		switch cmp.Kind {
		case consensus.CompareValue:
			t.If(client.ValueEquals(k, cmp.Value))
		case consensus.CompareAbsent:
			t.If(client.Absent(k))
		case consensus.CompareVersion:
			t.If(client.VersionEquals(k, uint64(cmp.Version)))
		case consensus.CompareTTLAtLeast:
			t.If(client.TTLAtLeast(k, cmp.TTL))
		}
	}
	t.Then(clientOps(req.Success)...).Else(clientOps(req.Failure)...)
	res, err := t.Commit()
	if err != nil {
		return err //nolint:wrapcheck // the client's errors name the call
	}
	branch := req.Success
	if !res.Succeeded {
		branch = req.Failure
	}
	out := coordinator.NewTxnAnswer(res.Succeeded, branch, func(i int) (bool, []byte, uint64, time.Duration, bool) {
		if i >= len(res.Results) {
			return false, nil, 0, 0, false
		}
		got := res.Results[i]
		return got.Found, got.Value, got.Version, got.TTL, true
	})
	enc := json.NewEncoder(stdout)
	if err := enc.Encode(out); err != nil {
		return fmt.Errorf("txn: write answer: %w", err)
	}
	return nil
}

// clientOps turns decoded ops into the client's.
func clientOps(ops []coordinator.TxnOp) []client.Op {
	out := make([]client.Op, len(ops))
	for i, op := range ops {
		k := string(op.Key)
		switch op.Kind {
		case consensus.OpGet:
			out[i] = client.GetOp(k)
		case consensus.OpDelete:
			out[i] = client.DeleteOp(k)
		default:
			var opts []client.CallOption
			if op.TTL > 0 {
				opts = append(opts, client.WithTTL(op.TTL))
			}
			out[i] = client.SetOp(k, op.Value, opts...)
		}
	}
	return out
}
