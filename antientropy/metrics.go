package antientropy

import (
	"fmt"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/ringkv/ringkv/internal/promreg"
)

// metrics are the Service's collectors: namespace ringkv, subsystem
// antientropy.
type metrics struct {
	exchanges     *prometheus.CounterVec // result: equal, repaired, failed
	differing     prometheus.Counter
	repaired      *prometheus.CounterVec // direction: pulled, pushed
	bytes         prometheus.Counter
	lastFull      *prometheus.GaugeVec // partition
	rebuilds      prometheus.Counter
	scrubbed      prometheus.Counter
	scrubCorrupt  prometheus.Counter
	scrubRepaired prometheus.Counter
	scrubPasses   prometheus.Counter
	collected     prometheus.Counter
	refused       prometheus.Counter

	set *promreg.Set
}

func newMetrics(reg prometheus.Registerer) (*metrics, error) {
	const ns, sub = "ringkv", "antientropy"
	counter := func(name, help string) prometheus.Counter {
		return prometheus.NewCounter(prometheus.CounterOpts{Namespace: ns, Subsystem: sub, Name: name, Help: help})
	}
	m := &metrics{
		exchanges: prometheus.NewCounterVec(prometheus.CounterOpts{Namespace: ns, Subsystem: sub, Name: "exchanges_total",
			Help: "Tree exchanges this node initiated, by result: equal (no difference), repaired, failed."}, []string{"result"}),
		differing: counter("buckets_differing_total", "Leaf buckets found differing by exchanges this node initiated."),
		repaired: prometheus.NewCounterVec(prometheus.CounterOpts{Namespace: ns, Subsystem: sub, Name: "keys_repaired_total",
			Help: "Records moved by exchanges this node initiated: pulled (merged here) or pushed (merged on the peer)."}, []string{"direction"}),
		bytes: counter("exchange_bytes_total", "Bytes of tree hashes and records sent and received by exchanges this node initiated (protobuf sizes)."),
		lastFull: prometheus.NewGaugeVec(prometheus.GaugeOpts{Namespace: ns, Subsystem: sub, Name: "last_full_repair_timestamp_seconds",
			Help: "When this node last exchanged the partition (label: its id) successfully with every other replica (Unix seconds)."}, []string{"partition"}),
		rebuilds:      counter("tree_rebuilds_total", "Partition trees built from disk (at start and after corruption)."),
		scrubbed:      counter("scrub_records_total", "Stored records the scrubber re-read and verified."),
		scrubCorrupt:  counter("scrub_corrupt_total", "Corrupt records the scrubber found and quarantined (each counted once)."),
		scrubRepaired: counter("scrub_repaired_total", "Quarantined records repaired from another replica."),
		scrubPasses:   counter("scrub_passes_total", "Complete scrubber passes over every partition."),
		collected:     counter("tombstones_collected_total", "Tombstones removed after their grace period, once every replica was confirmed to hold them."),
		refused:       counter("requests_refused_total", "Tree and fetch requests refused for a partition this node does not replicate."),
	}
	set, err := promreg.Register(reg, m.exchanges, m.differing, m.repaired, m.bytes, m.lastFull, m.rebuilds,
		m.scrubbed, m.scrubCorrupt, m.scrubRepaired, m.scrubPasses, m.collected, m.refused)
	if err != nil {
		return nil, fmt.Errorf("register antientropy metrics: %w", err)
	}
	m.set = set
	return m, nil
}

func (m *metrics) unregister() { m.set.Unregister() }
