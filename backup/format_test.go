package backup

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/ringkv/ringkv/client"
	"github.com/ringkv/ringkv/replica"
)

func record(ts replica.Timestamp, node, value string) replica.Record {
	return replica.Record{Timestamp: ts, NodeID: node, Value: []byte(value)}
}

// encode writes recs (in key order) into a backup file image.
func encode(t *testing.T, keys []string, recs []replica.Record) []byte {
	t.Helper()
	var buf bytes.Buffer
	w, err := NewWriter(&buf)
	if err != nil {
		t.Fatal(err)
	}
	for i, k := range keys {
		if err := w.Write([]byte(k), recs[i]); err != nil {
			t.Fatal(err)
		}
	}
	if err := w.Flush(); err != nil {
		t.Fatal(err)
	}
	if w.Bytes() != int64(buf.Len()) || w.Records() != int64(len(keys)) {
		t.Fatalf("writer counts %d bytes, %d records; file is %d bytes of %d", w.Bytes(), w.Records(), buf.Len(), len(keys))
	}
	return buf.Bytes()
}

func decodeAll(b []byte) ([]string, []replica.Record, *Reader, error) {
	rd, err := NewReader(bytes.NewReader(b))
	if err != nil {
		return nil, nil, nil, err
	}
	var keys []string
	var recs []replica.Record
	for {
		k, rec, err := rd.Next()
		if errors.Is(err, io.EOF) {
			return keys, recs, rd, nil
		}
		if err != nil {
			return keys, recs, rd, err
		}
		keys = append(keys, string(k))
		recs = append(recs, rec)
	}
}

// TestFileRoundTrip: what a Writer writes, a Reader reads back exactly,
// tombstones, expiries and empty values included, with the same size and
// SHA-256.
func TestFileRoundTrip(t *testing.T) {
	keys := []string{"a", "b", "c", strings.Repeat("k", 300)}
	recs := []replica.Record{
		record(1, "n1", "one"),
		{Timestamp: 2, NodeID: "n2", Tombstone: true},
		{Timestamp: 3, NodeID: "n3", Value: []byte(strings.Repeat("v", 5000)), ExpiresAt: time.Unix(1900000000, 5).UTC()},
		record(4, "n1", ""),
	}
	var buf bytes.Buffer
	w, err := NewWriter(&buf)
	if err != nil {
		t.Fatal(err)
	}
	for i, k := range keys {
		if err := w.Write([]byte(k), recs[i]); err != nil {
			t.Fatal(err)
		}
	}
	if err := w.Write([]byte("b"), recs[0]); err == nil {
		t.Fatal("a key out of order was written")
	}
	if err := w.Flush(); err != nil {
		t.Fatal(err)
	}
	gotKeys, gotRecs, rd, err := decodeAll(buf.Bytes())
	if err != nil {
		t.Fatal(err)
	}
	if len(gotKeys) != len(keys) {
		t.Fatalf("got %d records, want %d", len(gotKeys), len(keys))
	}
	for i := range keys {
		if gotKeys[i] != keys[i] || replica.Compare(gotRecs[i], recs[i]) != 0 {
			t.Errorf("record %d: got %q %+v, want %q %+v", i, gotKeys[i], gotRecs[i], keys[i], recs[i])
		}
	}
	if rd.SHA256() != w.SHA256() || rd.Bytes() != w.Bytes() || rd.Records() != w.Records() {
		t.Fatalf("reader saw %s, %d bytes, %d records; writer %s, %d, %d", rd.SHA256(), rd.Bytes(), rd.Records(), w.SHA256(), w.Bytes(), w.Records())
	}
}

