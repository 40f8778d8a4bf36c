package node

import (
	"context"
	"fmt"
	"net/http"
	"strconv"
	"strings"

	"github.com/ringkv/ringkv/consensus"
	"github.com/ringkv/ringkv/ring"
	"github.com/ringkv/ringkv/ring/gossip"
)

// POST /api/cluster/split?partitions=N -> ChangeAnswer (gossip.OpSplit)
//
// doubles the ring's partitions to N, which must be twice the ring's P
// (docs/ARCHITECTURE.md, "Partition split"). The split is decided on the
// ring register like any ring change; every Raft group then splits in
// its own log, and anti-entropy builds the children's trees, by
// themselves. It is idempotent: N at or below the ring's P answers 200
// with "noop": true, so a caller that lost an answer asks again. Refused
// with 400 for an N that is not twice P, and 409 while some member does
// not speak wire version consensus.SplitWireVersion, or while this node
// still runs a group of an earlier level that has not split (the
// previous split is still under way here).

// clusterSplit serves POST /api/cluster/split.
func (n *Node) clusterSplit(w http.ResponseWriter, r *http.Request) {
	if !allowMethod(w, r, http.MethodPost) {
		return
	}
	cur := n.gossip.Ring()
	to, err := strconv.Atoi(strings.TrimSpace(r.URL.Query().Get("partitions")))
	if err != nil || to < 1 {
		writeJSON(w, http.StatusBadRequest, map[string]string{"error": fmt.Sprintf("want ?partitions=N, twice the ring's %d", cur.Partitions())})
		return
	}
	if to <= cur.Partitions() {
		writeJSON(w, http.StatusOK, ChangeAnswer{OK: true, RingVersion: cur.Version(), Noop: true, Partitions: cur.Partitions(),
			Detail: fmt.Sprintf("the ring already has %d partitions (ring version %d)", cur.Partitions(), cur.Version())})
		return
	}
	if to != 2*cur.Partitions() {
		writeJSON(w, http.StatusBadRequest, map[string]string{"error": fmt.Sprintf("a split doubles the ring's %d partitions: want ?partitions=%d, got %d", cur.Partitions(), 2*cur.Partitions(), to)})
		return
	}
	if err := n.splitReady(); err != nil {
		writeAdminError(w, err)
		return
	}
	c := gossip.Change{Op: gossip.OpSplit, Check: func(next *ring.Ring) error {
		if next.Partitions() != to {
			return fmt.Errorf("%w: the ring has %d partitions now, a split makes %d, not %d", errRefused, next.Partitions()/2, next.Partitions(), to)
		}
		return nil
	}}
	ctx, cancel := context.WithTimeout(r.Context(), adminTimeout)
	defer cancel()
	res, err := n.gossip.Change(ctx, c)
	if err != nil {
		writeAdminError(w, err)
		return
	}
	n.log.Info("ring split by operator", "partitions", to, "ring_version", res.Version)
	writeJSON(w, http.StatusOK, ChangeAnswer{OK: true, RingVersion: res.Version, Partitions: to})
}

// splitReady refuses a split (errRefused) unless every member speaks
// consensus.SplitWireVersion and every group of an earlier level this
// node runs has split, with its children started here.
func (n *Node) splitReady() error {
	members := membership{g: n.gossip}
	if !members.SpeaksWire(consensus.SplitWireVersion) {
		return fmt.Errorf("%w: a split needs every member at wire version %d (a rolling upgrade is under way, or a member's metadata is unknown)", errRefused, consensus.SplitWireVersion)
	}
	r := n.gossip.Ring()
	var pending []string
	for _, g := range n.groups.Groups() {
		lvl := r.LevelOf(g.ID())
		if lvl == 0 || lvl >= r.Partitions() {
			continue
		}
		if _, split := g.Split(); !split {
			pending = append(pending, strconv.FormatUint(uint64(g.ID()), 10))
		}
	}
	for _, id := range r.IDsOf(n.cfg.ID) {
		if _, ok := n.groups.Group(id); !ok {
			pending = append(pending, "child "+strconv.FormatUint(uint64(id), 10)+" not started")
		}
	}
	if len(pending) > 0 {
		return fmt.Errorf("%w: the previous split is under way on %s: %s", errRefused, n.cfg.ID, strings.Join(pending[:min(len(pending), 8)], ", "))
	}
	return nil
}
