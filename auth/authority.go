package auth

import (
	"cmp"
	"context"
	"crypto/rand"
	"errors"
	"fmt"
	"io"
	"slices"
	"sync"
	"time"

	"golang.org/x/crypto/bcrypt"
)

// Authority keeps a cluster's users, roles and permissions, authenticates
// principals and authorizes their actions. It is safe for concurrent use.
// Its only goroutine is a Store read of the state, one at a time, bounded
// by refreshTimeout. Build it with New.
type Authority struct {
	cfg   Config
	key   []byte // cfg.Key
	store Store
	now   func() time.Time
	rand  io.Reader
	// dummyHash is checked against when Authenticate is given an unknown
	// user, so that a wrong user costs what a wrong password costs.
	dummyHash []byte
	mu        struct {
		sync.Mutex
		st     *state    // the newest state seen; nil before the first read. Never modified.
		readAt time.Time // when the read or write that produced st began
		// failing is set while refreshes fail and closed once calls fail
		// closed, so that each transition is logged once.
		failing, closed bool
		// flight is the Store read in progress, shared by every caller
		// that finds the cache too old; nil when none is.
		flight *flight
	}
}

// flight is one Store read of the state, on a goroutine of its own.
type flight struct {
	start time.Time     // wall clock, for refreshWait
	done  chan struct{} // closed once st and err are set
	st    *state
	err   error
}

// refreshWait is how long a caller whose cached state is stale but still
// usable waits for a refresh before it goes on with the cached state; the
// refresh goes on without it. A read normally takes a few milliseconds,
// so the caller gets the fresh state; a read stuck behind an unreachable
// Raft leader costs the requests of its first refreshWait that much, and
// no more, instead of stalling every request on the node until its
// deadline.
const refreshWait = 200 * time.Millisecond

// refreshTimeout bounds one Store read of the state.
func (a *Authority) refreshTimeout() time.Duration {
	return max(2*a.cfg.MaxStaleness, 2*time.Second)
}

// New returns an Authority for the record cfg.Key in deps.Store. It copies
// cfg, fills zero fields with defaults and validates it, and hashes one
// throwaway password at cfg.BcryptCost. It does no I/O: the record is read
// on first use.
func New(cfg Config, deps Deps) (*Authority, error) {
	cfg = cfg.withDefaults()
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	if deps.Store == nil {
		return nil, errors.New("auth: Deps.Store is required")
	}
	a := &Authority{cfg: cfg, key: []byte(cfg.Key), store: deps.Store, now: deps.Now, rand: deps.Rand}
	if a.now == nil {
		a.now = time.Now
	}
	if a.rand == nil {
		a.rand = rand.Reader
	}
	// Any password will do: the result of the check is ignored.
	h, err := bcrypt.GenerateFromPassword([]byte("no such user"), cfg.BcryptCost)
	if err != nil {
		return nil, fmt.Errorf("auth: hash the throwaway password: %w", err)
	}
	a.dummyHash = h
	return a, nil
}

// current returns the cached state if it is younger than MaxStaleness, and
// otherwise reads it again (a read shared by concurrent callers, on a
// goroutine of its own). While the cached state is younger than
// MaxStaleWhenUnavailable a caller waits for that read at most
// refreshWait from its start, and otherwise goes on with the cached
// state; if the read fails it falls back to the cached state likewise.
// Past MaxStaleWhenUnavailable (or before any state was read) callers wait
// for the read, and fail closed with an error marked ErrUnavailable if it
// fails.
func (a *Authority) current(ctx context.Context) (*state, error) {
	a.mu.Lock()
	st, at := a.mu.st, a.mu.readAt
	a.mu.Unlock()
	if st != nil && a.now().Sub(at) < a.cfg.MaxStaleness {
		return st, nil
	}
	f := a.refresh()
	if err := ctx.Err(); err != nil {
		return nil, fmt.Errorf("%w: read: %w", ErrUnavailable, err)
	}
	usable := st != nil && a.now().Sub(at) < a.cfg.MaxStaleWhenUnavailable
	var waitMore <-chan time.Time
	if usable {
		d := refreshWait - time.Since(f.start)
		if d <= 0 {
			return st, nil // the read is slow: don't queue behind it
		}
		timer := time.NewTimer(d)
		defer timer.Stop()
		waitMore = timer.C
	}
	select {
	case <-f.done:
	case <-waitMore:
		return st, nil
	case <-ctx.Done():
		return nil, fmt.Errorf("%w: read: %w", ErrUnavailable, ctx.Err())
	}
	if f.err == nil {
		return f.st, nil
	}
	a.mu.Lock()
	st, at = a.mu.st, a.mu.readAt
	a.mu.Unlock()
	if st != nil && a.now().Sub(at) < a.cfg.MaxStaleWhenUnavailable {
		return st, nil
	}
	return nil, f.err
}

