package ring

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"math"
	"strings"
	"testing"

	"github.com/ringkv/ringkv/internal/crc"
)

func TestConfigValidate(t *testing.T) {
	tests := []struct {
		name string
		cfg  Config
		bad  int // number of problems reported
	}{
		{"default", DefaultConfig(), 0},
		{"smallest", Config{Partitions: 1, ReplicationFactor: 1}, 0},
		{"largest", Config{Partitions: 65536, ReplicationFactor: 7}, 0},
		{"not power of two", Config{Partitions: 48, ReplicationFactor: 3}, 1},
		{"too many partitions", Config{Partitions: 1 << 17, ReplicationFactor: 3}, 1},
		{"zero", Config{}, 2},
		{"negative", Config{Partitions: -64, ReplicationFactor: -1}, 2},
		{"n too big", Config{Partitions: 64, ReplicationFactor: 8}, 1},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			err := tc.cfg.Validate()
			got := 0
			if err != nil {
				got = strings.Count(err.Error(), "\n") + 1
				if !errors.Is(err, ErrInvalid) {
					t.Errorf("got %v, want ErrInvalid", err)
				}
			}
			if got != tc.bad {
				t.Errorf("got %d problems (%v), want %d", got, err, tc.bad)
			}
		})
	}
}

func TestNew(t *testing.T) {
	r, err := New(Config{})
	if err != nil {
		t.Fatal(err)
	}
	if r.Partitions() != 64 || r.ReplicationFactor() != 3 || r.Version() != 0 || len(r.Members()) != 0 {
		t.Errorf("got %v, want an empty default ring at version 0", r)
	}
	if got := r.Replicas(0); len(got) != 0 {
		t.Errorf("got replicas %v on an empty ring, want none", got)
	}
	if got := r.Replicas(64); got != nil {
		t.Errorf("got replicas %v for partition 64 of 64, want nil", got)
	}
	if _, err := New(Config{Partitions: 3}); !errors.Is(err, ErrInvalid) {
		t.Errorf("got %v, want ErrInvalid", err)
	}
}

func TestTransitionErrors(t *testing.T) {
	r := grow(t, DefaultConfig(), 4, noZone)[4]
	left, err := r.Leave("n1")
	if err != nil {
		t.Fatal(err)
	}
	removed, err := left.Remove("n2")
	if err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name string
		op   func() (*Ring, error)
		want error
	}{
		{"join empty id", func() (*Ring, error) { return r.Join(Member{}) }, ErrInvalid},
		{"join joined", func() (*Ring, error) { return r.Join(Member{ID: "n0"}) }, ErrMemberExists},
		{"leave unknown", func() (*Ring, error) { return r.Leave("x") }, ErrUnknownMember},
		{"leave leaving", func() (*Ring, error) { return left.Leave("n1") }, ErrUnknownMember},
		{"leave removed", func() (*Ring, error) { return removed.Leave("n2") }, ErrUnknownMember},
		{"remove unknown", func() (*Ring, error) { return r.Remove("x") }, ErrUnknownMember},
		{"remove removed", func() (*Ring, error) { return removed.Remove("n2") }, ErrUnknownMember},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			got, err := tc.op()
			if !errors.Is(err, tc.want) || got != nil {
				t.Errorf("got %v, %v; want nil, %v", got, err, tc.want)
			}
		})
	}
	// Allowed: removing a leaving member, re-joining a leaving or removed one.
	if r2, err := left.Remove("n1"); err != nil || !same(r2.table, left.table) {
		t.Errorf("remove leaving: got %v, want the table unchanged", err)
	}
	for _, from := range []*Ring{left, removed} {
		id := "n1"
		if from == removed {
			id = "n2"
		}
		r2, err := from.Join(Member{ID: id, Zone: "new", Status: Removed})
		if err != nil {
			t.Fatalf("re-join %q: %v", id, err)
		}
		if m, _ := r2.Member(id); m.Status != Joined || m.Zone != "new" {
			t.Errorf("re-join %q: got %+v, want joined in zone new", id, m)
		}
		checkJoin(t, from, r2, id)
	}
	if _, ok := r.Member("x"); ok {
		t.Errorf("got member x, want none")
	}
}

func same(a, b [][]string) bool {
	return fmt.Sprint(a) == fmt.Sprint(b)
}

