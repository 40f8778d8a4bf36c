package auth

import (
	"context"
	"log/slog"
	"strings"
	"sync"
	"testing"
	"time"

	"go.uber.org/goleak"
)

func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m)
}

// memStore is an in-memory Store. Its hooks inject failures and races.
type memStore struct {
	mu struct {
		sync.Mutex
		m      map[string][]byte
		gets   int   // Get calls
		cases  int   // CompareAndSet calls
		getErr error // returned by Get while set
		casErr error // returned by CompareAndSet while set
	}
	// beforeGet, if set, runs before each Get (without the lock); an error
	// it returns is Get's.
	beforeGet func(ctx context.Context) error
	// beforeCAS, if set, runs before each CompareAndSet compares (without
	// the lock). It may change the record, through another Authority, to
	// make the CAS lose a race.
	beforeCAS func()
}

func newMemStore() *memStore {
	s := &memStore{}
	s.mu.m = map[string][]byte{}
	return s
}

func (s *memStore) Get(ctx context.Context, key []byte) ([]byte, bool, error) {
	if s.beforeGet != nil {
		if err := s.beforeGet(ctx); err != nil {
			return nil, false, err
		}
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	s.mu.gets++
	if s.mu.getErr != nil {
		return nil, false, s.mu.getErr
	}
	v, ok := s.mu.m[string(key)]
	return clone(v), ok, nil
}

func (s *memStore) CompareAndSet(ctx context.Context, key []byte, expected *[]byte, value []byte) (bool, []byte, bool, error) {
	if s.beforeCAS != nil {
		s.beforeCAS()
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	s.mu.cases++
	if s.mu.casErr != nil {
		return false, nil, false, s.mu.casErr
	}
	cur, ok := s.mu.m[string(key)]
	if (expected == nil && ok) || (expected != nil && (!ok || string(*expected) != string(cur))) {
		return false, clone(cur), ok, nil
	}
	s.mu.m[string(key)] = clone(value)
	return true, nil, false, nil
}

func clone(b []byte) []byte {
	if b == nil {
		return nil
	}
	return append([]byte{}, b...)
}

func (s *memStore) setErrs(getErr, casErr error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.mu.getErr, s.mu.casErr = getErr, casErr
}

func (s *memStore) put(key string, v []byte) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.mu.m[key] = clone(v)
}

func (s *memStore) value(key string) ([]byte, bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	v, ok := s.mu.m[key]
	return clone(v), ok
}

func (s *memStore) counts() (gets, cases int) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.mu.gets, s.mu.cases
}

// fakeClock is an injected clock that moves only when told.
type fakeClock struct {
	mu  sync.Mutex
	now time.Time
}

func newFakeClock() *fakeClock {
	return &fakeClock{now: time.Date(2025, 1, 2, 3, 4, 5, 0, time.UTC)}
}

func (c *fakeClock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.now
}

func (c *fakeClock) Advance(d time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.now = c.now.Add(d)
}

// newTestAuthority returns an Authority over store with LocalConfig, the
// given clock, a logger writing to t.Log, and edit applied to the config.
func newTestAuthority(t testing.TB, store Store, clock *fakeClock, edit func(*Config)) *Authority {
	t.Helper()
	cfg := LocalConfig()
	cfg.Logger = testLogger(t)
	if edit != nil {
		edit(&cfg)
	}
	a, err := New(cfg, Deps{Store: store, Now: clock.Now})
	if err != nil {
		t.Fatalf("New: %v", err)
	}
	return a
}

const rootPassword = "root-password"

// enabled returns a store, a clock and an Authority with auth enabled.
func enabled(t testing.TB) (*memStore, *fakeClock, *Authority) {
	t.Helper()
	store, clock := newMemStore(), newFakeClock()
	a := newTestAuthority(t, store, clock, nil)
	if err := a.Enable(context.Background(), rootPassword); err != nil {
		t.Fatalf("Enable: %v", err)
	}
	return store, clock, a
}

func must(t testing.TB, err error) {
	t.Helper()
	if err != nil {
		t.Fatal(err)
	}
}

// testLogger returns a logger writing to t.Log.
func testLogger(t testing.TB) *slog.Logger {
	return slog.New(slog.NewTextHandler(tbWriter{t}, &slog.HandlerOptions{Level: slog.LevelDebug}))
}

type tbWriter struct{ t testing.TB }

func (w tbWriter) Write(p []byte) (int, error) {
	w.t.Helper()
	w.t.Log(strings.TrimRight(string(p), "\n"))
	return len(p), nil
}