// load reads the state from the Store, waiting for the read in progress
// if there is one. Errors are marked ErrUnavailable.
func (a *Authority) load(ctx context.Context) (*state, error) {
	f := a.refresh()
	select {
	case <-f.done:
		return f.st, f.err
	case <-ctx.Done():
		return nil, fmt.Errorf("%w: read: %w", ErrUnavailable, ctx.Err())
	}
}

// refresh returns the Store read in progress, starting one if there is
// none. The read runs on its own goroutine, bounded by refreshTimeout, so
// it outlives the caller that started it but not that bound.
func (a *Authority) refresh() *flight {
	a.mu.Lock()
	defer a.mu.Unlock()
	if f := a.mu.flight; f != nil {
		return f
	}
	f := &flight{start: time.Now(), done: make(chan struct{})}
	a.mu.flight = f
	go func() {
		ctx, cancel := context.WithTimeout(context.Background(), a.refreshTimeout())
		defer cancel()
		f.st, f.err = a.read(ctx)
		a.mu.Lock()
		a.mu.flight = nil
		a.mu.Unlock()
		if f.err != nil {
			a.failed(f.err)
		}
		close(f.done)
	}()
	return f
}

// failed records a failed read and logs the transitions: the first
// failure while the cached state is still usable (Warn), the switch to
// failing closed (Error).
func (a *Authority) failed(err error) {
	a.mu.Lock()
	st, at := a.mu.st, a.mu.readAt
	usable := st != nil && a.now().Sub(at) < a.cfg.MaxStaleWhenUnavailable
	firstFailure, firstClosed := !a.mu.failing, !usable && !a.mu.closed
	a.mu.failing, a.mu.closed = true, !usable
	a.mu.Unlock()
	if firstFailure && usable {
		a.cfg.Logger.Warn("auth state unreadable, using the cached state", "err", err,
			"max_stale", a.cfg.MaxStaleWhenUnavailable)
	}
	if firstClosed {
		a.cfg.Logger.Error("auth state unreadable, refusing requests", "err", err,
			"max_stale", a.cfg.MaxStaleWhenUnavailable)
	}
}

func (a *Authority) read(ctx context.Context) (*state, error) {
	at := a.now()
	raw, found, err := a.store.Get(ctx, a.key)
	if err != nil {
		return nil, fmt.Errorf("%w: read: %w", ErrUnavailable, err)
	}
	st := newState()
	if found {
		if st, err = decodeState(raw); err != nil {
			return nil, fmt.Errorf("%w: read: %w", ErrUnavailable, err)
		}
	}
	a.install(st, at)
	return st, nil
}

// install caches st, read or written at time at, unless a newer state is
// cached already.
func (a *Authority) install(st *state, at time.Time) {
	a.mu.Lock()
	recovered := a.mu.failing
	a.mu.failing, a.mu.closed = false, false
	switch cur := a.mu.st; {
	case cur == nil || st.revision > cur.revision:
		a.mu.st, a.mu.readAt = st, at
	case st.revision == cur.revision && at.After(a.mu.readAt):
		a.mu.readAt = at
	}
	a.mu.Unlock()
	if recovered {
		a.cfg.Logger.Info("auth state readable again", "revision", st.revision)
	}
}

// errUnchanged is returned by a change function when the change is already
// in place: nothing is written and the method succeeds.
var errUnchanged = errors.New("auth: unchanged")

