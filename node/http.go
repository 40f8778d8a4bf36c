package node

import (
	"encoding/json"
	"net/http"
	"strconv"
	"time"

	"github.com/hashicorp/raft"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"

	"github.com/ringkv/ringkv/coordinator"
	"github.com/ringkv/ringkv/ring"
)

func (n *Node) httpHandler(g prometheus.Gatherer) http.Handler {
	mux := http.NewServeMux()
	mux.Handle("/api/", coordinator.HTTPHandler(n.coord))
	// Cluster administration (admin.go): /api/cluster/...
	n.registerAdmin(mux)
	// Users, roles and login (authhttp.go): /api/auth/...
	n.registerAuth(mux)
	if n.cfg.ChaosHooks {
		mux.HandleFunc("POST /chaos/clock-offset", n.chaosClockOffset)
		mux.HandleFunc("POST /chaos/disk", n.chaosDisk)
	}
	mux.HandleFunc("GET /health", n.health)
	mux.HandleFunc("GET /api/stats", n.stats)
	mux.HandleFunc("GET /ready", n.ready)
	mux.Handle("GET /metrics", promhttp.HandlerFor(g, promhttp.HandlerOpts{}))
	mux.HandleFunc("/", func(w http.ResponseWriter, r *http.Request) {
		writeJSON(w, http.StatusNotFound, map[string]string{"error": "no such endpoint: " + r.URL.Path})
	})
	return mux
}

// Health is the body of GET /health.
type Health struct {
	NodeID string `json:"node_id"`
	// Status is "ok" once the node is a joined member of the ring,
	// "joining" before.
	Status      string `json:"status"`
	RingVersion uint64 `json:"ring_version"`
}

func (n *Node) health(w http.ResponseWriter, _ *http.Request) {
	r := n.gossip.Ring()
	status := "joining"
	if m, ok := r.Member(n.cfg.ID); ok && m.Status == ring.Joined {
		status = "ok"
	}
	writeJSON(w, http.StatusOK, Health{NodeID: n.cfg.ID, Status: status, RingVersion: r.Version()})
}

// Stats is the body of GET /api/stats.
type Stats struct {
	NodeID            string        `json:"node_id"`
	RingVersion       uint64        `json:"ring_version"`
	PartitionCount    int           `json:"partition_count"`
	ReplicationFactor int           `json:"replication_factor"`
	Members           []MemberStats `json:"members"`
	// Partitions lists the ids of the partitions this node replicates
	// (ring.Ring.IDsOf), ascending.
	Partitions []uint32 `json:"partitions"`
	// Groups lists this node's Raft groups.
	Groups []GroupStats `json:"groups"`
}

// GroupStats is one Raft group as this node sees it.
type GroupStats struct {
	Partition         uint32 `json:"partition"`
	State             string `json:"state"`
	Leader            string `json:"leader"`
	Term              uint64 `json:"term"`
	CommitIndex       uint64 `json:"commit_index"`
	AppliedIndex      uint64 `json:"applied_index"`
	LastSnapshotIndex uint64 `json:"last_snapshot_index"`
	// LogEntries is how many entries the group's raft log holds here.
	LogEntries uint64   `json:"log_entries"`
	Voters     []string `json:"voters"`
	NonVoters  []string `json:"non_voters,omitempty"`
}

func (n *Node) groupStats() []GroupStats {
	out := []GroupStats{}
	for _, g := range n.groups.Groups() {
		r := g.Raft()
		gs := GroupStats{
			Partition: g.ID(), State: r.State().String(), Leader: g.Leader(), Term: r.CurrentTerm(),
			CommitIndex: r.CommitIndex(), AppliedIndex: r.AppliedIndex(), Voters: []string{},
		}
		if v, err := strconv.ParseUint(r.Stats()["last_snapshot_index"], 10, 64); err == nil {
			gs.LastSnapshotIndex = v
		}
		if first, last, err := g.LogBounds(); err == nil && last >= first && last > 0 {
			gs.LogEntries = last - first + 1
		}
		if f := r.GetConfiguration(); f.Error() == nil {
			for _, s := range f.Configuration().Servers {
				if s.Suffrage == raft.Voter {
					gs.Voters = append(gs.Voters, string(s.ID))
				} else {
					gs.NonVoters = append(gs.NonVoters, string(s.ID))
				}
			}
		}
		out = append(out, gs)
	}
	return out
}

