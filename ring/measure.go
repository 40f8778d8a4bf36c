package ring

import "slices"

// Balance says how evenly a ring spreads replicas and primaries over its
// Joined members. It is what the claim promises (within 10% of fair, or
// within one slot of it) made measurable: ringkv ring simulate prints it
// and the tests assert it.
type Balance struct {
	// Members is the number of Joined members.
	Members int
	// FairReplicas is P*min(N, Members)/Members: the replica slots each
	// member would hold if they divided evenly.
	FairReplicas float64
	// MinReplicas and MaxReplicas are the fewest and most replica slots
	// any Joined member holds.
	MinReplicas, MaxReplicas int
	// FairPrimaries is P/Members.
	FairPrimaries float64
	// MinPrimaries and MaxPrimaries are the fewest and most position-0
	// slots any Joined member holds.
	MinPrimaries, MaxPrimaries int
}

// ReplicaDeviation returns the largest |count - fair| / fair over the
// members' replica counts (0.05 is 5%); 0 for a ring without members.
func (b Balance) ReplicaDeviation() float64 {
	if b.Members == 0 {
		return 0
	}
	return max(b.FairReplicas-float64(b.MinReplicas), float64(b.MaxReplicas)-b.FairReplicas) / b.FairReplicas
}

// PrimaryDeviation returns the largest |count - fair| / fair over the
// members' primary counts; 0 for a ring without members.
func (b Balance) PrimaryDeviation() float64 {
	if b.Members == 0 {
		return 0
	}
	return max(b.FairPrimaries-float64(b.MinPrimaries), float64(b.MaxPrimaries)-b.FairPrimaries) / b.FairPrimaries
}

// Balance counts the replica and primary slots of every Joined member.
func (r *Ring) Balance() Balance {
	m := len(r.active)
	b := Balance{Members: m}
	if m == 0 {
		return b
	}
	pos := make(map[string]int, m)
	for k, a := range r.active {
		pos[a.ID] = k
	}
	reps, prims := make([]int, m), make([]int, m)
	for _, row := range r.table {
		for i, id := range row {
			reps[pos[id]]++
			if i == 0 {
				prims[pos[id]]++
			}
		}
	}
	l := float64(min(r.cfg.ReplicationFactor, m))
	b.FairReplicas = float64(r.cfg.Partitions) * l / float64(m)
	b.FairPrimaries = float64(r.cfg.Partitions) / float64(m)
	b.MinReplicas, b.MaxReplicas = slices.Min(reps), slices.Max(reps)
	b.MinPrimaries, b.MaxPrimaries = slices.Min(prims), slices.Max(prims)
	return b
}

// Movement is what changed between the tables of two rings of the same
// partition count.
type Movement struct {
	// Slots counts the (partition, position) slots whose member differs,
	// a position that exists in only one of the two counting as changed.
	Slots int
	// Copies counts the (partition, member) pairs in which the member is in
	// the partition's preference list after and not before: each is a
	// replica that has to be built, the data the change moves.
	Copies int
	// CopiesTo counts Copies per receiving member. The map is fresh, owned
	// by the caller.
	CopiesTo map[string]int
}

// Moved compares the tables of from and to. Rings of different partition
// counts are compared over the partitions both have.
func Moved(from, to *Ring) Movement {
	mv := Movement{CopiesTo: map[string]int{}}
	for p := range min(len(from.table), len(to.table)) {
		a, b := from.table[p], to.table[p]
		for i := range max(len(a), len(b)) {
			if i >= len(a) || i >= len(b) || a[i] != b[i] {
				mv.Slots++
			}
		}
		for _, id := range b {
			if !slices.Contains(a, id) {
				mv.Copies++
				mv.CopiesTo[id]++
			}
		}
	}
	return mv
}

// JoinOptimum returns the fewest replica slots a member joining r must
// take for every member to be within its floor and ceil of fair share
// afterwards: the floor of P*N'/(M+1), where N' = min(N, M+1) for the M
// Joined members of r. It is the movement a join cannot go below.
func (r *Ring) JoinOptimum() int {
	m := len(r.active) + 1
	l := min(r.cfg.ReplicationFactor, m)
	return r.cfg.Partitions * l / m
}
