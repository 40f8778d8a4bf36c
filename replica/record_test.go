package replica

import (
	"bytes"
	"encoding/binary"
	"errors"
	"math/rand/v2"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/ringkv/ringkv/internal/crc"
)

var (
	t0 = time.Date(2025, 1, 2, 3, 4, 5, 6, time.UTC)
	t1 = t0.Add(time.Hour)
)

// randRecord draws from small domains so that ties on every field happen.
func randRecord(rng *rand.Rand) Record {
	r := Record{
		Timestamp: Timestamp(rng.IntN(3)),
		NodeID:    []string{"", "a", "b"}[rng.IntN(3)],
		Tombstone: rng.IntN(3) == 0,
		ExpiresAt: []time.Time{{}, t0, t1}[rng.IntN(3)],
	}
	if v := []string{"", "x", "y"}[rng.IntN(3)]; v != "" {
		r.Value = []byte(v)
	}
	return r
}

func newRand(t testing.TB) *rand.Rand {
	seed := uint64(time.Now().UnixNano())
	t.Logf("seed %d", seed)
	return rand.New(rand.NewPCG(seed, seed>>7))
}

// oracleLess spells out the record order as a tuple compared field by field,
// independently of Compare.
func oracleLess(a, b Record) bool {
	if a.Timestamp != b.Timestamp {
		return a.Timestamp < b.Timestamp
	}
	if a.NodeID != b.NodeID {
		return a.NodeID < b.NodeID
	}
	if a.Tombstone != b.Tombstone {
		return b.Tombstone
	}
	if !bytes.Equal(a.Value, b.Value) {
		return string(a.Value) < string(b.Value)
	}
	ea, eb := a.ExpiresAt, b.ExpiresAt
	switch {
	case ea.Equal(eb):
		return false
	case ea.IsZero():
		return false // never expiring is greatest
	case eb.IsZero():
		return true
	default:
		return ea.Before(eb)
	}
}

func oracleMax(rs []Record) Record {
	m := rs[0]
	for _, r := range rs[1:] {
		if oracleLess(m, r) {
			m = r
		}
	}
	return m
}

// merge is the replica merge rule: keep the stored record unless the incoming one is newer.
func merge(stored, in Record) Record {
	if in.Newer(stored) {
		return in
	}
	return stored
}

func enc(r Record) string { return string(r.AppendBinary(nil)) }

func TestCompareMatchesOracle(t *testing.T) {
	rng := newRand(t)
	for range 20000 {
		a, b := randRecord(rng), randRecord(rng)
		want := 0
		switch {
		case oracleLess(a, b):
			want = -1
		case oracleLess(b, a):
			want = 1
		}
		if got := Compare(a, b); got != want {
			t.Fatalf("Compare(%+v, %+v): got %d, want %d", a, b, got, want)
		}
		if got := Compare(a, b) == 0; got != (enc(a) == enc(b)) {
			t.Fatalf("Compare(%+v, %+v) == 0: got %v, want %v (encodings equal)", a, b, got, !got)
		}
	}
}

func TestMergeProperties(t *testing.T) {
	rng := newRand(t)
	for range 20000 {
		a, b, c := randRecord(rng), randRecord(rng), randRecord(rng)
		if got, want := enc(merge(a, a)), enc(a); got != want {
			t.Fatalf("idempotent: merge(a, a) = %q, want %q", got, want)
		}
		if got, want := enc(merge(a, b)), enc(merge(b, a)); got != want {
			t.Fatalf("commutative: merge(a, b) = %q, want merge(b, a) = %q", got, want)
		}
		if got, want := enc(merge(merge(a, b), c)), enc(merge(a, merge(b, c))); got != want {
			t.Fatalf("associative: got %q, want %q", got, want)
		}
	}
	// Any order of merging a set gives the oracle's maximum.
	for range 2000 {
		rs := make([]Record, 1+rng.IntN(8))
		for i := range rs {
			rs[i] = randRecord(rng)
		}
		want := enc(oracleMax(rs))
		rng.Shuffle(len(rs), func(i, j int) { rs[i], rs[j] = rs[j], rs[i] })
		got := rs[0]
		for _, r := range rs[1:] {
			got = merge(got, r)
		}
		if enc(got) != want {
			t.Fatalf("merge of %+v: got %q, want %q", rs, enc(got), want)
		}
	}
}

