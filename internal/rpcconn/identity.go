package rpcconn

import (
	"context"

	"storj.io/drpc"
	"storj.io/drpc/drpcmetadata"
)

// Metadata keys of the identity a node's calls to its peers carry
// (SetIdentity); a peer's server reads them with drpcmetadata.Get on the
// stream's context.
const (
	// MetaNode is the calling node's id.
	MetaNode = "ringkv-node"
	// MetaCluster is the calling node's cluster id (absent while it has
	// none).
	MetaCluster = "ringkv-cluster"
)

// Identity is who a connection's calls come from: a node of a cluster.
// The zero value sends nothing.
type Identity struct {
	// NodeID is the calling node's id; empty sends no identity at all.
	NodeID string
	// Cluster returns the node's cluster id, "" while it has none; nil
	// sends none. It is called on every call: it must be cheap.
	Cluster func() string
}

// SetIdentity makes every later call and stream of c carry id as drpc
// metadata (MetaNode, MetaCluster), sent with the call's invoke in the
// same write. Call it before the connection is shared.
func (c *Conn) SetIdentity(id Identity) { c.id = id }

// NewStream begins a streaming rpc, as drpcconn.Conn.NewStream does, with
// the connection's identity in its metadata.
func (c *Conn) NewStream(ctx context.Context, rpc string, enc drpc.Encoding) (drpc.Stream, error) {
	return c.Conn.NewStream(c.identify(ctx), rpc, enc) //nolint:wrapcheck // drpc's error carries the remote code
}

// identify returns ctx carrying the identity as its only drpc metadata:
// drpcmetadata.Add would write into a map ctx may already carry (the
// incoming call's, on a node forwarding a request), which other calls may
// be reading, and would forward whatever else it holds to the peer.
func (c *Conn) identify(ctx context.Context) context.Context {
	if c.id.NodeID == "" {
		return ctx
	}
	md := map[string]string{MetaNode: c.id.NodeID}
	if c.id.Cluster != nil {
		if cl := c.id.Cluster(); cl != "" {
			md[MetaCluster] = cl
		}
	}
	if metadataKey == nil {
		return drpcmetadata.AddPairs(ctx, md)
	}
	return context.WithValue(ctx, metadataKey, md)
}

// metadataKey is the context key under which drpcmetadata keeps a call's
// metadata (unexported there), found by asking drpcmetadata.Get; nil if
// it could not be found.
var metadataKey = func() any {
	var p keyProbe
	drpcmetadata.Get(&p)
	return p.key
}()

// keyProbe is a context that remembers the key it was asked for.
type keyProbe struct {
	context.Context
	key any
}

func (p *keyProbe) Value(key any) any {
	p.key = key
	return nil
}
