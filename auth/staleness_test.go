package auth

import (
	"context"
	"errors"
	"sync"
	"testing"
	"testing/synctest"
	"time"
)

// TestStaleness: a change made through A reaches B once B's cache is
// MaxStaleness old, and not before (B does not read the store while its
// cache is young).
func TestStaleness(t *testing.T) {
	ctx := t.Context()
	store, clock, a := enabled(t)
	must(t, a.AddRole(ctx, "reader", Permission{Access: Read, Prefix: "a/"}))
	must(t, a.AddUser(ctx, "alice", "alice-password", "reader"))
	b := newTestAuthority(t, store, clock, nil)
	alice, get := Principal{User: "alice"}, Action{Op: OpRead, Key: []byte("a/1")}
	must(t, b.Authorize(ctx, alice, get)) // B's cache is read now

	must(t, a.RevokeRole(ctx, "alice", "reader"))
	if err := a.Authorize(ctx, alice, get); !errors.Is(err, ErrPermissionDenied) {
		t.Fatalf("A, at once: got %v, want ErrPermissionDenied", err)
	}
	gets, _ := store.counts()
	clock.Advance(b.cfg.MaxStaleness - time.Nanosecond)
	if err := b.Authorize(ctx, alice, get); err != nil {
		t.Fatalf("B, just within MaxStaleness: got %v, want the cached grant", err)
	}
	if again, _ := store.counts(); again != gets {
		t.Fatalf("B read the store while its cache was young")
	}
	clock.Advance(time.Nanosecond)
	if err := b.Authorize(ctx, alice, get); !errors.Is(err, ErrPermissionDenied) {
		t.Fatalf("B, after MaxStaleness: got %v, want ErrPermissionDenied", err)
	}

	// A change through B reaches A the same way.
	if _, err := a.Status(ctx); err != nil { // A's cache is read now
		t.Fatal(err)
	}
	must(t, b.DeleteUser(ctx, "alice"))
	if _, err := a.PrincipalFor(ctx, "alice"); err != nil {
		t.Fatalf("A, before MaxStaleness: got %v, want the cached user", err)
	}
	clock.Advance(a.cfg.MaxStaleness)
	if _, err := a.PrincipalFor(ctx, "alice"); !errors.Is(err, ErrUnauthenticated) {
		t.Fatalf("A, after MaxStaleness: got %v, want ErrUnauthenticated", err)
	}
}

// TestUnavailableFailsClosed: while the store cannot be read the cached
// state is used until MaxStaleWhenUnavailable old, then every read method
// fails with ErrUnavailable, and works again once the store is back.
func TestUnavailableFailsClosed(t *testing.T) {
	ctx := t.Context()
	down := errors.New("store down")
	checks := []struct {
		name string
		do   func(a *Authority) error
	}{
		{"Authorize", func(a *Authority) error {
			return a.Authorize(ctx, Principal{User: RootName}, Action{Op: OpAdmin})
		}},
		{"Authenticate", func(a *Authority) error { _, err := a.Authenticate(ctx, RootName, rootPassword); return err }},
		{"PrincipalFor", func(a *Authority) error { _, err := a.PrincipalFor(ctx, RootName); return err }},
		{"IssueToken", func(a *Authority) error { _, _, err := a.IssueToken(ctx, Principal{User: RootName}); return err }},
		{"Status", func(a *Authority) error { _, err := a.Status(ctx); return err }},
		{"ListUsers", func(a *Authority) error { _, err := a.ListUsers(ctx); return err }},
		{"ListRoles", func(a *Authority) error { _, err := a.ListRoles(ctx); return err }},
	}
	for _, tc := range checks {
		t.Run(tc.name, func(t *testing.T) {
			store, clock, a := enabled(t) // a's cache is fresh
			tok, _, err := a.IssueToken(ctx, Principal{User: RootName})
			must(t, err)
			store.setErrs(down, nil)

			clock.Advance(a.cfg.MaxStaleness) // stale: refresh fails, cache still usable
			if err := tc.do(a); err != nil {
				t.Fatalf("within the hard bound: got %v, want the cached state", err)
			}
			clock.Advance(a.cfg.MaxStaleWhenUnavailable - a.cfg.MaxStaleness - time.Nanosecond)
			if err := tc.do(a); err != nil {
				t.Fatalf("just within the hard bound: got %v, want the cached state", err)
			}
			clock.Advance(time.Nanosecond)
			err = tc.do(a)
			if !errors.Is(err, ErrUnavailable) || !errors.Is(err, down) {
				t.Fatalf("past the hard bound: got %v, want ErrUnavailable wrapping the store's error", err)
			}
			if _, err := a.VerifyToken(ctx, tok); !errors.Is(err, ErrUnavailable) {
				t.Fatalf("VerifyToken past the hard bound: got %v, want ErrUnavailable", err)
			}

			store.setErrs(nil, nil)
			if err := tc.do(a); err != nil {
				t.Fatalf("store back: got %v", err)
			}
		})
	}

	t.Run("disabled auth fails closed too", func(t *testing.T) {
		store, clock := newMemStore(), newFakeClock()
		a := newTestAuthority(t, store, clock, nil)
		act := Action{Op: OpWrite, Key: []byte("k")}
		must(t, a.Authorize(ctx, Principal{}, act))
		store.setErrs(down, nil)
		clock.Advance(a.cfg.MaxStaleWhenUnavailable)
		if err := a.Authorize(ctx, Principal{}, act); !errors.Is(err, ErrUnavailable) {
			t.Fatalf("got %v, want ErrUnavailable", err)
		}
	})

	t.Run("nothing cached", func(t *testing.T) {
		store := newMemStore()
		store.setErrs(down, nil)
		a := newTestAuthority(t, store, newFakeClock(), nil)
		if err := a.Authorize(ctx, Principal{}, Action{Op: OpRead}); !errors.Is(err, ErrUnavailable) {
			t.Fatalf("got %v, want ErrUnavailable", err)
		}
	})

	t.Run("caller's context ended", func(t *testing.T) {
		store, clock, a := enabled(t)
		clock.Advance(a.cfg.MaxStaleness)
		cctx, cancel := context.WithCancel(ctx)
		cancel()
		store.beforeGet = func(ctx context.Context) error { return ctx.Err() }
		if _, err := a.Status(cctx); !errors.Is(err, context.Canceled) {
			t.Fatalf("got %v, want context.Canceled rather than the cached state", err)
		}
	})
}

