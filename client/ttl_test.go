package client_test

import (
	"errors"
	"fmt"
	"testing"
	"time"

	"github.com/ringkv/ringkv/client"
)

// TTLs through the client library: WithTTL on every write, TTL, Expire
// and Persist at every level, and a lease taken again once it expires.
func TestClientTTL(t *testing.T) {
	nodes := startCluster(t, 3)
	c, err := client.New([]string{nodes[0].RPCAddr()})
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = c.Close() }()
	ctx := t.Context()
	for _, level := range []client.Consistency{client.One, client.Quorum, client.All, client.Linearizable} {
		t.Run(level.String(), func(t *testing.T) {
			at := client.WithConsistency(level)
			key := "ttl:" + level.String()
			if err := c.Set(ctx, key, []byte("v"), at, client.WithTTL(time.Minute)); err != nil {
				t.Fatal(err)
			}
			left, err := c.TTL(ctx, key, client.WithConsistency(client.All))
			if err != nil || left <= 30*time.Second || left > time.Minute { // a minute, less however long the machine took
				t.Fatalf("ttl: %s %v", left, err)
			}
			if err := c.Persist(ctx, key, at); err != nil {
				t.Fatal(err)
			}
			// Read at All: a read at One may ask a replica the write at
			// One has not reached yet.
			if left, err := c.TTL(ctx, key, client.WithConsistency(client.All)); err != nil || left != 0 {
				t.Fatalf("ttl after persist: %s %v", left, err)
			}
			if err := c.Expire(ctx, key, 300*time.Millisecond, at); err != nil {
				t.Fatal(err)
			}
			// At All: once every replica answers, each holds the expiry.
			waitFor(t, 10*time.Second, "expiry", func() error {
				if _, err := c.Get(ctx, key, client.WithConsistency(client.All)); !errors.Is(err, client.ErrNotFound) {
					return fmt.Errorf("get: %w", err)
				}
				return nil
			})
			if _, err := c.TTL(ctx, key, at); !errors.Is(err, client.ErrNotFound) {
				t.Fatalf("ttl of an expired key: %v", err)
			}
			if err := c.Expire(ctx, key, time.Second, at); !errors.Is(err, client.ErrNotFound) {
				t.Fatalf("expire of an expired key: %v", err)
			}
			if err := c.Persist(ctx, key, at); !errors.Is(err, client.ErrNotFound) {
				t.Fatalf("persist of an expired key: %v", err)
			}
		})
	}
	t.Run("lease", func(t *testing.T) {
		// 2 s: long enough that a loaded machine still asks again while
		// the lease is held (300 ms was not, under -race on two cores).
		if err := c.PutIfAbsent(ctx, "lease", []byte("a"), client.WithTTL(2*time.Second)); err != nil {
			t.Fatal(err)
		}
		if err := c.PutIfAbsent(ctx, "lease", []byte("b")); !errors.Is(err, client.ErrCASMismatch) {
			t.Fatalf("held lease: %v", err)
		}
		waitFor(t, 10*time.Second, "lease expiry", func() error {
			return c.PutIfAbsent(ctx, "lease", []byte("b"), client.WithTTL(time.Minute))
		})
		if err := c.CompareAndSet(ctx, "lease", []byte("b"), []byte("c"), client.WithTTL(time.Minute)); err != nil {
			t.Fatal(err)
		}
		if left, err := c.TTL(ctx, "lease", client.WithConsistency(client.Linearizable)); err != nil || left < 30*time.Second {
			t.Fatalf("renewed lease: %s %v", left, err)
		}
	})
	t.Run("batch", func(t *testing.T) {
		res := c.Batch(ctx, []client.Op{
			client.SetOp("b1", []byte("v"), client.WithTTL(time.Minute)),
			client.SetOp("b2", []byte("v"), client.WithTTL(-time.Second)),
			client.PutIfAbsentOp("b3", []byte("v"), client.WithTTL(time.Minute)),
			client.CompareAndSetOp("b3", []byte("x"), []byte("v"), client.WithTTL(0)),
		})
		if res[0].Err != nil || res[2].Err != nil {
			t.Fatalf("batch: %v", res)
		}
		for _, i := range []int{1, 3} {
			if !errors.Is(res[i].Err, client.ErrInvalidArgument) {
				t.Errorf("op %d with a bad ttl: %v", i, res[i].Err)
			}
		}
		for _, k := range []string{"b1", "b3"} {
			if left, err := c.TTL(ctx, k, client.WithConsistency(client.Linearizable)); err != nil || left < 30*time.Second {
				t.Fatalf("%s: %s %v", k, left, err)
			}
		}
	})
	for name, err := range map[string]error{
		"set zero":     c.Set(ctx, "k", nil, client.WithTTL(0)),
		"set negative": c.Set(ctx, "k", nil, client.WithTTL(-1)),
		"cas":          c.CompareAndSet(ctx, "k", nil, nil, client.WithTTL(-1)),
		"put":          c.PutIfAbsent(ctx, "k", nil, client.WithTTL(200*365*24*time.Hour)),
		"expire":       c.Expire(ctx, "k", 0),
	} {
		if !errors.Is(err, client.ErrInvalidArgument) {
			t.Errorf("%s: %v, want ErrInvalidArgument", name, err)
		}
	}
}
