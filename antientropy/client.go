package antientropy

import (
	"context"
	"crypto/tls"
	"fmt"
	"sync"
	"time"

	"github.com/ringkv/ringkv/internal/rpcconn"
	"github.com/ringkv/ringkv/proto/kvpb"
)

// Resolver maps a node id to its drpc address.
type Resolver interface {
	RPCAddr(nodeID string) (string, bool)
}

// Client implements Peers over drpc: the Repair service for trees and
// fetches, the Replica service for merges and reads. It keeps up to two
// idle connections per peer (anti-entropy runs one exchange at a time, the
// scrubber and collector beside it). Safe for concurrent use.
type Client struct {
	resolver    Resolver
	dialTimeout time.Duration
	tls         rpcconn.TLSFor
	id          rpcconn.Identity // sent with every call

	mu struct {
		sync.Mutex
		idle   map[string][]*rpcconn.Conn // by address
		closed bool
	}
}

const idlePerPeer = 2

// NewClient returns a Client resolving node ids with resolver. tlsFor
// gives the TLS configuration for dialing a peer's address; nil dials
// plain TCP. id is sent with every call (rpcconn.Conn.SetIdentity; the
// zero value sends none).
func NewClient(resolver Resolver, tlsFor func(addr string) *tls.Config, id rpcconn.Identity) *Client {
	c := &Client{resolver: resolver, dialTimeout: time.Second, tls: tlsFor, id: id}
	c.mu.idle = make(map[string][]*rpcconn.Conn)
	return c
}

// Close closes the idle connections; calls after it fail with ErrClosed.
func (c *Client) Close() error {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.mu.closed = true
	for _, conns := range c.mu.idle {
		for _, conn := range conns {
			_ = conn.Close() // shutting down
		}
	}
	c.mu.idle = nil
	return nil
}

// call runs f on a connection to node, returning the connection to the
// idle set afterwards unless f failed at the transport level.
func (c *Client) call(ctx context.Context, node string, f func(conn *rpcconn.Conn) error) error {
	addr, ok := c.resolver.RPCAddr(node)
	if !ok {
		return fmt.Errorf("%w: %s", ErrUnknownPeer, node)
	}
	c.mu.Lock()
	if c.mu.closed {
		c.mu.Unlock()
		return ErrClosed
	}
	var conn *rpcconn.Conn
	if idle := c.mu.idle[addr]; len(idle) > 0 {
		conn = idle[len(idle)-1]
		c.mu.idle[addr] = idle[:len(idle)-1]
	}
	c.mu.Unlock()
	if conn == nil {
		dctx, cancel := context.WithTimeout(ctx, c.dialTimeout)
		var err error
		conn, err = rpcconn.Dial(dctx, addr, c.tls)
		cancel()
		if err != nil {
			return fmt.Errorf("dial %s: %w", node, err)
		}
		conn.SetIdentity(c.id)
	}
	err := f(conn)
	select {
	case <-conn.Closed():
		return err
	default:
	}
	if err != nil && ctx.Err() != nil {
		_ = conn.Close() // a cancelled RPC may leave the stream unusable
		return err
	}
	c.mu.Lock()
	if !c.mu.closed && len(c.mu.idle[addr]) < idlePerPeer {
		c.mu.idle[addr] = append(c.mu.idle[addr], conn)
		conn = nil
	}
	c.mu.Unlock()
	if conn != nil {
		_ = conn.Close() // enough idle connections already
	}
	return err
}

// Tree implements Peers.
func (c *Client) Tree(ctx context.Context, node string, req *kvpb.TreeRequest) ([]uint64, error) {
	var out []uint64
	err := c.call(ctx, node, func(conn *rpcconn.Conn) error {
		resp, err := kvpb.NewDRPCRepairClient(conn).Tree(ctx, req)
		if err != nil {
			return errorFor(err)
		}
		out = resp.GetHashes()
		return nil
	})
	return out, err
}

// Fetch implements Peers.
func (c *Client) Fetch(ctx context.Context, node string, req *kvpb.FetchRequest) (*kvpb.FetchResponse, error) {
	var out *kvpb.FetchResponse
	err := c.call(ctx, node, func(conn *rpcconn.Conn) error {
		resp, err := kvpb.NewDRPCRepairClient(conn).Fetch(ctx, req)
		if err != nil {
			return errorFor(err)
		}
		out = resp
		return nil
	})
	return out, err
}

// Merge implements Peers with the Replica service's Merge.
func (c *Client) Merge(ctx context.Context, node string, records []*kvpb.KeyedRecord) error {
	return c.call(ctx, node, func(conn *rpcconn.Conn) error {
		if _, err := kvpb.NewDRPCReplicaClient(conn).Merge(ctx, &kvpb.MergeRequest{Records: records}); err != nil {
			return errorFor(err)
		}
		return nil
	})
}

// Read implements Peers with the Replica service's Read.
func (c *Client) Read(ctx context.Context, node string, keys []*kvpb.ReadKey) ([]*kvpb.ReadResult, error) {
	var out []*kvpb.ReadResult
	err := c.call(ctx, node, func(conn *rpcconn.Conn) error {
		resp, err := kvpb.NewDRPCReplicaClient(conn).Read(ctx, &kvpb.ReadRequest{Keys: keys})
		if err != nil {
			return errorFor(err)
		}
		out = resp.GetResults()
		return nil
	})
	return out, err
}