// mutate applies change to the current record and writes the result with
// compare-and-set, re-applying it to what it finds each time it loses a
// race, at most MaxRetries times. change gets a private copy whose
// revision is already the new one. It returns the state written, or the
// state found if change returned errUnchanged.
func (a *Authority) mutate(ctx context.Context, change func(*state) error) (*state, error) {
	at := a.now()
	raw, found, err := a.store.Get(ctx, a.key)
	if err != nil {
		return nil, fmt.Errorf("%w: read: %w", ErrUnavailable, err)
	}
	for range a.cfg.MaxRetries + 1 {
		st := newState()
		if found {
			if st, err = decodeState(raw); err != nil {
				return nil, err
			}
		}
		a.install(st, at)
		next := st.clone()
		next.revision++
		switch err := change(next); {
		case errors.Is(err, errUnchanged):
			return st, nil
		case err != nil:
			return nil, err
		}
		var expected *[]byte
		if found {
			expected = &raw
		}
		at = a.now()
		swapped, cur, curFound, err := a.store.CompareAndSet(ctx, a.key, expected, next.encode())
		if err != nil {
			return nil, fmt.Errorf("%w: compare-and-set: %w", ErrUnavailable, err)
		}
		if swapped {
			a.install(next, at)
			return next, nil
		}
		raw, found = cur, curFound
	}
	return nil, fmt.Errorf("%w: gave up after %d lost compare-and-set races", ErrConflict, a.cfg.MaxRetries+1)
}

func (a *Authority) validPassword(password string) error {
	switch {
	case len(password) < a.cfg.MinPasswordBytes:
		return fmt.Errorf("%w: password shorter than %d bytes", ErrInvalid, a.cfg.MinPasswordBytes)
	case len(password) > maxPasswordBytes:
		return fmt.Errorf("%w: password longer than %d bytes", ErrInvalid, maxPasswordBytes)
	}
	return nil
}

func (a *Authority) hash(password string) ([]byte, error) {
	if err := a.validPassword(password); err != nil {
		return nil, err
	}
	h, err := bcrypt.GenerateFromPassword([]byte(password), a.cfg.BcryptCost)
	if err != nil {
		return nil, fmt.Errorf("auth: hash password: %w", err)
	}
	return h, nil
}

// Enable turns authentication on. It creates the root role (every
// permission) and the user root holding it, whose password becomes
// rootPassword; if user root exists from an earlier Enable its password is
// replaced (whoever can call Enable while authentication is off can do
// anything anyway). It draws a new token signing key, so tokens issued
// before an earlier Disable stay dead. Errors: ErrAlreadyEnabled, ErrInvalid
// for a password outside the allowed length, ErrUnavailable, ErrConflict,
// ErrCorrupt.
func (a *Authority) Enable(ctx context.Context, rootPassword string) error {
	h, err := a.hash(rootPassword)
	if err != nil {
		return err
	}
	key := make([]byte, signingKeyBytes)
	if _, err := io.ReadFull(a.rand, key); err != nil {
		return fmt.Errorf("auth: draw signing key: %w", err)
	}
	st, err := a.mutate(ctx, func(s *state) error {
		if s.enabled {
			return ErrAlreadyEnabled
		}
		s.roles[RootName] = rootPermissions()
		root := s.users[RootName]
		if root == nil {
			root = &userRecord{}
			s.users[RootName] = root
		}
		root.hash, root.generation = h, s.revision
		if _, held := slices.BinarySearch(root.roles, RootName); !held {
			root.roles = insertSorted(root.roles, RootName)
		}
		s.signingKey, s.enabled = key, true
		return nil
	})
	if err != nil {
		return err
	}
	a.cfg.Logger.Info("auth enabled", "revision", st.revision)
	return nil
}

// Disable turns authentication off: Authorize allows everything and the
// credential methods return ErrAuthDisabled. Users and roles are kept; the
// signing key is dropped. Disabling a disabled Authority does nothing.
// Errors: ErrUnavailable, ErrConflict, ErrCorrupt.
func (a *Authority) Disable(ctx context.Context) error {
	st, err := a.mutate(ctx, func(s *state) error {
		if !s.enabled {
			return errUnchanged
		}
		s.enabled, s.signingKey = false, nil
		return nil
	})
	if err != nil {
		return err
	}
	a.cfg.Logger.Info("auth disabled", "revision", st.revision)
	return nil
}

// Status returns a summary of the state, at most MaxStaleness old. Errors:
// ErrUnavailable.
func (a *Authority) Status(ctx context.Context) (Status, error) {
	st, err := a.current(ctx)
	if err != nil {
		return Status{}, err
	}
	return Status{Enabled: st.enabled, Users: len(st.users), Roles: len(st.roles), Revision: st.revision}, nil
}

