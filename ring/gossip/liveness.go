package gossip

import (
	"fmt"

	"github.com/ringkv/ringkv/ring"
)

// Liveness is a member's health as seen by memberlist. It never changes the
// ring by itself.
type Liveness int

const (
	// Alive: memberlist knows the node and has not declared it dead.
	Alive Liveness = iota
	// Suspect: reserved; see "Departures" in the package documentation.
	Suspect
	// Dead: memberlist declared the node dead or left, or has never seen it.
	Dead
)

// String returns "alive", "suspect" or "dead".
func (l Liveness) String() string {
	switch l {
	case Alive:
		return "alive"
	case Suspect:
		return "suspect"
	case Dead:
		return "dead"
	default:
		return fmt.Sprintf("Liveness(%d)", int(l))
	}
}

// MemberInfo describes one member as this node sees it: ring status from the
// current ring, liveness and addresses from memberlist.
type MemberInfo struct {
	ID       string
	Zone     string
	RPCAddr  string // host:port for drpc; empty if memberlist never saw the node
	HTTPAddr string // host:port for HTTP; empty if memberlist never saw the node
	Liveness Liveness
	Status   ring.Status // 0 if not in the ring
	// RingVersion is the version of the ring the member holds, as it
	// last advertised it (this node's own: exact); 0 if unknown.
	RingVersion uint64
	// Wire is the wire protocol range the member advertises (zero if
	// memberlist never gave its metadata).
	Wire WireRange
	// Draining: the member is alive and advertises that it is draining
	// (Gossip.SetDraining).
	Draining bool
	// Starting: the member is alive and advertises that it has not been
	// ready since it started (Gossip.SetStarting).
	Starting bool
}
