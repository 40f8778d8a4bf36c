package gossip

import (
	"strconv"
	"testing"
)

// TestReconnectRestartedSeedlessNode: the founder (no seeds) restarts on its
// address after the others declared it dead. memberlist alone never tells
// the two sides about each other again; reconnect joins the lost member, so
// both see each other alive and a ring change made meanwhile reaches it.
func TestReconnectRestartedSeedlessNode(t *testing.T) {
	nodes, base, log := startCluster(t, 3)
	n1, n2, n3 := nodes[0], nodes[1], nodes[2]
	addr := n1.Addr()
	if err := n1.Close(); err != nil {
		t.Fatalf("Close n1: %v", err)
	}
	waitFor(t, "n2 and n3 declare n1 dead", func() string {
		for _, g := range []*Gossip{n2, n3} {
			if mi, _ := g.Member("n1"); mi.Liveness != Dead {
				return g.cfg.NodeID + " still sees n1 " + mi.Liveness.String()
			}
		}
		return ""
	})
	if got := n2.lostMembers(); len(got) != 1 || got[0] != addr {
		t.Fatalf("n2's lost members: %v, want [%s]", got, addr)
	}
	// A ring change while n1 is down: n3 leaves.
	if _, err := change(t, n2, OpLeave, "n3"); err != nil {
		t.Fatalf("Leave n3: %v", err)
	}
	want := n2.Ring().Version()

	cfg := testConfig(t, log, base, "n1") // no seeds, as a founder restarts
	cfg.BindAddr = addr
	r1 := open(t, cfg)
	waitFor(t, "the restarted n1 and n2 see each other", func() string {
		if why := seesAlive(n2, "n1"); why != "" {
			return why
		}
		return seesAlive(r1, "n2")
	})
	waitFor(t, "n1 adopts the ring changed while it was down", func() string {
		if v := r1.Ring().Version(); v < want {
			return "n1 at ring version " + strconv.FormatUint(v, 10)
		}
		return ""
	})
}
