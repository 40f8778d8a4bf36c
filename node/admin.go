package node

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"slices"
	"strings"
	"time"

	"github.com/hashicorp/raft"

	"github.com/ringkv/ringkv/ring"
	"github.com/ringkv/ringkv/ring/gossip"
)

// Cluster administration over HTTP, served by every node:
//
//	GET  /api/cluster/status         -> ClusterStatus
//	POST /api/cluster/leave?id=X     -> ChangeAnswer  (gossip.OpLeave)
//	POST /api/cluster/remove?id=X    -> ChangeAnswer  (gossip.OpRemove)
//	POST /api/cluster/admit?id=X     -> ChangeAnswer  (gossip.OpAdmit)
//	POST /api/cluster/split?partitions=N -> ChangeAnswer (gossip.OpSplit; split.go)
//	POST /api/cluster/repair[?partition=ID] -> RepairResult (repair.go)
//	POST /api/cluster/drain[?id=SELF][&timeout=D] -> DrainReport (drain.go)
//	POST /api/cluster/undrain[?id=SELF]   -> DrainReport (drain.go)
//
// A change is decided by gossip.Change against the newest ring of the
// cluster (a compare-and-set of the ring on a reserved linearizable key),
// whichever node receives it, and answered 200 only once it is in the ring
// that every later change builds on. A no-op (an admit of a Joined member)
// is answered 200 with "noop": true and says why. Leave and remove are
// refused with 409 when the ring after the change would give some
// partition a preference list of which fewer than a majority are alive (as
// this node's gossip sees them), or no members at all; that check runs
// against the ring the change is built on. Errors are JSON {"error":
// "..."}: 400 for a missing id, 404 for an id neither the ring nor
// memberlist knows, 405 for a wrong method, 409 for a change the member's
// status does not allow (the error names the status and ring version) or
// a refused one (a conflict also gives "member_status" and "ring_version"
// of the ring it was judged against), 503 while the node cannot decide ring changes yet or is
// closing, 504 when the change was not decided in time (the answer says
// whether it may still have been made).

// adminTimeout bounds one leave, remove or admit: it waits only for the
// gossip goroutine, which persists the ring before answering.
const adminTimeout = 10 * time.Second

// registerAdmin adds the /api/cluster/ routes to mux. They are more
// specific than the coordinator's /api/ and so take precedence.
func (n *Node) registerAdmin(mux *http.ServeMux) {
	mux.HandleFunc("/api/cluster/status", n.clusterStatus)
	mux.HandleFunc("/api/cluster/leave", n.clusterChange(gossip.OpLeave))
	mux.HandleFunc("/api/cluster/remove", n.clusterChange(gossip.OpRemove))
	mux.HandleFunc("/api/cluster/admit", n.clusterChange(gossip.OpAdmit))
	mux.HandleFunc("/api/cluster/split", n.clusterSplit)
	mux.HandleFunc("/api/cluster/repair", n.clusterRepair)
	mux.HandleFunc("/api/cluster/drain", n.clusterDrain)
	mux.HandleFunc("/api/cluster/undrain", n.clusterUndrain)
	mux.HandleFunc("/api/cluster/", func(w http.ResponseWriter, r *http.Request) {
		writeJSON(w, http.StatusNotFound, map[string]string{"error": "no such endpoint: " + r.URL.Path})
	})
}

// ClusterStatus is the body of GET /api/cluster/status: the ring and the
// Raft groups as this node sees them.
type ClusterStatus struct {
	NodeID string `json:"node_id"`
	// ClusterID names the cluster (drawn by its founder; "" for a cluster
	// founded before ids, or a node that has not learned it yet).
	ClusterID         string        `json:"cluster_id,omitempty"`
	RingVersion       uint64        `json:"ring_version"`
	PartitionCount    int           `json:"partition_count"`
	ReplicationFactor int           `json:"replication_factor"`
	Members           []MemberStats `json:"members"`
	// Partitions has one entry per partition of the ring, in index order.
	Partitions []PartitionStatus `json:"partitions"`
	// Converged is true when this node runs a group for every partition
	// the ring assigns it and each of those groups is Converged. Groups
	// of partitions the ring moved elsewhere are not counted: their
	// configuration stops being updated once they are removed from it.
	Converged bool `json:"converged"`
}

