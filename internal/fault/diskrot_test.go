package fault

import (
	"errors"
	"fmt"
	"testing"

	"github.com/ringkv/ringkv/replica"
)

func TestCorruptRecordsIsDetectedByTheStore(t *testing.T) {
	dir := t.TempDir()
	s, err := replica.Open(replica.Config{Dir: dir}, replica.Deps{})
	if err != nil {
		t.Fatal(err)
	}
	var entries []replica.Entry
	for i := range 20 {
		entries = append(entries, replica.Entry{Partition: uint32(i % 3), Key: fmt.Appendf(nil, "k%02d", i),
			Record: replica.Record{Value: fmt.Appendf(nil, "v%d", i), Timestamp: 1, NodeID: "n1"}})
	}
	if err := s.Merge(t.Context(), entries); err != nil {
		t.Fatal(err)
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	got, err := CorruptRecords(dir, func(i int, _ uint32, _ []byte) bool { return i%4 == 0 })
	if err != nil {
		t.Fatal(err)
	}
	if len(got) != 5 {
		t.Fatalf("corrupted %d records, want 5", len(got))
	}
	s, err = replica.Open(replica.Config{Dir: dir}, replica.Deps{})
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = s.Close() }()
	bad := map[string]bool{}
	for _, c := range got {
		bad[string(c.Key)] = true
		if _, err := s.Get(c.Partition, c.Key); !errors.Is(err, replica.ErrCorrupt) {
			t.Errorf("get corrupted %s: got %v, want ErrCorrupt", c.Key, err)
		}
	}
	for _, e := range entries {
		if bad[string(e.Key)] {
			continue
		}
		if rec, err := s.Get(e.Partition, e.Key); err != nil || string(rec.Value) != string(e.Record.Value) {
			t.Errorf("get %s: %q %v", e.Key, rec.Value, err)
		}
	}
	if _, err := CorruptRecords(t.TempDir()+"/missing/\x00", func(int, uint32, []byte) bool { return true }); err == nil {
		t.Error("CorruptRecords on a bad directory: got nil error")
	}
}