// TestFileCorruption: every kind of damage is ErrCorrupt, never a panic
// or a wrong record: each single flipped byte, truncation anywhere, a
// wrong header.
func TestFileCorruption(t *testing.T) {
	good := encode(t, []string{"alpha", "beta", "gamma"}, []replica.Record{record(1, "n1", "x"), record(2, "n1", "yy"), record(3, "n2", "zzz")})
	for i := range good {
		for _, bit := range []byte{0x01, 0x80} {
			b := bytes.Clone(good)
			b[i] ^= bit
			if _, _, _, err := decodeAll(b); !errors.Is(err, ErrCorrupt) {
				t.Fatalf("byte %d ^ %#x: got %v, want ErrCorrupt", i, bit, err)
			}
		}
	}
	for n := range len(good) {
		keys, _, _, err := decodeAll(good[:n])
		switch {
		case n == len(fileMagic) || (err == nil && len(keys) < 3 && n < len(good)):
			// A cut at a frame boundary reads as a shorter file: the
			// manifest's count and checksum catch it (TestVerify).
		case !errors.Is(err, ErrCorrupt):
			t.Fatalf("truncated to %d bytes: got %v, want ErrCorrupt", n, err)
		}
	}
	if _, err := NewReader(strings.NewReader("NOTABACKUPFILE")); !errors.Is(err, ErrCorrupt) {
		t.Fatalf("wrong header: got %v, want ErrCorrupt", err)
	}
	// An overlong length is refused before anything is allocated.
	huge := append([]byte(fileMagic), 0xff, 0xff, 0xff, 0xff, 0x0f)
	if _, _, _, err := decodeAll(huge); !errors.Is(err, ErrCorrupt) {
		t.Fatalf("huge frame length: got %v, want ErrCorrupt", err)
	}
	overflow := append([]byte(fileMagic), bytes.Repeat([]byte{0xff}, 11)...)
	if _, _, _, err := decodeAll(overflow); !errors.Is(err, ErrCorrupt) {
		t.Fatalf("varint overflow: got %v, want ErrCorrupt", err)
	}
}

func FuzzReader(f *testing.F) {
	f.Add([]byte(fileMagic))
	var buf bytes.Buffer
	w, _ := NewWriter(&buf)
	_ = w.Write([]byte("k"), record(1, "n", "v"))
	_ = w.Flush()
	f.Add(buf.Bytes())
	f.Fuzz(func(t *testing.T, b []byte) {
		_, _, _, err := decodeAll(b)
		if err != nil && !errors.Is(err, ErrCorrupt) {
			t.Fatalf("got %v, want nil or ErrCorrupt", err)
		}
	})
}

// writeBackup makes a backup directory of files holding recs per
// partition, as Run would.
func writeBackup(t *testing.T, files map[int][]string) (string, *Manifest) {
	t.Helper()
	dir := t.TempDir()
	m := &Manifest{Format: manifestFormat, Timestamp: 100, Partitions: len(files)}
	for p, keys := range files {
		recs := make([]replica.Record, len(keys))
		for i, k := range keys {
			recs[i] = record(replica.Timestamp(10+i), "n1", "value of "+k)
		}
		b := encode(t, keys, recs)
		name := fileName(p)
		if err := os.WriteFile(filepath.Join(dir, name), b, 0o600); err != nil {
			t.Fatal(err)
		}
		rd, err := NewReader(bytes.NewReader(b))
		if err != nil {
			t.Fatal(err)
		}
		for {
			if _, _, err := rd.Next(); err != nil {
				break
			}
		}
		m.Files = append(m.Files, FileInfo{Name: name, Partition: p, Records: rd.Records(), Bytes: rd.Bytes(), SHA256: rd.SHA256()})
		m.Records += rd.Records()
		m.Bytes += rd.Bytes()
	}
	if err := writeManifest(dir, m); err != nil {
		t.Fatal(err)
	}
	return dir, m
}

