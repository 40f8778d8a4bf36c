package resp

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"sort"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/cespare/xxhash/v2"

	"github.com/redis/go-redis/v9"

	"github.com/ringkv/ringkv/auth"
	"github.com/ringkv/ringkv/consensus"
	"github.com/ringkv/ringkv/coordinator"
	"github.com/ringkv/ringkv/replica"
)

// memStore is a Store in memory, with the coordinator's key checks.
type memStore struct {
	mu   sync.Mutex
	data map[string]coordinator.Item
	fail error // returned by every call when set
	// beforeCAS, when set, runs inside the next CompareAndSet before it
	// compares (another writer winning the race), then is cleared.
	beforeCAS func(data map[string]coordinator.Item)
	// txnErr, when set, is Txn's answer (e.g. a member too old).
	txnErr error
}

func newMemStore() *memStore { return &memStore{data: map[string]coordinator.Item{}} }

func (m *memStore) check(ctx context.Context, key []byte) error {
	if m.fail != nil {
		return m.fail
	}
	if u, _ := ctx.Value(userKey{}).(string); u == "reader" {
		return &auth.PermissionError{User: u, Need: auth.Permission{Access: auth.Write, Prefix: string(key)}}
	}
	if len(key) == 0 || len(key) > 100 {
		return fmt.Errorf("%w: bad key", coordinator.ErrInvalidArgument)
	}
	return nil
}

// live returns key's item unless absent or expired; m.mu is held.
func (m *memStore) live(key string) (coordinator.Item, bool) {
	it, ok := m.data[key]
	if ok && !it.ExpiresAt.IsZero() && !time.Now().Before(it.ExpiresAt) {
		delete(m.data, key)
		return coordinator.Item{}, false
	}
	return it, ok
}

func item(value []byte, e Expiry) coordinator.Item {
	it := coordinator.Item{Value: bytes.Clone(value), ExpiresAt: e.At}
	if e.TTL > 0 {
		it.ExpiresAt = time.Now().Add(e.TTL)
	}
	return it
}

func (m *memStore) GetItem(_ context.Context, key []byte, _ coordinator.Level) (coordinator.Item, bool, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	if err := m.fail; err != nil {
		return coordinator.Item{}, false, err
	}
	it, ok := m.live(string(key))
	return it, ok, nil
}

func (m *memStore) Set(ctx context.Context, key, value []byte, _ coordinator.Level, e Expiry) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	if err := m.check(ctx, key); err != nil {
		return err
	}
	m.data[string(key)] = item(value, e)
	return nil
}

func (m *memStore) Delete(ctx context.Context, key []byte, _ coordinator.Level) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	if err := m.check(ctx, key); err != nil {
		return err
	}
	delete(m.data, string(key))
	return nil
}

func (m *memStore) CompareAndSet(ctx context.Context, key []byte, expected *[]byte, value []byte, e Expiry) (coordinator.CASResult, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	if err := m.check(ctx, key); err != nil {
		return coordinator.CASResult{}, err
	}
	if f := m.beforeCAS; f != nil {
		m.beforeCAS = nil
		f(m.data)
	}
	cur, ok := m.live(string(key))
	if (expected == nil && !ok) || (expected != nil && ok && bytes.Equal(*expected, cur.Value)) {
		m.data[string(key)] = item(value, e)
		return coordinator.CASResult{Swapped: true}, nil
	}
	return coordinator.CASResult{Found: ok, Current: cur.Value}, nil
}

