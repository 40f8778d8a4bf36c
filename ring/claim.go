package ring

import (
	"cmp"
	"slices"
)

// searchBudget bounds the work of one local search (inner-loop steps). It is
// a count, not a time, so every node stops at the same point and computes
// the same table. Rings with the default 64 partitions stay below 10% of
// it (seen in the property test: at most 150k steps); large rings rely on
// the greedy pass, which the local search only polishes.
const searchBudget = 2_000_000

// cost is what the claim minimises, compared lexicographically: replica
// counts outside [floor, ceil] of fair share, then partitions whose
// preference list repeats a zone, then primary counts outside [floor, ceil].
type cost struct{ bal, zone, prim int }

func (c cost) less(o cost) bool {
	if c.bal != o.bal {
		return c.bal < o.bal
	}
	if c.zone != o.zone {
		return c.zone < o.zone
	}
	return c.prim < o.prim
}

// slot is one position in one preference list.
type slot struct{ p, i int }

// planner is a mutable working copy of the table in indices of the Joined
// members (after the transition), with the counters the cost needs.
type planner struct {
	ids      []string // Joined members, sorted
	zone     []int    // zone class per member; an empty zone is a class of its own
	rows     [][]int  // -1 marks a slot not yet assigned
	load     []int    // slots held per member
	prim     []int    // position-0 slots held per member
	lo, hi   int      // floor and ceil of fair replica count
	loP, hiP int      // floor and ceil of fair primary count
	rowZone  []int    // per row: len(row) - distinct zones
	cost     cost
}

func pen(x, lo, hi int) int { return max(0, lo-x) + max(0, x-hi) }

// newPlanner indexes the Joined members of members and converts table,
// whose rows must hold only those members (or "" for unassigned slots),
// resized to rowLen with unassigned slots.
func newPlanner(members []Member, table [][]string) *planner {
	pl := &planner{}
	idx := map[string]int{}
	zoneOf := map[string]int{}
	for _, m := range members {
		if m.Status != Joined {
			continue
		}
		idx[m.ID] = len(pl.ids)
		pl.ids = append(pl.ids, m.ID)
		z, ok := zoneOf[m.Zone]
		if !ok || m.Zone == "" {
			z = len(pl.ids) // fresh class: the index of its first member
			if m.Zone != "" {
				zoneOf[m.Zone] = z
			}
		}
		pl.zone = append(pl.zone, z)
	}
	mm := len(pl.ids)
	pl.load = make([]int, mm)
	pl.prim = make([]int, mm)
	pl.rows = make([][]int, len(table))
	pl.rowZone = make([]int, len(table))
	for p, row := range table {
		r := make([]int, len(row))
		for i, id := range row {
			r[i] = -1
			if j, ok := idx[id]; ok && id != "" {
				r[i] = j
			}
		}
		pl.rows[p] = r
	}
	return pl
}

// setBounds fixes fair shares for rows of length rowLen and recomputes all
// counters and the cost.
func (pl *planner) setBounds(rowLen int) {
	mm, np := len(pl.ids), len(pl.rows)
	total := np * rowLen
	pl.lo, pl.hi = total/mm, (total+mm-1)/mm
	pl.loP, pl.hiP = np/mm, (np+mm-1)/mm
	clear(pl.load)
	clear(pl.prim)
	pl.cost = cost{}
	for p, row := range pl.rows {
		for i, m := range row {
			if m < 0 {
				continue
			}
			pl.load[m]++
			if i == 0 {
				pl.prim[m]++
			}
		}
		pl.rowZone[p] = pl.zoneCost(row)
		pl.cost.zone += pl.rowZone[p]
	}
	for m := range pl.ids {
		pl.cost.bal += pen(pl.load[m], pl.lo, pl.hi)
		pl.cost.prim += pen(pl.prim[m], pl.loP, pl.hiP)
	}
}

// zoneCost is the number of assigned entries of row that repeat a zone.
func (pl *planner) zoneCost(row []int) int {
	c := 0
	for i, m := range row {
		if m < 0 {
			continue
		}
		for _, o := range row[:i] {
			if o >= 0 && pl.zone[o] == pl.zone[m] {
				c++
				break
			}
		}
	}
	return c
}

