package replica

import (
	"bytes"
	"encoding/binary"
	"fmt"
	"strings"
	"time"

	"github.com/ringkv/ringkv/internal/crc"
	"github.com/ringkv/ringkv/internal/varint"
)

// Record is the one stored unit per key: a value or a tombstone, stamped with
// the writer's HLC timestamp and node id. Records form a total order (see
// Compare); merging keeps the greater one.
//
// A Record does not own Value unless it came from DecodeRecord, Store.Get or
// Store.Scan, which always return fresh copies.
type Record struct {
	Value     []byte
	Timestamp Timestamp
	NodeID    string // writer's node id, the tie-break for equal timestamps
	Tombstone bool
	// ExpiresAt is when the record stops being live; the zero time means
	// never. It is stored with nanosecond precision as Unix nanoseconds, so
	// only times between the years 1678 and 2262 round-trip, and the instant
	// of the Unix epoch itself reads back as "never".
	ExpiresAt time.Time
}

// Compare orders records: by Timestamp, then NodeID, then Tombstone (a
// tombstone is greater than a value), then bytes.Compare of Value, and last by
// ExpiresAt (never-expiring is greatest, otherwise later is greater). It
// returns -1, 0 or +1. Compare(a, b) == 0 only if a and b encode to the same
// bytes, so merging by Compare is commutative even for ties that correct
// writers never produce.
func Compare(a, b Record) int {
	switch {
	case a.Timestamp < b.Timestamp:
		return -1
	case a.Timestamp > b.Timestamp:
		return 1
	}
	if c := strings.Compare(a.NodeID, b.NodeID); c != 0 {
		return c
	}
	switch {
	case a.Tombstone && !b.Tombstone:
		return 1
	case !a.Tombstone && b.Tombstone:
		return -1
	}
	if c := bytes.Compare(a.Value, b.Value); c != 0 {
		return c
	}
	return compareExpiry(expiryNanos(a.ExpiresAt), expiryNanos(b.ExpiresAt))
}

// compareExpiry orders encoded expiries with 0 (never) above everything.
func compareExpiry(a, b int64) int {
	switch {
	case a == b:
		return 0
	case a == 0:
		return 1
	case b == 0:
		return -1
	case a < b:
		return -1
	default:
		return 1
	}
}

// Newer reports whether r is strictly greater than o in the Compare order,
// that is, whether merging r into a replica holding o replaces o.
func (r Record) Newer(o Record) bool { return Compare(r, o) > 0 }

// Live reports whether r is a value (not a tombstone) that has not expired at now.
func (r Record) Live(now time.Time) bool {
	return !r.Tombstone && (r.ExpiresAt.IsZero() || now.Before(r.ExpiresAt))
}

// Encoding of a record (all integers big-endian):
//
//	offset  size  field
//	0       1     version (recordVersion)
//	1       1     flags (bit 0: tombstone; other bits must be zero)
//	2       8     timestamp
//	10      8     expiry, Unix nanoseconds (0 = never)
//	18      n     uvarint len(NodeID), canonical (shortest) form
//	18+n    len   NodeID
//	...     rest  Value
//	end-4   4     CRC-32C (Castagnoli) of every byte before it
const (
	recordVersion   = 1
	flagTombstone   = 1 << 0
	recordHeaderLen = 18
	recordCRCLen    = 4
	// minRecordLen is a header, a one-byte node id length and the checksum.
	minRecordLen = recordHeaderLen + 1 + recordCRCLen
)

func expiryNanos(t time.Time) int64 {
	if t.IsZero() {
		return 0
	}
	return t.UnixNano()
}

// encodedLen returns the length of r's encoding.
func (r Record) encodedLen() int {
	return recordHeaderLen + varint.Len(uint64(len(r.NodeID))) + len(r.NodeID) + len(r.Value) + recordCRCLen
}

// AppendBinary appends the encoding of r to b and returns the extended
// slice. The encoding is versioned and checksummed; see DecodeRecord.
func (r Record) AppendBinary(b []byte) []byte {
	start := len(b)
	var flags byte
	if r.Tombstone {
		flags |= flagTombstone
	}
	b = append(b, recordVersion, flags)
	b = binary.BigEndian.AppendUint64(b, uint64(r.Timestamp))
	b = binary.BigEndian.AppendUint64(b, uint64(expiryNanos(r.ExpiresAt)))
	b = binary.AppendUvarint(b, uint64(len(r.NodeID)))
	b = append(b, r.NodeID...)
	b = append(b, r.Value...)
	return binary.BigEndian.AppendUint32(b, crc.Sum(b[start:]))
}

// DecodeRecord decodes an encoding made by AppendBinary. Any problem (short
// input, unknown version or flags, bad length, checksum mismatch) returns an
// error wrapping ErrCorrupt. The returned record does not alias b.
func DecodeRecord(b []byte) (Record, error) {
	return decodeRecord(b, true)
}

// decodeRecord is DecodeRecord; with copyValue false the returned Value
// aliases b, for callers that only compare and drop the record.
func decodeRecord(b []byte, copyValue bool) (Record, error) {
	if len(b) < minRecordLen {
		return Record{}, fmt.Errorf("%w: %d bytes, need at least %d", ErrCorrupt, len(b), minRecordLen)
	}
	body, sum := b[:len(b)-recordCRCLen], binary.BigEndian.Uint32(b[len(b)-recordCRCLen:])
	if got := crc.Sum(body); got != sum {
		return Record{}, fmt.Errorf("%w: checksum %08x, want %08x", ErrCorrupt, got, sum)
	}
	if body[0] != recordVersion {
		return Record{}, fmt.Errorf("%w: version %d", ErrCorrupt, body[0])
	}
	if body[1]&^flagTombstone != 0 {
		return Record{}, fmt.Errorf("%w: flags %#x", ErrCorrupt, body[1])
	}
	r := Record{
		Tombstone: body[1]&flagTombstone != 0,
		Timestamp: Timestamp(binary.BigEndian.Uint64(body[2:10])),
	}
	if ns := int64(binary.BigEndian.Uint64(body[10:18])); ns != 0 {
		r.ExpiresAt = time.Unix(0, ns).UTC()
	}
	rest := body[recordHeaderLen:]
	n, k := varint.Uvarint(rest)
	if k <= 0 {
		return Record{}, fmt.Errorf("%w: bad node id length", ErrCorrupt)
	}
	rest = rest[k:]
	if n > uint64(len(rest)) {
		return Record{}, fmt.Errorf("%w: node id length %d exceeds %d remaining bytes", ErrCorrupt, n, len(rest))
	}
	r.NodeID = string(rest[:n])
	if v := rest[n:]; len(v) > 0 {
		if copyValue {
			r.Value = bytes.Clone(v)
		} else {
			r.Value = v
		}
	}
	return r, nil
}
