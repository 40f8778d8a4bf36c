package raftwal

import (
	"fmt"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/ringkv/ringkv/internal/promreg"
)

// metrics are the WAL's Prometheus collectors, namespace ringkv,
// subsystem raftwal.
type metrics struct {
	syncDuration prometheus.Histogram
	syncAppends  prometheus.Histogram
	written      prometheus.Counter
	moved        prometheus.Counter
	segments     prometheus.GaugeFunc

	set *promreg.Set
}

func newMetrics(segments func() float64) *metrics {
	const ns, sub = "ringkv", "raftwal"
	return &metrics{
		syncDuration: prometheus.NewHistogram(prometheus.HistogramOpts{
			Namespace: ns, Subsystem: sub, Name: "sync_duration_seconds",
			Help:    "Time to fdatasync the Raft WAL's active segment; one sync answers every append of every group written before it began.",
			Buckets: prometheus.ExponentialBuckets(50e-6, 2, 16), // 50µs .. 1.6s
		}),
		syncAppends: prometheus.NewHistogram(prometheus.HistogramOpts{
			Namespace: ns, Subsystem: sub, Name: "sync_batch_appends",
			Help:    "Appends (and truncations) answered by one fdatasync of the Raft WAL (group commit size).",
			Buckets: prometheus.ExponentialBuckets(1, 2, 12), // 1 .. 2048
		}),
		written: prometheus.NewCounter(prometheus.CounterOpts{
			Namespace: ns, Subsystem: sub, Name: "written_bytes_total",
			Help: "Bytes written to the Raft WAL's segments (entries, moved entries, truncations).",
		}),
		moved: prometheus.NewCounter(prometheus.CounterOpts{
			Namespace: ns, Subsystem: sub, Name: "moved_entries_total",
			Help: "Live entries copied out of old segments so that those can be deleted (idle groups' trailing entries).",
		}),
		segments: prometheus.NewGaugeFunc(prometheus.GaugeOpts{
			Namespace: ns, Subsystem: sub, Name: "segments",
			Help: "Segment files of the Raft WAL.",
		}, segments),
	}
}

func (m *metrics) collectors() []prometheus.Collector {
	return []prometheus.Collector{m.syncDuration, m.syncAppends, m.written, m.moved, m.segments}
}

// register registers the collectors on reg (nil: none), all or none.
func (m *metrics) register(reg prometheus.Registerer) error {
	set, err := promreg.Register(reg, m.collectors()...)
	if err != nil {
		return fmt.Errorf("raftwal: register metrics: %w", err)
	}
	m.set = set
	return nil
}

// unregister removes the collectors, so that a WAL reopened on the same
// registerer can register again.
func (m *metrics) unregister() { m.set.Unregister() }
