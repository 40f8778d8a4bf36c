package bench

import (
	"errors"
	"fmt"
	"math/rand/v2"
	"slices"
)

// errConflict is a workload-T transaction whose compare failed: counted
// in Result.Conflicts, not as an error.
var errConflict = errors.New("bench: transaction conflict")

// pickTries bounds the draws from the key distribution that pick makes
// before it falls back to uniform choices that cannot miss.
const pickTries = 64

// txnPlan groups the key space by partition for workload T.
type txnPlan struct {
	k    int
	same bool
	part []int   // key index -> partition
	keys [][]int // partition -> key indexes
	used []int   // partitions with a key
	big  []int   // partitions with at least k keys
}

// newTxnPlan groups s's keys by partition; it fails when they cannot
// make a transaction of the spec's shape.
func newTxnPlan(s Spec) (*txnPlan, error) {
	p := &txnPlan{k: s.TxnKeys, same: s.TxnSamePartition, part: make([]int, s.Keys), keys: make([][]int, s.Partitions)}
	for i := range s.Keys {
		p.part[i] = PartitionOf(Key(i), s.Partitions)
		p.keys[p.part[i]] = append(p.keys[p.part[i]], i)
	}
	for pt, ks := range p.keys {
		if len(ks) > 0 {
			p.used = append(p.used, pt)
		}
		if len(ks) >= p.k {
			p.big = append(p.big, pt)
		}
	}
	switch {
	case p.same && len(p.big) == 0:
		return nil, fmt.Errorf("%w: no partition holds %d of the %d keys", ErrInvalidSpec, p.k, s.Keys)
	case !p.same && len(p.used) < p.k:
		return nil, fmt.Errorf("%w: the %d keys fall in %d partitions, fewer than %d", ErrInvalidSpec, s.Keys, len(p.used), p.k)
	}
	return p, nil
}

// pick appends to out the names of k distinct keys: in k different
// partitions, or all in one when same. The first key, and the others when
// in different partitions, come from the key distribution; after
// pickTries draws that miss, choices are uniform.
func (p *txnPlan) pick(rng *rand.Rand, keys chooser, out []string) []string {
	idx := make([]int, 0, p.k)
	if p.same {
		pt := -1
		for range pickTries {
			if i := keys.next(); len(p.keys[p.part[i]]) >= p.k {
				pt, idx = p.part[i], append(idx, i)
				break
			}
		}
		if pt < 0 {
			pt = p.big[rng.IntN(len(p.big))]
		}
		for len(idx) < p.k {
			if i := p.keys[pt][rng.IntN(len(p.keys[pt]))]; !slices.Contains(idx, i) {
				idx = append(idx, i)
			}
		}
	} else {
		parts := make([]int, 0, p.k)
		add := func(i int) {
			if !slices.Contains(parts, p.part[i]) {
				parts, idx = append(parts, p.part[i]), append(idx, i)
			}
		}
		for t := 0; t < pickTries && len(idx) < p.k; t++ {
			add(keys.next())
		}
		for len(idx) < p.k {
			ks := p.keys[p.used[rng.IntN(len(p.used))]]
			add(ks[rng.IntN(len(ks))])
		}
	}
	for _, i := range idx {
		out = append(out, Key(i))
	}
	return out
}