func TestAccessors(t *testing.T) {
	rings := grow(t, DefaultConfig(), 4, noZone)
	r, err := rings[4].Leave("n3")
	if err != nil {
		t.Fatal(err)
	}
	if got := fmt.Sprint(r.Members()); got != "[{n0  joined} {n1  joined} {n2  joined} {n3  leaving}]" {
		t.Errorf("got members %s", got)
	}
	if got := fmt.Sprint(r.Active()); got != "[{n0  joined} {n1  joined} {n2  joined}]" {
		t.Errorf("got active %s", got)
	}
	if got := r.ActiveCount(); got != 3 {
		t.Errorf("got ActiveCount %d, want 3 (the leaving member is not active)", got)
	}
	if got := len(r.PartitionsOf("n0")); got != 64 {
		t.Errorf("got n0 in %d partitions, want 64", got)
	}
	if got := r.PartitionsOf("n3"); got != nil {
		t.Errorf("got leaving n3 in %v, want none", got)
	}
	ms := r.Members()
	ms[0].ID = "changed"
	if m, _ := r.Member("n0"); m.ID != "n0" {
		t.Errorf("Members returned shared storage")
	}
	for s, want := range map[Status]string{Joined: "joined", Leaving: "leaving", Removed: "removed", 9: "Status(9)"} {
		if s.String() != want {
			t.Errorf("got %q, want %q", s.String(), want)
		}
	}
	if got := r.String(); !strings.Contains(got, "n3//leaving") {
		t.Errorf("got %q", got)
	}
	// Leave down to nothing: lists shrink, then vanish.
	for _, id := range []string{"n0", "n1", "n2"} {
		prev := r
		if r, err = r.Leave(id); err != nil {
			t.Fatal(err)
		}
		checkInvariants(t, r)
		checkLeave(t, prev, r, id)
	}
	if len(r.Replicas(0)) != 0 {
		t.Errorf("got %v with no members, want empty", r.Replicas(0))
	}
}

// TestPartitionOfGolden pins the hash so an accidental change is caught:
// these are xxhash64 (XXH64, seed 0) values.
func TestPartitionOfGolden(t *testing.T) {
	tests := []struct {
		key    string
		hash   uint64
		p64    uint32
		p65536 uint32
	}{
		{"", 0xef46db3751d8e999, 59, 61254},
		{"a", 0xd24ec4f1a98c6e5b, 52, 53838},
		{"hello", 0x26c7827d889f6da3, 9, 9927},
		{"user:42", 0xdc1fea7da8d2d1c2, 55, 56351},
		{"ringkv", 0x45ed7c8ddf0bd92c, 17, 17901},
	}
	r64, _ := New(DefaultConfig())
	r65536, _ := New(Config{Partitions: 65536})
	r1, _ := New(Config{Partitions: 1})
	for _, tc := range tests {
		if got := r64.PartitionOf([]byte(tc.key)); got != tc.p64 || uint64(got) != tc.hash>>58 {
			t.Errorf("%q: got partition %d of 64, want %d", tc.key, got, tc.p64)
		}
		if got := r65536.PartitionOf([]byte(tc.key)); got != tc.p65536 || uint64(got) != tc.hash>>48 {
			t.Errorf("%q: got partition %d of 65536, want %d", tc.key, got, tc.p65536)
		}
		if got := r1.PartitionOf([]byte(tc.key)); got != 0 {
			t.Errorf("%q: got partition %d of 1, want 0", tc.key, got)
		}
	}
}

// TestPartitionOfRange: a key lands in the partition whose token range
// [p*2^64/P, (p+1)*2^64/P) contains its hash, and keys spread evenly.
func TestPartitionOfRange(t *testing.T) {
	for _, parts := range []int{1, 2, 64, 1024} {
		r, _ := New(Config{Partitions: parts})
		width := math.Exp2(64) / float64(parts)
		hits := make([]int, parts)
		const keys = 64 * 1024
		for i := range keys {
			key := binary.BigEndian.AppendUint64([]byte("k"), uint64(i))
			p := r.PartitionOf(key)
			h := float64(xxh(key))
			if lo := float64(p) * width; h < lo || h >= lo+width {
				t.Fatalf("P=%d: key %x hash %g in partition %d [%g, %g)", parts, key, h, p, lo, lo+width)
			}
			hits[p]++
		}
		want := float64(keys) / float64(parts)
		for p, c := range hits {
			// Binomial: 6 standard deviations.
			if math.Abs(float64(c)-want) > 6*math.Sqrt(want) {
				t.Errorf("P=%d: partition %d got %d keys, want about %.0f", parts, p, c, want)
			}
		}
	}
}