func (pl *planner) memberCost(m int, sign int) {
	if m < 0 {
		return
	}
	pl.cost.bal += sign * pen(pl.load[m], pl.lo, pl.hi)
	pl.cost.prim += sign * pen(pl.prim[m], pl.loP, pl.hiP)
}

// set puts member v (or -1) into slot s, keeping counters and cost current.
func (pl *planner) set(s slot, v int) {
	u := pl.rows[s.p][s.i]
	if u == v {
		return
	}
	pl.memberCost(u, -1)
	pl.memberCost(v, -1)
	if u >= 0 {
		pl.load[u]--
		if s.i == 0 {
			pl.prim[u]--
		}
	}
	if v >= 0 {
		pl.load[v]++
		if s.i == 0 {
			pl.prim[v]++
		}
	}
	pl.memberCost(u, +1)
	pl.memberCost(v, +1)
	pl.rows[s.p][s.i] = v
	pl.cost.zone -= pl.rowZone[s.p]
	pl.rowZone[s.p] = pl.zoneCost(pl.rows[s.p])
	pl.cost.zone += pl.rowZone[s.p]
}

func (pl *planner) at(s slot) int { return pl.rows[s.p][s.i] }

// distinct reports whether row p holds no member twice.
func (pl *planner) distinct(p int) bool {
	row := pl.rows[p]
	for i, m := range row {
		if m >= 0 && slices.Contains(row[:i], m) {
			return false
		}
	}
	return true
}

// table converts the rows back to member IDs.
func (pl *planner) table() [][]string {
	t := make([][]string, len(pl.rows))
	for p, row := range pl.rows {
		t[p] = make([]string, len(row))
		for i, m := range row {
			t[p][i] = pl.ids[m]
		}
	}
	return t
}

// improve is a deterministic first-improvement local search. It changes
// only the slots in movable, each to a value cands returns for it, and
// accepts a change of one slot, or of two slots where the second takes a
// slot from the member the first one gave to (a chain A->B, B->C, or a
// swap) or lies in the same row, when it lowers the cost and leaves every
// row distinct. Scanning every first change covers both orders of a pair.
func (pl *planner) improve(movable []slot, cands func(s slot, buf []int) []int) {
	if pl.cost == (cost{}) {
		return
	}
	sr := &searcher{pl: pl, movable: movable, cands: cands,
		held:  make([][]int, len(pl.ids)),
		inRow: map[int][]int{},
		buf:   make([]int, 0, len(pl.ids)),
	}
	for k, s := range movable {
		sr.hold(k)
		sr.inRow[s.p] = append(sr.inRow[s.p], k)
	}
	buf := make([]int, 0, len(pl.ids))
	for improved := true; improved && sr.steps < searchBudget; {
		improved = false
		for k1, s1 := range movable {
			u1 := pl.at(s1)
			for _, v1 := range cands(s1, buf[:0]) {
				if v1 == u1 || sr.steps >= searchBudget {
					continue
				}
				base := pl.cost
				pl.set(s1, v1)
				sr.steps++
				if (pl.cost.less(base) && pl.distinct(s1.p)) || sr.chain(s1, v1, base) {
					sr.hold(k1)
					improved = true
					u1 = v1
					continue
				}
				pl.set(s1, u1)
			}
		}
	}
}

// searcher holds the indexes of one local search.
type searcher struct {
	pl      *planner
	movable []slot
	cands   func(s slot, buf []int) []int
	held    [][]int       // member -> movable indices it holds (may be stale)
	inRow   map[int][]int // row -> its movable indices
	buf     []int
	steps   int
}

func (sr *searcher) hold(k int) {
	if m := sr.pl.at(sr.movable[k]); m >= 0 {
		sr.held[m] = append(sr.held[m], k)
	}
}

