package ring

import (
	"fmt"
	"math/bits"
	"slices"
	"strings"

	"github.com/cespare/xxhash/v2"
)

// Member is one node of the cluster as the ring records it.
type Member struct {
	// ID names the member; unique and non-empty.
	ID string
	// Zone is the failure domain (rack, availability zone). May be empty,
	// which counts as a zone of its own.
	Zone string
	// Status is the member's ring membership state.
	Status Status
}

// Ring is an immutable snapshot of the ring state: config, version, members
// with their status and the assignment table (the preference list of each
// partition). It is never mutated after construction, so it is safe for
// concurrent use; Join, Leave and Remove return new snapshots.
type Ring struct {
	cfg     Config
	shift   uint // 64 - log2(P): partition = hash >> shift
	version uint64
	members []Member   // all members, sorted by ID
	active  []Member   // Joined members, sorted by ID
	table   [][]string // P rows, each min(N, len(active)) long, capacity-limited
	enc     []byte     // canonical encoding
	hash    uint64     // xxhash64(enc)
}

// New returns an empty ring at Version 0 with no members. Zero fields of cfg
// take their defaults (see DefaultConfig). It returns an error wrapping
// ErrInvalid if cfg is invalid.
func New(cfg Config) (*Ring, error) {
	cfg = cfg.withDefaults()
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	return build(cfg, 0, nil, make([][]string, cfg.Partitions)), nil
}

// build assembles a Ring from validated parts. It takes ownership of members
// (sorted by ID) and table.
func build(cfg Config, version uint64, members []Member, table [][]string) *Ring {
	r := &Ring{
		cfg:     cfg,
		shift:   uint(64 - bits.TrailingZeros(uint(cfg.Partitions))),
		version: version,
		members: members,
	}
	for _, m := range members {
		if m.Status == Joined {
			r.active = append(r.active, m)
		}
	}
	// Pack the rows into one backing array; cap each row so that an append
	// by a careless caller cannot write into its neighbour.
	l := min(cfg.ReplicationFactor, len(r.active))
	flat := make([]string, 0, len(table)*l)
	r.table = make([][]string, len(table))
	for p, row := range table {
		start := len(flat)
		flat = append(flat, row...)
		r.table[p] = flat[start:len(flat):len(flat)]
	}
	r.enc = r.encode()
	r.hash = xxhash.Sum64(r.enc)
	return r
}

// Version returns the ring's version: 0 for a new ring, +1 per transition.
func (r *Ring) Version() uint64 { return r.version }

// Base returns P0, the number of partitions the cluster was created with:
// Partitions until the first split.
func (r *Ring) Base() int { return r.cfg.base }

// Partitions returns P.
func (r *Ring) Partitions() int { return r.cfg.Partitions }

// ReplicationFactor returns N.
func (r *Ring) ReplicationFactor() int { return r.cfg.ReplicationFactor }

// Members returns all members, including Leaving and Removed ones, sorted
// by ID. The slice is a fresh copy owned by the caller.
func (r *Ring) Members() []Member { return slices.Clone(r.members) }

// Member returns the member with the given ID, whatever its status.
func (r *Ring) Member(id string) (Member, bool) {
	i, ok := r.find(id)
	if !ok {
		return Member{}, false
	}
	return r.members[i], true
}

// Active returns the Joined members sorted by ID. The slice is a fresh copy
// owned by the caller.
func (r *Ring) Active() []Member { return slices.Clone(r.active) }

// ActiveCount returns len(Active()) without copying the members.
func (r *Ring) ActiveCount() int { return len(r.active) }

// PartitionOf returns the partition of key: the one whose slice of the
// token space contains xxhash64(key), that is xxhash64(key) >> (64-log2 P).
func (r *Ring) PartitionOf(key []byte) uint32 {
	return uint32(xxhash.Sum64(key) >> r.shift)
}

// Replicas returns the preference list of partition p, primary first. Its
// length is min(N, len(Active())). The slice is shared by all callers and
// must not be modified; it does not allocate. It returns nil if p is out of
// range.
func (r *Ring) Replicas(p uint32) []string {
	if int64(p) >= int64(len(r.table)) {
		return nil
	}
	return r.table[p]
}