// Txn runs what GETDEL sends: value and absent compares, then deletes,
// sets and gets. beforeCAS runs inside it too (a writer between the read
// and the transaction).
func (m *memStore) Txn(ctx context.Context, req *coordinator.TxnRequest) (coordinator.TxnResult, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.txnErr != nil {
		return coordinator.TxnResult{}, m.txnErr
	}
	if f := m.beforeCAS; f != nil {
		m.beforeCAS = nil
		f(m.data)
	}
	holds := true
	for _, cmp := range req.Compares {
		if err := m.check(ctx, cmp.Key); err != nil {
			return coordinator.TxnResult{}, err
		}
		cur, ok := m.live(string(cmp.Key))
		switch cmp.Kind {
		case consensus.CompareValue:
			holds = holds && ok && bytes.Equal(cur.Value, cmp.Value)
		case consensus.CompareAbsent:
			holds = holds && !ok
		case consensus.CompareVersion:
			holds = holds && memVersion(cur, ok) == cmp.Version
		default:
			return coordinator.TxnResult{}, fmt.Errorf("%w: memStore: compare %v", coordinator.ErrInvalidArgument, cmp.Kind)
		}
	}
	ops := req.Failure
	if holds {
		ops = req.Success
	}
	res := coordinator.TxnResult{Succeeded: holds}
	for _, op := range ops {
		var r consensus.OpResult
		switch op.Kind {
		case consensus.OpGet:
			cur, ok := m.live(string(op.Key))
			r.Found, r.Record.Value, r.Record.ExpiresAt, r.Record.Timestamp = ok, cur.Value, cur.ExpiresAt, memVersion(cur, ok)
		case consensus.OpSet:
			m.data[string(op.Key)] = item(op.Value, Expiry{TTL: op.TTL})
		case consensus.OpDelete:
			delete(m.data, string(op.Key))
		}
		res.Results = append(res.Results, r)
	}
	return res, nil
}

// memVersion is a key's version in memStore: its value's hash (0 when
// absent), enough for EXEC's compares in these tests.
func memVersion(it coordinator.Item, found bool) replica.Timestamp {
	if !found {
		return 0
	}
	return replica.Timestamp(xxhash.Sum64(it.Value)|1) + replica.Timestamp(it.ExpiresAt.UnixNano())
}

func (m *memStore) Expire(ctx context.Context, key []byte, ttl time.Duration, _ coordinator.Level) (bool, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	if err := m.check(ctx, key); err != nil {
		return false, err
	}
	it, ok := m.live(string(key))
	if ok {
		it.ExpiresAt = time.Now().Add(ttl)
		m.data[string(key)] = it
	}
	return ok, nil
}

func (m *memStore) Persist(ctx context.Context, key []byte, _ coordinator.Level) (bool, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	if err := m.check(ctx, key); err != nil {
		return false, err
	}
	it, ok := m.live(string(key))
	if ok {
		it.ExpiresAt = time.Time{}
		m.data[string(key)] = it
	}
	return ok, nil
}

func (m *memStore) ListFrom(_ context.Context, prefix, from []byte, limit int, _ coordinator.Level) ([]coordinator.Pair, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	if err := m.fail; err != nil {
		return nil, err
	}
	var keys []string
	for k := range m.data {
		if _, ok := m.live(k); ok && strings.HasPrefix(k, string(prefix)) && k >= string(from) {
			keys = append(keys, k)
		}
	}
	sort.Strings(keys)
	if len(keys) > limit {
		keys = keys[:limit]
	}
	out := make([]coordinator.Pair, len(keys))
	for i, k := range keys {
		out[i] = coordinator.Pair{Key: []byte(k), Value: m.data[k].Value}
	}
	return out, nil
}

type userKey struct{}

// fakeAuth knows "alice"/"secret" and "reader"/"secret".
type fakeAuth struct{}

func (fakeAuth) Login(ctx context.Context, user, password string) (context.Context, error) {
	if (user != "alice" && user != "reader") || password != "secret" {
		return nil, auth.ErrUnauthenticated
	}
	return context.WithValue(ctx, userKey{}, user), nil
}

func (fakeAuth) Conn(ctx context.Context, _ net.Conn) context.Context { return ctx }

func startServer(t *testing.T, cfg Config, deps Deps) (*Server, string) {
	t.Helper()
	srv, err := New(cfg, deps)
	if err != nil {
		t.Fatal(err)
	}
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- srv.Serve(lis) }()
	t.Cleanup(func() {
		if err := srv.Close(); err != nil {
			t.Error(err)
		}
		if err := <-done; err != nil {
			t.Errorf("serve: %v", err)
		}
	})
	return srv, lis.Addr().String()
}

func newRedis(t *testing.T, addr string, proto int) *redis.Client {
	t.Helper()
	c := redis.NewClient(&redis.Options{Addr: addr, Protocol: proto, DisableIdentity: true})
	t.Cleanup(func() { _ = c.Close() })
	return c
}