// Ready reports whether this node has joined the ring, runs a group for
// every partition the ring assigns it, knows every group's leader and does
// not drain, and its disk is healthy (disk.go); waiting lists the groups
// without a known leader.
func (n *Node) Ready() (ready, joined bool, groups int, waiting []uint32) {
	ready, joined, groups, waiting = n.readiness()
	return ready && !n.Draining() && !n.DiskUnhealthy(), joined, groups, waiting
}

// readyIgnoringDrain is Ready without the drain: whether the node could
// serve.
func (n *Node) readyIgnoringDrain() bool {
	ready, _, _, _ := n.readiness()
	return ready
}

// readiness is Ready, draining or not.
func (n *Node) readiness() (ready, joined bool, groups int, waiting []uint32) {
	waiting = []uint32{}
	all := n.groups.Groups()
	for _, g := range all {
		if g.Leader() == "" {
			waiting = append(waiting, g.ID())
		}
	}
	r := n.gossip.Ring()
	if m, ok := r.Member(n.cfg.ID); ok && m.Status == ring.Joined {
		joined = true
	}
	ready = len(waiting) == 0 && joined && len(all) >= len(r.PartitionsOf(n.cfg.ID))
	return ready, joined, len(all), waiting
}

// ready answers 200 when Ready, 503 with the groups still waiting (or
// "draining": true) otherwise.
func (n *Node) ready(w http.ResponseWriter, _ *http.Request) {
	ready, joined, groups, waiting := n.Ready()
	code := http.StatusOK
	if !ready {
		code = http.StatusServiceUnavailable
	}
	writeJSON(w, code, map[string]any{"ready": ready, "joined": joined, "groups": groups, "groups_without_leader": waiting,
		"draining": n.Draining(), "disk": n.diskHealth()})
}

// MemberStats is one member as this node sees it.
type MemberStats struct {
	ID       string `json:"id"`
	Zone     string `json:"zone,omitempty"`
	RPCAddr  string `json:"rpc_addr,omitempty"`
	HTTPAddr string `json:"http_addr,omitempty"`
	Liveness string `json:"liveness"`
	Status   string `json:"status"`
	// RingVersion is the version of the ring the member holds, as it
	// advertises it by gossip (exact for the node answering); 0 if
	// unknown.
	RingVersion uint64 `json:"ring_version,omitempty"`
	// Draining: the member advertises that it drains (ringkv cluster
	// drain, or a SIGTERM).
	Draining bool `json:"draining,omitempty"`
}

func (n *Node) stats(w http.ResponseWriter, _ *http.Request) {
	r := n.gossip.Ring()
	s := Stats{
		NodeID:            n.cfg.ID,
		RingVersion:       r.Version(),
		PartitionCount:    r.Partitions(),
		ReplicationFactor: r.ReplicationFactor(),
		Partitions:        r.IDsOf(n.cfg.ID),
		Members:           n.memberStats(),
		Groups:            n.groupStats(),
	}
	if s.Partitions == nil {
		s.Partitions = []uint32{}
	}
	writeJSON(w, http.StatusOK, s)
}

func writeJSON(w http.ResponseWriter, code int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(code)
	_ = json.NewEncoder(w).Encode(v) // the client may have gone; nothing to do
}

// chaosClockOffset sets the offset added to this node's physical clock
// (test-only, Config.ChaosHooks): POST /chaos/clock-offset?offset=1.5s
// (a Go duration, negative allowed; 0 removes the skew).
func (n *Node) chaosClockOffset(w http.ResponseWriter, r *http.Request) {
	d, err := time.ParseDuration(r.URL.Query().Get("offset"))
	if err != nil {
		writeJSON(w, http.StatusBadRequest, map[string]string{"error": "offset: " + err.Error()})
		return
	}
	n.clockOffset.Store(int64(d))
	n.log.Warn("chaos: clock offset set", "offset", d)
	writeJSON(w, http.StatusOK, map[string]string{"offset": d.String()})
}
