// Command quickstart shows the ringkv Go client against a running cluster:
//
//	go run ./cmd/ringkv dev            # in one terminal
//	go run ./examples/quickstart       # in another
//
// It takes the drpc address of any node (-addr, default 127.0.0.1:9001;
// a comma-separated list is accepted) and exercises writes and reads at
// several consistency levels, compare-and-set, an async call and a batch.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"os"
	"time"

	"github.com/ringkv/ringkv/client"
)

func main() {
	addr := flag.String("addr", "127.0.0.1:9001", "drpc address(es) of any node, comma-separated")
	flag.Parse()
	if err := run(*addr); err != nil {
		fmt.Fprintln(os.Stderr, "quickstart:", err)
		os.Exit(1)
	}
}

func run(addr string) error {
	c, err := client.New([]string{addr})
	if err != nil {
		return fmt.Errorf("connect: %w", err)
	}
	defer func() { _ = c.Close() }()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()

	// The default level is quorum.
	if err := c.Set(ctx, "user:1001", []byte("John Doe")); err != nil {
		return fmt.Errorf("set: %w", err)
	}
	v, err := c.Get(ctx, "user:1001", client.WithConsistency(client.One))
	if err != nil {
		return fmt.Errorf("get: %w", err)
	}
	fmt.Printf("user:1001 = %s\n", v)

	// A lock taken with put-if-absent and moved on with compare-and-set.
	_ = c.Delete(ctx, "lock", client.WithConsistency(client.Linearizable)) // start clean
	if err := c.PutIfAbsent(ctx, "lock", []byte("a")); err != nil {
		return fmt.Errorf("put-if-absent: %w", err)
	}
	err = c.CompareAndSet(ctx, "lock", []byte("x"), []byte("b"))
	var mismatch *client.MismatchError
	if errors.As(err, &mismatch) {
		fmt.Printf("cas refused: lock holds %q\n", mismatch.Current)
	} else if err != nil {
		return fmt.Errorf("cas: %w", err)
	}
	if err := c.CompareAndSet(ctx, "lock", []byte("a"), []byte("b")); err != nil {
		return fmt.Errorf("cas: %w", err)
	}

	// An async read and a pipelined batch.
	f := c.GetAsync(ctx, "lock", client.WithConsistency(client.Linearizable))
	ops := []client.Op{
		client.SetOp("fruit:apple", []byte("red")),
		client.SetOp("fruit:banana", []byte("yellow")),
		client.GetOp("user:1001"),
	}
	for i, r := range c.Batch(ctx, ops) {
		if r.Err != nil {
			return fmt.Errorf("batch op %d: %w", i, r.Err)
		}
	}
	lock, err := f.Wait()
	if err != nil {
		return fmt.Errorf("async get: %w", err)
	}
	fmt.Printf("lock = %s\n", lock)

	kvs, err := c.List(ctx, "fruit:")
	if err != nil {
		return fmt.Errorf("list: %w", err)
	}
	for _, kv := range kvs {
		fmt.Printf("%s\t%s\n", kv.Key, kv.Value)
	}
	if _, err := c.Get(ctx, "no-such-key"); errors.Is(err, client.ErrNotFound) {
		fmt.Println("no-such-key: not found")
	}
	return nil
}