func TestCompareFields(t *testing.T) {
	base := Record{Value: []byte("v"), Timestamp: 10, NodeID: "n2"}
	with := func(f func(*Record)) Record { r := base; f(&r); return r }
	tests := []struct {
		name string
		a, b Record
		want int
	}{
		{"equal", base, base, 0},
		{"later timestamp wins over node id", with(func(r *Record) { r.Timestamp = 11; r.NodeID = "n1" }), base, 1},
		{"node id breaks timestamp tie", with(func(r *Record) { r.NodeID = "n3" }), base, 1},
		{"tombstone beats value", with(func(r *Record) { r.Tombstone = true; r.Value = nil }), base, 1},
		{"value bytes last", with(func(r *Record) { r.Value = []byte("w") }), base, 1},
		{"never expiring beats expiring", base, with(func(r *Record) { r.ExpiresAt = t1 }), 1},
		{"later expiry wins", with(func(r *Record) { r.ExpiresAt = t1 }), with(func(r *Record) { r.ExpiresAt = t0 }), 1},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			if got := Compare(tc.a, tc.b); got != tc.want {
				t.Errorf("Compare(a, b): got %d, want %d", got, tc.want)
			}
			if got := Compare(tc.b, tc.a); got != -tc.want {
				t.Errorf("Compare(b, a): got %d, want %d", got, -tc.want)
			}
			if got := tc.a.Newer(tc.b); got != (tc.want > 0) {
				t.Errorf("a.Newer(b): got %v, want %v", got, tc.want > 0)
			}
		})
	}
}

func TestLive(t *testing.T) {
	tests := []struct {
		name string
		r    Record
		now  time.Time
		want bool
	}{
		{"value without expiry", Record{Value: []byte("v")}, t0, true},
		{"empty value", Record{}, t0, true},
		{"tombstone", Record{Tombstone: true}, t0, false},
		{"before expiry", Record{ExpiresAt: t1}, t0, true},
		{"at expiry", Record{ExpiresAt: t1}, t1, false},
		{"after expiry", Record{ExpiresAt: t0}, t1, false},
		{"expiring tombstone", Record{Tombstone: true, ExpiresAt: t1}, t0, false},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			if got := tc.r.Live(tc.now); got != tc.want {
				t.Errorf("Live: got %v, want %v", got, tc.want)
			}
		})
	}
}

func equalRecord(a, b Record) bool {
	return bytes.Equal(a.Value, b.Value) && a.Timestamp == b.Timestamp && a.NodeID == b.NodeID &&
		a.Tombstone == b.Tombstone && a.ExpiresAt.Equal(b.ExpiresAt)
}

func TestRecordRoundTrip(t *testing.T) {
	tests := []struct {
		name string
		r    Record
	}{
		{"zero", Record{}},
		{"value", Record{Value: []byte("hello"), Timestamp: MakeTimestamp(t0, 7), NodeID: "node-1"}},
		{"tombstone", Record{Tombstone: true, Timestamp: 1<<64 - 1, NodeID: "n"}},
		{"expiry", Record{Value: []byte{0}, ExpiresAt: t0, NodeID: "n"}},
		{"expiry before epoch", Record{ExpiresAt: time.Date(1960, 1, 1, 0, 0, 0, 1, time.UTC)}},
		{"long node id", Record{NodeID: strings.Repeat("n", 300), Value: bytes.Repeat([]byte("v"), 1<<16)}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			b := tc.r.AppendBinary([]byte("prefix"))
			if got, want := string(b[:6]), "prefix"; got != want {
				t.Fatalf("AppendBinary clobbered the prefix: got %q, want %q", got, want)
			}
			b = b[6:]
			if got, want := len(b), tc.r.encodedLen(); got != want {
				t.Errorf("len: got %d, want encodedLen %d", got, want)
			}
			got, err := DecodeRecord(b)
			if err != nil {
				t.Fatalf("DecodeRecord: got %v, want nil", err)
			}
			if !equalRecord(got, tc.r) {
				t.Errorf("DecodeRecord: got %+v, want %+v", got, tc.r)
			}
			if len(got.Value) > 0 {
				b[len(b)-5]++ // last value byte
				if got.Value[len(got.Value)-1] != tc.r.Value[len(tc.r.Value)-1] {
					t.Errorf("decoded Value aliases the input")
				}
			}
		})
	}
}

func TestDecodeRecordCorruption(t *testing.T) {
	r := Record{Value: []byte("value"), Timestamp: MakeTimestamp(t0, 1), NodeID: "node", ExpiresAt: t1}
	good := r.AppendBinary(nil)
	// Every single-byte change is detected.
	for i := range good {
		for _, x := range []byte{0x01, 0x80, 0xff} {
			b := bytes.Clone(good)
			b[i] ^= x
			if _, err := DecodeRecord(b); !errors.Is(err, ErrCorrupt) {
				t.Fatalf("byte %d ^ %#x: got %v, want ErrCorrupt", i, x, err)
			}
		}
	}
	// Every truncation and extension is detected.
	for n := range len(good) {
		if _, err := DecodeRecord(good[:n]); !errors.Is(err, ErrCorrupt) {
			t.Fatalf("truncated to %d: got %v, want ErrCorrupt", n, err)
		}
	}
	if _, err := DecodeRecord(append(bytes.Clone(good), 0)); !errors.Is(err, ErrCorrupt) {
		t.Fatalf("extended: got %v, want ErrCorrupt", err)
	}
	// Well-checksummed but malformed bodies.
	tests := []struct {
		name string
		body []byte
	}{
		{"version", append([]byte{2, 0}, make([]byte, 17)...)},
		{"flags", append([]byte{1, 2}, make([]byte, 17)...)},
		{"non-canonical node id length", append(append([]byte{1, 0}, make([]byte, 16)...), 0x80, 0x00)},
		{"node id longer than record", append(append([]byte{1, 0}, make([]byte, 16)...), 5, 'a')},
		{"overlong uvarint", append(append([]byte{1, 0}, make([]byte, 16)...), bytes.Repeat([]byte{0xff}, 11)...)},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			b := appendChecksum(slices.Clone(tc.body))
			if _, err := DecodeRecord(b); !errors.Is(err, ErrCorrupt) {
				t.Errorf("got %v, want ErrCorrupt", err)
			}
		})
	}
}