// The commands answer as Redis does, over RESP2 and RESP3.
func TestCommands(t *testing.T) {
	for _, proto := range []int{2, 3} {
		t.Run(fmt.Sprintf("resp%d", proto), func(t *testing.T) {
			_, addr := startServer(t, DefaultConfig(), Deps{Store: newMemStore()})
			r := newRedis(t, addr, proto)
			ctx := t.Context()
			must := func(err error) {
				t.Helper()
				if err != nil {
					t.Fatal(err)
				}
			}
			eq := func(got, want any) {
				t.Helper()
				if fmt.Sprint(got) != fmt.Sprint(want) {
					t.Fatalf("got %v, want %v", got, want)
				}
			}
			eq(r.Ping(ctx).Val(), "PONG")
			eq(r.Echo(ctx, "hi").Val(), "hi")
			must(r.Set(ctx, "k", "v", 0).Err())
			eq(r.Get(ctx, "k").Val(), "v")
			if err := r.Get(ctx, "absent").Err(); !errors.Is(err, redis.Nil) {
				t.Fatalf("get absent: %v", err)
			}
			eq(r.SetNX(ctx, "k", "x", 0).Val(), false)
			eq(r.SetNX(ctx, "n", "1", 0).Val(), true)
			eq(r.SetXX(ctx, "absent", "x", 0).Val(), false)
			eq(r.SetXX(ctx, "k", "v2", 0).Val(), true)
			eq(r.SetArgs(ctx, "k", "v3", redis.SetArgs{Get: true}).Val(), "v2")
			if err := r.SetArgs(ctx, "k", "v4", redis.SetArgs{Mode: "NX", Get: true}).Err(); err != nil {
				t.Fatal(err) // Redis 7 allows NX with GET
			}
			eq(r.Get(ctx, "k").Val(), "v3")
			eq(r.Do(ctx, "GETSET", "k", "v5").Val(), "v3")
			eq(r.GetDel(ctx, "k").Val(), "v5")
			eq(r.Exists(ctx, "k", "n", "n").Val(), 2)
			must(r.MSet(ctx, "a", "1", "b", "2").Err())
			eq(r.MGet(ctx, "a", "zz", "b").Val(), []any{"1", nil, "2"})
			eq(r.MSetNX(ctx, "a", "9", "c", "3").Val(), false)
			eq(r.MSetNX(ctx, "c", "3", "d", "4").Val(), true)
			eq(r.Incr(ctx, "ctr").Val(), 1)
			eq(r.IncrBy(ctx, "ctr", 10).Val(), 11)
			eq(r.Decr(ctx, "ctr").Val(), 10)
			eq(r.DecrBy(ctx, "ctr", 4).Val(), 6)
			if err := r.Incr(ctx, "c").Err(); err != nil {
				t.Fatal(err) // "3" is an integer
			}
			must(r.Set(ctx, "s", "abc", 0).Err())
			if err := r.Incr(ctx, "s").Err(); err == nil || err.Error() != "ERR value is not an integer or out of range" {
				t.Fatalf("incr of a string: %v", err)
			}
			must(r.Set(ctx, "big", "9223372036854775807", 0).Err())
			if err := r.Incr(ctx, "big").Err(); err == nil || err.Error() != "ERR increment or decrement would overflow" {
				t.Fatalf("incr overflow: %v", err)
			}
			eq(r.Append(ctx, "s", "de").Val(), 5)
			eq(r.Append(ctx, "new", "x").Val(), 1)
			eq(r.StrLen(ctx, "s").Val(), 5)
			eq(r.StrLen(ctx, "nothing").Val(), 0)
			eq(r.Type(ctx, "s").Val(), "string")
			eq(r.Type(ctx, "nothing").Val(), "none")
			eq(r.Del(ctx, "a", "b", "nothing").Val(), 2)
			eq(r.Unlink(ctx, "c").Val(), 1)
			must(r.Do(ctx, "SELECT", "0").Err())
			if err := r.Do(ctx, "SELECT", "1").Err(); err == nil || err.Error() != "ERR DB index is out of range" {
				t.Fatalf("select 1: %v", err)
			}
			must(r.Do(ctx, "CLIENT", "SETNAME", "me").Err())
			eq(r.Do(ctx, "CLIENT", "GETNAME").Val(), "me")
			if id, err := r.Do(ctx, "CLIENT", "ID").Int64(); err != nil || id < 1 {
				t.Fatalf("client id: %d %v", id, err)
			}
			if s, err := r.Info(ctx).Result(); err != nil || !strings.Contains(s, "redis_version:") {
				t.Fatalf("info: %q %v", s, err)
			}
			if n, err := r.Do(ctx, "COMMAND", "COUNT").Int(); err != nil || n != len(commandTable()) {
				t.Fatalf("command count: %d %v", n, err)
			}
			if err := r.Do(ctx, "COMMAND").Err(); err != nil {
				t.Fatal(err)
			}
			if err := r.Do(ctx, "COMMAND", "INFO", "get", "nope").Err(); err != nil {
				t.Fatal(err)
			}
			eq(r.Do(ctx, "RINGKV.CONSISTENCY").Val(), "quorum")
			must(r.Do(ctx, "RINGKV.CONSISTENCY", "linearizable").Err())
			eq(r.Do(ctx, "RINGKV.CONSISTENCY").Val(), "linearizable")
			if err := r.Do(ctx, "RINGKV.CONSISTENCY", "sometimes").Err(); err == nil {
				t.Fatal("bad level accepted")
			}
			must(r.Set(ctx, "lock", "a", 0).Err())
			eq(r.Do(ctx, "RINGKV.CAS", "lock", "x", "b").Val(), 0)
			eq(r.Do(ctx, "RINGKV.CAS", "lock", "a", "b").Val(), 1)
			eq(r.Get(ctx, "lock").Val(), "b")
			eq(r.Do(ctx, "RINGKV.CAS", "lock", "b", "c", "PX", "60000").Val(), 1)
			if d := r.PTTL(ctx, "lock").Val(); d <= 0 || d > time.Minute {
				t.Fatalf("pttl after cas px: %v", d)
			}

			// Expiry.
			eq(r.TTL(ctx, "nothing").Val(), time.Duration(-2))
			must(r.Set(ctx, "e", "1", 0).Err())
			eq(r.TTL(ctx, "e").Val(), time.Duration(-1))
			must(r.Set(ctx, "e", "1", 100*time.Second).Err())
			eq(r.TTL(ctx, "e").Val(), 100*time.Second)
			eq(r.Incr(ctx, "e").Val(), 2) // keeps the expiry
			eq(r.TTL(ctx, "e").Val(), 100*time.Second)
			must(r.SetArgs(ctx, "e", "5", redis.SetArgs{KeepTTL: true}).Err())
			eq(r.TTL(ctx, "e").Val(), 100*time.Second)
			eq(r.Persist(ctx, "e").Val(), true)
			eq(r.Persist(ctx, "e").Val(), false)
			eq(r.Persist(ctx, "nothing").Val(), false)
			eq(r.Expire(ctx, "e", 50*time.Second).Val(), true)
			eq(r.TTL(ctx, "e").Val(), 50*time.Second)
			eq(r.PExpire(ctx, "nothing", time.Second).Val(), false)
			must(r.Set(ctx, "e", "x", 0).Err()) // a plain SET clears the expiry
			eq(r.TTL(ctx, "e").Val(), time.Duration(-1))
			must(r.SetArgs(ctx, "e", "y", redis.SetArgs{ExpireAt: time.Now().Add(time.Hour)}).Err())
			if d := r.TTL(ctx, "e").Val(); d < 59*time.Minute || d > time.Hour {
				t.Fatalf("ttl after exat: %v", d)
			}
			must(r.Do(ctx, "SET", "e", "z", "PXAT", time.Now().Add(time.Hour).UnixMilli()).Err())
			must(r.Do(ctx, "SET", "px", "z", "PX", "1").Err())
			must(r.SetArgs(ctx, "nx", "z", redis.SetArgs{Mode: "NX", TTL: time.Hour}).Err())
			eq(r.TTL(ctx, "nx").Val(), time.Hour)
			eq(r.Expire(ctx, "nx", -1).Val(), true) // deletes, as Redis does
			eq(r.Exists(ctx, "nx").Val(), 0)
			eq(r.Expire(ctx, "nx", 0).Val(), false)

			// Errors with Redis's texts.
			for _, tc := range []struct {
				args []any
				want string
			}{
				{[]any{"NOSUCH", "a"}, "ERR unknown command 'NOSUCH', with args beginning with: 'a' "},
				{[]any{"GET"}, "ERR wrong number of arguments for 'get' command"},
				{[]any{"INCRBY", "ctr", "x"}, "ERR value is not an integer or out of range"},
				{[]any{"SET", "k", "v", "NX", "XX"}, "ERR syntax error"},
				{[]any{"SET", "k", "v", "BOGUS"}, "ERR syntax error"},
				{[]any{"SET", "k", "v", "EX", "0"}, "ERR invalid expire time in 'set' command"},
				{[]any{"SET", "k", "v", "EX", "x"}, "ERR value is not an integer or out of range"},
				{[]any{"SET", "k", "v", "EX"}, "ERR syntax error"},
				{[]any{"SET", "k", "v", "EX", "1", "PX", "1"}, "ERR syntax error"},
				{[]any{"EXPIRE", "k", "x"}, "ERR value is not an integer or out of range"},
				{[]any{"EXPIRE", "k", "10", "NX"}, "ERR ringkv: EXPIRE options (NX, XX, GT, LT) are not supported"},
				{[]any{"EXPIRE", "k", "99999999999999"}, "ERR invalid expire time in 'expire' command"},
				{[]any{"AUTH", "pw"}, "ERR AUTH <password> called without any password configured for the default user. Are you sure your configuration is correct?"},
				{[]any{"HELLO", "4"}, "NOPROTO unsupported protocol version"},
				{[]any{"MSET", "a", "1", "b"}, "ERR wrong number of arguments for 'mset' command"},
				{[]any{"SCAN", "x"}, "ERR invalid cursor"},
				{[]any{"SCAN", "12345"}, "ERR invalid cursor (ringkv forgets a cursor after many newer ones: start over from 0)"},
				{[]any{"SCAN", "0", "COUNT", "x"}, "ERR value is not an integer or out of range"},
				{[]any{"SCAN", "0", "MATCH"}, "ERR syntax error"},
				{[]any{"CLIENT", "KILL"}, "ERR unknown subcommand 'KILL'. Try CLIENT HELP."},
				{[]any{"RINGKV.CAS", "k", "a", "b", "KEEPTTL"}, "ERR syntax error"},
				{[]any{"RINGKV.CAS", "k", "a", "b", "EX", "1", "x"}, "ERR syntax error"},
				{[]any{"SET", "", "v"}, "ERR coordinator: invalid argument: bad key"},
			} {
				if err := r.Do(ctx, tc.args...).Err(); err == nil || err.Error() != tc.want {
					t.Errorf("%v: got %v, want %q", tc.args, err, tc.want)
				}
			}
		})
	}
}

