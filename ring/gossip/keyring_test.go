package gossip

import (
	"bytes"
	"crypto/rand"
	"encoding/base64"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/hashicorp/memberlist"
)

// strangerWindow is how long the tests watch a node without the cluster's
// key knock: under the Local profile that is three probe rounds, about
// thirty gossip rounds and three or more join attempts by the stranger.
const strangerWindow = 3 * time.Second

func TestParseKeyring(t *testing.T) {
	k16, k24, k32 := testKey(t, 16), testKey(t, 24), testKey(t, 32)
	b64 := base64.StdEncoding.EncodeToString
	for _, tc := range []struct {
		name string
		file string
		want [][]byte // nil: an error is expected
		errs []string // substrings of the error
	}{
		{name: "one key", file: b64(k32) + "\n", want: [][]byte{k32}},
		{name: "no final newline", file: b64(k32), want: [][]byte{k32}},
		{name: "all key sizes in order", file: b64(k24) + "\n" + b64(k16) + "\n" + b64(k32) + "\n",
			want: [][]byte{k24, k16, k32}},
		{name: "comments, blank lines, space, CRLF",
			file: "# gossip keyring\r\n\r\n  " + b64(k32) + "  # primary since June\r\n\t\n#" + b64(k16) + "\r\n" + b64(k24) + "#old\r\n",
			want: [][]byte{k32, k24}},
		{name: "a repeated key counts once", file: b64(k16) + "\n" + b64(k32) + "\n" + b64(k16) + "\n",
			want: [][]byte{k16, k32}},
		{name: "empty file", file: "", errs: []string{"keyring.txt", "no keys"}},
		{name: "only comments", file: "# nothing yet\n\n", errs: []string{"keyring.txt", "no keys"}},
		{name: "bad base64", file: b64(k32) + "\n\nnot*base64\n", errs: []string{"keyring.txt line 3", "not standard base64"}},
		{name: "URL alphabet", file: strings.NewReplacer("+", "-", "/", "_").Replace(b64(bytes.Repeat([]byte{0xfb}, 32))),
			errs: []string{"line 1", "not standard base64"}},
		{name: "bad key length", file: b64(k16) + "\n" + b64(testKey(t, 20)) + "\n",
			errs: []string{"keyring.txt line 2", "key is 20 bytes, want 16, 24 or 32"}},
		{name: "two keys on one line", file: b64(k16) + " " + b64(k16) + "\n", errs: []string{"line 1"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got, err := parseKeyring("keyring.txt", []byte(tc.file))
			if tc.want == nil {
				if !errors.Is(err, ErrInvalidConfig) {
					t.Fatalf("got %d keys, error %v; want an error marked ErrInvalidConfig", len(got), err)
				}
				for _, w := range tc.errs {
					if !strings.Contains(err.Error(), w) {
						t.Errorf("got %q, want it to mention %q", err, w)
					}
				}
				return
			}
			if err != nil {
				t.Fatalf("got %v, want %d keys", err, len(tc.want))
			}
			if !keysEqual(got, tc.want) {
				t.Fatalf("got keys %s, want %s", keyNames(got, nil), keyNames(tc.want, nil))
			}
		})
	}
}

func TestLoadKeyringErrors(t *testing.T) {
	dir := t.TempDir()
	for _, tc := range []struct {
		name string
		path string
		want string
	}{
		{name: "missing", path: filepath.Join(dir, "absent.keys"), want: "absent.keys"},
		{name: "a directory", path: dir, want: dir},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := loadKeyring(tc.path)
			if !errors.Is(err, ErrInvalidConfig) || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("got %v, want an error marked ErrInvalidConfig naming %s", err, tc.want)
			}
		})
	}
}

