package client

import (
	"slices"
	"testing"

	"github.com/ringkv/ringkv/proto/kvpb"
)

// A member that drains is tried last for every call; one that answered
// CLOSED (markDown) too.
func TestTargetsPutDrainingLast(t *testing.T) {
	c, err := newClient([]string{"seed:1"}, nil)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = c.Close() })
	table := make([]*kvpb.TopologyPartition, 2)
	for i := range table {
		table[i] = &kvpb.TopologyPartition{Replicas: []string{"n1", "n2", "n3"}, Leader: "n1"}
	}
	resp := &kvpb.TopologyResponse{
		Header: &kvpb.ClientHeader{RingVersion: 1}, Partitions: 2, ReplicationFactor: 3, Table: table,
		Members: []*kvpb.TopologyMember{
			{Id: "n1", RpcAddr: "a:1", Alive: true, Draining: true},
			{Id: "n2", RpcAddr: "a:2", Alive: true},
			{Id: "n3", RpcAddr: "a:3", Alive: true},
		},
	}
	v, err := viewFromWire(resp)
	if err != nil {
		t.Fatal(err)
	}
	c.mu.Lock()
	c.mu.view, c.mu.leaders = v, leadersFromWire(resp)
	c.mu.Unlock()
	for range 4 {
		got := c.targets("k", Linearizable)
		if i := slices.Index(got, "a:1"); i != len(got)-1 {
			t.Fatalf("targets %v: the draining leader a:1 is at %d, want last", got, i)
		}
	}
	c.markDown("a:2")
	if got := c.targets("k", Quorum); got[0] != "a:3" {
		t.Errorf("targets %v: want a:3 first once a:2 is marked down", got)
	}
}