// SCAN visits every key once, by pages, with MATCH and COUNT; KEYS and
// DBSIZE see them all.
func TestScanKeys(t *testing.T) {
	st := newMemStore()
	_, addr := startServer(t, DefaultConfig(), Deps{Store: st})
	r := newRedis(t, addr, 3)
	ctx := t.Context()
	for i := range 95 {
		if err := r.Set(ctx, fmt.Sprintf("user:%03d", i), "x", 0).Err(); err != nil {
			t.Fatal(err)
		}
	}
	for i := range 5 {
		if err := r.Set(ctx, fmt.Sprintf("other:%d", i), "x", 0).Err(); err != nil {
			t.Fatal(err)
		}
	}
	seen := map[string]int{}
	iter := r.Scan(ctx, 0, "user:*", 7).Iterator()
	for iter.Next(ctx) {
		seen[iter.Val()]++
	}
	if err := iter.Err(); err != nil {
		t.Fatal(err)
	}
	if len(seen) != 95 {
		t.Fatalf("scan saw %d keys", len(seen))
	}
	for k, n := range seen {
		if n != 1 {
			t.Fatalf("%s seen %d times", k, n)
		}
	}
	if keys := r.Keys(ctx, "user:01*").Val(); len(keys) != 10 {
		t.Fatalf("keys user:01*: %v", keys)
	}
	if keys := r.Keys(ctx, "*:0?1").Val(); len(keys) != 10 {
		t.Fatalf("keys *:0?1: %v", keys)
	}
	if keys := r.Keys(ctx, "other:3").Val(); len(keys) != 1 {
		t.Fatalf("keys other:3: %v", keys)
	}
	if n := r.DBSize(ctx).Val(); n != 100 {
		t.Fatalf("dbsize %d", n)
	}
	if keys, _ := r.ScanType(ctx, 0, "", 100, "hash").Val(); len(keys) != 0 {
		t.Fatalf("scan type hash: %v", keys)
	}
	srv, _ := New(Config{MaxKeys: 10, MaxScanCount: 10, ScanCount: 10, ScanCursors: 1, MaxRequestBytes: 1 << 10, CASRetries: 1, RequestTimeout: time.Second}, Deps{Store: st})
	lis, _ := net.Listen("tcp", "127.0.0.1:0")
	go func() { _ = srv.Serve(lis) }()
	defer srv.Close() //nolint:errcheck // test
	small := newRedis(t, lis.Addr().String(), 2)
	if err := small.Keys(ctx, "*").Err(); err == nil || !strings.Contains(err.Error(), "use SCAN") {
		t.Fatalf("keys over MaxKeys: %v", err)
	}
	// One cursor remembered: the first is forgotten.
	_, c1, _ := small.Scan(ctx, 0, "", 5).Result()
	_, _, _ = small.Scan(ctx, 0, "", 5).Result()
	if err := small.Scan(ctx, c1, "", 5).Err(); err == nil {
		t.Fatal("forgotten cursor accepted")
	}
}