// appendChecksum seals body with its CRC-32C, as AppendBinary does.
func appendChecksum(body []byte) []byte {
	return binary.BigEndian.AppendUint32(body, crc.Sum(body))
}

func FuzzDecodeRecord(f *testing.F) {
	for _, r := range []Record{
		{},
		{Value: []byte("v"), Timestamp: 42, NodeID: "n1"},
		{Tombstone: true, ExpiresAt: t0, NodeID: strings.Repeat("x", 200)},
	} {
		f.Add(r.AppendBinary(nil))
	}
	f.Add([]byte{})
	f.Add(appendChecksum([]byte{1, 0, 0, 0, 0, 0, 0, 0, 0, 1, 0, 0, 0, 0, 0, 0, 0, 0, 1, 'n', 'v'}))
	f.Fuzz(func(t *testing.T, b []byte) {
		r, err := DecodeRecord(b)
		if err != nil {
			if !errors.Is(err, ErrCorrupt) {
				t.Fatalf("got %v, want an error wrapping ErrCorrupt", err)
			}
			return
		}
		if got := r.AppendBinary(nil); !bytes.Equal(got, b) {
			t.Fatalf("re-encoding: got %x, want %x", got, b)
		}
	})
}

// FuzzDecodeRecordSealed seals the input with a valid checksum first, so the
// fuzzer explores the parser behind the checksum.
func FuzzDecodeRecordSealed(f *testing.F) {
	f.Add([]byte{1, 0, 0, 0, 0, 0, 0, 0, 0, 1, 0, 0, 0, 0, 0, 0, 0, 0, 1, 'n', 'v'})
	f.Add([]byte{1, 1, 0, 0, 0, 0, 0, 0, 0, 1, 0, 0, 0, 0, 0, 0, 0, 9, 0x80, 0x01})
	f.Fuzz(func(t *testing.T, body []byte) {
		b := appendChecksum(slices.Clone(body))
		r, err := DecodeRecord(b)
		if err != nil {
			if !errors.Is(err, ErrCorrupt) {
				t.Fatalf("got %v, want an error wrapping ErrCorrupt", err)
			}
			return
		}
		if got := r.AppendBinary(nil); !bytes.Equal(got, b) {
			t.Fatalf("re-encoding: got %x, want %x", got, b)
		}
	})
}

func TestTimestamp(t *testing.T) {
	wall := time.Date(2030, 5, 6, 7, 8, 9, 123456789, time.UTC)
	ts := MakeTimestamp(wall, 0xabcd)
	if got, want := ts.WallTime(), wall.Truncate(time.Millisecond); !got.Equal(want) {
		t.Errorf("WallTime: got %v, want %v", got, want)
	}
	if got, want := ts.Logical(), uint16(0xabcd); got != want {
		t.Errorf("Logical: got %#x, want %#x", got, want)
	}
	if got, want := MakeTimestamp(wall, 0xffff)+1, MakeTimestamp(wall.Add(time.Millisecond), 0); got != want {
		t.Errorf("logical overflow carries: got %v, want %v", got, want)
	}
	if got, want := MakeTimestamp(time.Unix(-5, 0), 3), Timestamp(3); got != want {
		t.Errorf("before epoch: got %d, want %d", got, want)
	}
	if got := ts.String(); !strings.HasPrefix(got, "2030-05-06T07:08:09.123Z+") {
		t.Errorf("String: got %q, want prefix 2030-05-06T07:08:09.123Z+", got)
	}
}

func BenchmarkRecordEncode(b *testing.B) {
	r := Record{Value: bytes.Repeat([]byte("v"), 100), Timestamp: MakeTimestamp(t0, 1), NodeID: "node-1"}
	buf := make([]byte, 0, 256)
	b.ReportAllocs()
	b.SetBytes(int64(r.encodedLen()))
	for b.Loop() {
		buf = r.AppendBinary(buf[:0])
	}
}

func BenchmarkRecordDecode(b *testing.B) {
	r := Record{Value: bytes.Repeat([]byte("v"), 100), Timestamp: MakeTimestamp(t0, 1), NodeID: "node-1"}
	buf := r.AppendBinary(nil)
	b.ReportAllocs()
	b.SetBytes(int64(len(buf)))
	for b.Loop() {
		if _, err := DecodeRecord(buf); err != nil {
			b.Fatal(err)
		}
	}
}