// TestVerify: a good backup verifies; a flipped byte, a truncated file (at
// a frame boundary), a missing file and a manifest that does not add up
// are each found, naming the file.
func TestVerify(t *testing.T) {
	dir, _ := writeBackup(t, map[int][]string{0: {"a", "b"}, 1: {"c", "d", "e"}, 2: nil})
	m, err := Verify(dir)
	if err != nil || m.Records != 5 || len(m.Files) != 3 {
		t.Fatalf("good backup: got %+v, %v", m, err)
	}
	for _, tc := range []struct {
		name   string
		damage func(path string) error
		file   string
	}{
		{"flipped byte", func(p string) error {
			b, err := os.ReadFile(p)
			if err != nil {
				return err
			}
			b[len(b)-7] ^= 1
			return os.WriteFile(p, b, 0o600)
		}, fileName(1)},
		{"truncated at a frame", func(p string) error {
			good := encode(t, []string{"c", "d"}, []replica.Record{record(10, "n1", "value of c"), record(11, "n1", "value of d")})
			return os.WriteFile(p, good, 0o600)
		}, fileName(1)},
		{"missing", os.Remove, fileName(0)},
	} {
		t.Run(tc.name, func(t *testing.T) {
			dir, _ := writeBackup(t, map[int][]string{0: {"a", "b"}, 1: {"c", "d", "e"}})
			bad := filepath.Join(dir, tc.file)
			if err := tc.damage(bad); err != nil {
				t.Fatal(err)
			}
			_, err := Verify(dir)
			var fe *FileError
			if !errors.As(err, &fe) || fe.Path != bad {
				t.Fatalf("got %v, want a FileError naming %s", err, bad)
			}
		})
	}
	if _, err := Verify(t.TempDir()); !errors.Is(err, ErrNoManifest) {
		t.Fatalf("empty directory: got %v, want ErrNoManifest", err)
	}
}

// TestManifestChecks: a manifest that does not parse or add up is
// corrupt.
func TestManifestChecks(t *testing.T) {
	for _, tc := range []struct {
		name, json string
	}{
		{"not json", "{"},
		{"wrong format", `{"format": 9, "timestamp": 5}`},
		{"no timestamp", `{"format": 1}`},
		{"since after timestamp", `{"format": 1, "timestamp": 5, "since": 7}`},
		{"totals", `{"format": 1, "timestamp": 5, "records": 3, "files": [{"name": "p00000.rkb", "records": 2}]}`},
		{"path in name", `{"format": 1, "timestamp": 5, "files": [{"name": "../x"}]}`},
		{"twice", `{"format": 1, "timestamp": 5, "files": [{"name": "a"}, {"name": "a"}]}`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			dir := t.TempDir()
			if err := os.WriteFile(filepath.Join(dir, ManifestName), []byte(tc.json), 0o600); err != nil {
				t.Fatal(err)
			}
			if _, err := ReadManifest(dir); !errors.Is(err, ErrCorrupt) {
				t.Fatalf("got %v, want ErrCorrupt", err)
			}
		})
	}
}

// fakePages serves a replica's scan from recs (sorted keys) in pages of
// size, failing with failAt's error on the page fetch numbered failAt.
func fakePages(keys []string, recs []replica.Record, size, failAt int) pageFunc {
	fetches := 0
	return func(_ context.Context, start []byte) ([]item, []byte, error) {
		fetches++
		if fetches == failAt {
			return nil, nil, fmt.Errorf("fetch %d failed", fetches)
		}
		var page []item
		for i, k := range keys {
			if k < string(start) {
				continue
			}
			if len(page) == size {
				return page, []byte(k), nil
			}
			page = append(page, item{key: []byte(k), rec: recs[i]})
		}
		return page, nil, nil
	}
}

