package gossip

import (
	"github.com/hashicorp/memberlist"

	"github.com/ringkv/ringkv/ring"
)

// msgRing is the first byte of a user message (and of push-pull state) that
// carries an encoded ring.
const msgRing byte = 1

// delegate implements memberlist.Delegate and memberlist.EventDelegate for
// a Gossip. memberlist calls it from its own goroutines, the event methods
// while holding its node lock: methods copy their input, never block and
// never call back into memberlist.
type delegate struct {
	g *Gossip
}

var (
	_ memberlist.Delegate      = (*delegate)(nil)
	_ memberlist.EventDelegate = (*delegate)(nil)
)

// NodeMeta returns this node's encoded metadata (validated at Open to fit).
func (d *delegate) NodeMeta(limit int) []byte {
	b := *d.g.meta.Load()
	if len(b) > limit {
		return nil
	}
	return b
}

// NotifyMsg receives rings pushed with SendReliable.
func (d *delegate) NotifyMsg(b []byte) { d.receive(b, "push") }

// GetBroadcasts returns nothing: rings travel by SendReliable and push-pull.
func (d *delegate) GetBroadcasts(overhead, limit int) [][]byte { return nil }

// LocalState returns the current ring for push-pull.
func (d *delegate) LocalState(join bool) []byte {
	return d.g.snap.Load().msg
}

// MergeRemoteState receives the remote ring from push-pull.
func (d *delegate) MergeRemoteState(buf []byte, join bool) { d.receive(buf, "push_pull") }

// receive decodes a ring message and hands it to the run goroutine.
func (d *delegate) receive(b []byte, via string) {
	if len(b) == 0 || b[0] != msgRing {
		return
	}
	// ring.Decode must not keep b: memberlist reuses it after we return.
	r, err := ring.Decode(append([]byte(nil), b[1:]...))
	if err != nil {
		d.g.log.Warn("drop undecodable ring", "via", via, "err", err)
		return
	}
	d.g.offer(r)
}

// NotifyJoin records an alive node.
func (d *delegate) NotifyJoin(n *memberlist.Node) { d.g.observe(n, Alive) }

// NotifyUpdate records an alive node's new metadata.
func (d *delegate) NotifyUpdate(n *memberlist.Node) { d.g.observe(n, Alive) }

// NotifyLeave records a node memberlist declared dead or left.
func (d *delegate) NotifyLeave(n *memberlist.Node) { d.g.observe(n, Dead) }
