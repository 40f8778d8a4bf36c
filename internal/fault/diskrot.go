package fault

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"

	"github.com/dgraph-io/badger/v4"
)

const (
	recordNamespace = 'r'
	recordKeyPrefix = 1 + 4 // namespace byte, partition
	checksumLen     = 4
)

// Corrupted names one record CorruptRecords damaged.
type Corrupted struct {
	Partition uint32
	Key       []byte
}

// CorruptRecords opens the Badger database in dir (a replica store's
// directory; its node must be stopped) and, for every stored record for
// which pick returns true, flips every bit of one byte of its encoding
// (the last byte before the checksum), leaving the checksum unchanged. pick
// sees records in key order with their index among all records. It
// returns the records it damaged.
func CorruptRecords(dir string, pick func(i int, partition uint32, key []byte) bool) ([]Corrupted, error) {
	db, err := badger.Open(badger.DefaultOptions(dir).WithLogger(nil))
	if err != nil {
		return nil, fmt.Errorf("fault: open %s: %w", dir, err)
	}
	var out []Corrupted
	var sets []*badger.Entry
	err = db.View(func(txn *badger.Txn) error {
		opts := badger.DefaultIteratorOptions
		opts.Prefix = []byte{recordNamespace}
		it := txn.NewIterator(opts)
		defer it.Close()
		i := 0
		for it.Rewind(); it.Valid(); it.Next() {
			item := it.Item()
			k := item.KeyCopy(nil)
			if len(k) < recordKeyPrefix {
				continue
			}
			p := binary.BigEndian.Uint32(k[1:recordKeyPrefix])
			user := k[recordKeyPrefix:]
			if pick(i, p, user) {
				v, err := item.ValueCopy(nil)
				if err != nil {
					return fmt.Errorf("read value: %w", err)
				}
				if len(v) <= checksumLen {
					return errors.New("fault: record shorter than its checksum")
				}
				v[len(v)-checksumLen-1] ^= 0xff
				sets = append(sets, badger.NewEntry(k, v))
				out = append(out, Corrupted{Partition: p, Key: bytes.Clone(user)})
			}
			i++
		}
		return nil
	})
	if err == nil {
		err = write(db, sets)
	}
	if cerr := db.Close(); err == nil && cerr != nil {
		err = cerr
	}
	if err != nil {
		return nil, fmt.Errorf("fault: corrupt records in %s: %w", dir, err)
	}
	return out, nil
}

func write(db *badger.DB, sets []*badger.Entry) error {
	wb := db.NewWriteBatch()
	for _, e := range sets {
		if err := wb.SetEntry(e); err != nil {
			wb.Cancel()
			return fmt.Errorf("stage: %w", err)
		}
	}
	if err := wb.Flush(); err != nil {
		return fmt.Errorf("flush: %w", err)
	}
	return nil
}
