package resp

import (
	"errors"
	"fmt"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/ringkv/ringkv/coordinator"
)

// MULTI/EXEC answer every queued command as if the queue ran alone, a
// key named many times included, and write only the final states.
func TestMultiExec(t *testing.T) {
	st := newMemStore()
	_, addr := startServer(t, DefaultConfig(), Deps{Store: st})
	for _, proto := range []int{2, 3} {
		t.Run(fmt.Sprintf("resp%d", proto), func(t *testing.T) {
			ctx := t.Context()
			rc := newRedis(t, addr, proto)
			if err := rc.Set(ctx, "word", "hello", 0).Err(); err != nil {
				t.Fatal(err)
			}
			var get1, get2, getb, incr, exists, del, strlen, getdel *redis.Cmd
			cmds, err := rc.TxPipelined(ctx, func(p redis.Pipeliner) error {
				p.Set(ctx, "a", "1", 0)
				incr = p.Do(ctx, "INCR", "a")
				get1 = p.Do(ctx, "GET", "a")
				p.Set(ctx, "b", "x", 0)
				getb = p.Do(ctx, "GET", "b")
				del = p.Do(ctx, "DEL", "b", "word", "nothing")
				exists = p.Do(ctx, "EXISTS", "b", "a", "a")
				p.Do(ctx, "APPEND", "a", "0")
				strlen = p.Do(ctx, "STRLEN", "a")
				p.Do(ctx, "MSET", "m1", "v1", "m2", "v2", "m1", "v3")
				getdel = p.Do(ctx, "GETDEL", "m2")
				get2 = p.Do(ctx, "MGET", "m1", "m2", "a")
				return nil
			})
			if err != nil {
				t.Fatalf("exec: %v", err)
			}
			if len(cmds) != 12 {
				t.Fatalf("%d replies, want 12", len(cmds))
			}
			for _, c := range []struct {
				cmd  *redis.Cmd
				want any
			}{
				{incr, int64(2)}, {get1, "2"}, {getb, "x"}, {del, int64(2)}, {exists, int64(2)},
				{strlen, int64(2)}, {getdel, "v2"},
			} {
				if got, err := c.cmd.Result(); err != nil || got != c.want {
					t.Errorf("%v: %v %v, want %v", c.cmd.Args(), got, err, c.want)
				}
			}
			if got, err := get2.Slice(); err != nil || len(got) != 3 || got[0] != "v3" || got[1] != nil || got[2] != "20" {
				t.Errorf("MGET: %v %v", got, err)
			}
			for k, want := range map[string]string{"a": "20", "m1": "v3"} {
				if got, err := rc.Get(ctx, k).Result(); err != nil || got != want {
					t.Errorf("after EXEC %s = %q %v, want %q", k, got, err, want)
				}
			}
			for _, k := range []string{"b", "word", "m2", "nothing"} {
				if err := rc.Get(ctx, k).Err(); !errors.Is(err, redis.Nil) {
					t.Errorf("after EXEC %s: %v, want absent", k, err)
				}
			}
		})
	}
}

