package auth

import (
	"errors"
	"fmt"
	"reflect"
	"strings"
	"sync"
	"testing"
	"time"

	"golang.org/x/crypto/bcrypt"
)

func TestConfigValidate(t *testing.T) {
	tests := []struct {
		name string
		edit func(*Config)
		want string // "" = valid; else in the message
	}{
		{"defaults", func(*Config) {}, ""},
		{"local", func(c *Config) { *c = LocalConfig() }, ""},
		{"no key", func(c *Config) { c.Key = "" }, "Key is required"},
		{"cost too low", func(c *Config) { c.BcryptCost = bcrypt.MinCost - 1 }, "BcryptCost"},
		{"cost too high", func(c *Config) { c.BcryptCost = bcrypt.MaxCost + 1 }, "BcryptCost"},
		{"min password 0", func(c *Config) { c.MinPasswordBytes = 0 }, "MinPasswordBytes"},
		{"min password above bcrypt limit", func(c *Config) { c.MinPasswordBytes = 73 }, "MinPasswordBytes"},
		{"ttl under a second", func(c *Config) { c.TokenTTL = time.Millisecond }, "TokenTTL"},
		{"no staleness", func(c *Config) { c.MaxStaleness = 0 }, "MaxStaleness 0s must be positive"},
		{"hard bound below staleness", func(c *Config) { c.MaxStaleWhenUnavailable = c.MaxStaleness / 2 }, "MaxStaleWhenUnavailable"},
		{"negative retries", func(c *Config) { c.MaxRetries = -1 }, "MaxRetries"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			c := DefaultConfig()
			tc.edit(&c)
			err := c.Validate()
			switch {
			case tc.want == "" && err != nil:
				t.Fatalf("got %v, want valid", err)
			case tc.want != "" && (err == nil || !strings.Contains(err.Error(), tc.want)):
				t.Fatalf("got %v, want an error about %q", err, tc.want)
			}
		})
	}

	t.Run("reports every problem", func(t *testing.T) {
		err := Config{}.Validate()
		for _, want := range []string{"Key", "BcryptCost", "MinPasswordBytes", "TokenTTL", "MaxStaleness"} {
			if err == nil || !strings.Contains(err.Error(), want) {
				t.Errorf("got %v, want it to mention %s", err, want)
			}
		}
	})
}

func TestNew(t *testing.T) {
	if _, err := New(LocalConfig(), Deps{}); err == nil {
		t.Fatal("New without a Store: got nil error")
	}
	if _, err := New(Config{BcryptCost: 99}, Deps{Store: newMemStore()}); err == nil || !strings.Contains(err.Error(), "BcryptCost") {
		t.Fatalf("New with a bad config: got %v", err)
	}
	// Zero fields take the defaults.
	a, err := New(Config{BcryptCost: bcrypt.MinCost}, Deps{Store: newMemStore()})
	if err != nil {
		t.Fatal(err)
	}
	want := LocalConfig()
	if a.cfg.Key != want.Key || a.cfg.TokenTTL != want.TokenTTL || a.cfg.MaxStaleness != want.MaxStaleness ||
		a.cfg.MaxStaleWhenUnavailable != want.MaxStaleWhenUnavailable || a.cfg.MaxRetries != want.MaxRetries ||
		a.cfg.MinPasswordBytes != want.MinPasswordBytes || a.cfg.Logger == nil {
		t.Fatalf("defaults not filled: %+v", a.cfg)
	}
	// Real time and randomness by default: Enable works.
	if err := a.Enable(t.Context(), rootPassword); err != nil {
		t.Fatal(err)
	}
}