// PartitionsOf returns, in ascending order, the partitions whose preference
// list contains id. The slice is a fresh copy owned by the caller.
func (r *Ring) PartitionsOf(id string) []uint32 {
	var ps []uint32
	for p, row := range r.table {
		if slices.Contains(row, id) {
			ps = append(ps, uint32(p))
		}
	}
	return ps
}

// Hash returns xxhash64 of the canonical encoding (MarshalBinary). Two rings
// with equal hashes are, barring collisions, equal.
func (r *Ring) Hash() uint64 { return r.hash }

// Newer reports whether r should replace o: r has the higher version, or
// equal versions and the higher Hash. Every node picks the same winner
// between two rings computed concurrently from the same version. o == nil
// is older than any ring.
func (r *Ring) Newer(o *Ring) bool {
	if o == nil {
		return true
	}
	if r.version != o.version {
		return r.version > o.version
	}
	return r.hash > o.hash
}

// String returns a short description for logs and test output.
func (r *Ring) String() string {
	var b strings.Builder
	fmt.Fprintf(&b, "ring v%d P=%d N=%d members=[", r.version, r.cfg.Partitions, r.cfg.ReplicationFactor)
	for i, m := range r.members {
		if i > 0 {
			b.WriteByte(' ')
		}
		fmt.Fprintf(&b, "%s/%s/%s", m.ID, m.Zone, m.Status)
	}
	b.WriteByte(']')
	return b.String()
}

func (r *Ring) find(id string) (int, bool) {
	return slices.BinarySearchFunc(r.members, id, func(m Member, id string) int {
		return strings.Compare(m.ID, id)
	})
}

// withMember returns a copy of r.members with m set (inserted or replaced).
func (r *Ring) withMember(m Member) []Member {
	ms := slices.Clone(r.members)
	if i, ok := r.find(m.ID); ok {
		ms[i] = m
	} else {
		ms = slices.Insert(ms, i, m)
	}
	return ms
}

// Join returns the next ring (Version+1) with m Joined and the table
// rebalanced: only slots taken over by m change (see the package doc for
// the one exception while fewer than N members are Joined). m.Status is
// ignored. A Leaving or Removed member may join again under its ID; its
// Zone is replaced by m.Zone. It returns ErrMemberExists if m.ID is already
// Joined and an error wrapping ErrInvalid if m.ID is empty.
func (r *Ring) Join(m Member) (*Ring, error) {
	if m.ID == "" {
		return nil, fmt.Errorf("%w: empty member id", ErrInvalid)
	}
	if old, ok := r.Member(m.ID); ok && old.Status == Joined {
		return nil, fmt.Errorf("join %q: %w", m.ID, ErrMemberExists)
	}
	m.Status = Joined
	members := r.withMember(m)
	return build(r.cfg, r.version+1, members, r.claimJoin(m, members)), nil
}

// Leave returns the next ring (Version+1) with id Leaving. Each of its slots
// goes to another Joined member and the rest of the table is unchanged; when
// fewer than N members remain Joined its slots are dropped instead. It
// returns ErrUnknownMember if id is not Joined.
func (r *Ring) Leave(id string) (*Ring, error) {
	old, ok := r.Member(id)
	if !ok || old.Status != Joined {
		return nil, fmt.Errorf("leave %q: %w", id, ErrUnknownMember)
	}
	old.Status = Leaving
	members := r.withMember(old)
	return build(r.cfg, r.version+1, members, r.claimLeave(id, members)), nil
}

// Remove returns the next ring (Version+1) with id Removed. If id was
// Joined its slots are reassigned as by Leave; if it was Leaving the table
// is unchanged. It returns ErrUnknownMember if id is absent or already
// Removed.
func (r *Ring) Remove(id string) (*Ring, error) {
	old, ok := r.Member(id)
	if !ok || old.Status == Removed {
		return nil, fmt.Errorf("remove %q: %w", id, ErrUnknownMember)
	}
	wasJoined := old.Status == Joined
	old.Status = Removed
	members := r.withMember(old)
	table := r.table
	if wasJoined {
		table = r.claimLeave(id, members)
	}
	return build(r.cfg, r.version+1, members, table), nil
}