// TestMergeReplicas: the merge emits every key once, in order, with its
// greatest record over the replicas, whatever the page sizes; a failing
// replica is dropped while enough remain, and fails the merge otherwise.
func TestMergeReplicas(t *testing.T) {
	type rep struct {
		keys []string
		recs []replica.Record
	}
	r1 := rep{[]string{"a", "b", "d"}, []replica.Record{record(5, "n1", "a5"), record(1, "n1", "b1"), record(3, "n1", "d3")}}
	r2 := rep{[]string{"a", "c", "d"}, []replica.Record{record(4, "n2", "a4"), record(2, "n2", "c2"), {Timestamp: 7, NodeID: "n2", Tombstone: true}}}
	r3 := rep{[]string{"b", "e"}, []replica.Record{record(9, "n3", "b9"), record(1, "n3", "e1")}}
	want := "a=a5 b=b9 c=c2 d=<tomb> e=e1 "
	for _, tc := range []struct {
		name    string
		size    int
		failAt  [3]int
		need    int
		want    string
		wantErr bool
		dropped int
	}{
		{"pages of one", 1, [3]int{}, 2, want, false, 0},
		{"pages of two", 2, [3]int{}, 2, want, false, 0},
		{"one page", 100, [3]int{}, 3, want, false, 0},
		{"a replica fails, two remain", 1, [3]int{0, 0, 2}, 2, "a=a5 b=b9 c=c2 d=<tomb> ", false, 1},
		{"a replica fails, too few remain", 1, [3]int{2, 0, 0}, 3, "", true, 0},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var cursors []*cursor
			for i, r := range []rep{r1, r2, r3} {
				cursors = append(cursors, &cursor{name: fmt.Sprintf("n%d", i+1), fetch: fakePages(r.keys, r.recs, tc.size, tc.failAt[i])})
			}
			var got strings.Builder
			dropped := 0
			err := mergeReplicas(t.Context(), cursors, tc.need, func(k []byte, rec replica.Record) error {
				v := string(rec.Value)
				if rec.Tombstone {
					v = "<tomb>"
				}
				fmt.Fprintf(&got, "%s=%s ", k, v)
				return nil
			}, func(string, error) { dropped++ })
			if (err != nil) != tc.wantErr {
				t.Fatalf("got error %v, want error %v", err, tc.wantErr)
			}
			if !tc.wantErr && got.String() != tc.want {
				t.Fatalf("got %q, want %q", got.String(), tc.want)
			}
			if dropped != tc.dropped {
				t.Fatalf("dropped %d replicas, want %d", dropped, tc.dropped)
			}
		})
	}
	if err := mergeReplicas(t.Context(), nil, 1, nil, nil); !errors.Is(err, ErrTooFewReplicas) {
		t.Fatalf("no cursors: got %v, want ErrTooFewReplicas", err)
	}
}

// TestRunRefusesABackupDirectory: Run never writes over a finished backup.
func TestRunRefusesABackupDirectory(t *testing.T) {
	dir, _ := writeBackup(t, map[int][]string{0: {"a"}})
	if _, err := Run(t.Context(), nil, Config{Dir: dir}); !errors.Is(err, ErrExists) {
		t.Fatalf("got %v, want ErrExists", err)
	}
	if _, err := Run(t.Context(), nil, Config{}); err == nil {
		t.Fatal("no directory: got nil error")
	}
	if _, err := Restore(t.Context(), nil, RestoreConfig{}); err == nil {
		t.Fatal("restore of nothing: got nil error")
	}
	for _, bad := range []Config{{Dir: "x", Parallelism: -1}, {Dir: "x", Since: 5, Base: &Manifest{Timestamp: 6}}} {
		if err := bad.Validate(); err == nil {
			t.Fatalf("%+v: Validate got nil", bad)
		}
	}
	for _, bad := range []RestoreConfig{{Dirs: []string{"x"}, BatchBytes: 8 << 20}, {Dirs: []string{"x"}, Attempts: -1}} {
		if err := bad.Validate(); err == nil {
			t.Fatalf("%+v: Validate got nil", bad)
		}
	}
	if _, err := Restore(t.Context(), nil, RestoreConfig{Dirs: []string{t.TempDir()}}); !errors.Is(err, ErrNoManifest) {
		t.Fatalf("restore of an empty directory: got %v, want ErrNoManifest", err)
	}
}

// TestPartitionID: a backup scans partitions by id: the index until the
// cluster's first split (or from a server that does not say), P+index
// after.
func TestPartitionID(t *testing.T) {
	for _, tc := range []struct {
		partitions, base, p int
		want                uint32
	}{
		{64, 64, 5, 5},
		{64, 0, 5, 5},
		{128, 64, 5, 133},
		{256, 64, 255, 511},
	} {
		topo := client.Topology{Partitions: tc.partitions, BasePartitions: tc.base}
		if got := partitionID(topo, tc.p); got != tc.want {
			t.Errorf("P=%d base %d index %d: id %d, want %d", tc.partitions, tc.base, tc.p, got, tc.want)
		}
	}
}
