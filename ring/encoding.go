package ring

import (
	"bytes"
	"encoding/binary"
	"fmt"
	"math/bits"
	"slices"

	"github.com/ringkv/ringkv/internal/crc"
	"github.com/ringkv/ringkv/internal/varint"
)

// Encoding (format 1, or 2 for a ring that has split), all integers
// unsigned varints unless noted:
//
//	"RK" 0x01|0x02     magic and format (3 bytes)
//	log2(P)            1 byte
//	log2(P0)           1 byte, format 2 only: the first P (Base), < P
//	N                  1 byte
//	version
//	#members, then per member (sorted by ID, IDs distinct and non-empty):
//	  len(ID) ID len(Zone) Zone status(1 byte)
//	table: P rows of min(N, #Joined) member indices (into the member list)
//	CRC-32C of all the above, 4 bytes little-endian
//
// The encoding is canonical: Decode accepts only what MarshalBinary of the
// decoded ring would produce, byte for byte.
// A ring that never split is format 1, byte for byte as before splits
// existed.
var magic = []byte{'R', 'K', 1}

const formatSplit = 2

func (r *Ring) encode() []byte {
	b := make([]byte, 0, 16+len(r.members)*16+len(r.table)*len(r.active))
	b = append(b, magic...)
	b = append(b, byte(bits.TrailingZeros(uint(r.cfg.Partitions))))
	if r.cfg.base != r.cfg.Partitions {
		b[len(magic)-1] = formatSplit
		b = append(b, byte(bits.TrailingZeros(uint(r.cfg.base))))
	}
	b = append(b, byte(r.cfg.ReplicationFactor))
	b = binary.AppendUvarint(b, r.version)
	b = binary.AppendUvarint(b, uint64(len(r.members)))
	index := make(map[string]int, len(r.members))
	for k, m := range r.members {
		index[m.ID] = k
		b = binary.AppendUvarint(b, uint64(len(m.ID)))
		b = append(b, m.ID...)
		b = binary.AppendUvarint(b, uint64(len(m.Zone)))
		b = append(b, m.Zone...)
		b = append(b, byte(m.Status))
	}
	for _, row := range r.table {
		for _, id := range row {
			b = binary.AppendUvarint(b, uint64(index[id]))
		}
	}
	return binary.LittleEndian.AppendUint32(b, crc.Sum(b))
}

// MarshalBinary returns the canonical encoding of r: compact (about 0.5 KB
// for 7 members and 64 partitions) and deterministic. It never fails. The
// slice is a fresh copy owned by the caller.
func (r *Ring) MarshalBinary() ([]byte, error) {
	return slices.Clone(r.enc), nil
}

// decoder reads the encoding; the first error sticks.
type decoder struct {
	b   []byte
	err error
}

func (d *decoder) fail(format string, args ...any) {
	if d.err == nil {
		d.err = fmt.Errorf("%w: "+format, append([]any{ErrInvalid}, args...)...)
	}
}

func (d *decoder) byte() byte {
	if d.err != nil {
		return 0
	}
	if len(d.b) == 0 {
		d.fail("truncated")
		return 0
	}
	c := d.b[0]
	d.b = d.b[1:]
	return c
}

func (d *decoder) uvarint() uint64 {
	if d.err != nil {
		return 0
	}
	v, n := varint.Uvarint(d.b)
	if n <= 0 {
		d.fail("bad varint")
		return 0
	}
	d.b = d.b[n:]
	return v
}

func (d *decoder) string() string {
	n := d.uvarint()
	if d.err != nil {
		return ""
	}
	if n > uint64(len(d.b)) {
		d.fail("truncated string")
		return ""
	}
	s := string(d.b[:n])
	d.b = d.b[n:]
	return s
}

// Decode parses and fully validates an encoding made by MarshalBinary: the
// config, member IDs (non-empty, sorted, distinct), statuses, and a table
// of min(N, #Joined) distinct Joined members per partition. Every error
// wraps ErrInvalid. It never panics. The ring does not retain b.
func Decode(b []byte) (*Ring, error) {
	if len(b) < len(magic)+4 || !bytes.HasPrefix(b, magic[:len(magic)-1]) ||
		(b[len(magic)-1] != magic[len(magic)-1] && b[len(magic)-1] != formatSplit) {
		return nil, fmt.Errorf("%w: bad magic or format", ErrInvalid)
	}
	body := b[:len(b)-4]
	if crc.Sum(body) != binary.LittleEndian.Uint32(b[len(body):]) {
		return nil, fmt.Errorf("%w: checksum mismatch", ErrInvalid)
	}
	d := &decoder{b: body[len(magic):]}
	logP := d.byte()
	logBase := logP
	if b[len(magic)-1] == formatSplit {
		if logBase = d.byte(); d.err == nil && logBase >= logP {
			d.fail("log2 first partitions %d not below log2 partitions %d", logBase, logP)
		}
	}
	n := d.byte()
	if d.err == nil && logP > 16 {
		d.fail("log2 partitions %d > 16", logP)
	}
	cfg := Config{Partitions: 1 << (logP & 31), ReplicationFactor: int(n), base: 1 << (logBase & 31)}
	if d.err == nil {
		if err := cfg.Validate(); err != nil {
			return nil, err
		}
	}
	version := d.uvarint()
	count := d.uvarint()
	if d.err == nil && count > uint64(len(d.b))/3 { // a member takes at least 3 bytes
		d.fail("member count %d exceeds input", count)
	}
	var members []Member
	joined := 0
	for k := uint64(0); k < count && d.err == nil; k++ {
		m := Member{ID: d.string(), Zone: d.string(), Status: Status(d.byte())}
		switch {
		case d.err != nil:
		case m.ID == "":
			d.fail("empty member id")
		case len(members) > 0 && members[len(members)-1].ID >= m.ID:
			d.fail("member %q out of order", m.ID)
		case m.Status < Joined || m.Status > Removed:
			d.fail("member %q has bad status %d", m.ID, m.Status)
		}
		if m.Status == Joined {
			joined++
		}
		members = append(members, m)
	}
	rowLen := min(cfg.ReplicationFactor, joined)
	if d.err == nil && len(d.b) < cfg.Partitions*rowLen {
		d.fail("truncated table")
	}
	var table [][]string
	for p := 0; p < cfg.Partitions && d.err == nil; p++ {
		row := make([]string, 0, rowLen)
		for range rowLen {
			k := d.uvarint()
			switch {
			case d.err != nil:
			case k >= uint64(len(members)):
				d.fail("partition %d: member index %d out of range", p, k)
			case members[k].Status != Joined:
				d.fail("partition %d: member %q is not joined", p, members[k].ID)
			case slices.Contains(row, members[k].ID):
				d.fail("partition %d: member %q repeated", p, members[k].ID)
			default:
				row = append(row, members[k].ID)
			}
		}
		table = append(table, row)
	}
	if d.err == nil && len(d.b) > 0 {
		d.fail("%d trailing bytes", len(d.b))
	}
	if d.err != nil {
		return nil, d.err
	}
	r := build(cfg, version, members, table)
	if !bytes.Equal(r.enc, b) {
		return nil, fmt.Errorf("%w: non-canonical encoding", ErrInvalid)
	}
	return r, nil
}
