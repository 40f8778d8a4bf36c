package node

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"strings"
	"time"

	"github.com/ringkv/ringkv/consensus"
	"github.com/ringkv/ringkv/coordinator"
)

// Draining a node (Drain) takes it out of service without stopping it, in
// this order:
//
//  1. /ready answers 503 with "draining": true, and the node advertises
//     draining in its gossip metadata: other coordinators read from it
//     last, no leader hands it leadership, and clients (Topology) send
//     their requests elsewhere.
//  2. New client requests (Client service, HTTP data API) are refused
//     before anything is done (coordinator.ErrDraining: CLOSED, 503),
//     which the client library retries on another node.
//  3. Leadership of every Raft group it leads goes to another voter
//     (consensus.Manager.HandOff); while it drains, any group that elects
//     it again is handed on at the next reconcile tick.
//  4. Client requests already running finish (coordinator.WaitIdle).
//  5. Hints for live members are replayed (coordinator.FlushHints).
//  6. It waits until no client request was refused for drainQuiet, so
//     that clients have moved on before the caller stops the node.
//
// Peer traffic (replica writes and reads, raft, forwarded linearizable
// operations) is served throughout. Undrain, or a restart, ends it.

// drainQuiet is how long no client request may have been refused before
// Drain returns: clients that still sent to this node have learned to go
// elsewhere, so stopping it next cuts no request off.
const drainQuiet = 500 * time.Millisecond

// DrainReport says how far a Drain got.
type DrainReport struct {
	NodeID   string `json:"node_id"`
	Draining bool   `json:"draining"`
	// Done: every step finished in time.
	Done bool `json:"done"`
	// Leading lists the groups this node still leads: none after a
	// drain that is done, but for groups no other live voter could take
	// over.
	Leading []uint32 `json:"leading"`
	// InFlight is how many client requests are still running.
	InFlight int `json:"in_flight"`
	// Took is how long the Drain call ran.
	Took string `json:"took,omitempty"`
	// Error says which step did not finish in time.
	Error string `json:"error,omitempty"`
}

// Drain takes the node out of service (see above) and returns once every
// step is done, or when ctx ends. On time-out the error wraps ctx's error
// and names the steps left; the node stays draining either way. Safe for
// concurrent use: a second Drain goes through the steps again.
func (n *Node) Drain(ctx context.Context) (DrainReport, error) {
	start := time.Now()
	if !n.draining.Swap(true) {
		n.log.Info("draining")
	}
	// 1. Not ready, advertised.
	if err := n.gossip.SetDraining(true); err != nil {
		n.log.Debug("advertise draining", "err", err)
	}
	// 2. and 3.
	n.coord.StartDrain()
	n.groups.SetDraining(true)
	var errs []error
	switch err := n.groups.HandOff(ctx); {
	case errors.Is(err, consensus.ErrNoVoter):
		// A group with no other live voter (a one-node cluster, or
		// its other replicas down) has nobody to take over: stopping
		// this node stops it either way.
		n.log.Info("groups without another live voter keep this node as leader", "groups", len(n.groups.Leading()))
	case err != nil:
		errs = append(errs, fmt.Errorf("leadership: %w", err))
	}
	// 4.
	if err := n.coord.WaitIdle(ctx); err != nil && !errors.Is(err, coordinator.ErrNotDraining) {
		errs = append(errs, fmt.Errorf("in-flight requests: %w", err))
	}
	// 5.
	if err := n.coord.FlushHints(ctx); err != nil {
		errs = append(errs, fmt.Errorf("hints: %w", err))
	}
	// 6.
	if err := n.waitQuiet(ctx); err != nil {
		errs = append(errs, fmt.Errorf("refusals: %w", err))
	}
	rep := n.DrainReport()
	rep.Took = time.Since(start).Round(time.Millisecond).String()
	err := errors.Join(errs...)
	if err != nil {
		rep.Error = err.Error()
		n.log.Warn("drain not finished", "leading", len(rep.Leading), "in_flight", rep.InFlight, "took", rep.Took, "err", err)
		return rep, fmt.Errorf("node: drain: %w", err)
	}
	rep.Done = true
	n.log.Info("drained", "took", rep.Took)
	return rep, nil
}

