package gossip

import (
	"bytes"
	"encoding/binary"
	"errors"
	"os"
	"path/filepath"
	"testing"

	"github.com/ringkv/ringkv/internal/crc"

	"github.com/ringkv/ringkv/ring"
)

func testRing(t *testing.T, ids ...string) *ring.Ring {
	t.Helper()
	r, err := ring.New(ring.DefaultConfig())
	if err != nil {
		t.Fatal(err)
	}
	for _, id := range ids {
		if r, err = r.Join(ring.Member{ID: id, Status: ring.Joined}); err != nil {
			t.Fatal(err)
		}
	}
	return r
}

func TestStateRoundTrip(t *testing.T) {
	dir := t.TempDir()
	if r, err := loadRing(dir); r != nil || err != nil {
		t.Fatalf("empty dir: got (%v, %v), want (nil, nil)", r, err)
	}
	want := testRing(t, "a", "b")
	enc, err := want.MarshalBinary()
	if err != nil {
		t.Fatal(err)
	}
	if err := saveRing(dir, enc); err != nil {
		t.Fatalf("saveRing: %v", err)
	}
	got, err := loadRing(dir)
	if err != nil {
		t.Fatalf("loadRing: %v", err)
	}
	if got.Version() != want.Version() || got.Hash() != want.Hash() {
		t.Fatalf("got version %d hash %x, want version %d hash %x", got.Version(), got.Hash(), want.Version(), want.Hash())
	}
	entries, _ := os.ReadDir(dir)
	if len(entries) != 1 {
		t.Fatalf("dir holds %d entries, want only %s", len(entries), stateFile)
	}
	if err := saveRing(filepath.Join(dir, "missing"), enc); err == nil {
		t.Fatalf("saveRing into a missing dir: got nil error")
	}
}

func TestCorruptState(t *testing.T) {
	enc, err := testRing(t, "a").MarshalBinary()
	if err != nil {
		t.Fatal(err)
	}
	good := encodeState(enc)
	withCRC := func(payload []byte) []byte {
		b := append([]byte(nil), good[:stateHeaderLen]...)
		binary.BigEndian.PutUint32(b[5:9], crc.Sum(payload))
		return append(b, payload...)
	}
	for _, tc := range []struct {
		name string
		file []byte
	}{
		{name: "empty", file: nil},
		{name: "short", file: good[:3]},
		{name: "bad magic", file: append([]byte("XXXX"), good[4:]...)},
		{name: "unknown version", file: append(append(bytes.Clone(good[:4]), 9), good[5:]...)},
		{name: "flipped payload byte", file: func() []byte { b := bytes.Clone(good); b[len(b)-1] ^= 0xff; return b }()},
		{name: "truncated payload", file: good[:len(good)-1]},
		{name: "undecodable payload", file: withCRC([]byte("not a ring"))},
	} {
		t.Run(tc.name, func(t *testing.T) {
			dir := t.TempDir()
			if err := os.WriteFile(filepath.Join(dir, stateFile), tc.file, 0o644); err != nil {
				t.Fatal(err)
			}
			cfg := LocalConfig()
			cfg.NodeID, cfg.DataDir = "n1", dir
			_, err := Open(cfg, Deps{})
			if !errors.Is(err, ErrCorrupt) {
				t.Fatalf("Open: got %v, want ErrCorrupt", err)
			}
			t.Logf("Open: %v", err)
		})
	}
}

func TestUnreadableState(t *testing.T) {
	dir := t.TempDir()
	// A directory where the file should be: not corrupt, just unreadable.
	if err := os.Mkdir(filepath.Join(dir, stateFile), 0o755); err != nil {
		t.Fatal(err)
	}
	cfg := LocalConfig()
	cfg.NodeID, cfg.DataDir = "n1", dir
	if _, err := Open(cfg, Deps{}); err == nil || errors.Is(err, ErrCorrupt) {
		t.Fatalf("Open: got %v, want a read error that is not ErrCorrupt", err)
	}
}