func TestEnableDisable(t *testing.T) {
	ctx := t.Context()
	store, clock := newMemStore(), newFakeClock()
	a := newTestAuthority(t, store, clock, nil)

	st, err := a.Status(ctx)
	must(t, err)
	if st != (Status{}) {
		t.Fatalf("fresh status: got %+v, want zero", st)
	}
	if _, err := a.Authenticate(ctx, RootName, rootPassword); !errors.Is(err, ErrAuthDisabled) {
		t.Fatalf("Authenticate before Enable: got %v, want ErrAuthDisabled", err)
	}
	if err := a.Authorize(ctx, Principal{User: "anyone"}, Action{Op: OpAdmin}); err != nil {
		t.Fatalf("Authorize while disabled: got %v, want nil", err)
	}
	if err := a.Enable(ctx, "short"); !errors.Is(err, ErrInvalid) {
		t.Fatalf("Enable with a short password: got %v, want ErrInvalid", err)
	}

	must(t, a.Enable(ctx, rootPassword))
	st, err = a.Status(ctx)
	must(t, err)
	if want := (Status{Enabled: true, Users: 1, Roles: 1, Revision: 1}); st != want {
		t.Fatalf("after Enable: got %+v, want %+v", st, want)
	}
	if err := a.Enable(ctx, rootPassword); !errors.Is(err, ErrAlreadyEnabled) {
		t.Fatalf("second Enable: got %v, want ErrAlreadyEnabled", err)
	}
	p, err := a.Authenticate(ctx, RootName, rootPassword)
	must(t, err)
	if want := (Principal{User: RootName, Method: MethodPassword}); p != want {
		t.Fatalf("got %+v, want %+v", p, want)
	}
	users, err := a.ListUsers(ctx)
	must(t, err)
	if want := []User{{Name: RootName, Roles: []string{RootName}}}; !reflect.DeepEqual(users, want) {
		t.Fatalf("users: got %+v, want %+v", users, want)
	}
	roles, err := a.ListRoles(ctx)
	must(t, err)
	if want := []Role{{Name: RootName, Permissions: rootPermissions()}}; !reflect.DeepEqual(roles, want) {
		t.Fatalf("roles: got %+v, want %+v", roles, want)
	}

	must(t, a.Disable(ctx))
	if _, err := a.Authenticate(ctx, RootName, rootPassword); !errors.Is(err, ErrAuthDisabled) {
		t.Fatalf("Authenticate after Disable: got %v, want ErrAuthDisabled", err)
	}
	if _, err := a.PrincipalFor(ctx, RootName); !errors.Is(err, ErrAuthDisabled) {
		t.Fatalf("PrincipalFor after Disable: got %v, want ErrAuthDisabled", err)
	}
	if err := a.Authorize(ctx, Principal{User: "nobody"}, Action{Op: OpWrite, Key: []byte("k")}); err != nil {
		t.Fatalf("Authorize after Disable: got %v, want nil", err)
	}
	_, cases := store.counts()
	must(t, a.Disable(ctx)) // already disabled: no write
	if _, again := store.counts(); again != cases {
		t.Fatalf("Disable while disabled wrote: %d compare-and-sets, want %d", again, cases)
	}
	st, err = a.Status(ctx)
	must(t, err)
	if want := (Status{Enabled: false, Users: 1, Roles: 1, Revision: 2}); st != want {
		t.Fatalf("after Disable: got %+v, want %+v", st, want)
	}

	// Enabling again keeps root and replaces its password.
	must(t, a.Enable(ctx, "new-root-password"))
	if _, err := a.Authenticate(ctx, RootName, rootPassword); !errors.Is(err, ErrUnauthenticated) {
		t.Fatalf("old root password after re-Enable: got %v, want ErrUnauthenticated", err)
	}
	if _, err := a.Authenticate(ctx, RootName, "new-root-password"); err != nil {
		t.Fatalf("new root password: %v", err)
	}
}

