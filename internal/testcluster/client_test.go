package testcluster

import (
	"context"
	"errors"
	"fmt"
	"os"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/ringkv/ringkv/client"
)

// typed reports whether err is one of the client's typed errors.
func typed(err error) bool {
	for _, want := range []error{client.ErrNotFound, client.ErrCASMismatch, client.ErrUnavailable,
		client.ErrTimeout, client.ErrOutcomeUnknown, client.ErrInvalidArgument} {
		if errors.Is(err, want) {
			return true
		}
	}
	return false
}

// callLog checks and counts the calls of a failover test.
type callLog struct {
	deadline time.Duration
	slack    time.Duration
	ok, fail atomic.Int64
	okAfter  atomic.Int64 // successes that started after the kill
	killedAt atomic.Int64 // UnixNano; 0 before the kill
	mu       sync.Mutex
	errs     map[string]int
}

// run makes one call with the log's deadline and checks that it either
// succeeded or failed with a typed error within its deadline.
func (l *callLog) run(t *testing.T, what string, call func(ctx context.Context) error) {
	ctx, cancel := context.WithTimeout(context.Background(), l.deadline)
	defer cancel()
	start := time.Now()
	err := call(ctx)
	took := time.Since(start)
	if took > l.deadline+l.slack {
		t.Errorf("%s took %v, deadline %v", what, took, l.deadline)
	}
	if err == nil {
		l.ok.Add(1)
		if k := l.killedAt.Load(); k != 0 && start.UnixNano() > k {
			l.okAfter.Add(1)
		}
		return
	}
	l.fail.Add(1)
	if !typed(err) {
		t.Errorf("%s: untyped error %v", what, err)
	}
	l.mu.Lock()
	l.errs[kind(err)]++
	l.mu.Unlock()
}

func kind(err error) string {
	for name, e := range map[string]error{"outcome-unknown": client.ErrOutcomeUnknown, "timeout": client.ErrTimeout,
		"unavailable": client.ErrUnavailable, "not-found": client.ErrNotFound} {
		if errors.Is(err, e) {
			return name
		}
	}
	return "other"
}

// TestClientSurvivesSIGKILL gives the client one node's address, SIGKILLs
// that node mid-run, and checks that calls keep succeeding through the
// others and that every call during the failover either succeeded or
// returned a typed error within its deadline.
func TestClientSurvivesSIGKILL(t *testing.T) {
	if testing.Short() {
		t.Skip("starts real processes")
	}
	c := Start(t, 3)
	c.WaitRaftReady(90*time.Second, 3)
	seed := c.Nodes[0]
	cl, err := client.New([]string{seed.RPCAddr}, client.WithRefreshInterval(500*time.Millisecond))
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = cl.Close() }()
	log := &callLog{deadline: 3 * time.Second, slack: time.Second, errs: map[string]int{}}
	stop := make(chan struct{})
	var wg sync.WaitGroup
	for w := range 8 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := 0; ; i++ {
				select {
				case <-stop:
					return
				default:
				}
				key := fmt.Sprintf("w%d:%d", w, i%50)
				level := client.WithConsistency(client.Quorum)
				if w%4 == 3 {
					level = client.WithConsistency(client.Linearizable)
				}
				log.run(t, "set "+key, func(ctx context.Context) error { return cl.Set(ctx, key, []byte("v"), level) })
				log.run(t, "get "+key, func(ctx context.Context) error {
					_, err := cl.Get(ctx, key, level)
					if errors.Is(err, client.ErrNotFound) {
						return nil // the set may have failed
					}
					return err
				})
			}
		}()
	}
	c.WaitFor(30*time.Second, "calls before the kill", func(context.Context) error {
		if log.ok.Load() < 100 {
			return fmt.Errorf("%d calls succeeded", log.ok.Load())
		}
		return nil
	})
	log.killedAt.Store(time.Now().UnixNano())
	seed.Kill()
	c.WaitFor(60*time.Second, "calls succeeding after the kill", func(context.Context) error {
		if n := log.okAfter.Load(); n < 200 {
			return fmt.Errorf("%d calls succeeded after the kill", n)
		}
		return nil
	})
	close(stop)
	wg.Wait()
	t.Logf("%d calls succeeded (%d after the SIGKILL of %s), %d failed with typed errors %v",
		log.ok.Load(), log.okAfter.Load(), seed.ID, log.fail.Load(), log.errs)
	// Once the failover has settled, quorum calls all succeed.
	for i := range 20 {
		key := fmt.Sprintf("final:%d", i)
		log.run(t, "final set", func(ctx context.Context) error { return cl.Set(ctx, key, []byte("x")) })
		log.run(t, "final get", func(ctx context.Context) error { _, err := cl.Get(ctx, key); return err })
	}
	if f := log.fail.Load(); f > 0 {
		t.Logf("(%d failures in total, all typed and within their deadline)", f)
	}
	v, err := cl.Get(t.Context(), "final:19")
	if err != nil || string(v) != "x" {
		t.Fatalf("final read: %q %v", v, err)
	}
}

// TestClientFindsNewLeader SIGKILLs the leader of a key's partition while
// the client makes linearizable calls on the key, and measures how long
// the client takes, without a restart, to complete a call at the new
// leader.
func TestClientFindsNewLeader(t *testing.T) {
	if testing.Short() {
		t.Skip("starts real processes")
	}
	c := Start(t, 3)
	c.WaitRaftReady(90*time.Second, 3)
	var addrs []string
	for _, nd := range c.Nodes {
		addrs = append(addrs, nd.RPCAddr)
	}
	cl, err := client.New(addrs)
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = cl.Close() }()
	lin := client.WithConsistency(client.Linearizable)
	const key = "leader-failover"
	c.WaitFor(30*time.Second, "a linearizable write", func(ctx context.Context) error {
		return cl.Set(ctx, key, []byte("0"), lin)
	})
	leader := cl.Leader(key)
	var victim *Node
	for _, nd := range c.Nodes {
		if nd.ID == leader {
			victim = nd
		}
	}
	if victim == nil {
		t.Fatalf("the client names no known leader for %q: %q", key, leader)
	}
	log := &callLog{deadline: 2 * time.Second, slack: time.Second, errs: map[string]int{}}
	killed := time.Now()
	victim.Kill()
	var found time.Duration
	for i := 1; ; i++ {
		var err error
		log.run(t, "linearizable set", func(ctx context.Context) error {
			err = cl.Set(ctx, key, []byte(fmt.Sprint(i)), lin)
			return err
		})
		if err == nil {
			if l := cl.Leader(key); l != "" && l != victim.ID {
				found = time.Since(killed)
				break
			}
		}
		if time.Since(killed) > 60*time.Second {
			t.Fatalf("no linearizable write at a new leader 60s after the kill (last error %v)", err)
		}
	}
	t.Logf("after SIGKILL of leader %s, the client wrote at new leader %s after %v (%d failed calls: %v)",
		victim.ID, cl.Leader(key), found, log.fail.Load(), log.errs)
	bound := 30 * time.Second // two shared cores: see TestRaftElectionAndFailover
	if os.Getenv("RINGKV_LONG_TESTS") != "" {
		bound = 10 * time.Second
	}
	if found > bound {
		t.Errorf("the client found the new leader after %v, want within %v", found, bound)
	}
	// Subsequent linearizable calls go straight to the new leader and see
	// the last write.
	for range 10 {
		ctx, cancel := context.WithTimeout(t.Context(), 5*time.Second)
		_, err := cl.Get(ctx, key, lin)
		cancel()
		if err != nil {
			t.Fatalf("linearizable get after the failover: %v", err)
		}
	}
}
