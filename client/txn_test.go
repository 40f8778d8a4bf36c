package client_test

import (
	"errors"
	"strconv"
	"testing"
	"time"

	"github.com/ringkv/ringkv/client"
)

func TestTxnAgainstCluster(t *testing.T) {
	nodes := startCluster(t, 3)
	c, err := client.New([]string{nodes[2].RPCAddr()})
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = c.Close() }()
	ctx := t.Context()
	r := nodes[0].Gossip().Ring()
	var keys []string
	other := ""
	for i := 0; len(keys) < 3 || other == ""; i++ {
		k := "acct:" + strconv.Itoa(i)
		switch {
		case len(keys) == 0 || (r.PartitionOf([]byte(k)) == r.PartitionOf([]byte(keys[0])) && len(keys) < 3):
			keys = append(keys, k)
		case r.PartitionOf([]byte(k)) != r.PartitionOf([]byte(keys[0])) && other == "":
			other = k
		}
	}
	a, b, d := keys[0], keys[1], keys[2]

	// Open two accounts at once, one of them expiring.
	res, err := c.Txn(ctx).If(client.Absent(a), client.Absent(b)).
		Then(client.SetOp(a, []byte("10")), client.SetOp(b, []byte("5"), client.WithTTL(time.Hour)), client.GetOp(d)).
		Else(client.GetOp(a)).Commit()
	if err != nil || !res.Succeeded || len(res.Results) != 3 || res.Results[2].Found {
		t.Fatalf("open: %+v %v", res, err)
	}
	// Again: the compares fail and Else reads.
	res, err = c.Txn(ctx).If(client.Absent(a)).Then(client.DeleteOp(a)).Else(client.GetOp(a), client.GetOp(b)).Commit()
	if err != nil || res.Succeeded || len(res.Results) != 2 {
		t.Fatalf("second open: %+v %v", res, err)
	}
	ra, rb := res.Results[0], res.Results[1]
	if !ra.Found || string(ra.Value) != "10" || ra.Version == 0 || !rb.Found || rb.TTL < 59*time.Minute || rb.TTL > time.Hour {
		t.Fatalf("reads: a %+v b %+v", ra, rb)
	}
	// A transfer guarded by the versions read, the value and the TTL left.
	res, err = c.Txn(ctx).
		If(client.VersionEquals(a, ra.Version), client.VersionEquals(b, rb.Version), client.ValueEquals(a, []byte("10")), client.TTLAtLeast(b, time.Minute)).
		Then(client.SetOp(a, []byte("7")), client.SetOp(b, []byte("8"))).Commit()
	if err != nil || !res.Succeeded {
		t.Fatalf("transfer: %+v %v", res, err)
	}
	// The same guard again fails: a's version moved.
	res, err = c.Txn(ctx).If(client.VersionEquals(a, ra.Version)).Then(client.SetOp(a, []byte("0"))).Commit()
	if err != nil || res.Succeeded {
		t.Fatalf("stale guard: %+v %v", res, err)
	}
	if got, err := c.Get(ctx, a, client.WithConsistency(client.Linearizable)); err != nil || string(got) != "7" {
		t.Fatalf("a after the transfer: %q %v", got, err)
	}
	if ttl, err := c.TTL(ctx, b, client.WithConsistency(client.Linearizable)); err != nil || ttl != 0 {
		t.Fatalf("b's ttl after a set without one: %s %v", ttl, err)
	}

	for _, tc := range []struct {
		name string
		txn  *client.Txn
		want error
	}{
		{"empty", c.Txn(ctx), client.ErrInvalidArgument},
		{"cas op", c.Txn(ctx).Then(client.PutIfAbsentOp(a, []byte("x"))), client.ErrInvalidArgument},
		{"bad ttl", c.Txn(ctx).Then(client.SetOp(a, []byte("x"), client.WithTTL(-time.Second))), client.ErrInvalidArgument},
		{"bad ttl compare", c.Txn(ctx).If(client.TTLAtLeast(a, -time.Second)), client.ErrInvalidArgument},
		{"duplicate key", c.Txn(ctx).Then(client.GetOp(a), client.DeleteOp(a)), client.ErrInvalidArgument},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if _, err := tc.txn.Commit(); !errors.Is(err, tc.want) {
				t.Fatalf("got %v, want %v", err, tc.want)
			}
		})
	}
	// Keys of two partitions: a transaction across partitions.
	res, err = c.Txn(ctx).If(client.ValueEquals(a, []byte("7"))).Then(client.SetOp(other, []byte("o")), client.GetOp(b)).Commit()
	if err != nil || !res.Succeeded || string(res.Results[1].Value) != "8" {
		t.Fatalf("two partitions: %+v %v", res, err)
	}
	if got, err := c.Get(ctx, other, client.WithConsistency(client.Linearizable)); err != nil || string(got) != "o" {
		t.Fatalf("other after the transaction across partitions: %q %v", got, err)
	}
	// MGet and MSet share the cluster (multi_test.go).
	t.Run("multi", func(t *testing.T) { checkMulti(t, c) })
}