// TestSharedRefresh: callers that find the cache stale at the same time
// share one store read.
func TestSharedRefresh(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		ctx := t.Context()
		store, clock, a := enabled(t)
		clock.Advance(a.cfg.MaxStaleness)
		release := make(chan struct{})
		store.beforeGet = func(context.Context) error { <-release; return nil }
		gets, _ := store.counts()

		const n = 8
		errs := make([]error, n)
		var wg sync.WaitGroup
		for i := range n {
			wg.Go(func() { _, errs[i] = a.Status(ctx) })
		}
		synctest.Wait() // the leader blocks in Get, the others wait for it
		close(release)
		wg.Wait()
		for i, err := range errs {
			if err != nil {
				t.Errorf("caller %d: %v", i, err)
			}
		}
		if again, _ := store.counts(); again-gets != 1 {
			t.Fatalf("%d callers made %d store reads, want 1", n, again-gets)
		}
	})
}

// TestSlowRefreshServesCached: while the cached state is stale but still
// usable, callers wait for a slow store read at most refreshWait and then
// go on with the cached state; the read goes on, and once it ends its
// state is used. (A read stuck behind an unreachable Raft leader used to
// hold every request of the node until the request's deadline.)
func TestSlowRefreshServesCached(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		ctx := t.Context()
		store, clock, a := enabled(t)
		must(t, a.AddRole(ctx, "reader", Permission{Access: Read, Prefix: "a/"}))
		clock.Advance(a.cfg.MaxStaleness)
		release := make(chan struct{})
		store.beforeGet = func(context.Context) error { <-release; return nil }
		gets, _ := store.counts()

		began := time.Now()
		const n = 8
		var wg sync.WaitGroup
		errs := make([]error, n)
		for i := range n {
			wg.Go(func() { _, errs[i] = a.Status(ctx) })
		}
		wg.Wait() // without the read ending
		if waited := time.Since(began); waited != refreshWait {
			t.Errorf("callers waited %v, want refreshWait (%v)", waited, refreshWait)
		}
		for i, err := range errs {
			if err != nil {
				t.Errorf("caller %d: %v, want the cached state", i, err)
			}
		}
		// A caller arriving after refreshWait does not wait at all.
		began = time.Now()
		if _, err := a.Status(ctx); err != nil || time.Since(began) != 0 {
			t.Errorf("late caller: %v after %v, want the cached state at once", err, time.Since(began))
		}
		close(release)
		synctest.Wait()
		if again, _ := store.counts(); again-gets != 1 {
			t.Fatalf("%d callers made %d store reads, want 1", n+1, again-gets)
		}
	})
}

// TestRefreshOutlivesCaller: the shared read has its own context: a
// caller that gives up gets its context's error, and the read goes on for
// the others.
func TestRefreshOutlivesCaller(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		ctx := t.Context()
		store, clock, a := enabled(t)
		clock.Advance(a.cfg.MaxStaleWhenUnavailable) // nothing usable: callers wait
		release := make(chan struct{})
		store.beforeGet = func(context.Context) error { <-release; return nil }
		gets, _ := store.counts()

		leaderCtx, cancel := context.WithCancel(ctx)
		var leaderErr, followerErr error
		var wg sync.WaitGroup
		wg.Go(func() { _, leaderErr = a.Status(leaderCtx) })
		synctest.Wait() // the read is in Get
		wg.Go(func() { _, followerErr = a.Status(ctx) })
		synctest.Wait() // the follower waits for it
		cancel()
		synctest.Wait()
		close(release)
		wg.Wait()
		if !errors.Is(leaderErr, context.Canceled) || !errors.Is(leaderErr, ErrUnavailable) {
			t.Fatalf("leader: got %v, want ErrUnavailable and context.Canceled", leaderErr)
		}
		if followerErr != nil {
			t.Fatalf("follower: got %v, want the read's state", followerErr)
		}
		if again, _ := store.counts(); again-gets != 1 {
			t.Fatalf("got %d store reads, want 1", again-gets)
		}
	})
}