// A command that fails when it runs answers its error and the rest still
// take effect; one refused while queueing discards the transaction.
func TestMultiErrors(t *testing.T) {
	st := newMemStore()
	_, addr := startServer(t, DefaultConfig(), Deps{Store: st})
	ctx := t.Context()
	rc := newRedis(t, addr, 2)
	if err := rc.Set(ctx, "w", "word", 0).Err(); err != nil {
		t.Fatal(err)
	}
	cmds, err := rc.TxPipelined(ctx, func(p redis.Pipeliner) error {
		p.Incr(ctx, "w")
		p.Set(ctx, "c", "1", 0)
		return nil
	})
	if err == nil || len(cmds) != 2 || cmds[0].Err() == nil || cmds[1].Err() != nil {
		t.Fatalf("runtime error: %v %v", cmds, err)
	}
	if got, _ := rc.Get(ctx, "c").Result(); got != "1" {
		t.Fatalf("c = %q after a transaction with a failed INCR, want 1", got)
	}

	conn := dialRaw(t, addr)
	for _, step := range []struct{ send, want string }{
		{"EXEC", "-ERR EXEC without MULTI"},
		{"DISCARD", "-ERR DISCARD without MULTI"},
		{"MULTI", "+OK"},
		{"MULTI", "-ERR MULTI calls can not be nested"},
		{"WATCH c", "-ERR WATCH inside MULTI is not allowed"},
		{"SET d", "-ERR wrong number of arguments for 'set' command"},
		{"SET d 1", "+QUEUED"},
		{"EXEC", "-EXECABORT Transaction discarded because of previous errors."},
		{"MULTI", "+OK"},
		{"SCAN 0", "-ERR ringkv: 'scan' is not supported inside MULTI (only commands on keys are)"},
		{"NOSUCH x", "-ERR unknown command 'NOSUCH', with args beginning with: 'x' "},
		{"EXEC", "-EXECABORT Transaction discarded because of previous errors."},
		{"MULTI", "+OK"},
		{"SET d 1", "+QUEUED"},
		{"DISCARD", "+OK"},
		{"GET d", "$-1"},
		{"MULTI", "+OK"},
		{"EXEC", "*0"},
	} {
		if _, err := conn.Write([]byte(step.send + "\r\n")); err != nil {
			t.Fatal(err)
		}
		if got := conn.line(t); got != step.want {
			t.Fatalf("%s: %q, want %q", step.send, got, step.want)
		}
	}
}

// WATCH: a key changed by another client between WATCH and EXEC aborts
// the transaction (null reply, nothing written); unchanged, it commits.
func TestWatch(t *testing.T) {
	st := newMemStore()
	_, addr := startServer(t, DefaultConfig(), Deps{Store: st})
	ctx := t.Context()
	rc, other := newRedis(t, addr, 2), newRedis(t, addr, 3)
	if err := rc.Set(ctx, "k", "0", 0).Err(); err != nil {
		t.Fatal(err)
	}
	err := rc.Watch(ctx, func(tx *redis.Tx) error {
		if err := other.Set(ctx, "k", "other", 0).Err(); err != nil {
			return err
		}
		_, err := tx.TxPipelined(ctx, func(p redis.Pipeliner) error {
			p.Set(ctx, "k", "mine", 0)
			p.Set(ctx, "side", "effect", 0)
			return nil
		})
		return err
	}, "k")
	if !errors.Is(err, redis.TxFailedErr) {
		t.Fatalf("EXEC after a watched key changed: %v, want TxFailedErr", err)
	}
	if got, _ := rc.Get(ctx, "k").Result(); got != "other" {
		t.Fatalf("k = %q, want the other client's write", got)
	}
	if err := rc.Get(ctx, "side").Err(); !errors.Is(err, redis.Nil) {
		t.Fatalf("side: %v, want absent (the aborted transaction wrote nothing)", err)
	}
	// A watched key that did not change: committed; UNWATCH forgets.
	err = rc.Watch(ctx, func(tx *redis.Tx) error {
		_, err := tx.TxPipelined(ctx, func(p redis.Pipeliner) error {
			p.Set(ctx, "k", "mine", 0)
			return nil
		})
		return err
	}, "k", "absent-key")
	if err != nil {
		t.Fatal(err)
	}
	if got, _ := rc.Get(ctx, "k").Result(); got != "mine" {
		t.Fatalf("k = %q, want mine", got)
	}
}