// TestNewer: versions order rings; equal versions tie-break by Hash, the
// same way on every node.
func TestNewer(t *testing.T) {
	base := grow(t, DefaultConfig(), 3, noZone)[3]
	a, _ := base.Join(Member{ID: "a"})
	b, _ := base.Join(Member{ID: "b"})
	if a.Version() != b.Version() || a.Hash() == b.Hash() {
		t.Fatalf("got versions %d,%d hashes %x,%x; want equal versions, distinct hashes", a.Version(), b.Version(), a.Hash(), b.Hash())
	}
	if a.Newer(b) == b.Newer(a) {
		t.Errorf("exactly one of two concurrent rings must win")
	}
	if (a.Hash() > b.Hash()) != a.Newer(b) {
		t.Errorf("the higher hash must win")
	}
	if !a.Newer(base) || base.Newer(a) || !base.Newer(nil) || a.Newer(a) {
		t.Errorf("higher versions must win, nil loses, a ring is not newer than itself")
	}
	// Deterministic: the same transitions give the same ring.
	a2, _ := base.Join(Member{ID: "a"})
	if a2.Hash() != a.Hash() || a2.Newer(a) {
		t.Errorf("got different rings from the same transition")
	}
}

func TestEncoding(t *testing.T) {
	rings := grow(t, DefaultConfig(), 7, func(i int) string { return fmt.Sprintf("zone-%d", i%3) })
	r, _ := rings[7].Leave("n2")
	r, _ = r.Remove("n4")
	b, err := r.MarshalBinary()
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("encoding of a 5+2 member, 64-partition ring: %d bytes", len(b))
	if len(b) > 1500 {
		t.Errorf("got %d bytes, want <= 1500", len(b))
	}
	got, err := Decode(b)
	if err != nil {
		t.Fatal(err)
	}
	if got.Hash() != r.Hash() || got.Version() != r.Version() || !same(got.table, r.table) ||
		fmt.Sprint(got.Members()) != fmt.Sprint(r.Members()) {
		t.Errorf("round trip: got %v, want %v", got, r)
	}
	b[len(b)-1] = 'x' // caller owns the copy
	if b2, _ := r.MarshalBinary(); bytes.Equal(b, b2) {
		t.Errorf("MarshalBinary returned shared storage")
	}
}

// encodeRaw builds an encoding by hand, for corrupt cases.
func encodeRaw(logP, n byte, version uint64, members []Member, table [][]uint64) []byte {
	b := append([]byte("RK\x01"), logP, n)
	b = binary.AppendUvarint(b, version)
	b = binary.AppendUvarint(b, uint64(len(members)))
	for _, m := range members {
		b = binary.AppendUvarint(b, uint64(len(m.ID)))
		b = append(b, m.ID...)
		b = binary.AppendUvarint(b, uint64(len(m.Zone)))
		b = append(b, m.Zone...)
		b = append(b, byte(m.Status))
	}
	for _, row := range table {
		for _, k := range row {
			b = binary.AppendUvarint(b, k)
		}
	}
	return withCRC(b)
}

// withCRC appends the checksum Decode expects.
func withCRC(b []byte) []byte {
	return binary.LittleEndian.AppendUint32(b, crc.Sum(b))
}

func TestDecodeInvalid(t *testing.T) {
	ab := []Member{{ID: "a", Status: Joined}, {ID: "b", Status: Joined}}
	row := func(ks ...uint64) [][]uint64 { return [][]uint64{ks, ks} } // P=2
	valid := encodeRaw(1, 2, 5, ab, [][]uint64{{0, 1}, {1, 0}})
	if _, err := Decode(valid); err != nil {
		t.Fatalf("hand-made valid encoding: %v", err)
	}
	tests := []struct {
		name string
		b    []byte
	}{
		{"empty", nil},
		{"bad magic", withCRC([]byte("XX\x01\x01\x02\x00\x00"))},
		{"format 2", withCRC([]byte("RK\x02\x01\x02\x00\x00"))},
		{"truncated header", withCRC([]byte("RK\x01\x01"))},
		{"bad checksum", append(valid[:len(valid)-1:len(valid)-1], valid[len(valid)-1]^1)},
		{"log2 P too big", encodeRaw(17, 2, 0, nil, nil)},
		{"N zero", encodeRaw(1, 0, 0, nil, nil)},
		{"N too big", encodeRaw(1, 8, 0, nil, nil)},
		{"bad varint", withCRC([]byte("RK\x01\x01\x02\xff\xff\xff\xff\xff\xff\xff\xff\xff\xff\xff"))},
		{"member count too big", withCRC(append(encodeRaw(1, 2, 0, nil, nil)[:6:6], 5))},
		{"huge member count", withCRC(append(encodeRaw(1, 2, 0, nil, nil)[:6:6], 0xff, 0xff, 0xff, 0x7f))},
		{"empty id", encodeRaw(1, 2, 0, []Member{{ID: "", Status: Joined}}, row(0))},
		{"unsorted", encodeRaw(1, 2, 0, []Member{ab[1], ab[0]}, row(0, 1))},
		{"duplicate", encodeRaw(1, 2, 0, []Member{ab[0], ab[0]}, row(0, 1))},
		{"bad status", encodeRaw(1, 2, 0, []Member{{ID: "a", Status: 4}}, nil)},
		{"status zero", encodeRaw(1, 2, 0, []Member{{ID: "a"}}, nil)},
		{"index out of range", encodeRaw(1, 2, 0, ab, row(0, 2))},
		{"leaving in table", encodeRaw(1, 2, 0, []Member{ab[0], ab[1], {ID: "c", Status: Leaving}}, row(0, 2))},
		{"repeated in row", encodeRaw(1, 2, 0, ab, row(0, 0))},
		{"short table", withCRC(valid[: len(valid)-5 : len(valid)-5])},
		{"trailing bytes", withCRC(append(valid[:len(valid)-4:len(valid)-4], 0))},
		{"truncated string", withCRC(valid[:9:9])},
		{"non-canonical varint", withCRC(append(encodeRaw(1, 2, 0, ab, nil)[:15:15], 0x80, 0x00, 1, 1, 0))},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			if r, err := Decode(tc.b); !errors.Is(err, ErrInvalid) {
				t.Errorf("got %v, %v; want ErrInvalid", r, err)
			}
		})
	}
}

