package node

import (
	"encoding/json"
	"net/http"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"

	"github.com/ringkv/ringkv/coordinator"
	"github.com/ringkv/ringkv/ring"
)

func (n *Node) httpHandler(g prometheus.Gatherer) http.Handler {
	mux := http.NewServeMux()
	mux.Handle("/api/", coordinator.HTTPHandler(n.coord))
	mux.HandleFunc("GET /health", n.health)
	mux.HandleFunc("GET /api/stats", n.stats)
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
	// Partitions lists the partitions this node replicates.
	Partitions []uint32 `json:"partitions"`
}

// MemberStats is one member as this node sees it.
type MemberStats struct {
	ID       string `json:"id"`
	Zone     string `json:"zone,omitempty"`
	RPCAddr  string `json:"rpc_addr,omitempty"`
	HTTPAddr string `json:"http_addr,omitempty"`
	Liveness string `json:"liveness"`
	Status   string `json:"status"`
}

func (n *Node) stats(w http.ResponseWriter, _ *http.Request) {
	r := n.gossip.Ring()
	s := Stats{
		NodeID:            n.cfg.ID,
		RingVersion:       r.Version(),
		PartitionCount:    r.Partitions(),
		ReplicationFactor: r.ReplicationFactor(),
		Partitions:        r.PartitionsOf(n.cfg.ID),
		Members:           []MemberStats{},
	}
	if s.Partitions == nil {
		s.Partitions = []uint32{}
	}
	for _, m := range n.gossip.Members() {
		status := "none"
		if m.Status != 0 {
			status = m.Status.String()
		}
		s.Members = append(s.Members, MemberStats{
			ID: m.ID, Zone: m.Zone, RPCAddr: m.RPCAddr, HTTPAddr: m.HTTPAddr,
			Liveness: m.Liveness.String(), Status: status,
		})
	}
	writeJSON(w, http.StatusOK, s)
}

func writeJSON(w http.ResponseWriter, code int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(code)
	_ = json.NewEncoder(w).Encode(v) // the client may have gone; nothing to do
}
