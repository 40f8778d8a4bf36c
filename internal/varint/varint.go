// Package varint decodes the varints of ringkv's binary formats
// canonically: as encoding/binary does, and refusing an encoding longer
// than the value needs (0x80 0x00 for 0), which binary.Uvarint accepts.
// Every encoder writes the shortest form (binary.AppendUvarint), so a
// longer one is corruption or a forgery; refusing it keeps decoding
// one-to-one: a decoded value re-encodes to the bytes it came from.
package varint

import (
	"encoding/binary"
	"math/bits"
)

// Len is the length of v's shortest uvarint encoding.
func Len(v uint64) int { return (bits.Len64(v|1) + 6) / 7 }

// Uvarint is binary.Uvarint, with n == 0 also for an encoding longer
// than the shortest: (0, 0) when b is too short or not canonical, and
// n < 0 on overflow, as binary.Uvarint.
func Uvarint(b []byte) (uint64, int) {
	v, n := binary.Uvarint(b)
	if n > 0 && n != Len(v) {
		return 0, 0
	}
	return v, n
}

// Varint is binary.Varint with the same rule as Uvarint.
func Varint(b []byte) (int64, int) {
	v, n := binary.Varint(b)
	if n > 0 && n != Len(uint64(v)<<1^uint64(v>>63)) {
		return 0, 0
	}
	return v, n
}
