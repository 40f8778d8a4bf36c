package gossip

import (
	"bytes"
	"encoding/binary"
	"fmt"

	"github.com/ringkv/ringkv/internal/crc"
	"github.com/ringkv/ringkv/internal/varint"

	"github.com/ringkv/ringkv/ring"
)

// record is the value of the register on which ring changes are decided
// (see Store): the cluster's ring and the ids of the changes that made its
// last versions. A decider whose compare-and-set ended in an error looks
// its change id up here to learn whether the change was made.
type record struct {
	ring *ring.Ring
	// recent holds the newest changes, oldest first, at most
	// recordHistory of them.
	recent []madeChange
}

// madeChange is one decided change: its id and the ring version it made.
type madeChange struct {
	id      changeID
	version uint64
}

// changeID names one attempt to change the ring; random, so two deciders
// never share one.
type changeID [16]byte

// recordHistory is how many changes a record remembers. A decider looks
// for its own change right after the compare-and-set that may have made
// it, so a few would do; 64 leaves room for a burst of other changes in
// between.
const recordHistory = 64

// The encoding is: magic (4) | format version (1) | CRC-32C of the rest
// (4) | uvarint len | ring.MarshalBinary | uvarint count | count x (16-byte
// id | uvarint version).
var recordMagic = [4]byte{'R', 'K', 'V', 'D'}

const (
	recordVersion   = 1
	recordHeaderLen = 4 + 1 + 4
)

// with returns the record that follows r once change id made next.
func (r record) with(next *ring.Ring, id changeID) record {
	recent := append(append([]madeChange(nil), r.recent...), madeChange{id: id, version: next.Version()})
	if len(recent) > recordHistory {
		recent = recent[len(recent)-recordHistory:]
	}
	return record{ring: next, recent: recent}
}

// made returns the ring version that change id made, if r remembers it.
func (r record) made(id changeID) (uint64, bool) {
	for _, c := range r.recent {
		if c.id == id {
			return c.version, true
		}
	}
	return 0, false
}

// covers reports whether r would remember a change that made version v:
// its history reaches back to v or beyond.
func (r record) covers(v uint64) bool {
	return len(r.recent) < recordHistory || r.recent[0].version <= v
}

func (r record) encode() ([]byte, error) {
	enc, err := r.ring.MarshalBinary()
	if err != nil {
		return nil, fmt.Errorf("encode ring: %w", err)
	}
	b := make([]byte, recordHeaderLen, recordHeaderLen+len(enc)+len(r.recent)*20+16)
	copy(b, recordMagic[:])
	b[4] = recordVersion
	b = binary.AppendUvarint(b, uint64(len(enc)))
	b = append(b, enc...)
	b = binary.AppendUvarint(b, uint64(len(r.recent)))
	for _, c := range r.recent {
		b = append(b, c.id[:]...)
		b = binary.AppendUvarint(b, c.version)
	}
	binary.BigEndian.PutUint32(b[5:9], crc.Sum(b[recordHeaderLen:]))
	return b, nil
}

// decodeRecord parses a record; errors are marked ErrCorrupt.
func decodeRecord(b []byte) (record, error) {
	bad := func(format string, args ...any) (record, error) {
		return record{}, fmt.Errorf("%w: ring record: "+format, append([]any{ErrCorrupt}, args...)...)
	}
	if len(b) < recordHeaderLen {
		return bad("%d bytes, shorter than its header", len(b))
	}
	if !bytes.Equal(b[:4], recordMagic[:]) {
		return bad("bad magic")
	}
	if b[4] != recordVersion {
		return bad("unknown format version %d", b[4])
	}
	rest := b[recordHeaderLen:]
	if want, got := binary.BigEndian.Uint32(b[5:9]), crc.Sum(rest); got != want {
		return bad("checksum %08x, want %08x", got, want)
	}
	n, k := varint.Uvarint(rest)
	if k <= 0 || n > uint64(len(rest)-k) {
		return bad("ring length")
	}
	rest = rest[k:]
	rg, err := ring.Decode(bytes.Clone(rest[:n]))
	if err != nil {
		return bad("%w", err)
	}
	rest = rest[n:]
	count, k := varint.Uvarint(rest)
	if k <= 0 || count > recordHistory {
		return bad("history length")
	}
	rest = rest[k:]
	r := record{ring: rg, recent: make([]madeChange, 0, count)}
	for range count {
		if len(rest) < len(changeID{}) {
			return bad("history truncated")
		}
		var c madeChange
		copy(c.id[:], rest)
		rest = rest[len(c.id):]
		if c.version, k = varint.Uvarint(rest); k <= 0 {
			return bad("history version")
		}
		rest = rest[k:]
		r.recent = append(r.recent, c)
	}
	if len(rest) != 0 {
		return bad("%d trailing bytes", len(rest))
	}
	return r, nil
}