// PartitionStatus is one partition: its preference list and, if this node
// runs a group for it, the group's configuration as this node knows it
// (the leader's is authoritative).
type PartitionStatus struct {
	// Partition is the partition's id (ring.Ring.ID): its index until the
	// cluster's first split, P+index after.
	Partition  uint32   `json:"partition"`
	Preference []string `json:"preference"`
	// Hosted: this node runs a group for the partition. The fields
	// below are empty otherwise.
	Hosted    bool     `json:"hosted"`
	State     string   `json:"state,omitempty"`
	Leader    string   `json:"leader,omitempty"`
	Voters    []string `json:"voters,omitempty"`
	NonVoters []string `json:"non_voters,omitempty"`
	// Converged: hosted, the voters are the preference list (in any
	// order) and there are no non-voters.
	Converged bool `json:"converged"`
	// MerkleRoot is the root of this node's anti-entropy tree of the
	// partition, in hex; empty while the tree is being built. Replicas
	// holding the same records have the same root.
	MerkleRoot string `json:"merkle_root,omitempty"`
}

func (n *Node) clusterStatus(w http.ResponseWriter, r *http.Request) {
	if !allowMethod(w, r, http.MethodGet) {
		return
	}
	writeJSON(w, http.StatusOK, n.ClusterStatus())
}

// ClusterStatus reports the ring and, for every partition, its Raft
// group as this node knows it (GET /api/cluster/status).
func (n *Node) ClusterStatus() ClusterStatus {
	rg := n.gossip.Ring()
	st := ClusterStatus{
		NodeID:            n.cfg.ID,
		ClusterID:         n.gossip.ClusterID(),
		RingVersion:       rg.Version(),
		PartitionCount:    rg.Partitions(),
		ReplicationFactor: rg.ReplicationFactor(),
		Members:           n.memberStats(),
		Partitions:        make([]PartitionStatus, rg.Partitions()),
		Converged:         true,
	}
	for p, id := range rg.IDs() {
		ps := PartitionStatus{Partition: id, Preference: slices.Clone(rg.ReplicasOf(id))}
		if ps.Preference == nil {
			ps.Preference = []string{}
		}
		assigned := slices.Contains(ps.Preference, n.cfg.ID)
		if root, ok := n.trees.Root(id); ok {
			ps.MerkleRoot = fmt.Sprintf("%016x", root)
		}
		if g, ok := n.groups.Group(id); ok {
			ps.Hosted = true
			ps.State = g.Raft().State().String()
			ps.Leader = g.Leader()
			if f := g.Raft().GetConfiguration(); f.Error() == nil {
				ps.Voters, ps.NonVoters = splitSuffrage(f.Configuration().Servers)
			}
			ps.Converged = len(ps.NonVoters) == 0 && sameMembers(ps.Voters, ps.Preference)
		}
		if assigned && !ps.Converged {
			st.Converged = false
		}
		st.Partitions[p] = ps
	}
	return st
}

// splitSuffrage returns the ids of the voters and of everyone else.
func splitSuffrage(servers []raft.Server) (voters, others []string) {
	voters = []string{}
	for _, s := range servers {
		if s.Suffrage == raft.Voter {
			voters = append(voters, string(s.ID))
		} else {
			others = append(others, string(s.ID))
		}
	}
	return voters, others
}

// sameMembers reports whether a and b hold the same ids, in any order;
// neither has duplicates.
func sameMembers(a, b []string) bool {
	if len(a) != len(b) {
		return false
	}
	for _, id := range a {
		if !slices.Contains(b, id) {
			return false
		}
	}
	return true
}

func (n *Node) memberStats() []MemberStats {
	out := []MemberStats{}
	for _, m := range n.gossip.Members() {
		status := "none"
		if m.Status != 0 {
			status = m.Status.String()
		}
		out = append(out, MemberStats{
			ID: m.ID, Zone: m.Zone, RPCAddr: m.RPCAddr, HTTPAddr: m.HTTPAddr,
			Liveness: m.Liveness.String(), Status: status, RingVersion: m.RingVersion,
			Draining: m.Draining,
		})
	}
	return out
}

// ChangeAnswer is the body of a 200 answer to leave, remove or admit.
type ChangeAnswer struct {
	OK bool `json:"ok"`
	// RingVersion is the version the change made or, for a no-op, the
	// version it was judged against.
	RingVersion uint64 `json:"ring_version"`
	Noop        bool   `json:"noop,omitempty"`
	Detail      string `json:"detail,omitempty"`
	// Partitions is the ring's P after a split (POST /api/cluster/split).
	Partitions int `json:"partitions,omitempty"`
}

