package node

import (
	"context"
	"fmt"

	"github.com/ringkv/ringkv/coordinator"
)

// ringKey is the reserved key whose record holds the cluster's ring: the
// register on which every ring change is decided (gossip.Store).
var ringKey = []byte("\x00ringkv/ring")

// ringRegister backs gossip.Store with ringKey, read and written at the
// linearizable level through the coordinator, so that ring changes made
// on any node are decided one after the other by the Raft group of the
// key's partition.
type ringRegister struct {
	c *coordinator.Coordinator
}

func (r ringRegister) Get(ctx context.Context) ([]byte, bool, error) {
	v, found, err := r.c.Get(coordinator.System(ctx), ringKey, coordinator.Linearizable)
	if err != nil {
		return nil, false, fmt.Errorf("read ring record: %w", err)
	}
	return v, found, nil
}

func (r ringRegister) CompareAndSet(ctx context.Context, expected *[]byte, value []byte) (bool, error) {
	res, err := r.c.CompareAndSet(coordinator.System(ctx), ringKey, expected, value)
	if err != nil {
		return false, fmt.Errorf("propose ring record: %w", err)
	}
	return res.Swapped, nil
}