// TestManagementRefusals checks every refusal and that a refused change
// writes nothing.
func TestManagementRefusals(t *testing.T) {
	ctx := t.Context()
	store, _, a := enabled(t)
	must(t, a.AddRole(ctx, "reader", Permission{Access: Read, Prefix: "a/"}))
	must(t, a.AddUser(ctx, "alice", "alice-password", "reader"))

	long := strings.Repeat("x", MaxNameBytes+1)
	tests := []struct {
		name string
		do   func() error
		want error
	}{
		{"delete user root", func() error { return a.DeleteUser(ctx, RootName) }, ErrInvalid},
		{"revoke role root from root", func() error { return a.RevokeRole(ctx, RootName, RootName) }, ErrInvalid},
		{"delete role root", func() error { return a.DeleteRole(ctx, RootName) }, ErrInvalid},
		{"grant to role root", func() error { return a.Grant(ctx, RootName, Permission{Access: Read}) }, ErrInvalid},
		{"revoke from role root", func() error { return a.Revoke(ctx, RootName, Permission{Access: Admin}) }, ErrInvalid},
		{"add user root", func() error { return a.AddUser(ctx, RootName, "password") }, ErrInvalid},
		{"add role root", func() error { return a.AddRole(ctx, RootName) }, ErrInvalid},
		{"empty user name", func() error { return a.AddUser(ctx, "", "password") }, ErrInvalid},
		{"empty role name", func() error { return a.AddRole(ctx, "") }, ErrInvalid},
		{"user name with space", func() error { return a.AddUser(ctx, "a b", "password") }, ErrInvalid},
		{"user name not UTF-8", func() error { return a.AddUser(ctx, "a\xff", "password") }, ErrInvalid},
		{"user name too long", func() error { return a.AddUser(ctx, long, "password") }, ErrInvalid},
		{"role name with control", func() error { return a.AddRole(ctx, "r\n") }, ErrInvalid},
		{"short password", func() error { return a.AddUser(ctx, "bob", "1234567") }, ErrInvalid},
		{"password over 72 bytes", func() error { return a.AddUser(ctx, "bob", strings.Repeat("p", 73)) }, ErrInvalid},
		{"short new password", func() error { return a.SetPassword(ctx, "alice", "short") }, ErrInvalid},
		{"unknown role for new user", func() error { return a.AddUser(ctx, "bob", "password", "reader", "ghost") }, ErrUnknownRole},
		{"existing user", func() error { return a.AddUser(ctx, "alice", "password") }, ErrUserExists},
		{"existing role", func() error { return a.AddRole(ctx, "reader") }, ErrRoleExists},
		{"set password of unknown user", func() error { return a.SetPassword(ctx, "ghost", "password") }, ErrUnknownUser},
		{"delete unknown user", func() error { return a.DeleteUser(ctx, "ghost") }, ErrUnknownUser},
		{"delete unknown role", func() error { return a.DeleteRole(ctx, "ghost") }, ErrUnknownRole},
		{"grant to unknown role", func() error { return a.Grant(ctx, "ghost", Permission{Access: Read}) }, ErrUnknownRole},
		{"revoke from unknown role", func() error { return a.Revoke(ctx, "ghost", Permission{Access: Read}) }, ErrUnknownRole},
		{"grant admin with a prefix", func() error { return a.Grant(ctx, "reader", Permission{Access: Admin, Prefix: "a/"}) }, ErrInvalid},
		{"grant unknown access", func() error { return a.Grant(ctx, "reader", Permission{Prefix: "a/"}) }, ErrInvalid},
		{"grant oversized prefix", func() error {
			return a.Grant(ctx, "reader", Permission{Access: Read, Prefix: strings.Repeat("k", MaxPrefixBytes+1)})
		}, ErrInvalid},
		{"add role with bad permission", func() error { return a.AddRole(ctx, "bad", Permission{Access: Metrics, Prefix: "x"}) }, ErrInvalid},
		{"revoke what was not granted", func() error { return a.Revoke(ctx, "reader", Permission{Access: Read, Prefix: "b/"}) }, ErrNotGranted},
		{"revoke readwrite when read was granted", func() error {
			return a.Revoke(ctx, "reader", Permission{Access: ReadWrite, Prefix: "a/"})
		}, ErrNotGranted},
		{"grant role to unknown user", func() error { return a.GrantRole(ctx, "ghost", "reader") }, ErrUnknownUser},
		{"grant unknown role", func() error { return a.GrantRole(ctx, "alice", "ghost") }, ErrUnknownRole},
		{"revoke role from unknown user", func() error { return a.RevokeRole(ctx, "ghost", "reader") }, ErrUnknownUser},
		{"revoke unknown role", func() error { return a.RevokeRole(ctx, "alice", "ghost") }, ErrUnknownRole},
		{"revoke role not held", func() error { return a.RevokeRole(ctx, RootName, "reader") }, ErrNotGranted},
		{"enable twice", func() error { return a.Enable(ctx, rootPassword) }, ErrAlreadyEnabled},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			before, _ := store.value(DefaultKey)
			err := tc.do()
			if !errors.Is(err, tc.want) {
				t.Fatalf("got %v, want %v", err, tc.want)
			}
			if after, _ := store.value(DefaultKey); string(after) != string(before) {
				t.Fatal("a refused change was written")
			}
		})
	}
}