// A read-modify-write that loses its compare-and-set starts over and
// answers what the next round finds.
func TestLostRace(t *testing.T) {
	st := newMemStore()
	_, addr := startServer(t, DefaultConfig(), Deps{Store: st})
	r := newRedis(t, addr, 2)
	ctx := t.Context()
	other := func(data map[string]coordinator.Item) { data["k"] = coordinator.Item{Value: []byte("10")} }
	st.mu.Lock()
	st.beforeCAS = other
	st.mu.Unlock()
	if err := r.SetArgs(ctx, "k", "mine", redis.SetArgs{Mode: "NX"}).Err(); !errors.Is(err, redis.Nil) {
		t.Fatalf("set nx that lost the race: %v, want nil", err)
	}
	st.mu.Lock()
	st.beforeCAS = func(data map[string]coordinator.Item) { data["k"] = coordinator.Item{Value: []byte("20")} }
	st.mu.Unlock()
	if n, err := r.Incr(ctx, "k").Result(); err != nil || n != 21 {
		t.Fatalf("incr that lost the race: %d %v, want 21", n, err)
	}
	st.mu.Lock()
	st.beforeCAS = func(data map[string]coordinator.Item) { delete(data, "k") }
	st.mu.Unlock()
	if err := r.SetArgs(ctx, "k", "x", redis.SetArgs{Mode: "XX"}).Err(); !errors.Is(err, redis.Nil) {
		t.Fatalf("set xx that lost the race: %v, want nil", err)
	}

	// GETDEL whose key is rewritten between its read and its delete: the
	// compare-and-delete fails, it reads again, and it answers the value
	// it deleted (the write is not deleted unseen).
	if err := r.Set(ctx, "g", "old", 0).Err(); err != nil {
		t.Fatal(err)
	}
	st.mu.Lock()
	st.beforeCAS = func(data map[string]coordinator.Item) { data["g"] = coordinator.Item{Value: []byte("new")} }
	st.mu.Unlock()
	if v, err := r.GetDel(ctx, "g").Result(); err != nil || v != "new" {
		t.Fatalf("getdel that lost the race: %q %v, want \"new\"", v, err)
	}
	if err := r.Get(ctx, "g").Err(); !errors.Is(err, redis.Nil) {
		t.Fatalf("get after getdel: %v, want nil", err)
	}
	// A member too old for transactions: read then delete.
	if err := r.Set(ctx, "g", "v", 0).Err(); err != nil {
		t.Fatal(err)
	}
	st.mu.Lock()
	st.txnErr = fmt.Errorf("%w: a member speaks wire 1", coordinator.ErrNotUpgraded)
	st.mu.Unlock()
	if v, err := r.GetDel(ctx, "g").Result(); err != nil || v != "v" {
		t.Fatalf("getdel on an old cluster: %q %v, want \"v\"", v, err)
	}
	if err := r.Get(ctx, "g").Err(); !errors.Is(err, redis.Nil) {
		t.Fatalf("get after getdel on an old cluster: %v, want nil", err)
	}
}

