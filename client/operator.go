package client

import (
	"context"
	"errors"
	"fmt"
	"slices"

	"storj.io/drpc"
)

// Topology is the cluster's layout as the Client last learned it.
type Topology struct {
	// RingVersion is the version of the ring it came from.
	RingVersion uint64
	// Partitions is the number of partitions (a power of two).
	Partitions int
	// BasePartitions is the cluster's first number of partitions, kept
	// across splits (Partitions until the first split, and from a server
	// older than splits).
	BasePartitions int
	// Members lists every member, sorted by id.
	Members []Member
	// Replicas holds each partition's preference list (member ids,
	// primary first), in partition order.
	Replicas [][]string
}

// Member is one member of the cluster.
type Member struct {
	ID string
	// Addr is the member's drpc address ("" if unknown).
	Addr  string
	Alive bool
}

// Topology returns the topology the Client holds. The slices are the
// caller's. It returns ErrUnavailable if none was learned yet and
// ErrClosed after Close.
func (c *Client) Topology() (Topology, error) {
	c.mu.RLock()
	defer c.mu.RUnlock()
	switch {
	case c.mu.closed:
		return Topology{}, ErrClosed
	case c.mu.view == nil:
		return Topology{}, fmt.Errorf("%w: no topology learned yet", ErrUnavailable)
	}
	v := c.mu.view
	t := Topology{RingVersion: v.version, Partitions: v.partitions, BasePartitions: v.base, Replicas: make([][]string, len(v.table))}
	for _, id := range v.ids {
		m := v.members[id]
		t.Members = append(t.Members, Member{ID: id, Addr: m.addr, Alive: m.alive})
	}
	for i, row := range v.table {
		t.Replicas[i] = slices.Clone(row)
	}
	return t, nil
}

// Invoke runs fn with a connection to the node at addr, for the node's
// other drpc services (such as Backup) under the Client's connection
// settings and credentials: fn's context carries the Client's bearer
// token when it logs in, and a call refused as unauthenticated is tried
// once more with a renewed token. fn must not keep conn after it returns.
//
// A drpc error whose code is a kvpb.ErrorCode (as the Backup service
// answers) comes back as the matching error of this package
// (ErrInvalidArgument, ErrUnavailable, ErrUnauthenticated,
// ErrPermissionDenied, ...); a connection that cannot be made is
// ErrUnavailable; other failures of the call are returned wrapped. Invoke
// does not retry otherwise: the caller knows whether its call may be
// repeated. Safe for concurrent use.
func (c *Client) Invoke(ctx context.Context, addr string, fn func(ctx context.Context, conn drpc.Conn) error) error {
	if c.isClosed() {
		return ErrClosed
	}
	tok, err := c.token(ctx)
	if err != nil {
		return err
	}
	err = c.invokeWith(ctx, addr, tok, fn)
	var stale *staleTokenError
	if errors.As(err, &stale) {
		if tok, err = c.renewToken(ctx, stale.tok); err != nil {
			return err
		}
		err = c.invokeWith(ctx, addr, tok, fn)
	}
	return err
}

func (c *Client) invokeWith(ctx context.Context, addr string, tok *token, fn func(ctx context.Context, conn drpc.Conn) error) error {
	p := c.pool(addr)
	if p == nil {
		return ErrClosed
	}
	conn, _, err := c.conn(ctx, p)
	if err != nil {
		return err
	}
	if err := fn(withToken(ctx, tok), conn); err != nil {
		_, err = c.rpcFailed(addr, p, conn, err)
		return c.refusedWith(tok, err)
	}
	p.put(conn, true)
	return nil
}
