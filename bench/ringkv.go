package bench

import (
	"context"
	"errors"
	"fmt"

	"github.com/ringkv/ringkv/client"
)

// ClientDriver runs the harness against a ringkv cluster through the Go
// client library, which routes each call straight to a replica or the
// partition's leader. Levels are client.ParseConsistency names.
type ClientDriver struct{ c *client.Client }

var _ TxnDriver = (*ClientDriver)(nil)

// NewClientDriver wraps c; the caller still owns (and closes) it.
func NewClientDriver(c *client.Client) *ClientDriver { return &ClientDriver{c: c} }

// Name returns "ringkv".
func (d *ClientDriver) Name() string { return "ringkv" }

func level(name string) (client.CallOption, error) {
	l, err := client.ParseConsistency(name)
	if err != nil {
		return nil, fmt.Errorf("bench: %w", err)
	}
	return client.WithConsistency(l), nil
}

// Get reads key at level.
func (d *ClientDriver) Get(ctx context.Context, key, lvl string) ([]byte, bool, error) {
	opt, err := level(lvl)
	if err != nil {
		return nil, false, err
	}
	v, err := d.c.Get(ctx, key, opt)
	if errors.Is(err, client.ErrNotFound) {
		return nil, false, nil
	}
	if err != nil {
		return nil, false, fmt.Errorf("bench: get: %w", err)
	}
	return v, true, nil
}

// Put writes key at level.
func (d *ClientDriver) Put(ctx context.Context, key string, value []byte, lvl string) error {
	opt, err := level(lvl)
	if err != nil {
		return err
	}
	if err := d.c.Set(ctx, key, value, opt); err != nil {
		return fmt.Errorf("bench: set: %w", err)
	}
	return nil
}

// CompareAndSet is always linearizable (lvl is ignored): ringkv's
// compare-and-set runs on the partition's Raft leader.
func (d *ClientDriver) CompareAndSet(ctx context.Context, key string, expected, value []byte, _ string) (bool, error) {
	var err error
	if expected == nil {
		err = d.c.PutIfAbsent(ctx, key, value)
	} else {
		err = d.c.CompareAndSet(ctx, key, expected, value)
	}
	switch {
	case errors.Is(err, client.ErrCASMismatch):
		return false, nil
	case err != nil:
		return false, fmt.Errorf("bench: compare-and-set: %w", err)
	}
	return true, nil
}

// ReadVersions reads keys with one MGet at lvl (at linearizable, one
// snapshot: a lock-free double read when they span partitions).
func (d *ClientDriver) ReadVersions(ctx context.Context, keys []string, lvl string) ([]uint64, error) {
	opt, err := level(lvl)
	if err != nil {
		return nil, err
	}
	res, err := d.c.MGet(ctx, keys, opt)
	if err != nil {
		return nil, fmt.Errorf("bench: mget: %w", err)
	}
	versions := make([]uint64, len(res))
	for i, r := range res {
		if r.Found {
			versions[i] = r.Version
		}
	}
	return versions, nil
}

// CommitIfVersions runs one transaction: if every key's version equals
// versions[i] (client.VersionEquals), set every key to value, else get
// them. A transaction the node gave up on after conflicting with others
// on every retry (client.ErrConflict) is an error of kind "conflict".
func (d *ClientDriver) CommitIfVersions(ctx context.Context, keys []string, versions []uint64, value []byte) (bool, error) {
	txn := d.c.Txn(ctx)
	for i, k := range keys {
		txn.If(client.VersionEquals(k, versions[i])).Then(client.SetOp(k, value)).Else(client.GetOp(k))
	}
	resp, err := txn.Commit()
	if err != nil {
		return false, fmt.Errorf("bench: txn: %w", err)
	}
	return resp.Succeeded, nil
}

// List reads up to limit pairs with prefix at level.
func (d *ClientDriver) List(ctx context.Context, prefix string, limit int, lvl string) (int, error) {
	opt, err := level(lvl)
	if err != nil {
		return 0, err
	}
	kvs, err := d.c.List(ctx, prefix, opt, client.WithLimit(limit))
	if err != nil {
		return 0, fmt.Errorf("bench: list: %w", err)
	}
	return len(kvs), nil
}

// ErrorKind names the client's typed errors.
func (d *ClientDriver) ErrorKind(err error) string {
	for _, k := range []struct {
		err  error
		name string
	}{
		{client.ErrOverloaded, "overloaded"}, // before unavailable: retries run out as both
		{client.ErrTimeout, "timeout"}, {client.ErrUnavailable, "unavailable"}, {client.ErrOutcomeUnknown, "outcome_unknown"},
		{client.ErrCorrupt, "corrupt"}, {client.ErrConflict, "conflict"}, {client.ErrInvalidArgument, "invalid"}, {client.ErrClosed, "closed"},
	} {
		if errors.Is(err, k.err) {
			return k.name
		}
	}
	return ErrorKindOf(err)
}
