package gossip

import (
	"bytes"
	"encoding/base64"
	"fmt"
	"os"
	"slices"
	"strings"

	"github.com/hashicorp/memberlist"
)

// The keyring file (Config.KeyringFile) holds one key per line, in
// standard base64 with padding (what `ringkv certs create-gossip-key`
// writes): 16, 24 or 32 bytes once decoded, for AES-128, -192 or -256.
// A '#' starts a comment that runs to the end of the line ('#' is not a
// base64 character); blank lines and space around a key are ignored. The
// first key is the primary: it encrypts everything this node sends. Every
// key decrypts. A key listed twice counts once. A file without any key is
// an error, never "no encryption".
//
//	# primary: encrypts and decrypts
//	<44 base64 characters: the new key>
//	<the old key, still accepted from peers that have not switched>  # until 2025-07-01

// loadKeyring reads and parses the keyring file at path. Errors are marked
// ErrInvalidConfig and name the path (and the line, for a bad key).
func loadKeyring(path string) ([][]byte, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("%w: keyring file: %w", ErrInvalidConfig, err)
	}
	return parseKeyring(path, data)
}

// parseKeyring parses the contents of a keyring file; path only names it
// in errors, which are marked ErrInvalidConfig and never quote a key. It
// returns the distinct keys in file order, the primary first; the slices
// are the caller's.
func parseKeyring(path string, data []byte) ([][]byte, error) {
	var keys [][]byte
	for i, line := range strings.Split(string(data), "\n") {
		if c := strings.IndexByte(line, '#'); c >= 0 {
			line = line[:c]
		}
		line = strings.TrimSpace(line)
		if line == "" {
			continue
		}
		key, err := base64.StdEncoding.DecodeString(line)
		if err != nil {
			return nil, fmt.Errorf("%w: keyring file %s line %d: not standard base64: %w", ErrInvalidConfig, path, i+1, err)
		}
		if err := memberlist.ValidateKey(key); err != nil {
			return nil, fmt.Errorf("%w: keyring file %s line %d: key is %d bytes, want 16, 24 or 32", ErrInvalidConfig, path, i+1, len(key))
		}
		if !slices.ContainsFunc(keys, func(k []byte) bool { return bytes.Equal(k, key) }) {
			keys = append(keys, key)
		}
	}
	if len(keys) == 0 {
		return nil, fmt.Errorf("%w: keyring file %s: no keys", ErrInvalidConfig, path)
	}
	return keys, nil
}

// newKeyring returns a memberlist keyring holding keys, keys[0] primary.
// keys must be non-empty and valid (parseKeyring's result).
func newKeyring(keys [][]byte) (*memberlist.Keyring, error) {
	kr, err := memberlist.NewKeyring(keys[1:], keys[0])
	if err != nil {
		return nil, fmt.Errorf("build keyring: %w", err)
	}
	return kr, nil
}

// ReloadKeyring reads Config.KeyringFile again and applies it to the
// running keyring, without a restart: it installs every key in the file,
// makes the first one the primary (the one this node encrypts with), then
// drops every installed key the file no longer lists. Peers read this
// node's messages only while they hold its primary key, so change the
// files in the three steps the package documentation gives ("Gossip
// encryption"). The binary calls it on SIGHUP.
//
// A file that cannot be read or parsed returns an error marked
// ErrInvalidConfig and leaves the running keyring as it was. It returns
// ErrNoKeyring when the Gossip was opened without a KeyringFile, and
// ErrClosed once Close has started. Safe for concurrent use: reloads run
// one at a time, each reading the file and applying it.
func (g *Gossip) ReloadKeyring() error {
	if g.keyring == nil {
		return ErrNoKeyring
	}
	g.reloading.Lock()
	defer g.reloading.Unlock()
	select {
	case <-g.closing():
		return ErrClosed
	default:
	}
	keys, err := loadKeyring(g.cfg.KeyringFile)
	if err != nil {
		return err
	}
	ch, err := applyKeyring(g.keyring, keys)
	if err != nil {
		return fmt.Errorf("gossip: reload keyring %s: %w", g.cfg.KeyringFile, err)
	}
	g.log.Info("gossip keyring reloaded", "keyring_file", g.cfg.KeyringFile, "keys", len(keys),
		"keys_added", ch.added, "keys_removed", ch.removed, "primary_changed", ch.primaryChanged)
	return nil
}

// keyringChange counts what applyKeyring changed, for the log.
type keyringChange struct {
	added, removed int
	primaryChanged bool
}

// applyKeyring makes kr hold exactly keys, keys[0] primary, in three
// moves so that a key in both the old and the new set stays installed
// throughout: install the new keys, switch the primary, drop the keys no
// longer listed (never the primary: it is keys[0]).
//
// memberlist's RemoveKey closes the gap in place, in the very array that
// GetKeys hands to decrypting goroutines without a copy. Removing from the
// end first means that the keys a rotation drops, which trail the ones it
// keeps, go without moving any other key.
func applyKeyring(kr *memberlist.Keyring, keys [][]byte) (keyringChange, error) {
	var ch keyringChange
	had := slices.Clone(kr.GetKeys())
	in := func(set [][]byte, key []byte) bool {
		return slices.ContainsFunc(set, func(k []byte) bool { return bytes.Equal(k, key) })
	}
	for _, k := range keys {
		if in(had, k) {
			continue
		}
		if err := kr.AddKey(k); err != nil {
			return ch, fmt.Errorf("add key: %w", err)
		}
		ch.added++
	}
	ch.primaryChanged = !bytes.Equal(kr.GetPrimaryKey(), keys[0])
	if err := kr.UseKey(keys[0]); err != nil {
		return ch, fmt.Errorf("use primary key: %w", err)
	}
	now := slices.Clone(kr.GetKeys())
	for i := len(now) - 1; i >= 0; i-- {
		if in(keys, now[i]) {
			continue
		}
		if err := kr.RemoveKey(now[i]); err != nil {
			return ch, fmt.Errorf("remove key: %w", err)
		}
		ch.removed++
	}
	return ch, nil
}