func TestManagement(t *testing.T) {
	ctx := t.Context()
	store, _, a := enabled(t)
	read := func(p string) Permission { return Permission{Access: Read, Prefix: p} }
	write := func(p string) Permission { return Permission{Access: Write, Prefix: p} }

	// Permissions are sorted and deduplicated; roles for a new user too.
	must(t, a.AddRole(ctx, "ops", Permission{Access: Metrics}, read("b/"), read("a/"), read("b/")))
	must(t, a.AddRole(ctx, "dev", write("x/")))
	must(t, a.AddUser(ctx, "alice", "alice-password", "ops", "dev", "ops"))
	must(t, a.AddUser(ctx, "bob", "bob-password"))

	_, cases := store.counts()
	must(t, a.Grant(ctx, "ops", read("a/")))  // held: no write
	must(t, a.GrantRole(ctx, "alice", "dev")) // held: no write
	if _, again := store.counts(); again != cases {
		t.Fatalf("idempotent grants wrote: %d compare-and-sets, want %d", again, cases)
	}
	must(t, a.Grant(ctx, "dev", read("x/")))
	must(t, a.GrantRole(ctx, "bob", "dev"))
	must(t, a.GrantRole(ctx, "bob", RootName)) // others may hold root

	wantRoles := []Role{
		{Name: "dev", Permissions: []Permission{read("x/"), write("x/")}},
		{Name: "ops", Permissions: []Permission{read("a/"), read("b/"), {Access: Metrics}}},
		{Name: RootName, Permissions: rootPermissions()},
	}
	roles, err := a.ListRoles(ctx)
	must(t, err)
	if !reflect.DeepEqual(roles, wantRoles) {
		t.Fatalf("roles:\n got %+v\nwant %+v", roles, wantRoles)
	}
	wantUsers := []User{
		{Name: "alice", Roles: []string{"dev", "ops"}},
		{Name: "bob", Roles: []string{"dev", RootName}},
		{Name: RootName, Roles: []string{RootName}},
	}
	users, err := a.ListUsers(ctx)
	must(t, err)
	if !reflect.DeepEqual(users, wantUsers) {
		t.Fatalf("users:\n got %+v\nwant %+v", users, wantUsers)
	}
	// The lists belong to the caller.
	users[0].Roles[0] = "mutated"
	roles[0].Permissions[0] = Permission{Access: Admin}
	if again, _ := a.ListUsers(ctx); again[0].Roles[0] != "dev" {
		t.Fatal("ListUsers shares its slices with the cache")
	}
	if again, _ := a.ListRoles(ctx); again[0].Permissions[0] != read("x/") {
		t.Fatal("ListRoles shares its slices with the cache")
	}

	// Deleting a role takes it from its holders.
	must(t, a.DeleteRole(ctx, "dev"))
	must(t, a.Revoke(ctx, "ops", read("b/")))
	must(t, a.RevokeRole(ctx, "bob", RootName))
	must(t, a.DeleteUser(ctx, "alice"))
	users, err = a.ListUsers(ctx)
	must(t, err)
	wantUsers = []User{{Name: "bob", Roles: []string{}}, {Name: RootName, Roles: []string{RootName}}}
	if !reflect.DeepEqual(users, wantUsers) {
		t.Fatalf("users after deletes:\n got %+v\nwant %+v", users, wantUsers)
	}
	roles, err = a.ListRoles(ctx)
	must(t, err)
	wantRoles = []Role{{Name: "ops", Permissions: []Permission{read("a/"), {Access: Metrics}}}, {Name: RootName, Permissions: rootPermissions()}}
	if !reflect.DeepEqual(roles, wantRoles) {
		t.Fatalf("roles after deletes:\n got %+v\nwant %+v", roles, wantRoles)
	}

	// A fresh Authority reads the same from the store.
	b := newTestAuthority(t, store, newFakeClock(), nil)
	usersB, err := b.ListUsers(ctx)
	must(t, err)
	if !reflect.DeepEqual(usersB, users) {
		t.Fatalf("another Authority: got %+v, want %+v", usersB, users)
	}
}

