package ring

import "fmt"

// Split returns the next ring (Version+1) with twice the partitions.
// Under 2P a key's partition is one of the two children 2p and 2p+1 of
// its partition p under P (one more bit of its hash), and each child's
// preference list is its parent's, so every key keeps its replicas and
// nothing moves: every member's slot count doubles, and the balance is
// the parent ring's, relatively. Later joins and leaves spread children
// like any slot. It returns an error wrapping ErrInvalid when 2P would
// exceed MaxPartitions.
//
// This is the ring's side of an online partition split (docs/
// ARCHITECTURE.md, "Partition split"); no node runs a split yet.
func (r *Ring) Split() (*Ring, error) {
	cfg := r.cfg
	cfg.Partitions *= 2
	if err := cfg.Validate(); err != nil {
		return nil, fmt.Errorf("split of %d partitions: %w", r.cfg.Partitions, err)
	}
	table := make([][]string, cfg.Partitions)
	for p, row := range r.table {
		table[2*p], table[2*p+1] = row, row
	}
	return build(cfg, r.version+1, r.members, table), nil
}

// Parent returns the partition under P/2 that partition p under P was
// split from.
func Parent(p uint32) uint32 { return p >> 1 }

// Children returns the two partitions under 2P that partition p under P
// splits into.
func Children(p uint32) [2]uint32 { return [2]uint32{2 * p, 2*p + 1} }
