package rpcconn

import (
	"context"
	"testing"

	"storj.io/drpc/drpcmetadata"

	"github.com/ringkv/ringkv/proto/kvpb"
)

// TestIdentity: a connection with an identity sends it with every call as
// the call's only metadata, still in one write per call; the caller's own
// metadata map is neither changed nor forwarded.
func TestIdentity(t *testing.T) {
	c, writes := dial(t, serve(t, &handler{}, true))
	md := func(ctx context.Context) string {
		t.Helper()
		var out kvpb.ReadKey
		if err := c.Invoke(ctx, "/md", protoEnc{}, &kvpb.ReadRequest{}, &out); err != nil {
			t.Fatal(err)
		}
		return string(out.GetKey())
	}
	incoming := drpcmetadata.Add(context.Background(), "other", "x")
	if got := md(incoming); got != "||x" {
		t.Fatalf("without an identity: %q, want the caller's metadata", got)
	}
	cluster := ""
	c.SetIdentity(Identity{NodeID: "n1", Cluster: func() string { return cluster }})
	if got := md(incoming); got != "n1||" {
		t.Fatalf("identity without a cluster id: %q", got)
	}
	cluster = "c0ffee"
	w0 := writes.Load()
	if got := md(context.Background()); got != "n1|c0ffee|" {
		t.Fatalf("identity: %q", got)
	}
	if n := writes.Load() - w0; n != 1 {
		t.Fatalf("%d writes for a call with an identity, want 1", n)
	}
	if m, _ := drpcmetadata.Get(incoming); len(m) != 1 || m["other"] != "x" {
		t.Fatalf("the caller's metadata changed: %v", m)
	}
}
