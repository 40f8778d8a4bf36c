package gossip

import (
	"fmt"
	"slices"

	"github.com/ringkv/ringkv/ring"
)

// claimant returns the ID of the claimant for cur given the set of nodes
// alive in memberlist: the lowest-ID member that is Joined in cur and alive.
// It returns "" if there is none.
func claimant(cur *ring.Ring, alive map[string]meta) string {
	for _, m := range cur.Members() { // sorted by ID
		if m.Status != ring.Joined {
			continue
		}
		if _, ok := alive[m.ID]; ok {
			return m.ID
		}
	}
	return ""
}

// claim is the claimant's decision, with no I/O. If self is the claimant of
// cur, it joins every alive node absent from cur, one by one in ID order,
// and returns the resulting ring and the IDs it joined. It returns (nil,
// nil, nil) when self is not the claimant or there is nothing to join.
// Members that are Leaving or Removed are left alone: only Admit re-joins
// them. A failed Join stops the claim and returns the ring built so far
// along with the error.
func claim(self string, cur *ring.Ring, alive map[string]meta) (*ring.Ring, []string, error) {
	if claimant(cur, alive) != self {
		return nil, nil, nil
	}
	var ids []string
	for id := range alive {
		if _, ok := cur.Member(id); !ok {
			ids = append(ids, id)
		}
	}
	slices.Sort(ids)
	next := cur
	var joined []string
	for _, id := range ids {
		r, err := next.Join(ring.Member{ID: id, Zone: alive[id].Zone, Status: ring.Joined})
		if err != nil {
			err = fmt.Errorf("join %s: %w", id, err)
			if len(joined) == 0 {
				return nil, nil, err
			}
			return next, joined, err
		}
		next = r
		joined = append(joined, id)
	}
	if len(joined) == 0 {
		return nil, nil, nil
	}
	return next, joined, nil
}
