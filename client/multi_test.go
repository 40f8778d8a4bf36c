package client_test

import (
	"errors"
	"strconv"
	"testing"
	"time"

	"github.com/ringkv/ringkv/client"
)

// checkMulti runs MSet and MGet at quorum (a logged batch) and
// linearizable (a transaction across partitions, the double read) through
// c, then their refusals. TestTxnAgainstCluster runs it on its cluster.
func checkMulti(t *testing.T, c *client.Client) {
	ctx := t.Context()
	keys := make([]string, 6)
	for i := range keys {
		keys[i] = "multi:" + strconv.Itoa(i)
	}
	for _, level := range []client.Consistency{client.Quorum, client.Linearizable} {
		pairs := make([]client.Pair, len(keys))
		for i, k := range keys {
			pairs[i] = client.Pair{Key: k, Value: []byte(level.String() + strconv.Itoa(i))}
		}
		pairs[0].TTL = time.Hour
		if err := c.MSet(ctx, pairs, client.WithConsistency(level)); err != nil {
			t.Fatalf("mset at %s: %v", level, err)
		}
		got, err := c.MGet(ctx, append([]string{"multi:absent"}, keys...), client.WithConsistency(level))
		if err != nil {
			t.Fatalf("mget at %s: %v", level, err)
		}
		if got[0].Found || got[0].Key != "multi:absent" {
			t.Fatalf("absent key: got %+v", got[0])
		}
		for i, g := range got[1:] {
			if !g.Found || string(g.Value) != string(pairs[i].Value) || g.Version == 0 || g.Key != keys[i] {
				t.Fatalf("at %s key %s: got %+v, want %q", level, keys[i], g, pairs[i].Value)
			}
		}
		if got[1].TTL <= 0 || got[1].TTL > time.Hour {
			t.Fatalf("at %s: ttl %s, want about an hour", level, got[1].TTL)
		}
	}
	for _, tc := range []struct {
		name string
		err  error
	}{
		{"mget none", func() error { _, err := c.MGet(ctx, nil); return err }()},
		{"mget duplicate", func() error { _, err := c.MGet(ctx, []string{"a", "a"}); return err }()},
		{"mset none", c.MSet(ctx, nil)},
		{"mset duplicate", c.MSet(ctx, []client.Pair{{Key: "a"}, {Key: "a"}})},
		{"mset bad ttl", c.MSet(ctx, []client.Pair{{Key: "a", TTL: -time.Second}})},
	} {
		if !errors.Is(tc.err, client.ErrInvalidArgument) {
			t.Errorf("%s: got %v, want ErrInvalidArgument", tc.name, tc.err)
		}
	}
}