// chain looks for a second change that, with s1 already changed to v1,
// lowers the cost below base: in the same row, or taking a slot from v1. It
// leaves that change applied and returns true if it finds one.
func (sr *searcher) chain(s1 slot, v1 int, base cost) bool {
	pl := sr.pl
	try := func(k2 int) bool {
		s2 := sr.movable[k2]
		sr.steps++
		if s2 == s1 {
			return false
		}
		u2 := pl.at(s2)
		for _, v2 := range sr.cands(s2, sr.buf[:0]) {
			if v2 == u2 {
				continue
			}
			sr.steps++
			pl.set(s2, v2)
			if pl.cost.less(base) && pl.distinct(s1.p) && pl.distinct(s2.p) {
				sr.hold(k2)
				return true
			}
			pl.set(s2, u2)
		}
		return false
	}
	for _, k2 := range sr.inRow[s1.p] {
		if try(k2) {
			return true
		}
	}
	if v1 >= 0 {
		for _, k2 := range sr.held[v1] {
			if pl.at(sr.movable[k2]) == v1 && sr.movable[k2].p != s1.p && try(k2) {
				return true
			}
		}
	}
	// A pair that gives a slot elsewhere to u1 is found from that slot's
	// side: its change is the first one, and s1 is then held by its v1.
	return false
}

// claimJoin computes the table after m joins. members is the new member
// list (m Joined).
func (r *Ring) claimJoin(m Member, members []Member) [][]string {
	n := r.cfg.ReplicationFactor
	oldLen := min(n, len(r.active))
	if oldLen == 0 {
		t := make([][]string, r.cfg.Partitions)
		for p := range t {
			t[p] = []string{m.ID}
		}
		return t
	}
	if oldLen < n {
		return r.growJoin(m.ID)
	}
	pl := newPlanner(members, r.table)
	pl.setBounds(n)
	nw := slices.Index(pl.ids, m.ID)
	orig := make([][]int, len(pl.rows))
	for p, row := range pl.rows {
		orig[p] = slices.Clone(row)
	}
	pl.greedyJoin(nw)
	all := make([]slot, 0, len(pl.rows)*n)
	for p := range pl.rows {
		for i := range n {
			all = append(all, slot{p, i})
		}
	}
	pl.improve(all, func(s slot, buf []int) []int {
		return append(buf, orig[s.p][s.i], nw)
	})
	return pl.table()
}

// growJoin handles a join while fewer than N members are Joined: the
// newcomer enters every preference list. It goes first in the partitions it
// takes over as primary (from the member with the most primaries, until
// primaries are within one of each other) and last everywhere else.
func (r *Ring) growJoin(id string) [][]string {
	np := r.cfg.Partitions
	// primaries[k]: partitions led by r.active[k], ascending.
	primaries := make([][]int, len(r.active))
	pos := map[string]int{}
	for k, a := range r.active {
		pos[a.ID] = k
	}
	for p, row := range r.table {
		k := pos[row[0]]
		primaries[k] = append(primaries[k], p)
	}
	lead := make([]bool, np)
	taken := 0
	for {
		best := -1
		for k := range primaries {
			if best < 0 || len(primaries[k]) > len(primaries[best]) {
				best = k
			}
		}
		if len(primaries[best]) <= taken+1 {
			break
		}
		ps := primaries[best]
		lead[ps[0]] = true
		primaries[best] = ps[1:]
		taken++
	}
	t := make([][]string, np)
	for p, row := range r.table {
		if lead[p] {
			t[p] = append([]string{id}, row...)
		} else {
			t[p] = append(slices.Clone(row), id)
		}
	}
	return t
}

