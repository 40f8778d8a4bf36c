package auth

import (
	"encoding/binary"
	"fmt"
	"maps"
	"slices"
	"unicode"
	"unicode/utf8"

	"github.com/ringkv/ringkv/internal/varint"
)

// state is the decoded auth record. A state that has been cached is never
// modified again: changes decode a fresh copy, apply, encode and CAS.
type state struct {
	enabled    bool
	revision   uint64
	signingKey []byte
	users      map[string]*userRecord
	roles      map[string][]Permission // sorted by comparePermission, no duplicates
}

type userRecord struct {
	hash []byte // bcrypt
	// generation is the revision of the last change that must end this
	// user's tokens: its creation or its last password change. Tokens carry
	// it and are refused once it differs. Revisions only grow, so a user
	// deleted and added again never reuses a generation.
	generation uint64
	roles      []string // sorted, no duplicates, every one in state.roles
}

func newState() *state {
	return &state{users: map[string]*userRecord{}, roles: map[string][]Permission{}}
}

// clone returns a deep copy of s that a change may modify.
func (s *state) clone() *state {
	c := &state{
		enabled:    s.enabled,
		revision:   s.revision,
		signingKey: s.signingKey, // replaced, never modified in place
		users:      make(map[string]*userRecord, len(s.users)),
		roles:      make(map[string][]Permission, len(s.roles)),
	}
	for name, u := range s.users {
		c.users[name] = &userRecord{hash: u.hash, generation: u.generation, roles: slices.Clone(u.roles)}
	}
	for name, perms := range s.roles {
		c.roles[name] = slices.Clone(perms)
	}
	return c
}

// The record format, version 1. Integers are unsigned varints; strings and
// byte strings are a varint length and the bytes. Users, roles, a role's
// permissions and a user's roles are in ascending order without duplicates,
// so the encoding of a state is unique: decode(b) re-encodes to b.
//
//	version   byte = 1
//	flags     byte: bit 0 = enabled, other bits 0
//	revision  uvarint
//	key       bytes (the token signing key; empty while disabled)
//	roles     uvarint count, then per role:
//	            name string, perms uvarint count, then per permission:
//	              access byte, prefix string
//	users     uvarint count, then per user:
//	            name string, hash bytes, generation uvarint,
//	            roles uvarint count, then role names (strings)
const formatVersion byte = 1

const flagEnabled byte = 1

func (s *state) encode() []byte {
	b := []byte{formatVersion, 0}
	if s.enabled {
		b[1] = flagEnabled
	}
	b = binary.AppendUvarint(b, s.revision)
	b = appendBytes(b, s.signingKey)
	b = binary.AppendUvarint(b, uint64(len(s.roles)))
	for _, name := range slices.Sorted(maps.Keys(s.roles)) {
		perms := s.roles[name]
		b = appendBytes(b, []byte(name))
		b = binary.AppendUvarint(b, uint64(len(perms)))
		for _, p := range perms {
			b = append(b, byte(p.Access))
			b = appendBytes(b, []byte(p.Prefix))
		}
	}
	b = binary.AppendUvarint(b, uint64(len(s.users)))
	for _, name := range slices.Sorted(maps.Keys(s.users)) {
		u := s.users[name]
		b = appendBytes(b, []byte(name))
		b = appendBytes(b, u.hash)
		b = binary.AppendUvarint(b, u.generation)
		b = binary.AppendUvarint(b, uint64(len(u.roles)))
		for _, r := range u.roles {
			b = appendBytes(b, []byte(r))
		}
	}
	return b
}

func appendBytes(b, v []byte) []byte {
	b = binary.AppendUvarint(b, uint64(len(v)))
	return append(b, v...)
}

// decodeState decodes a record written by encode. It returns an error
// wrapping ErrCorrupt for anything encode would not have written. The
// state does not alias b.
func decodeState(b []byte) (*state, error) {
	d := decoder{b: b}
	s, err := d.state()
	if err != nil {
		return nil, fmt.Errorf("%w: %w", ErrCorrupt, err)
	}
	return s, nil
}

type decoder struct {
	b []byte
}

func (d *decoder) byte() (byte, error) {
	if len(d.b) == 0 {
		return 0, errShort
	}
	c := d.b[0]
	d.b = d.b[1:]
	return c, nil
}

func (d *decoder) uvarint() (uint64, error) {
	v, n := varint.Uvarint(d.b)
	if n <= 0 { // varint refuses a longer form than the shortest
		return 0, errBadVarint
	}
	d.b = d.b[n:]
	return v, nil
}

// count reads a count of items that take at least one byte each, so that a
// corrupt count cannot make the decoder allocate more than len(b).
func (d *decoder) count() (int, error) {
	n, err := d.uvarint()
	if err != nil {
		return 0, err
	}
	if n > uint64(len(d.b)) {
		return 0, errShort
	}
	return int(n), nil
}

