package varint

import (
	"encoding/binary"
	"math"
	"testing"
)

func TestCanonical(t *testing.T) {
	for _, v := range []uint64{0, 1, 127, 128, 300, 1<<32 - 1, 1 << 56, math.MaxUint64} {
		b := binary.AppendUvarint(nil, v)
		if got, n := Uvarint(b); got != v || n != len(b) || Len(v) != len(b) {
			t.Errorf("Uvarint(%x) = %d, %d; want %d, %d (Len %d)", b, got, n, v, len(b), Len(v))
		}
	}
	for _, v := range []int64{0, -1, 1, -64, 64, math.MinInt64, math.MaxInt64} {
		b := binary.AppendVarint(nil, v)
		if got, n := Varint(b); got != v || n != len(b) {
			t.Errorf("Varint(%x) = %d, %d; want %d, %d", b, got, n, v, len(b))
		}
	}
}

func TestRefusesLongerForms(t *testing.T) {
	for _, b := range [][]byte{{0x80, 0x00}, {0x81, 0x00}, {0xff, 0x80, 0x00}, {0x80, 0x80, 0x80, 0x00}} {
		if v, n := Uvarint(b); n != 0 || v != 0 {
			t.Errorf("Uvarint(%x) = %d, %d; want 0, 0", b, v, n)
		}
		if v, n := Varint(b); n != 0 || v != 0 {
			t.Errorf("Varint(%x) = %d, %d; want 0, 0", b, v, n)
		}
	}
	if _, n := Uvarint([]byte{0x80}); n != 0 {
		t.Errorf("a truncated uvarint: n = %d, want 0", n)
	}
	over := []byte{0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x01}
	if _, n := Uvarint(over); n >= 0 {
		t.Errorf("an overflowing uvarint: n = %d, want < 0", n)
	}
}
