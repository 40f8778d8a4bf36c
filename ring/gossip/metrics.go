package gossip

import (
	"fmt"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/ringkv/ringkv/internal/promreg"
)

// metrics are this package's Prometheus metrics (namespace ringkv,
// subsystem gossip).
type metrics struct {
	members     *prometheus.GaugeVec // by liveness, over Gossip.Members
	ringVersion prometheus.Gauge
	ringChanges prometheus.Counter // rings adopted after Open
	// peersRefused counts memberlist messages and merges refused, by
	// reason: wire (no common wire version), cluster (another cluster id).
	peersRefused *prometheus.CounterVec

	set *promreg.Set
}

func newMetrics(reg prometheus.Registerer) (*metrics, error) {
	m := &metrics{
		members: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Namespace: "ringkv", Subsystem: "gossip", Name: "members",
			Help: "Members known to this node (ring members and memberlist nodes) by liveness.",
		}, []string{"liveness"}),
		ringVersion: prometheus.NewGauge(prometheus.GaugeOpts{
			Namespace: "ringkv", Subsystem: "gossip", Name: "ring_version",
			Help: "Version of the ring this node has adopted.",
		}),
		ringChanges: prometheus.NewCounter(prometheus.CounterOpts{
			Namespace: "ringkv", Subsystem: "gossip", Name: "ring_changes_total",
			Help: "Rings adopted by this node, made locally or received.",
		}),
		peersRefused: prometheus.NewCounterVec(prometheus.CounterOpts{
			Namespace: "ringkv", Subsystem: "gossip", Name: "peers_refused_total",
			Help: "Gossip from peers refused (alive messages and merges), by reason: wire (no wire protocol version in common), cluster (another cluster id).",
		}, []string{"reason"}),
	}
	for _, r := range []string{"wire", "cluster"} {
		m.peersRefused.WithLabelValues(r)
	}
	set, err := promreg.Register(reg, m.members, m.ringVersion, m.ringChanges, m.peersRefused)
	if err != nil {
		return nil, fmt.Errorf("register gossip metrics: %w", err)
	}
	m.set = set
	return m, nil
}

func (m *metrics) setMembers(ms []MemberInfo) {
	counts := map[Liveness]int{Alive: 0, Suspect: 0, Dead: 0}
	for _, mi := range ms {
		counts[mi.Liveness]++
	}
	for l, n := range counts {
		m.members.WithLabelValues(l.String()).Set(float64(n))
	}
}

func (m *metrics) unregister() { m.set.Unregister() }