// waitQuiet waits until no client request was refused for drainQuiet.
func (n *Node) waitQuiet(ctx context.Context) error {
	tick := time.NewTicker(drainQuiet / 5)
	defer tick.Stop()
	for {
		if time.Since(n.coord.LastRefused()) >= drainQuiet {
			return nil
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("clients still sending: %w", ctx.Err())
		case <-tick.C:
		}
	}
}

// Undrain ends a drain: the node takes client requests again, may lead
// groups again (leaders hand primaries' groups back within a reconcile
// interval or so) and is ready once every group has a leader.
func (n *Node) Undrain() {
	if !n.draining.Swap(false) {
		return
	}
	n.coord.Undrain()
	if n.DiskUnhealthy() {
		n.log.Info("drain ended; the disk is still unhealthy, so leadership stays away")
		return
	}
	n.groups.SetDraining(false)
	if err := n.gossip.SetDraining(false); err != nil {
		n.log.Debug("advertise end of drain", "err", err)
	}
	n.log.Info("drain ended")
}

// Draining reports whether the node drains (Drain called, Undrain not).
func (n *Node) Draining() bool { return n.draining.Load() }

// DrainReport reports the node's drain state now.
func (n *Node) DrainReport() DrainReport {
	leading := n.groups.Leading()
	if leading == nil {
		leading = []uint32{}
	}
	return DrainReport{NodeID: n.cfg.ID, Draining: n.Draining(), Leading: leading, InFlight: n.coord.InFlight()}
}

// drainTimeoutDefault bounds a drain asked for over HTTP without ?timeout=.
const drainTimeoutDefault = 30 * time.Second

// clusterDrain serves POST /api/cluster/drain[?id=SELF][&timeout=30s]:
// drains this node and answers its DrainReport (200 when done, 504 when
// the timeout passed first; the node stays draining either way).
func (n *Node) clusterDrain(w http.ResponseWriter, r *http.Request) {
	if !allowMethod(w, r, http.MethodPost) || !n.isSelf(w, r) {
		return
	}
	timeout := drainTimeoutDefault
	if s := r.URL.Query().Get("timeout"); s != "" {
		d, err := time.ParseDuration(s)
		if err != nil || d <= 0 {
			writeJSON(w, http.StatusBadRequest, map[string]string{"error": fmt.Sprintf("timeout %q: want a positive Go duration such as 30s", s)})
			return
		}
		timeout = d
	}
	// Not the request's context alone: a client that gives up does not
	// stop the drain half-way (the node drains anyway), but its steps are
	// bounded.
	ctx, cancel := context.WithTimeout(context.WithoutCancel(r.Context()), timeout)
	defer cancel()
	rep, err := n.Drain(ctx)
	code := http.StatusOK
	if err != nil {
		code = http.StatusGatewayTimeout
	}
	writeJSON(w, code, rep)
}

// clusterUndrain serves POST /api/cluster/undrain[?id=SELF].
func (n *Node) clusterUndrain(w http.ResponseWriter, r *http.Request) {
	if !allowMethod(w, r, http.MethodPost) || !n.isSelf(w, r) {
		return
	}
	n.Undrain()
	writeJSON(w, http.StatusOK, n.DrainReport())
}

// isSelf answers 409 unless ?id= is empty or this node's id: drain acts on
// the node that receives it, and the CLI sends it to the right one.
func (n *Node) isSelf(w http.ResponseWriter, r *http.Request) bool {
	id := strings.TrimSpace(r.URL.Query().Get("id"))
	if id == "" || id == n.cfg.ID {
		return true
	}
	writeJSON(w, http.StatusConflict, map[string]string{"error": fmt.Sprintf("this is node %s, not %s: send drain to the node itself (ringkv cluster drain finds it)", n.cfg.ID, id)})
	return false
}