// Pipelined commands are answered in order.
func TestPipeline(t *testing.T) {
	_, addr := startServer(t, DefaultConfig(), Deps{Store: newMemStore()})
	r := newRedis(t, addr, 2)
	ctx := t.Context()
	p := r.Pipeline()
	var cmds []*redis.IntCmd
	for range 100 {
		cmds = append(cmds, p.Incr(ctx, "n"))
	}
	get := p.Get(ctx, "n")
	if _, err := p.Exec(ctx); err != nil {
		t.Fatal(err)
	}
	for i, c := range cmds {
		if c.Val() != int64(i+1) {
			t.Fatalf("reply %d: %d", i, c.Val())
		}
	}
	if get.Val() != "100" {
		t.Fatalf("get: %q", get.Val())
	}
	// Distinct keys run concurrently, and still each key sees its
	// commands in order; a session command applies between its
	// neighbours.
	p = r.Pipeline()
	var gets []*redis.StringCmd
	for i := range 50 {
		p.Set(ctx, fmt.Sprintf("p:%d", i), i, 0)
		p.Append(ctx, fmt.Sprintf("p:%d", i), "x")
		gets = append(gets, p.Get(ctx, fmt.Sprintf("p:%d", i)))
		if i == 25 {
			p.Do(ctx, "RINGKV.CONSISTENCY", "one")
		}
	}
	level := p.Do(ctx, "RINGKV.CONSISTENCY")
	mget := p.MGet(ctx, "p:0", "p:49")
	if _, err := p.Exec(ctx); err != nil {
		t.Fatal(err)
	}
	for i, g := range gets {
		if g.Val() != fmt.Sprintf("%dx", i) {
			t.Fatalf("get p:%d: %q", i, g.Val())
		}
	}
	if level.Val() != "one" || fmt.Sprint(mget.Val()) != "[0x 49x]" {
		t.Fatalf("level %v, mget %v", level.Val(), mget.Val())
	}
}

