package gossip

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"

	"github.com/ringkv/ringkv/internal/crc"

	"github.com/ringkv/ringkv/ring"
)

// stateFile is the name of the persisted ring in Config.DataDir.
const stateFile = "ring.state"

// The file is: magic (4) | format version (1) | CRC-32C of payload (4) |
// payload (ring.MarshalBinary).
var stateMagic = [4]byte{'R', 'K', 'V', 'R'}

const (
	stateVersion   = 1
	stateHeaderLen = 4 + 1 + 4
)

// loadRing reads the persisted ring. It returns (nil, nil) if there is none
// and an error marked ErrCorrupt if the file cannot be decoded.
func loadRing(dir string) (*ring.Ring, error) {
	path := filepath.Join(dir, stateFile)
	b, err := os.ReadFile(path)
	if errors.Is(err, fs.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("read %s: %w", path, err)
	}
	r, err := decodeState(b)
	if err != nil {
		return nil, fmt.Errorf("read %s: %w", path, err)
	}
	return r, nil
}

func decodeState(b []byte) (*ring.Ring, error) {
	if len(b) < stateHeaderLen {
		return nil, fmt.Errorf("%w: %d bytes, shorter than header", ErrCorrupt, len(b))
	}
	if !bytes.Equal(b[:4], stateMagic[:]) {
		return nil, fmt.Errorf("%w: bad magic", ErrCorrupt)
	}
	if b[4] != stateVersion {
		return nil, fmt.Errorf("%w: unknown format version %d", ErrCorrupt, b[4])
	}
	payload := b[stateHeaderLen:]
	if want, got := binary.BigEndian.Uint32(b[5:9]), crc.Sum(payload); got != want {
		return nil, fmt.Errorf("%w: checksum %08x, want %08x", ErrCorrupt, got, want)
	}
	r, err := ring.Decode(payload)
	if err != nil {
		return nil, fmt.Errorf("%w: %w", ErrCorrupt, err)
	}
	return r, nil
}

func encodeState(payload []byte) []byte {
	b := make([]byte, stateHeaderLen, stateHeaderLen+len(payload))
	copy(b, stateMagic[:])
	b[4] = stateVersion
	binary.BigEndian.PutUint32(b[5:9], crc.Sum(payload))
	return append(b, payload...)
}

// saveRing atomically replaces the persisted ring with enc (the ring's
// MarshalBinary): temp file, fsync, rename, fsync dir.
func saveRing(dir string, enc []byte) error {
	return writeAtomic(dir, stateFile, encodeState(enc))
}

// writeAtomic replaces dir/name with b: temp file, fsync, rename, fsync dir.
func writeAtomic(dir, name string, b []byte) (err error) {
	path := filepath.Join(dir, name)
	f, err := os.CreateTemp(dir, name+".tmp*")
	if err != nil {
		return fmt.Errorf("write %s: %w", path, err)
	}
	tmp := f.Name()
	defer func() {
		if err != nil {
			_ = f.Close()
			_ = os.Remove(tmp)
		}
	}()
	if _, err = f.Write(b); err != nil {
		return fmt.Errorf("write %s: %w", tmp, err)
	}
	if err = f.Sync(); err != nil {
		return fmt.Errorf("sync %s: %w", tmp, err)
	}
	if err = f.Close(); err != nil {
		return fmt.Errorf("close %s: %w", tmp, err)
	}
	if err = os.Rename(tmp, path); err != nil {
		return fmt.Errorf("rename %s: %w", tmp, err)
	}
	return syncDir(dir)
}

func syncDir(dir string) error {
	d, err := os.Open(dir)
	if err != nil {
		return fmt.Errorf("sync dir %s: %w", dir, err)
	}
	err = d.Sync()
	if cerr := d.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return fmt.Errorf("sync dir %s: %w", dir, err)
	}
	return nil
}
