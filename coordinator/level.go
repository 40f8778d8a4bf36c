package coordinator

import (
	"fmt"
	"strings"
)

// Level is a per-request consistency level.
type Level int

// The consistency levels. Quorum is the default.
const (
	// One waits for one replica: fastest, may read stale data.
	One Level = iota + 1
	// Quorum waits for a majority of the partition's replicas
	// (floor(N/2)+1). Quorum reads see every Quorum write that completed
	// before they started.
	Quorum
	// All waits for every replica; fails while any replica is down.
	All
	// Linearizable goes through the partition's Raft leader: operations at
	// this level on a key are linearizable with respect to each other.
	Linearizable
)

// String returns the level's name as used on the wire: "one", "quorum", "all".
func (l Level) String() string {
	switch l {
	case One:
		return "one"
	case Quorum:
		return "quorum"
	case All:
		return "all"
	case Linearizable:
		return "linearizable"
	default:
		return fmt.Sprintf("Level(%d)", int(l))
	}
}

// ParseLevel parses a level name, case-insensitively. The empty string is
// Quorum. Any other name returns an error wrapping ErrInvalidArgument.
func ParseLevel(s string) (Level, error) {
	switch strings.ToLower(strings.TrimSpace(s)) {
	case "", "quorum":
		return Quorum, nil
	case "one":
		return One, nil
	case "all":
		return All, nil
	case "linearizable":
		return Linearizable, nil
	default:
		return 0, fmt.Errorf("%w: unknown consistency level %q (want one, quorum, all or linearizable)", ErrInvalidArgument, s)
	}
}

// required returns how many of n replicas must answer at level l.
func (l Level) required(n int) int {
	switch l {
	case One:
		return min(1, n)
	case All:
		return n
	default:
		return n/2 + 1
	}
}