// TestApplyKeyring: a reload installs the file's keys, makes the first
// primary and drops the rest, in the steps of a rotation and in jumps an
// operator should not make but may.
func TestApplyKeyring(t *testing.T) {
	a, b, c := testKey(t, 32), testKey(t, 32), testKey(t, 16)
	names := map[string]string{string(a): "A", string(b): "B", string(c): "C"}
	for _, tc := range []struct {
		name            string
		installed, file [][]byte
		added, removed  int
		primaryChanged  bool
	}{
		{name: "unchanged", installed: [][]byte{a}, file: [][]byte{a}},
		{name: "add", installed: [][]byte{a}, file: [][]byte{a, b}, added: 1},
		{name: "switch", installed: [][]byte{a, b}, file: [][]byte{b, a}, primaryChanged: true},
		{name: "retire", installed: [][]byte{b, a}, file: [][]byte{b}, removed: 1},
		{name: "replace at once", installed: [][]byte{a}, file: [][]byte{b}, added: 1, removed: 1, primaryChanged: true},
		{name: "reorder secondaries", installed: [][]byte{a, b, c}, file: [][]byte{a, c, b}},
		{name: "drop a middle key", installed: [][]byte{a, b, c}, file: [][]byte{a, c}, removed: 1},
		{name: "drop all but a new primary", installed: [][]byte{a, b}, file: [][]byte{c}, added: 1, removed: 2, primaryChanged: true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			kr, err := newKeyring(cloneKeys(tc.installed))
			if err != nil {
				t.Fatal(err)
			}
			ch, err := applyKeyring(kr, cloneKeys(tc.file))
			if err != nil {
				t.Fatalf("applyKeyring: %v", err)
			}
			if want := (keyringChange{tc.added, tc.removed, tc.primaryChanged}); ch != want {
				t.Errorf("change: got %+v, want %+v", ch, want)
			}
			assertKeys(t, kr, tc.file, names)
			if ch, err := applyKeyring(kr, cloneKeys(tc.file)); err != nil || ch != (keyringChange{}) {
				t.Errorf("applying the same file again: got %+v, %v, want no change", ch, err)
			}
			assertKeys(t, kr, tc.file, names)
		})
	}
}

// TestMemberlistConfigKeyring: with a keyring memberlist encrypts and
// refuses what is not encrypted both ways; without one it does neither.
func TestMemberlistConfigKeyring(t *testing.T) {
	kr, err := newKeyring([][]byte{testKey(t, 32)})
	if err != nil {
		t.Fatal(err)
	}
	cfg := LocalConfig()
	for _, tc := range []struct {
		name    string
		keyring *memberlist.Keyring
		want    bool
	}{
		{name: "keyring", keyring: kr, want: true},
		{name: "no keyring", keyring: nil, want: false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			mc, err := cfg.memberlistConfig(&delegate{}, testLogger(t), tc.keyring)
			if err != nil {
				t.Fatal(err)
			}
			if got := mc.EncryptionEnabled(); got != tc.want {
				t.Errorf("EncryptionEnabled: got %v, want %v", got, tc.want)
			}
			if tc.want && (!mc.GossipVerifyIncoming || !mc.GossipVerifyOutgoing) {
				t.Errorf("GossipVerifyIncoming, GossipVerifyOutgoing: got %v, %v, want true, true", mc.GossipVerifyIncoming, mc.GossipVerifyOutgoing)
			}
		})
	}
}