// AUTH, HELLO AUTH and the store's refusals.
func TestAuth(t *testing.T) {
	_, addr := startServer(t, DefaultConfig(), Deps{Store: newMemStore(), Auth: fakeAuth{}})
	ctx := t.Context()
	r := newRedis(t, addr, 2)
	if err := r.Do(ctx, "AUTH", "alice", "wrong").Err(); err == nil || err.Error() != errWrongPass {
		t.Fatalf("bad password: %v", err)
	}
	if err := r.Do(ctx, "AUTH", "a", "b", "c").Err(); err == nil || err.Error() != errSyntax {
		t.Fatalf("auth with 3 args: %v", err)
	}
	ro := redis.NewClient(&redis.Options{Addr: addr, Username: "reader", Password: "secret", DisableIdentity: true})
	defer ro.Close() //nolint:errcheck // test
	if err := ro.Set(ctx, "k", "v", 0).Err(); err == nil || !strings.HasPrefix(err.Error(), "NOPERM ") {
		t.Fatalf("reader set: %v", err)
	}
	rw := redis.NewClient(&redis.Options{Addr: addr, Username: "alice", Password: "secret", Protocol: 3, DisableIdentity: true})
	defer rw.Close() //nolint:errcheck // test
	if err := rw.Set(ctx, "k", "v", 0).Err(); err != nil {
		t.Fatal(err)
	}
	if err := rw.Do(ctx, "HELLO", "3", "AUTH", "alice", "nope").Err(); err == nil || err.Error() != errWrongPass {
		t.Fatalf("hello auth: %v", err)
	}
	if err := rw.Do(ctx, "HELLO", "3", "SETNAME", "x", "BOGUS").Err(); err == nil {
		t.Fatal("bad hello option accepted")
	}
	st := newMemStore()
	st.fail = auth.ErrUnauthenticated
	_, addr2 := startServer(t, DefaultConfig(), Deps{Store: st})
	if err := newRedis(t, addr2, 2).Get(ctx, "k").Err(); err == nil || err.Error() != errNoAuth {
		t.Fatalf("unauthenticated: %v", err)
	}
}

// rawConn speaks RESP by hand.
type rawConn struct {
	net.Conn
	rd *bufio.Reader
}

func dialRaw(t *testing.T, addr string) *rawConn {
	t.Helper()
	c, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = c.Close() })
	_ = c.SetDeadline(time.Now().Add(10 * time.Second))
	return &rawConn{Conn: c, rd: bufio.NewReader(c)}
}

func (c *rawConn) line(t *testing.T) string {
	t.Helper()
	s, err := c.rd.ReadString('\n')
	if err != nil {
		t.Fatalf("read: %v (have %q)", err, s)
	}
	return strings.TrimRight(s, "\r\n")
}