// TestLostRace makes A's compare-and-set lose to a change made through B in
// between A's read and A's write: A applies its change again on top of B's.
func TestLostRace(t *testing.T) {
	ctx := t.Context()
	store, clock, a := enabled(t)
	b := newTestAuthority(t, store, clock, nil)
	raced := false
	store.beforeCAS = func() {
		if raced {
			return
		}
		raced = true
		must(t, b.AddUser(ctx, "bob", "bob-password"))
	}
	_, casesBefore := store.counts()
	must(t, a.AddUser(ctx, "carol", "carol-password"))
	store.beforeCAS = nil
	if _, cases := store.counts(); cases-casesBefore != 3 { // B's, A's lost one, A's retry
		t.Fatalf("got %d compare-and-sets, want 3", cases-casesBefore)
	}
	c := newTestAuthority(t, store, clock, nil)
	users, err := c.ListUsers(ctx)
	must(t, err)
	if got := userNames(users); !reflect.DeepEqual(got, []string{"bob", "carol", RootName}) {
		t.Fatalf("got users %v, want bob, carol and root", got)
	}

	// A change that becomes invalid in the race fails with the state it
	// landed on: both add "dave"; B wins; A reports ErrUserExists.
	raced = false
	store.beforeCAS = func() {
		if raced {
			return
		}
		raced = true
		must(t, b.AddUser(ctx, "dave", "dave-password"))
	}
	if err := a.AddUser(ctx, "dave", "other-password"); !errors.Is(err, ErrUserExists) {
		t.Fatalf("got %v, want ErrUserExists", err)
	}
	store.beforeCAS = nil
	fresh := newTestAuthority(t, store, clock, nil) // c's cache predates dave
	if _, err := fresh.Authenticate(ctx, "dave", "dave-password"); err != nil {
		t.Fatalf("B's dave was overwritten: %v", err)
	}
}

func userNames(users []User) []string {
	var names []string
	for _, u := range users {
		names = append(names, u.Name)
	}
	return names
}

// TestConflictBounded: a change that keeps losing gives up after
// MaxRetries+1 attempts with ErrConflict and leaves no trace.
func TestConflictBounded(t *testing.T) {
	ctx := t.Context()
	store, clock := newMemStore(), newFakeClock()
	a := newTestAuthority(t, store, clock, func(c *Config) { c.MaxRetries = 2 })
	must(t, a.Enable(ctx, rootPassword))
	b := newTestAuthority(t, store, clock, nil)
	n, inHook := 0, false
	store.beforeCAS = func() {
		if inHook {
			return
		}
		inHook = true
		defer func() { inHook = false }()
		n++
		must(t, b.AddRole(ctx, fmt.Sprintf("r%d", n)))
	}
	err := a.AddRole(ctx, "mine")
	store.beforeCAS = nil
	if !errors.Is(err, ErrConflict) {
		t.Fatalf("got %v, want ErrConflict", err)
	}
	if n != 3 {
		t.Fatalf("got %d attempts, want 3 (MaxRetries 2, plus the first)", n)
	}
	roles, err := newTestAuthority(t, store, clock, nil).ListRoles(ctx)
	must(t, err)
	for _, r := range roles {
		if r.Name == "mine" {
			t.Fatal("a change that gave up was applied")
		}
	}
}

func TestStoreFailures(t *testing.T) {
	boom := errors.New("store down")
	tests := []struct {
		name           string
		getErr, casErr error
		corrupt        bool
		want           []error
	}{
		{"get fails", boom, nil, false, []error{ErrUnavailable, boom}},
		{"compare-and-set fails", nil, boom, false, []error{ErrUnavailable, boom}},
		{"record corrupt", nil, nil, true, []error{ErrCorrupt}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			ctx := t.Context()
			store, _, a := enabled(t)
			if tc.corrupt {
				store.put(DefaultKey, []byte{9, 9, 9})
			}
			store.setErrs(tc.getErr, tc.casErr)
			before, _ := store.value(DefaultKey)
			err := a.AddUser(ctx, "alice", "alice-password")
			for _, want := range tc.want {
				if !errors.Is(err, want) {
					t.Errorf("got %v, want it to match %v", err, want)
				}
			}
			if after, _ := store.value(DefaultKey); string(after) != string(before) {
				t.Fatal("the record changed")
			}
		})
	}

	t.Run("corrupt record read", func(t *testing.T) {
		store, clock := newMemStore(), newFakeClock()
		store.put(DefaultKey, []byte{1, 0})
		a := newTestAuthority(t, store, clock, nil)
		_, err := a.Status(t.Context())
		if !errors.Is(err, ErrUnavailable) || !errors.Is(err, ErrCorrupt) {
			t.Fatalf("got %v, want ErrUnavailable and ErrCorrupt", err)
		}
	})
}

