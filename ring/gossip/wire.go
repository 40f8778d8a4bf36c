package gossip

import (
	"errors"
	"fmt"
	"sync"
	"time"

	"github.com/hashicorp/memberlist"
)

// The node-to-node wire protocol (the drpc services of proto/ringkv/v1,
// the raft transport, the ring encoding and this package's metadata) is
// versioned as a whole by one integer. A node speaks every version of a
// range and advertises it in its metadata ("wire": [min, max]); metadata
// without the field comes from a node older than the range (every release
// before it spoke version 1), so it counts as [1, 1]. Two nodes can be in
// one cluster iff their ranges overlap. The rule for a release: raise
// WireVersionMax when the protocol gains something a peer must
// understand; raise WireVersionMin only once the release before no longer
// needs to be spoken to (docs/OPERATIONS.md "Upgrades").
const (
	// WireVersionMin is the oldest wire version this build speaks.
	WireVersionMin = 1
	// WireVersionMax is the newest wire version this build speaks. 2
	// brought single-partition transactions: the Raft batch command and
	// the Linearizable service's Txn (consensus.TxnWireVersion). 3
	// brought transactions across partitions: intents, which every
	// leader must read through, and the Linearizable service's Prepare,
	// Decide, TxnStatus, Resolve and Forget (consensus.XTxnWireVersion). 4
	// brought partition splits: the ring's encoding of a split ring and
	// the Raft split command (consensus.SplitWireVersion); a split is
	// decided only while every member speaks it. 5 brought the node-level
	// leadership confirmation for reads (the raft stream's Confirm and
	// ConfirmAck, consensus.ConfirmWireVersion), used only while every
	// member speaks it.
	WireVersionMax = 5
)

// WireRange is a range of wire protocol versions, both ends included.
type WireRange struct {
	Min, Max int
}

// String returns "min..max", or "v" for a range of one version.
func (w WireRange) String() string {
	if w.Min == w.Max {
		return fmt.Sprint(w.Min)
	}
	return fmt.Sprintf("%d..%d", w.Min, w.Max)
}

// Overlaps reports whether w and o share a version.
func (w WireRange) Overlaps(o WireRange) bool { return w.Min <= o.Max && o.Min <= w.Max }

// valid reports whether w is a non-empty range of positive versions.
func (w WireRange) valid() bool { return w.Min >= 1 && w.Min <= w.Max }

// CurrentWire is the range this build speaks.
func CurrentWire() WireRange { return WireRange{Min: WireVersionMin, Max: WireVersionMax} }

// wireOf returns the range m advertises; [1, 1] when it says none.
func wireOf(m meta) WireRange {
	if m.Wire == ([2]int{}) {
		return WireRange{Min: 1, Max: 1}
	}
	return WireRange{Min: m.Wire[0], Max: m.Wire[1]}
}

// IncompatibleError is the ErrIncompatible a node reports for a peer whose
// wire range does not overlap its own.
type IncompatibleError struct {
	Peer string
	// PeerWire is what the peer advertises; Local what this node speaks.
	PeerWire, Local WireRange
}

func (e *IncompatibleError) Error() string {
	return fmt.Sprintf("%v: peer %s speaks wire protocol %s, this node speaks %s: they cannot be in one cluster (upgrade through a release that speaks both; docs/OPERATIONS.md, Upgrades)",
		ErrIncompatible, e.Peer, e.PeerWire, e.Local)
}

// Is reports whether target is ErrIncompatible.
func (e *IncompatibleError) Is(target error) bool { return target == ErrIncompatible }

// checkPeer returns an *IncompatibleError when n advertises a wire range
// that does not overlap local, a *ForeignClusterError when n and this
// node (cluster) both have a cluster id and they differ, and nil for this
// node itself and for nodes without readable ringkv metadata (those are
// let in but never joined to the ring: observe warns about them).
func checkPeer(self string, local WireRange, cluster string, n *memberlist.Node) error {
	if n.Name == self {
		return nil
	}
	md, err := decodeMeta(n.Meta)
	if err != nil {
		return nil //nolint:nilerr // not ringkv metadata: handled by observe
	}
	if w := wireOf(md); !w.valid() || !w.Overlaps(local) {
		return &IncompatibleError{Peer: n.Name, PeerWire: w, Local: local}
	}
	if cluster != "" && md.Cluster != "" && md.Cluster != cluster {
		return &ForeignClusterError{Peer: n.Name, PeerCluster: md.Cluster, Local: cluster}
	}
	return nil
}

// refusalReason is the reason label of peers_refused_total for err.
func refusalReason(err error) string {
	if errors.Is(err, ErrForeignCluster) {
		return "cluster"
	}
	return "wire"
}

// refusals limits the log line about a refused peer to one a minute per
// peer: memberlist hands every gossiped alive message to the delegate.
type refusals struct {
	mu   sync.Mutex
	last map[string]time.Time
}

func (r *refusals) allow(peer string, now time.Time) bool {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.last == nil {
		r.last = make(map[string]time.Time)
	}
	if now.Sub(r.last[peer]) < time.Minute {
		return false
	}
	r.last[peer] = now
	return true
}

// NotifyAlive refuses (memberlist ignores the message) a peer whose wire
// range does not overlap this node's, or that belongs to another cluster.
func (d *delegate) NotifyAlive(n *memberlist.Node) error {
	err := checkPeer(d.g.cfg.NodeID, d.g.cfg.Wire, d.g.ClusterID(), n)
	if err == nil {
		return nil
	}
	d.g.metrics.peersRefused.WithLabelValues(refusalReason(err)).Inc()
	if d.g.refused.allow(n.Name, time.Now()) {
		d.g.log.Error("refused a peer", "peer", n.Name, "err", err)
	}
	return err
}

// NotifyMerge cancels a join or push-pull (either side's) when any node of
// the other side speaks no wire version this node speaks or belongs to
// another cluster.
func (d *delegate) NotifyMerge(peers []*memberlist.Node) error {
	var errs []error
	cluster := d.g.ClusterID()
	for _, n := range peers {
		if err := checkPeer(d.g.cfg.NodeID, d.g.cfg.Wire, cluster, n); err != nil {
			d.g.metrics.peersRefused.WithLabelValues(refusalReason(err)).Inc()
			errs = append(errs, err)
		}
	}
	err := errors.Join(errs...)
	if err != nil {
		d.g.log.Error("refused to merge with the nodes of another cluster or wire protocol", "err", err)
	}
	return err
}
