package backup

import (
	"bytes"
	"context"
	"fmt"

	"github.com/ringkv/ringkv/replica"
)

// item is one record of a replica's scan.
type item struct {
	key []byte
	rec replica.Record
}

// pageFunc fetches the page of one replica's scan of a partition that
// starts at start (nil: the first key): records in key order, and the key
// to resume from, nil once the partition is done.
type pageFunc func(ctx context.Context, start []byte) (page []item, next []byte, err error)

// cursor walks one replica's scan page by page. Only the page in hand is
// held, so memory is bounded by the page size.
type cursor struct {
	name    string
	fetch   pageFunc
	page    []item
	i       int
	next    []byte
	started bool
	done    bool
}

// peek returns the cursor's current record, fetching pages as needed; nil
// once the scan is done.
func (c *cursor) peek(ctx context.Context) (*item, error) {
	for c.i >= len(c.page) {
		if c.done {
			return nil, nil
		}
		if c.started && c.next == nil {
			c.done = true
			return nil, nil
		}
		page, next, err := c.fetch(ctx, c.next)
		if err != nil {
			return nil, fmt.Errorf("%s: %w", c.name, err)
		}
		c.started = true
		c.page, c.i, c.next = page, 0, next
		if next == nil && len(page) == 0 {
			c.done = true
		}
	}
	return &c.page[c.i], nil
}

// mergeReplicas merges the scans of one partition's replicas: it calls
// emit, in key order, with each key's greatest record (replica.Compare,
// the cluster's own last-writer-wins order) over every cursor. emit must
// not keep the key or the record's value. A cursor that fails is dropped
// (and reported to dropped) while at least need cursors remain;
// otherwise its error is returned.
func mergeReplicas(ctx context.Context, cursors []*cursor, need int, emit func(key []byte, rec replica.Record) error, dropped func(name string, err error)) error {
	live := append([]*cursor(nil), cursors...)
	if len(live) < need {
		return fmt.Errorf("%w: %d of the %d needed", ErrTooFewReplicas, len(live), need)
	}
	heads := make([]*item, len(live))
	for {
		var minKey []byte
		found := false
		heads = heads[:0]
		for i := 0; i < len(live); {
			it, err := live[i].peek(ctx)
			if err != nil {
				if ctx.Err() != nil || len(live)-1 < need {
					return err
				}
				dropped(live[i].name, err)
				live = append(live[:i], live[i+1:]...)
				continue
			}
			heads = append(heads, it)
			if it != nil && (!found || bytes.Compare(it.key, minKey) < 0) {
				minKey, found = it.key, true
			}
			i++
		}
		if !found {
			return nil
		}
		var best replica.Record
		first := true
		for i, it := range heads {
			if it == nil || !bytes.Equal(it.key, minKey) {
				continue
			}
			if first || it.rec.Newer(best) {
				best, first = it.rec, false
			}
			live[i].i++
		}
		if err := emit(minKey, best); err != nil {
			return err
		}
	}
}
