package consensus

import (
	"context"
	"encoding/binary"
	"fmt"

	"github.com/ringkv/ringkv/internal/raftwal"
	"github.com/ringkv/ringkv/replica"
)

// MigrateLogs moves every group's Raft log entries out of store (where
// NewLogStore keeps them) into wal (where NewWALLogStore does), for a
// data directory written before the WAL. It copies them, waits until
// the WAL has them on disk, and only then deletes them from store, so a
// crash at any point leaves every entry in one place at least; run
// again, it copies what store still holds once more (an entry replaces
// the one at its index: the same bytes). It returns how many groups and
// entries it moved. Run it before any group starts.
func MigrateLogs(store RawStore, wal *raftwal.WAL) (groups, entries int, err error) {
	const batch = 1024
	var (
		group   uint32
		started bool
		pending []raftwal.Entry
		appErr  error
	)
	flush := func() {
		if len(pending) > 0 && appErr == nil {
			appErr = wal.Append(group, pending, nil)
		}
		pending = pending[:0]
	}
	err = store.ScanRaw([]byte{nsRaftLog}, nil, func(key, value []byte) bool {
		if len(key) != logKeyLen {
			appErr = fmt.Errorf("%w: log key of %d bytes, want %d", ErrCorruptLog, len(key), logKeyLen)
			return false
		}
		g, index := binary.BigEndian.Uint32(key[1:5]), binary.BigEndian.Uint64(key[5:])
		if !started || g != group || len(pending) == batch {
			flush()
			if !started || g != group {
				groups++
			}
			group, started = g, true
		}
		if index == 0 {
			return appErr == nil // raft never stores index 0; nothing to keep
		}
		pending = append(pending, raftwal.Entry{Index: index, Data: append([]byte(nil), value...)})
		entries++
		return appErr == nil
	})
	flush()
	if err == nil {
		err = appErr
	}
	if err != nil {
		return groups, entries, fmt.Errorf("consensus: move raft logs into the WAL: %w", err)
	}
	if entries == 0 {
		return 0, 0, nil
	}
	if err := wal.Sync(); err != nil {
		return groups, entries, fmt.Errorf("consensus: move raft logs into the WAL: %w", err)
	}
	all := replica.KeyRange{Start: []byte{nsRaftLog}, End: []byte{nsRaftLog + 1}}
	if err := store.WriteRaw(context.Background(), nil, []replica.KeyRange{all}); err != nil {
		return groups, entries, fmt.Errorf("consensus: delete the moved raft logs: %w", err)
	}
	return groups, entries, nil
}
