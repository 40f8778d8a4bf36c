package consensus

import (
	"bytes"
	"context"
	"encoding/binary"
	"testing"

	"github.com/ringkv/ringkv/replica"
)

// countStore is a Store that only counts what a restore merges.
type countStore struct{ merged []replica.Entry }

func (s *countStore) Merge(_ context.Context, e []replica.Entry) error {
	s.merged = append(s.merged, e...)
	return nil
}
func (s *countStore) MergeUnsynced(ctx context.Context, e []replica.Entry) error {
	return s.Merge(ctx, e)
}
func (s *countStore) Get(uint32, []byte) (replica.Record, error) {
	return replica.Record{}, replica.ErrNotFound
}
func (s *countStore) Scan(_ uint32, _, _ []byte, fn func([]byte, replica.Record) bool) error {
	for _, e := range s.merged {
		if !fn(e.Key, e.Record) {
			break
		}
	}
	return nil
}

// snapshotBytes is a real snapshot stream of the given entries.
func snapshotBytes(t testing.TB, entries []replica.Entry) []byte {
	src := &countStore{merged: entries}
	snap, err := (&fsm{group: 1, store: src}).Snapshot()
	if err != nil {
		t.Fatal(err)
	}
	var sink memSink
	if err := snap.Persist(&sink); err != nil {
		t.Fatal(err)
	}
	return sink.Bytes()
}

// FuzzRestore feeds the snapshot stream reader (fsm.Restore, what a
// follower runs on an InstallSnapshot from a peer) arbitrary bytes: it must
// never panic nor allocate from a length field the stream does not back,
// and a stream that restores re-encodes to the same bytes.
func FuzzRestore(f *testing.F) {
	rec := replica.Record{Value: []byte("v"), Timestamp: 7, NodeID: "n1"}
	f.Add(snapshotBytes(f, nil))
	f.Add(snapshotBytes(f, []replica.Entry{{Partition: 1, Key: []byte("k"), Record: rec}}))
	f.Add(snapshotBytes(f, []replica.Entry{{Partition: 1, Key: []byte("a"), Record: rec}, {Partition: 1, Key: []byte("b"), Record: replica.Record{Timestamp: 9, NodeID: "n2", Tombstone: true}}}))
	// Regression seeds: a key length and a record length far beyond the
	// stream (before the fix, makeslice panicked or allocated a gigabyte).
	f.Add(binary.AppendUvarint(nil, 1<<62))
	f.Add(append(append(binary.AppendUvarint(nil, 1), 'k'), binary.AppendUvarint(nil, 1<<29)...))
	f.Fuzz(func(t *testing.T, b []byte) {
		dst := &countStore{}
		if err := (&fsm{group: 1, store: dst}).Restore(nopCloser{bytes.NewReader(b)}); err != nil {
			return
		}
		for _, e := range dst.merged {
			if len(e.Key) == 0 || len(e.Key) > replica.MaxKeyBytes {
				t.Fatalf("restored a key of %d bytes", len(e.Key))
			}
		}
		// decode(encode(x)) == x for what was restored.
		again := &countStore{}
		if err := (&fsm{group: 1, store: again}).Restore(nopCloser{bytes.NewReader(snapshotBytes(t, dst.merged))}); err != nil {
			t.Fatalf("re-encoded snapshot does not restore: %v", err)
		}
		if len(again.merged) != len(dst.merged) {
			t.Fatalf("re-encoded snapshot restores %d entries, want %d", len(again.merged), len(dst.merged))
		}
		for i, e := range again.merged {
			w := dst.merged[i]
			if !bytes.Equal(e.Key, w.Key) || !bytes.Equal(e.Record.AppendBinary(nil), w.Record.AppendBinary(nil)) {
				t.Fatalf("entry %d: round trip changed %q to %q", i, w.Key, e.Key)
			}
		}
	})
}