// TestConcurrentChanges: 8 goroutines add different users through two
// Authorities sharing one Store. None is lost. The first compare-and-set of
// every goroutine waits until all 8 have read the record, so 7 of them lose
// a race. Each lost race means another goroutine's change landed, so no
// goroutine loses more than 7 times, within MaxRetries 8.
func TestConcurrentChanges(t *testing.T) {
	ctx := t.Context()
	store, clock, a := enabled(t)
	b := newTestAuthority(t, store, clock, nil)
	authorities := []*Authority{a, b}
	const n = 8
	var (
		barrierMu sync.Mutex
		arrived   int
		allRead   = make(chan struct{}) // closed by the n-th arrival
	)
	store.beforeCAS = func() {
		barrierMu.Lock()
		arrived++
		first := arrived <= n
		if arrived == n {
			close(allRead)
		}
		barrierMu.Unlock()
		if first {
			<-allRead
		}
	}
	_, casesBefore := store.counts()
	errs := make([]error, n)
	var wg sync.WaitGroup
	for i := range n {
		wg.Go(func() {
			errs[i] = authorities[i%2].AddUser(ctx, fmt.Sprintf("user%d", i), "password")
		})
	}
	wg.Wait()
	store.beforeCAS = nil
	for i, err := range errs {
		if err != nil {
			t.Errorf("user%d: %v", i, err)
		}
	}
	if _, cases := store.counts(); cases-casesBefore < n+n-1 {
		t.Fatalf("got %d compare-and-sets, want at least %d (7 lost races)", cases-casesBefore, n+n-1)
	}
	users, err := newTestAuthority(t, store, clock, nil).ListUsers(ctx)
	must(t, err)
	want := []string{RootName}
	for i := range n {
		want = append(want, fmt.Sprintf("user%d", i))
	}
	got := userNames(users)
	if len(got) != len(want) {
		t.Fatalf("got users %v, want %v", got, want)
	}
	for _, name := range want {
		if !strings.Contains(strings.Join(got, " ")+" ", name+" ") {
			t.Errorf("user %s lost; got %v", name, got)
		}
	}
	st, err := a.Status(ctx)
	must(t, err)
	// A's cache may be behind B's changes, but never behind its own.
	if st.Revision < 1+n/2 {
		t.Fatalf("A's revision %d is behind its own changes", st.Revision)
	}
}

func TestAuthenticate(t *testing.T) {
	ctx := t.Context()
	_, _, a := enabled(t)
	must(t, a.AddUser(ctx, "alice", "alice-password"))
	tests := []struct {
		name, user, password string
		want                 error
	}{
		{"right password", "alice", "alice-password", nil},
		{"root", RootName, rootPassword, nil},
		{"wrong password", "alice", "alice-passwore", ErrUnauthenticated},
		{"another user's password", "alice", rootPassword, ErrUnauthenticated},
		{"unknown user", "mallory", "alice-password", ErrUnauthenticated},
		{"empty user", "", "", ErrUnauthenticated},
		{"password over 72 bytes", "alice", strings.Repeat("p", 100), ErrUnauthenticated},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			p, err := a.Authenticate(ctx, tc.user, tc.password)
			if !errors.Is(err, tc.want) {
				t.Fatalf("got %v, want %v", err, tc.want)
			}
			if tc.want == nil && p != (Principal{User: tc.user, Method: MethodPassword}) {
				t.Fatalf("got %+v", p)
			}
			if tc.want != nil && err.Error() != ErrUnauthenticated.Error() {
				t.Fatalf("got %q, want the bare %q (no hint which part was wrong)", err, ErrUnauthenticated)
			}
		})
	}

	t.Run("certificate", func(t *testing.T) {
		p, err := a.PrincipalFor(ctx, "alice")
		must(t, err)
		if p != (Principal{User: "alice", Method: MethodCertificate}) {
			t.Fatalf("got %+v", p)
		}
		if _, err := a.PrincipalFor(ctx, "mallory"); !errors.Is(err, ErrUnauthenticated) {
			t.Fatalf("unknown certificate user: got %v, want ErrUnauthenticated", err)
		}
	})
}