func (d *decoder) bytes() ([]byte, error) {
	n, err := d.count()
	if err != nil {
		return nil, err
	}
	v := slices.Clone(d.b[:n:n])
	d.b = d.b[n:]
	return v, nil
}

func (d *decoder) name() (string, error) {
	v, err := d.bytes()
	if err != nil {
		return "", err
	}
	if len(v) == 0 {
		return "", errEmptyName
	}
	return string(v), nil
}

type decodeError string

func (e decodeError) Error() string { return string(e) }

const (
	errShort     decodeError = "truncated"
	errBadVarint decodeError = "malformed varint"
	errEmptyName decodeError = "empty name"
	errOrder     decodeError = "entries out of order or repeated"
)

func (d *decoder) state() (*state, error) {
	version, err := d.byte()
	if err != nil {
		return nil, err
	}
	if version != formatVersion {
		return nil, fmt.Errorf("format version %d, want %d", version, formatVersion)
	}
	flags, err := d.byte()
	if err != nil {
		return nil, err
	}
	if flags&^flagEnabled != 0 {
		return nil, fmt.Errorf("unknown flags %#x", flags)
	}
	s := newState()
	s.enabled = flags&flagEnabled != 0
	if s.revision, err = d.uvarint(); err != nil {
		return nil, err
	}
	if s.signingKey, err = d.bytes(); err != nil {
		return nil, err
	}
	if len(s.signingKey) == 0 {
		s.signingKey = nil
	}
	if s.enabled && len(s.signingKey) == 0 {
		return nil, decodeError("enabled without a signing key")
	}
	if err := d.roles(s); err != nil {
		return nil, err
	}
	if err := d.users(s); err != nil {
		return nil, err
	}
	if len(d.b) != 0 {
		return nil, fmt.Errorf("%d trailing bytes", len(d.b))
	}
	return s, nil
}

func (d *decoder) roles(s *state) error {
	n, err := d.count()
	if err != nil {
		return err
	}
	prev := ""
	for i := range n {
		name, err := d.name()
		if err != nil {
			return err
		}
		if i > 0 && name <= prev {
			return errOrder
		}
		prev = name
		np, err := d.count()
		if err != nil {
			return err
		}
		perms := make([]Permission, 0, np)
		for j := range np {
			a, err := d.byte()
			if err != nil {
				return err
			}
			prefix, err := d.bytes()
			if err != nil {
				return err
			}
			p := Permission{Access: Access(a), Prefix: string(prefix)}
			if why := p.problem(); why != "" {
				return decodeError(why)
			}
			if j > 0 && comparePermission(perms[j-1], p) >= 0 {
				return errOrder
			}
			perms = append(perms, p)
		}
		s.roles[name] = perms
	}
	return nil
}

func (d *decoder) users(s *state) error {
	n, err := d.count()
	if err != nil {
		return err
	}
	prev := ""
	for i := range n {
		name, err := d.name()
		if err != nil {
			return err
		}
		if i > 0 && name <= prev {
			return errOrder
		}
		prev = name
		u := &userRecord{}
		if u.hash, err = d.bytes(); err != nil {
			return err
		}
		if u.generation, err = d.uvarint(); err != nil {
			return err
		}
		nr, err := d.count()
		if err != nil {
			return err
		}
		u.roles = make([]string, 0, nr)
		for j := range nr {
			r, err := d.name()
			if err != nil {
				return err
			}
			if j > 0 && r <= u.roles[j-1] {
				return errOrder
			}
			if _, ok := s.roles[r]; !ok {
				return fmt.Errorf("user %q holds missing role %q", name, r)
			}
			u.roles = append(u.roles, r)
		}
		s.users[name] = u
	}
	return nil
}

// MaxNameBytes is the longest user or role name.
const MaxNameBytes = 128

// validName checks a user or role name: 1 to MaxNameBytes bytes of UTF-8,
// printable, no spaces. Names travel in token claims (JSON) and in
// certificate common names, so they are kept to text.
func validName(kind, name string) error {
	switch {
	case name == "":
		return fmt.Errorf("%w: empty %s name", ErrInvalid, kind)
	case len(name) > MaxNameBytes:
		return fmt.Errorf("%w: %s name of %d bytes exceeds %d", ErrInvalid, kind, len(name), MaxNameBytes)
	case !utf8.ValidString(name):
		return fmt.Errorf("%w: %s name is not UTF-8", ErrInvalid, kind)
	}
	for _, r := range name {
		if !unicode.IsPrint(r) || unicode.IsSpace(r) {
			return fmt.Errorf("%w: %s name %q has a space or an unprintable character", ErrInvalid, kind, name)
		}
	}
	return nil
}

// rootPermissions returns what the root role holds, sorted.
func rootPermissions() []Permission {
	return []Permission{{Access: ReadWrite}, {Access: Admin}, {Access: Metrics}}
}