// Counters incremented by many clients at once, with WATCH retries and
// with bare MULTI (EXEC's own compares), lose no increment.
func TestMultiConcurrent(t *testing.T) {
	st := newMemStore()
	_, addr := startServer(t, DefaultConfig(), Deps{Store: st})
	ctx := t.Context()
	const clients, each = 8, 20
	var wg sync.WaitGroup
	errs := make(chan error, clients)
	for range clients {
		wg.Go(func() {
			rc := redis.NewClient(&redis.Options{Addr: addr, DisableIdentity: true})
			defer func() { _ = rc.Close() }()
			for range each {
				// WATCH, read, write: retried on TxFailedErr.
				for {
					err := rc.Watch(ctx, func(tx *redis.Tx) error {
						n, err := tx.Get(ctx, "watched").Int()
						if err != nil && !errors.Is(err, redis.Nil) {
							return err
						}
						_, err = tx.TxPipelined(ctx, func(p redis.Pipeliner) error {
							p.Set(ctx, "watched", strconv.Itoa(n+1), 0)
							return nil
						})
						return err
					}, "watched")
					if err == nil {
						break
					}
					if !errors.Is(err, redis.TxFailedErr) {
						errs <- err
						return
					}
				}
				// MULTI INCR x INCR y: EXEC retries its own conflicts.
				if _, err := rc.TxPipelined(ctx, func(p redis.Pipeliner) error {
					p.Incr(ctx, "x")
					p.Incr(ctx, "y")
					return nil
				}); err != nil {
					errs <- err
					return
				}
			}
		})
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatal(err)
	}
	rc := newRedis(t, addr, 2)
	for _, k := range []string{"watched", "x", "y"} {
		if got, err := rc.Get(ctx, k).Int(); err != nil || got != clients*each {
			t.Errorf("%s = %d %v, want %d", k, got, err, clients*each)
		}
	}
}

// EXEC whose read key changes before its transaction commits reads it
// again and answers from the new value (it never writes on a stale read).
func TestExecRetriesOnConflict(t *testing.T) {
	st := newMemStore()
	_, addr := startServer(t, DefaultConfig(), Deps{Store: st})
	ctx := t.Context()
	rc := newRedis(t, addr, 2)
	if err := rc.Set(ctx, "n", "10", 0).Err(); err != nil {
		t.Fatal(err)
	}
	// The hook runs inside the next Txn: the first commit of EXEC (the
	// snapshot read before it is also a Txn, so skip that one).
	calls := 0
	st.mu.Lock()
	var hook func(map[string]coordinator.Item)
	hook = func(data map[string]coordinator.Item) {
		calls++
		if calls == 1 {
			st.beforeCAS = hook // the read: let it be, arm again for the commit
			return
		}
		data["n"] = coordinator.Item{Value: []byte("100")}
	}
	st.beforeCAS = hook
	st.mu.Unlock()
	var incr *redis.IntCmd
	if _, err := rc.TxPipelined(ctx, func(p redis.Pipeliner) error {
		incr = p.Incr(ctx, "n")
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	if got := incr.Val(); got != 101 {
		t.Fatalf("INCR answered %d, want 101 (computed on the value written in between)", got)
	}
	if got, _ := rc.Get(ctx, "n").Int(); got != 101 {
		t.Fatalf("n = %d, want 101", got)
	}
}

// EXEC answers the store's error (nothing written) and expiries survive.
func TestExecStoreErrorsAndExpiry(t *testing.T) {
	st := newMemStore()
	_, addr := startServer(t, DefaultConfig(), Deps{Store: st})
	ctx := t.Context()
	rc := newRedis(t, addr, 2)
	if _, err := rc.TxPipelined(ctx, func(p redis.Pipeliner) error {
		p.Set(ctx, "e", "v", time.Hour)
		p.Set(ctx, "gone", "v", 0)
		p.Do(ctx, "PEXPIRE", "gone", "1")
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	if ttl, err := rc.TTL(ctx, "e").Result(); err != nil || ttl < 59*time.Minute {
		t.Fatalf("TTL of e: %v %v, want about an hour", ttl, err)
	}
	st.mu.Lock()
	st.txnErr = coordinator.ErrNotUpgraded
	st.mu.Unlock()
	_, err := rc.TxPipelined(ctx, func(p redis.Pipeliner) error {
		p.Set(ctx, "f", "v", 0)
		return nil
	})
	if err == nil {
		t.Fatal("EXEC on a store refusing transactions answered no error")
	}
	st.mu.Lock()
	st.txnErr = nil
	st.mu.Unlock()
	if err := rc.Get(ctx, "f").Err(); !errors.Is(err, redis.Nil) {
		t.Fatalf("f: %v, want absent", err)
	}
}