// FuzzDecode: Decode never panics, and whatever it accepts re-encodes to
// the same bytes. Each input is tried as is and with a valid checksum
// appended, so the fuzzer reaches the parser behind the checksum.
func FuzzDecode(f *testing.F) {
	for _, r := range grow(&testing.T{}, Config{Partitions: 4, ReplicationFactor: 2}, 3, func(i int) string { return fmt.Sprint(i % 2) }) {
		b, _ := r.MarshalBinary()
		f.Add(b)
		f.Add(b[:len(b)-4])
	}
	b := encodeRaw(1, 2, 5, []Member{{ID: "a", Status: Joined}, {ID: "b", Status: Leaving}}, [][]uint64{{0}, {0}})
	f.Add(b[:len(b)-4])
	f.Fuzz(func(t *testing.T, in []byte) {
		for _, b := range [][]byte{in, withCRC(bytes.Clone(in))} {
			r, err := Decode(b)
			if err != nil {
				if !errors.Is(err, ErrInvalid) {
					t.Fatalf("got %v, want ErrInvalid", err)
				}
				continue
			}
			got, _ := r.MarshalBinary()
			if !bytes.Equal(got, b) {
				t.Fatalf("accepted %x, re-encodes to %x", b, got)
			}
			checkInvariants(t, r)
		}
	})
}

func BenchmarkPartitionOf(b *testing.B) {
	r, _ := New(DefaultConfig())
	key := []byte("user:1234567890/profile")
	b.ReportAllocs()
	for b.Loop() {
		_ = r.PartitionOf(key)
	}
}

func BenchmarkReplicas(b *testing.B) {
	r := grow(&testing.T{}, DefaultConfig(), 5, noZone)[5]
	b.ReportAllocs()
	p := uint32(0)
	for b.Loop() {
		_ = r.Replicas(p & 63)
		p++
	}
	if a := testing.AllocsPerRun(100, func() { _ = r.Replicas(7) }); a != 0 {
		b.Fatalf("got %v allocs per Replicas, want 0", a)
	}
}

// TestDecodeCorrupt: every truncation of a valid encoding and every
// single-byte change is rejected with ErrInvalid (the checksum catches what
// the structure does not).
func TestDecodeCorrupt(t *testing.T) {
	r := grow(t, DefaultConfig(), 5, func(i int) string { return fmt.Sprint("z", i%3) })[5]
	b, _ := r.MarshalBinary()
	for n := range len(b) {
		if _, err := Decode(b[:n]); !errors.Is(err, ErrInvalid) {
			t.Fatalf("truncated to %d bytes: got %v, want ErrInvalid", n, err)
		}
	}
	for i := range b {
		for _, x := range []byte{0x01, 0x80, 0xff} {
			c := bytes.Clone(b)
			c[i] ^= x
			if _, err := Decode(c); !errors.Is(err, ErrInvalid) {
				t.Fatalf("byte %d ^ %#x: got %v, want ErrInvalid", i, x, err)
			}
		}
	}
}

// TestLargeRing: the claim stays fast and balanced at the largest P.
func TestLargeRing(t *testing.T) {
	if testing.Short() {
		t.Skip("slow")
	}
	parts := 65536
	if raceEnabled {
		parts = 4096
	}
	rings := grow(t, Config{Partitions: parts, ReplicationFactor: 3}, 5, noZone)
	r, err := rings[5].Leave("n1")
	if err != nil {
		t.Fatal(err)
	}
	checkLeave(t, rings[5], r, "n1")
	for _, r := range []*Ring{rings[3], rings[4], rings[5], r} {
		checkBalance(t, r, true)
	}
}