// AddUser adds a user with a password and roles. The name root is kept
// for Enable. Errors: ErrInvalid (name, password, root), ErrUserExists,
// ErrUnknownRole, ErrUnavailable, ErrConflict, ErrCorrupt.
func (a *Authority) AddUser(ctx context.Context, name, password string, roles ...string) error {
	if err := validName("user", name); err != nil {
		return err
	}
	if name == RootName {
		return fmt.Errorf("%w: user %s is made by Enable", ErrInvalid, RootName)
	}
	h, err := a.hash(password)
	if err != nil {
		return err
	}
	roles = slices.Compact(slices.Sorted(slices.Values(roles)))
	_, err = a.mutate(ctx, func(s *state) error {
		if _, ok := s.users[name]; ok {
			return fmt.Errorf("%w: %q", ErrUserExists, name)
		}
		for _, r := range roles {
			if _, ok := s.roles[r]; !ok {
				return fmt.Errorf("%w: %q", ErrUnknownRole, r)
			}
		}
		s.users[name] = &userRecord{hash: h, generation: s.revision, roles: roles}
		return nil
	})
	return err
}

// SetPassword replaces a user's password. Tokens issued to the user before
// stop verifying (at once here, within MaxStaleness elsewhere). Errors:
// ErrInvalid (password), ErrUnknownUser, ErrUnavailable, ErrConflict,
// ErrCorrupt.
func (a *Authority) SetPassword(ctx context.Context, name, password string) error {
	h, err := a.hash(password)
	if err != nil {
		return err
	}
	_, err = a.mutate(ctx, func(s *state) error {
		u, ok := s.users[name]
		if !ok {
			return fmt.Errorf("%w: %q", ErrUnknownUser, name)
		}
		u.hash, u.generation = h, s.revision
		return nil
	})
	return err
}

// DeleteUser removes a user; its tokens stop verifying. Errors: ErrInvalid
// (root), ErrUnknownUser, ErrUnavailable, ErrConflict, ErrCorrupt.
func (a *Authority) DeleteUser(ctx context.Context, name string) error {
	if name == RootName {
		return fmt.Errorf("%w: user %s cannot be deleted", ErrInvalid, RootName)
	}
	_, err := a.mutate(ctx, func(s *state) error {
		if _, ok := s.users[name]; !ok {
			return fmt.Errorf("%w: %q", ErrUnknownUser, name)
		}
		delete(s.users, name)
		return nil
	})
	return err
}

// ListUsers returns every user sorted by name, from a state at most
// MaxStaleness old. The caller owns the result. Errors: ErrUnavailable.
func (a *Authority) ListUsers(ctx context.Context) ([]User, error) {
	st, err := a.current(ctx)
	if err != nil {
		return nil, err
	}
	users := make([]User, 0, len(st.users))
	for name, u := range st.users {
		users = append(users, User{Name: name, Roles: slices.Clone(u.roles)})
	}
	slices.SortFunc(users, func(x, y User) int { return cmp.Compare(x.Name, y.Name) })
	return users, nil
}

// AddRole adds a role holding perms. The name root is built in. Errors:
// ErrInvalid (name, permission, root), ErrRoleExists, ErrUnavailable,
// ErrConflict, ErrCorrupt.
func (a *Authority) AddRole(ctx context.Context, name string, perms ...Permission) error {
	if err := validName("role", name); err != nil {
		return err
	}
	if name == RootName {
		return fmt.Errorf("%w: role %s is built in", ErrInvalid, RootName)
	}
	for _, p := range perms {
		if err := p.validate(); err != nil {
			return err
		}
	}
	perms = slices.CompactFunc(slices.SortedFunc(slices.Values(perms), comparePermission),
		func(x, y Permission) bool { return x == y })
	_, err := a.mutate(ctx, func(s *state) error {
		if _, ok := s.roles[name]; ok {
			return fmt.Errorf("%w: %q", ErrRoleExists, name)
		}
		s.roles[name] = perms
		return nil
	})
	return err
}

// DeleteRole removes a role and takes it from every user holding it.
// Errors: ErrInvalid (root), ErrUnknownRole, ErrUnavailable, ErrConflict,
// ErrCorrupt.
func (a *Authority) DeleteRole(ctx context.Context, name string) error {
	if name == RootName {
		return fmt.Errorf("%w: role %s is built in", ErrInvalid, RootName)
	}
	_, err := a.mutate(ctx, func(s *state) error {
		if _, ok := s.roles[name]; !ok {
			return fmt.Errorf("%w: %q", ErrUnknownRole, name)
		}
		delete(s.roles, name)
		for _, u := range s.users {
			if i, held := slices.BinarySearch(u.roles, name); held {
				u.roles = slices.Delete(u.roles, i, i+1)
			}
		}
		return nil
	})
	return err
}

