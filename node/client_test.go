package node

import (
	"testing"

	"github.com/ringkv/ringkv/client"
)

// TestClientService checks that a node serves the Client drpc service with
// its members' addresses, so the client library can route.
func TestClientService(t *testing.T) {
	nodes := startCluster(t, 2)
	members := membership{g: nodes[0].Gossip()}.ClientMembers()
	if len(members) != 2 || members[1].RPCAddr != nodes[1].RPCAddr() || !members[1].Alive || members[1].Status != "joined" {
		t.Fatalf("members: %+v", members)
	}
	c, err := client.New([]string{nodes[1].RPCAddr()})
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = c.Close() }()
	if err := c.Set(t.Context(), "k", []byte("v")); err != nil {
		t.Fatal(err)
	}
	if v, err := c.Get(t.Context(), "k", client.WithConsistency(client.All)); err != nil || string(v) != "v" {
		t.Fatalf("get: %q %v", v, err)
	}
}
