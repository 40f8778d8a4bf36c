package auth

import (
	"bytes"
	"errors"
	"fmt"
	"reflect"
	"strings"
	"testing"
)

// sampleState returns a state with a little of everything, built in the
// given order of users so that tests can check the encoding ignores it.
func sampleState(userOrder ...string) *state {
	s := newState()
	s.enabled = true
	s.revision = 42
	s.signingKey = []byte("0123456789abcdef0123456789abcdef")
	s.roles[RootName] = rootPermissions()
	s.roles["reader"] = []Permission{{Access: Read, Prefix: "a/"}, {Access: Read, Prefix: "b/\x00\xff"}}
	s.roles["empty"] = nil
	users := map[string]*userRecord{
		RootName: {hash: []byte("$2a$04$roothash"), generation: 1, roles: []string{RootName}},
		"alice":  {hash: []byte("$2a$04$alicehash"), generation: 40, roles: []string{"empty", "reader"}},
		"bob":    {hash: []byte("$2a$04$bobhash"), generation: 41},
	}
	for _, name := range userOrder {
		s.users[name] = users[name]
	}
	return s
}

func TestStateRoundTrip(t *testing.T) {
	s := sampleState(RootName, "alice", "bob")
	b := s.encode()
	got, err := decodeState(b)
	if err != nil {
		t.Fatalf("decode: %v", err)
	}
	// Decoding gives empty slices where the state had nil; compare encodings
	// and the parts that matter.
	if !bytes.Equal(got.encode(), b) {
		t.Fatalf("re-encoding differs:\n got %q\nwant %q", got.encode(), b)
	}
	if got.enabled != s.enabled || got.revision != s.revision || !bytes.Equal(got.signingKey, s.signingKey) {
		t.Fatalf("got enabled=%v revision=%d key=%q, want %v %d %q", got.enabled, got.revision, got.signingKey, s.enabled, s.revision, s.signingKey)
	}
	if !reflect.DeepEqual(got.roles["reader"], s.roles["reader"]) {
		t.Fatalf("got reader %v, want %v", got.roles["reader"], s.roles["reader"])
	}
	if u := got.users["alice"]; u.generation != 40 || !reflect.DeepEqual(u.roles, []string{"empty", "reader"}) || string(u.hash) != "$2a$04$alicehash" {
		t.Fatalf("got alice %+v", u)
	}
	// The decoded state does not alias the buffer.
	for i := range b {
		b[i] = 0xee
	}
	if string(got.users["alice"].hash) != "$2a$04$alicehash" || string(got.signingKey) != string(s.signingKey) {
		t.Fatal("decoded state aliases the encoded buffer")
	}
}

func TestStateEncodingIsDeterministic(t *testing.T) {
	a := sampleState(RootName, "alice", "bob").encode()
	b := sampleState("bob", "alice", RootName).encode()
	if !bytes.Equal(a, b) {
		t.Fatalf("insertion order changed the encoding:\n%q\n%q", a, b)
	}
}

// TestStateFormat pins format version 1 byte for byte.
func TestStateFormat(t *testing.T) {
	s := newState()
	s.enabled, s.revision, s.signingKey = true, 3, []byte("k")
	s.roles["r"] = []Permission{{Access: Read, Prefix: "a/"}}
	s.users["u"] = &userRecord{hash: []byte("h"), generation: 2, roles: []string{"r"}}
	want := []byte{
		1, 1, // version, enabled
		3,      // revision
		1, 'k', // signing key
		1,      // one role
		1, 'r', // name
		1,              // one permission
		1, 2, 'a', '/', // read, "a/"
		1,      // one user
		1, 'u', // name
		1, 'h', // hash
		2,      // generation
		1,      // one role
		1, 'r', // "r"
	}
	if got := s.encode(); !bytes.Equal(got, want) {
		t.Fatalf("got %v, want %v", got, want)
	}
	empty := newState().encode()
	if want := []byte{1, 0, 0, 0, 0, 0}; !bytes.Equal(empty, want) {
		t.Fatalf("empty state: got %v, want %v", empty, want)
	}
}

