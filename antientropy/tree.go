package antientropy

import "fmt"

// Tree shape: every partition's tree has Depth levels below the root, each
// node Fanout children, so Fanout^Depth leaf buckets (4096).
const (
	Fanout = 16
	Depth  = 3
	// Leaves is the number of leaf buckets per partition.
	Leaves     = 1 << (fanoutBits * Depth)
	fanoutBits = 4
)

// Bucket returns the leaf bucket of a key with xxhash64 keyHash. The top
// bits of the hash choose the partition, so buckets use the low bits.
func Bucket(keyHash uint64) uint32 { return uint32(keyHash & (Leaves - 1)) }

// Tree is one partition's Merkle tree over key-hash buckets. A node's value
// is the sum (mod 2^64) of the hashes of every record under it: the sum is
// order-independent, so a record change updates the tree in O(Depth)
// (old hash out, new in), and a tree rebuilt from a snapshot plus the
// changes recorded since equals the tree of the current state. Two trees
// with equal nodes hold the same records with probability 1 - 2^-64 per
// node compared.
//
// A Tree is plain data: not safe for concurrent use (Trees locks it).
type Tree struct {
	levels [Depth + 1][]uint64 // levels[0] is the root; levels[Depth] the leaves
}

// NewTree returns an empty tree (every node 0).
func NewTree() *Tree {
	t := &Tree{}
	for l := range t.levels {
		t.levels[l] = make([]uint64, 1<<(fanoutBits*l))
	}
	return t
}

// Update replaces a record's hash old by new in the bucket of keyHash; 0
// means none (an insert has old 0, a removal new 0).
func (t *Tree) Update(keyHash, old, new uint64) {
	delta := new - old
	if delta == 0 {
		return
	}
	b := Bucket(keyHash)
	for l := Depth; l >= 0; l-- {
		t.levels[l][b] += delta
		b >>= fanoutBits
	}
}

// AddTree adds every node of o to t (the union of disjoint changes).
func (t *Tree) AddTree(o *Tree) {
	for l := range t.levels {
		for i, v := range o.levels[l] {
			t.levels[l][i] += v
		}
	}
}

// Root returns the root hash.
func (t *Tree) Root() uint64 { return t.levels[0][0] }

// Nodes returns the values of the given nodes of level (all of the level
// when idx is empty), in order. The slice is the caller's.
func (t *Tree) Nodes(level int, idx []uint32) ([]uint64, error) {
	if level < 0 || level > Depth {
		return nil, fmt.Errorf("%w: level %d outside 0..%d", ErrBadRequest, level, Depth)
	}
	lv := t.levels[level]
	if len(idx) == 0 {
		return append([]uint64(nil), lv...), nil
	}
	out := make([]uint64, len(idx))
	for i, n := range idx {
		if int(n) >= len(lv) {
			return nil, fmt.Errorf("%w: node %d outside level %d of %d nodes", ErrBadRequest, n, level, len(lv))
		}
		out[i] = lv[n]
	}
	return out, nil
}

// Children returns the indexes, at level+1, of the children of the given
// nodes of level, in order.
func Children(idx []uint32) []uint32 {
	out := make([]uint32, 0, len(idx)*Fanout)
	for _, n := range idx {
		for c := range uint32(Fanout) {
			out = append(out, n*Fanout+c)
		}
	}
	return out
}

// Differing returns the entries of idx whose values differ between a and b
// (parallel to idx).
func Differing(idx []uint32, a, b []uint64) []uint32 {
	var out []uint32
	for i, n := range idx {
		if a[i] != b[i] {
			out = append(out, n)
		}
	}
	return out
}