func (n *Node) clusterChange(op gossip.Op) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		if !allowMethod(w, r, http.MethodPost) {
			return
		}
		id := strings.TrimSpace(r.URL.Query().Get("id"))
		if id == "" {
			writeJSON(w, http.StatusBadRequest, map[string]string{"error": "missing ?id=MEMBER"})
			return
		}
		_, inRing := n.gossip.Ring().Member(id)
		if _, known := n.gossip.Member(id); !inRing && !known {
			writeJSON(w, http.StatusNotFound, map[string]string{"error": fmt.Sprintf("unknown member %q", id)})
			return
		}
		c := gossip.Change{Op: op, ID: id}
		if op != gossip.OpAdmit {
			c.Check = func(next *ring.Ring) error { return n.checkMajorities(id, op, next) }
		}
		ctx, cancel := context.WithTimeout(r.Context(), adminTimeout)
		defer cancel()
		res, err := n.gossip.Change(ctx, c)
		if err != nil {
			writeAdminError(w, err)
			return
		}
		if res.Noop {
			n.log.Info("ring change was a no-op", "op", op.String(), "peer", id, "ring_version", res.Version)
		} else {
			n.log.Info("ring changed by operator", "op", op.String(), "peer", id, "ring_version", res.Version)
		}
		writeJSON(w, http.StatusOK, ChangeAnswer{OK: true, RingVersion: res.Version, Noop: res.Noop, Detail: res.Detail})
	}
}

// errRefused marks a change refused by checkMajorities.
var errRefused = errors.New("refused")

// checkMajorities returns an error naming the partitions of next whose
// preference list has fewer than a majority of members alive, or saying
// that next has no members left.
func (n *Node) checkMajorities(id string, op gossip.Op, next *ring.Ring) error {
	if next.ActiveCount() == 0 {
		return fmt.Errorf("%w: %s %s: it is the last joined member", errRefused, op, id)
	}
	alive := func(m string) bool {
		if m == n.cfg.ID {
			return true
		}
		info, ok := n.gossip.Member(m)
		return ok && info.Liveness == gossip.Alive
	}
	bad := partitionsWithoutMajority(next, alive)
	if len(bad) == 0 {
		return nil
	}
	parts := make([]string, len(bad))
	for i, p := range bad {
		parts[i] = fmt.Sprint(p)
	}
	return fmt.Errorf("%w: %s %s: partitions [%s] would have fewer than a majority of their replicas alive",
		errRefused, op, id, strings.Join(parts, " "))
}

// partitionsWithoutMajority returns, in order, the ids of the partitions
// of r whose preference list has fewer than floor(len/2)+1 members for
// which alive is true (every partition with an empty list among them).
func partitionsWithoutMajority(r *ring.Ring, alive func(id string) bool) []uint32 {
	var bad []uint32
	for _, p := range r.IDs() {
		pref := r.ReplicasOf(p)
		live := 0
		for _, id := range pref {
			if alive(id) {
				live++
			}
		}
		if live < len(pref)/2+1 {
			bad = append(bad, p)
		}
	}
	return bad
}

// writeAdminError maps an error of a ring change to its HTTP status.
func writeAdminError(w http.ResponseWriter, err error) {
	code := http.StatusInternalServerError
	switch {
	case errors.Is(err, gossip.ErrConflict), errors.Is(err, gossip.ErrNotAlive), errors.Is(err, errRefused):
		code = http.StatusConflict
	case errors.Is(err, gossip.ErrClosed), errors.Is(err, gossip.ErrNotReady):
		code = http.StatusServiceUnavailable
	case errors.Is(err, gossip.ErrOutcomeUnknown), errors.Is(err, context.DeadlineExceeded), errors.Is(err, context.Canceled):
		code = http.StatusGatewayTimeout
	}
	body := map[string]any{"error": err.Error()}
	if ce, ok := errors.AsType[*gossip.ConflictError](err); ok {
		// The member's status, so that a caller retrying a change whose
		// first answer it lost can tell it was made.
		status := "none"
		if ce.Status != 0 {
			status = ce.Status.String()
		}
		body["member_status"], body["ring_version"] = status, ce.RingVersion
	}
	writeJSON(w, code, body)
}

// allowMethod answers 405 unless r uses method.
func allowMethod(w http.ResponseWriter, r *http.Request, method string) bool {
	if r.Method == method {
		return true
	}
	w.Header().Set("Allow", method)
	writeJSON(w, http.StatusMethodNotAllowed, map[string]string{"error": fmt.Sprintf("method %s not allowed", r.Method)})
	return false
}