func TestDecodeStateRefusesCorruption(t *testing.T) {
	valid := sampleState(RootName, "alice", "bob").encode()
	patch := func(i int, c byte) []byte {
		b := append([]byte{}, valid...)
		b[i] = c
		return b
	}
	// header lays out a record by hand after the version and flags bytes.
	header := func(flags byte, rest ...byte) []byte { return append([]byte{1, flags}, rest...) }
	type test struct {
		name string
		b    []byte
		why  string // in the error message
	}
	tests := []test{
		{"empty", nil, "truncated"},
		{"version 0", patch(0, 0), "format version 0"},
		{"version 2", patch(0, 2), "format version 2"},
		{"unknown flag", patch(1, 3), "unknown flags"},
		{"trailing byte", append(append([]byte{}, valid...), 0), "1 trailing bytes"},
		{"enabled without key", header(1, 0, 0, 0, 0), "without a signing key"},
		{"roles out of order", header(0, 0, 0, 2, 1, 'b', 0, 1, 'a', 0, 0), "out of order"},
		{"repeated role", header(0, 0, 0, 2, 1, 'a', 0, 1, 'a', 0, 0), "out of order"},
		{"empty role name", header(0, 0, 0, 1, 0, 0, 0), "empty name"},
		{"unknown access", header(0, 0, 0, 1, 1, 'a', 1, 9, 0, 0), "unknown access"},
		{"admin with prefix", header(0, 0, 0, 1, 1, 'a', 1, byte(Admin), 1, 'x', 0), "admin takes no prefix"},
		{"permissions out of order", header(0, 0, 0, 1, 1, 'a', 2, byte(Write), 0, byte(Read), 0, 0), "out of order"},
		{"user with missing role", header(0, 0, 0, 0, 1, 1, 'u', 0, 0, 1, 1, 'r'), "missing role"},
		{"users out of order", header(0, 0, 0, 0, 2, 1, 'v', 0, 0, 0, 1, 'u', 0, 0, 0), "out of order"},
		{"user roles repeated", header(0, 0, 0, 1, 1, 'r', 0, 1, 1, 'u', 0, 0, 2, 1, 'r', 1, 'r'), "out of order"},
		{"huge count", header(0, 0, 0, 0xff, 0xff, 0xff, 0xff, 0x0f), "truncated"},
		{"varint not in its shortest form", header(0, 0x80, 0x00, 0, 0, 0), "malformed varint"},
		{"malformed varint", header(0, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff), "malformed varint"},
	}
	for i := range valid {
		tests = append(tests, test{fmt.Sprintf("truncated to %d", i), valid[:i], ""})
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			s, err := decodeState(tc.b)
			if !errors.Is(err, ErrCorrupt) || errors.Is(err, ErrInvalid) {
				t.Fatalf("decode %v: got %v, %v; want only ErrCorrupt", tc.b, s, err)
			}
			if !strings.Contains(err.Error(), tc.why) {
				t.Fatalf("got %q, want it to say %q", err, tc.why)
			}
		})
	}
}

// FuzzDecodeState checks that the decoder never panics and that whatever
// it accepts re-encodes to the same bytes (the encoding is canonical).
func FuzzDecodeState(f *testing.F) {
	f.Add(newState().encode())
	f.Add(sampleState(RootName, "alice", "bob").encode())
	f.Add([]byte{1, 1, 3, 1, 'k', 1, 1, 'r', 1, 1, 2, 'a', '/', 1, 1, 'u', 1, 'h', 2, 1, 1, 'r'})
	f.Fuzz(func(t *testing.T, b []byte) {
		s, err := decodeState(b)
		if err != nil {
			if !errors.Is(err, ErrCorrupt) {
				t.Fatalf("error %v does not match ErrCorrupt", err)
			}
			return
		}
		if got := s.encode(); !bytes.Equal(got, b) {
			t.Fatalf("decode then encode changed the bytes:\n got %v\nwant %v", got, b)
		}
	})
}
