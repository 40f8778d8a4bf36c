package ring

import "strconv"

// Status is a member's durable ring membership state. Liveness (alive,
// suspect, dead) is not part of the ring: see ring/gossip.
//
//	          Join             Leave              Remove
//	(absent) ------> Joined -----------> Leaving ---------> Removed
//	                   |  ^                 |                  |
//	                   |  +------ Join -----+------ Join ------+
//	                   +-------------- Remove -------------->--+
type Status int

const (
	// Joined members hold replicas and appear in preference lists.
	Joined Status = iota + 1
	// Leaving members have handed their slots to others and appear in no
	// preference list; they still serve data until it has been transferred.
	Leaving
	// Removed members are gone for good (until they Join again).
	Removed
)

// String returns "joined", "leaving" or "removed" ("Status(n)" otherwise).
func (s Status) String() string {
	switch s {
	case Joined:
		return "joined"
	case Leaving:
		return "leaving"
	case Removed:
		return "removed"
	}
	return "Status(" + strconv.Itoa(int(s)) + ")"
}
