package node

import (
	"context"
)

// ringKey is the reserved key whose record holds the cluster's ring: the
// register on which every ring change is decided (gossip.Store).
var ringKey = []byte("\x00ringkv/ring")

// ringRegister backs gossip.Store with ringKey, read and written at the
// linearizable level through the coordinator, so that ring changes made
// on any node are decided one after the other by the Raft group of the
// key's partition.
type ringRegister struct{ s reservedStore }

func (r ringRegister) Get(ctx context.Context) ([]byte, bool, error) {
	return r.s.Get(ctx, ringKey)
}

func (r ringRegister) CompareAndSet(ctx context.Context, expected *[]byte, value []byte) (bool, error) {
	swapped, _, _, err := r.s.CompareAndSet(ctx, ringKey, expected, value)
	return swapped, err
}