// Grant adds p to a role; granting a held permission does nothing. Errors:
// ErrInvalid (permission, root), ErrUnknownRole, ErrUnavailable,
// ErrConflict, ErrCorrupt.
func (a *Authority) Grant(ctx context.Context, role string, p Permission) error {
	if err := p.validate(); err != nil {
		return err
	}
	if role == RootName {
		return fmt.Errorf("%w: role %s is built in", ErrInvalid, RootName)
	}
	_, err := a.mutate(ctx, func(s *state) error {
		perms, ok := s.roles[role]
		if !ok {
			return fmt.Errorf("%w: %q", ErrUnknownRole, role)
		}
		i, held := slices.BinarySearchFunc(perms, p, comparePermission)
		if held {
			return errUnchanged
		}
		s.roles[role] = slices.Insert(perms, i, p)
		return nil
	})
	return err
}

// Revoke removes p, exactly as granted, from a role. Errors: ErrInvalid
// (root), ErrUnknownRole, ErrNotGranted, ErrUnavailable, ErrConflict,
// ErrCorrupt.
func (a *Authority) Revoke(ctx context.Context, role string, p Permission) error {
	if role == RootName {
		return fmt.Errorf("%w: role %s is built in", ErrInvalid, RootName)
	}
	_, err := a.mutate(ctx, func(s *state) error {
		perms, ok := s.roles[role]
		if !ok {
			return fmt.Errorf("%w: %q", ErrUnknownRole, role)
		}
		i, held := slices.BinarySearchFunc(perms, p, comparePermission)
		if !held {
			return fmt.Errorf("%w: role %q does not hold %v", ErrNotGranted, role, p)
		}
		s.roles[role] = slices.Delete(perms, i, i+1)
		return nil
	})
	return err
}

// GrantRole gives a user a role; granting a held role does nothing.
// Errors: ErrUnknownUser, ErrUnknownRole, ErrUnavailable, ErrConflict,
// ErrCorrupt.
func (a *Authority) GrantRole(ctx context.Context, user, role string) error {
	_, err := a.mutate(ctx, func(s *state) error {
		u, ok := s.users[user]
		if !ok {
			return fmt.Errorf("%w: %q", ErrUnknownUser, user)
		}
		if _, ok := s.roles[role]; !ok {
			return fmt.Errorf("%w: %q", ErrUnknownRole, role)
		}
		if _, held := slices.BinarySearch(u.roles, role); held {
			return errUnchanged
		}
		u.roles = insertSorted(u.roles, role)
		return nil
	})
	return err
}

// RevokeRole takes a role from a user. User root always keeps role root.
// Errors: ErrInvalid (root), ErrUnknownUser, ErrUnknownRole, ErrNotGranted,
// ErrUnavailable, ErrConflict, ErrCorrupt.
func (a *Authority) RevokeRole(ctx context.Context, user, role string) error {
	if user == RootName && role == RootName {
		return fmt.Errorf("%w: user %s always holds role %s", ErrInvalid, RootName, RootName)
	}
	_, err := a.mutate(ctx, func(s *state) error {
		u, ok := s.users[user]
		if !ok {
			return fmt.Errorf("%w: %q", ErrUnknownUser, user)
		}
		if _, ok := s.roles[role]; !ok {
			return fmt.Errorf("%w: %q", ErrUnknownRole, role)
		}
		i, held := slices.BinarySearch(u.roles, role)
		if !held {
			return fmt.Errorf("%w: user %q does not hold role %q", ErrNotGranted, user, role)
		}
		u.roles = slices.Delete(u.roles, i, i+1)
		return nil
	})
	return err
}

// ListRoles returns every role sorted by name, from a state at most
// MaxStaleness old. The caller owns the result. Errors: ErrUnavailable.
func (a *Authority) ListRoles(ctx context.Context) ([]Role, error) {
	st, err := a.current(ctx)
	if err != nil {
		return nil, err
	}
	roles := make([]Role, 0, len(st.roles))
	for name, perms := range st.roles {
		roles = append(roles, Role{Name: name, Permissions: slices.Clone(perms)})
	}
	slices.SortFunc(roles, func(x, y Role) int { return cmp.Compare(x.Name, y.Name) })
	return roles, nil
}

func insertSorted(s []string, v string) []string {
	i, _ := slices.BinarySearch(s, v)
	return slices.Insert(s, i, v)
}