func TestKeyringOpenAndReloadErrors(t *testing.T) {
	log := testLogger(t)
	base := t.TempDir()

	bad := testConfig(t, log, base, "n1")
	bad.KeyringFile = filepath.Join(base, "absent.keys")
	if _, err := Open(bad, Deps{}); !errors.Is(err, ErrInvalidConfig) || !strings.Contains(err.Error(), "absent.keys") {
		t.Fatalf("Open with a missing keyring file: got %v, want ErrInvalidConfig naming the file", err)
	}
	bad.KeyringFile = filepath.Join(base, "bad.keys")
	if err := os.WriteFile(bad.KeyringFile, []byte("# no key yet\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	if _, err := Open(bad, Deps{}); !errors.Is(err, ErrInvalidConfig) || !strings.Contains(err.Error(), "no keys") {
		t.Fatalf("Open with an empty keyring file: got %v, want ErrInvalidConfig saying no keys", err)
	}

	plain := open(t, testConfig(t, log, base, "n2"))
	if err := plain.ReloadKeyring(); !errors.Is(err, ErrNoKeyring) {
		t.Fatalf("ReloadKeyring without a keyring file: got %v, want ErrNoKeyring", err)
	}

	key, other := testKey(t, 32), testKey(t, 32)
	cfg := testConfig(t, log, base, "n3")
	cfg.KeyringFile = filepath.Join(base, "n3.keys")
	writeKeyring(t, cfg.KeyringFile, key)
	g := open(t, cfg)
	names := map[string]string{string(key): "key", string(other): "other"}
	for _, file := range []string{"not*base64\n", "", base64.StdEncoding.EncodeToString(other[:20]) + "\n"} {
		if err := os.WriteFile(cfg.KeyringFile, []byte(file), 0o600); err != nil {
			t.Fatal(err)
		}
		if err := g.ReloadKeyring(); !errors.Is(err, ErrInvalidConfig) || !strings.Contains(err.Error(), cfg.KeyringFile) {
			t.Fatalf("ReloadKeyring of %q: got %v, want ErrInvalidConfig naming the file", file, err)
		}
		assertKeys(t, g.keyring, [][]byte{key}, names)
	}
	if err := os.Remove(cfg.KeyringFile); err != nil {
		t.Fatal(err)
	}
	if err := g.ReloadKeyring(); !errors.Is(err, ErrInvalidConfig) {
		t.Fatalf("ReloadKeyring of a deleted file: got %v, want ErrInvalidConfig", err)
	}
	assertKeys(t, g.keyring, [][]byte{key}, names)

	if err := g.Close(); err != nil {
		t.Fatal(err)
	}
	if err := g.ReloadKeyring(); !errors.Is(err, ErrClosed) {
		t.Fatalf("ReloadKeyring after Close: got %v, want ErrClosed", err)
	}
}

// TestKeyringKeepsStrangersOut: three nodes sharing a keyring form a
// cluster and keep deciding ring changes, while a node with another key
// and a node with no key at all, both seeded with every member, never get
// in. A node with the cluster's key, seeded the same way, does.
func TestKeyringKeepsStrangersOut(t *testing.T) {
	key, wrongKey := testKey(t, 32), testKey(t, 32)
	nodes, base, log := startClusterWith(t, 3, withKeyring(t, key))

	wrong := testConfig(t, log, base, "n4", addrs(nodes)...)
	withKeyring(t, wrongKey)(&wrong)
	plain := testConfig(t, log, base, "n5", addrs(nodes)...)
	strangers := []*Gossip{open(t, wrong), open(t, plain)}

	// The members go on deciding and spreading ring changes meanwhile.
	leaveAndAdmit(t, nodes[1], nodes[2], nodes, "n1")
	holdsFor(t, "strangers stay out", strangerWindow, func() string { return strangersOut(nodes, strangers) })

	// The control: the cluster's key gets a node in the same way.
	cfg := testConfig(t, log, base, "n6", addrs(nodes)...)
	withKeyring(t, key)(&cfg)
	all := append(nodes, open(t, cfg))
	waitFor(t, "n6 joins", func() string { return converged(all, "n1", "n2", "n3", "n6") })
	if why := strangersOut(all, strangers); why != "" {
		t.Fatal(why)
	}
}

// TestKeyringRotation rotates the key of a running three-node cluster in
// the three steps of the package documentation (add, switch, retire),
// reloading one node at a time. After every single reload a ring change
// decided on the node just reloaded (so pushed under its primary key), and
// one decided on the next node (pushed to it), reach all three; after
// every step all three see each other alive. Once the old key is retired, a node that holds only the old key
// cannot join, and one that holds the new key can.
func TestKeyringRotation(t *testing.T) {
	oldKey, newKey := testKey(t, 32), testKey(t, 32)
	names := map[string]string{string(oldKey): "old", string(newKey): "new"}
	nodes, base, log := startClusterWith(t, 3, withKeyring(t, oldKey))
	ids := []string{"n1", "n2", "n3"}

	for _, step := range []struct {
		name string
		keys [][]byte
	}{
		{"add: new key appended", [][]byte{oldKey, newKey}},
		{"switch: new key first", [][]byte{newKey, oldKey}},
		{"retire: old key deleted", [][]byte{newKey}},
	} {
		for i, g := range nodes {
			writeKeyring(t, g.cfg.KeyringFile, step.keys...)
			if err := g.ReloadKeyring(); err != nil {
				t.Fatalf("%s: ReloadKeyring on %s: %v", step.name, g.cfg.NodeID, err)
			}
			assertKeys(t, g.keyring, step.keys, names)
			leaveAndAdmit(t, g, nodes[(i+1)%len(nodes)], nodes, "n1")
		}
		for _, g := range nodes {
			waitFor(t, step.name+": everyone alive", func() string { return seesAlive(g, ids...) })
		}
	}

	stale := testConfig(t, log, base, "n4", addrs(nodes)...)
	withKeyring(t, oldKey)(&stale)
	fresh := testConfig(t, log, base, "n5", addrs(nodes)...)
	withKeyring(t, newKey)(&fresh)
	strangers := []*Gossip{open(t, stale)}
	all := append(nodes, open(t, fresh))
	waitFor(t, "n5 with the new key joins", func() string { return converged(all, "n1", "n2", "n3", "n5") })
	holdsFor(t, "n4 with the old key stays out", strangerWindow, func() string { return strangersOut(all, strangers) })
}

// holdsFor checks cond every 20ms for the whole of d and fails the test as
// soon as cond returns why the invariant is broken. Unlike waitFor, waiting
// the full time is the point: it shows that something does not happen
// while the cluster has had every chance to make it happen.
func holdsFor(t testing.TB, what string, d time.Duration, cond func() string) {
	t.Helper()
	deadline := time.Now().Add(d)
	tick := time.NewTicker(20 * time.Millisecond)
	defer tick.Stop()
	for {
		if why := cond(); why != "" {
			t.Fatalf("%s: broken: %s", what, why)
		}
		if time.Now().After(deadline) {
			return
		}
		<-tick.C
	}
}

// strangersOut reports why some stranger is in: a member knows it (through
// memberlist or the ring), or it reached a seed, knows a member or holds a
// ring. It returns "" while every stranger is out.
func strangersOut(members, strangers []*Gossip) string {
	for _, s := range strangers {
		id := s.cfg.NodeID
		for _, g := range members {
			if mi, ok := g.Member(id); ok {
				return fmt.Sprintf("%s knows %s: %+v", g.cfg.NodeID, id, mi)
			}
			if mi, ok := s.Member(g.cfg.NodeID); ok {
				return fmt.Sprintf("%s knows %s: %+v", id, g.cfg.NodeID, mi)
			}
		}
		if s.joined.Load() {
			return id + " joined a seed"
		}
		if v := s.Ring().Version(); v != 0 {
			return fmt.Sprintf("%s holds ring version %d", id, v)
		}
	}
	return ""
}

// leaveAndAdmit decides on leaveOn that id leaves, waits until every node
// holds that ring, then admits id back on admitOn and waits again. Each
// ring reaches the other nodes only by gossip (the decider's push, or
// push-pull).
func leaveAndAdmit(t *testing.T, leaveOn, admitOn *Gossip, nodes []*Gossip, id string) {
	t.Helper()
	var all, rest []string
	for _, n := range nodes {
		all = append(all, n.cfg.NodeID)
		if n.cfg.NodeID != id {
			rest = append(rest, n.cfg.NodeID)
		}
	}
	if _, err := change(t, leaveOn, OpLeave, id); err != nil {
		t.Fatalf("leave %s on %s: %v", id, leaveOn.cfg.NodeID, err)
	}
	waitFor(t, id+" leaving everywhere", func() string { return converged(nodes, rest...) })
	if _, err := change(t, admitOn, OpAdmit, id); err != nil {
		t.Fatalf("admit %s on %s: %v", id, admitOn.cfg.NodeID, err)
	}
	waitFor(t, id+" joined everywhere", func() string { return converged(nodes, all...) })
}

// withKeyring returns a config modifier that writes keys to a keyring file
// of the node's own (next to its data dir) and sets KeyringFile.
func withKeyring(t testing.TB, keys ...[]byte) func(*Config) {
	return func(c *Config) {
		c.KeyringFile = c.DataDir + ".keys"
		writeKeyring(t, c.KeyringFile, keys...)
	}
}

// writeKeyring writes keys to path in the keyring file format, replacing
// the file at once (temp file, rename) as an operator's editor would.
func writeKeyring(t testing.TB, path string, keys ...[]byte) {
	t.Helper()
	var b strings.Builder
	b.WriteString("# gossip keyring: the first key encrypts\n")
	for _, k := range keys {
		b.WriteString(base64.StdEncoding.EncodeToString(k) + "\n")
	}
	tmp := path + ".tmp"
	if err := os.WriteFile(tmp, []byte(b.String()), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.Rename(tmp, path); err != nil {
		t.Fatal(err)
	}
}

func testKey(t testing.TB, n int) []byte {
	t.Helper()
	k := make([]byte, n)
	if _, err := rand.Read(k); err != nil {
		t.Fatal(err)
	}
	return k
}

func cloneKeys(keys [][]byte) [][]byte {
	out := make([][]byte, len(keys))
	for i, k := range keys {
		out[i] = bytes.Clone(k)
	}
	return out
}

func keysEqual(a, b [][]byte) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if !bytes.Equal(a[i], b[i]) {
			return false
		}
	}
	return true
}

// keyNames names keys by names (key bytes -> name) or, without a name, by
// size and index, so that failures never print a key.
func keyNames(keys [][]byte, names map[string]string) string {
	var out []string
	for i, k := range keys {
		n, ok := names[string(k)]
		if !ok {
			n = fmt.Sprintf("#%d(%d bytes)", i, len(k))
		}
		out = append(out, n)
	}
	return "[" + strings.Join(out, " ") + "]"
}

// assertKeys checks that kr holds exactly the keys of want, want[0] as the
// primary. The order of the others only decides which key decryption
// tries first.
func assertKeys(t testing.TB, kr *memberlist.Keyring, want [][]byte, names map[string]string) {
	t.Helper()
	got := kr.GetKeys()
	same := len(got) == len(want) && bytes.Equal(got[0], want[0])
	for _, k := range want {
		same = same && slices.ContainsFunc(got, func(g []byte) bool { return bytes.Equal(g, k) })
	}
	if !same {
		t.Fatalf("keyring holds %s, want %s (primary first)", keyNames(got, names), keyNames(want, names))
	}
}