// greedyJoin gives newcomer nw its share: each other member gives up what
// it holds above its new target (the fullest members keep the ceil), first
// primaries then other slots, one slot per donor per round, preferring
// slots where nw makes the zones of the list more distinct.
func (pl *planner) greedyJoin(nw int) {
	mm := len(pl.ids)
	var donors []int
	for d := range mm {
		if d != nw {
			donors = append(donors, d)
		}
	}
	quota := quotas(donors, pl.load, len(pl.rows)*len(pl.rows[0]), mm)
	pquota := quotas(donors, pl.prim, len(pl.rows), mm)
	for d := range mm {
		pquota[d] = min(pquota[d], quota[d])
	}
	type cand struct {
		s    slot
		gain int
	}
	prims := make([][]cand, mm)
	others := make([][]cand, mm)
	for p, row := range pl.rows {
		before := pl.rowZone[p]
		for i, d := range row {
			row[i] = nw
			gain := before - pl.zoneCost(row)
			row[i] = d
			c := cand{slot{p, i}, gain}
			if i == 0 {
				prims[d] = append(prims[d], c)
			} else {
				others[d] = append(others[d], c)
			}
		}
	}
	taken := make([]bool, len(pl.rows))
	take := func(lists [][]cand, q []int, primaries bool) {
		for _, l := range lists {
			slices.SortStableFunc(l, func(a, b cand) int { return cmp.Compare(b.gain, a.gain) })
		}
		for progress := true; progress; {
			progress = false
			for _, d := range donors {
				if q[d] == 0 {
					continue
				}
				l := lists[d]
				for len(l) > 0 && taken[l[0].s.p] {
					l = l[1:]
				}
				lists[d] = l
				if len(l) == 0 {
					continue
				}
				pl.set(l[0].s, nw)
				taken[l[0].s.p] = true
				lists[d] = l[1:]
				q[d]--
				if primaries {
					quota[d]--
				}
				progress = true
			}
		}
	}
	take(prims, pquota, true)
	take(others, quota, false)
}

// quotas returns, per member, how many units each donor holds above its
// target when total units are shared by mm members: the donors holding the
// most keep the ceil (ties by index, i.e. ID), the newcomer gets a floor.
func quotas(donors []int, have []int, total, mm int) []int {
	q := make([]int, mm)
	order := slices.Clone(donors)
	slices.SortStableFunc(order, func(a, b int) int { return cmp.Compare(have[b], have[a]) })
	extra := total % mm
	for k, d := range order {
		target := total / mm
		if k < extra {
			target++
		}
		q[d] = max(0, have[d]-target)
	}
	return q
}

// claimLeave computes the table after id stops being Joined. members is the
// new member list (id no longer Joined).
func (r *Ring) claimLeave(id string, members []Member) [][]string {
	n := r.cfg.ReplicationFactor
	remaining := len(r.active) - 1
	newLen := min(n, remaining)
	t := make([][]string, len(r.table))
	if newLen < min(n, len(r.active)) {
		for p, row := range r.table {
			t[p] = slices.DeleteFunc(slices.Clone(row), func(s string) bool { return s == id })
		}
		return t
	}
	var movable []slot
	for p, row := range r.table {
		t[p] = slices.Clone(row)
		for i, s := range row {
			if s == id {
				t[p][i] = ""
				movable = append(movable, slot{p, i})
			}
		}
	}
	pl := newPlanner(members, t)
	pl.setBounds(newLen)
	everyone := make([]int, len(pl.ids))
	for k := range everyone {
		everyone[k] = k
	}
	for _, s := range movable {
		best, bestCost := -1, cost{}
		for _, v := range everyone {
			if slices.Contains(pl.rows[s.p], v) {
				continue
			}
			pl.set(s, v)
			c := pl.cost
			pl.set(s, -1)
			if best < 0 || c.less(bestCost) || (c == bestCost && pl.better(v, best, s.i == 0)) {
				best, bestCost = v, c
			}
		}
		pl.set(s, best)
	}
	pl.improve(movable, func(_ slot, _ []int) []int { return everyone })
	return pl.table()
}

// better breaks ties between candidates a and b for a slot: fewer slots
// (fewer primaries first for a primary slot), then lower ID.
func (pl *planner) better(a, b int, primary bool) bool {
	if primary && pl.prim[a] != pl.prim[b] {
		return pl.prim[a] < pl.prim[b]
	}
	if pl.load[a] != pl.load[b] {
		return pl.load[a] < pl.load[b]
	}
	return a < b
}