// Garbage closes the connection after a protocol error, logged once a
// minute per address; a value over the limits answers -ERR and the
// connection goes on; a request over MaxRequestBytes closes it.
func TestGarbageAndLimits(t *testing.T) {
	var logBuf syncBuffer
	cfg := DefaultConfig()
	cfg.MaxRequestBytes = 64 << 10
	cfg.Logger = slog.New(slog.NewTextHandler(&logBuf, nil))
	_, addr := startServer(t, cfg, Deps{Store: newMemStore()})
	for range 2 {
		c := dialRaw(t, addr)
		if _, err := c.Write([]byte("*1\r\n+PING\r\n")); err != nil {
			t.Fatal(err)
		}
		if got := c.line(t); !strings.HasPrefix(got, "-ERR Protocol error") {
			t.Fatalf("garbage: %q", got)
		}
		if _, err := c.rd.ReadByte(); !errors.Is(err, io.EOF) {
			t.Fatalf("connection not closed: %v", err)
		}
	}
	if n := strings.Count(logBuf.String(), "sent garbage"); n != 1 {
		t.Fatalf("logged %d times:\n%s", n, logBuf.String())
	}
	// Inline commands (telnet) work, and a QUIT ends the connection.
	c := dialRaw(t, addr)
	if _, err := c.Write([]byte("PING\r\nSET k " + strings.Repeat("x", 200) + "\r\nQUIT\r\nPING\r\n")); err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{"+PONG", "+OK", "+OK"} {
		if got := c.line(t); got != want {
			t.Fatalf("got %q, want %q", got, want)
		}
	}
	if _, err := c.rd.ReadByte(); !errors.Is(err, io.EOF) {
		t.Fatalf("connection not closed after QUIT: %v", err)
	}
	// A key over the store's limit: -ERR, and the connection goes on.
	c = dialRaw(t, addr)
	long := strings.Repeat("k", 200)
	fmt.Fprintf(c, "*3\r\n$3\r\nSET\r\n$%d\r\n%s\r\n$1\r\nv\r\n*1\r\n$4\r\nPING\r\n", len(long), long)
	if got := c.line(t); !strings.HasPrefix(got, "-ERR coordinator: invalid argument") {
		t.Fatalf("long key: %q", got)
	}
	if got := c.line(t); got != "+PONG" {
		t.Fatalf("after long key: %q", got)
	}
	// A request over MaxRequestBytes closes the connection.
	fmt.Fprintf(c, "*3\r\n$3\r\nSET\r\n$1\r\nk\r\n$%d\r\n", 1<<20)
	_, _ = c.Write(make([]byte, 128<<10))
	if _, err := c.rd.ReadByte(); err == nil {
		t.Fatal("oversized request answered")
	}
}

type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (b *syncBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.b.Write(p)
}

func (b *syncBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.b.String()
}

func TestConfig(t *testing.T) {
	if err := DefaultConfig().Validate(); err != nil {
		t.Fatal(err)
	}
	for name, f := range map[string]func(*Config){
		"request bytes": func(c *Config) { c.MaxRequestBytes = 1 },
		"cursors":       func(c *Config) { c.ScanCursors = 0 },
		"count":         func(c *Config) { c.ScanCount = 0 },
		"keys":          func(c *Config) { c.MaxKeys = 0 },
		"retries":       func(c *Config) { c.CASRetries = 0 },
		"timeout":       func(c *Config) { c.RequestTimeout = 0 },
	} {
		c := DefaultConfig()
		f(&c)
		if _, err := New(c, Deps{Store: newMemStore()}); !errors.Is(err, ErrInvalidConfig) {
			t.Errorf("%s: got %v", name, err)
		}
	}
	if _, err := New(DefaultConfig(), Deps{}); !errors.Is(err, ErrInvalidConfig) {
		t.Fatalf("no store: %v", err)
	}
	srv, err := New(DefaultConfig(), Deps{Store: newMemStore()})
	if err != nil {
		t.Fatal(err)
	}
	if err := srv.Close(); err != nil {
		t.Fatal(err)
	}
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	if err := srv.Serve(lis); !errors.Is(err, ErrClosed) {
		t.Fatalf("serve after close: %v", err)
	}
}
