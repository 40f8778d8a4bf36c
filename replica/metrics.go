package replica

import (
	"fmt"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/ringkv/ringkv/internal/promreg"
)

// metrics are the store's Prometheus collectors, namespace ringkv, subsystem
// replica.
type metrics struct {
	mergesApplied  prometheus.Counter // merges_total{outcome="applied"}: the entry replaced (or created) the stored record
	mergesStale    prometheus.Counter // merges_total{outcome="stale"}: the stored record was newer or equal
	batchEntries   prometheus.Histogram
	commitDuration prometheus.Histogram
	syncDuration   prometheus.Histogram
	corrupt        prometheus.Counter
	corruptRemoved *prometheus.CounterVec
	diskBytes      prometheus.GaugeFunc
	// diskFull is 1 while admitted writes are refused (space.go).
	diskFull        prometheus.Gauge
	diskReserve     prometheus.Gauge
	diskFullEvents  prometheus.Counter
	diskFullRefused prometheus.Counter

	set        *promreg.Set
	registered []prometheus.Collector
}

func newMetrics(diskBytes func() float64) *metrics {
	const ns, sub = "ringkv", "replica"
	merges := prometheus.NewCounterVec(prometheus.CounterOpts{
		Namespace: ns, Subsystem: sub, Name: "merges_total",
		Help: "Entries merged, by outcome: applied (the entry became the stored record) or stale (the stored record was newer or equal).",
	}, []string{"outcome"})
	m := &metrics{
		mergesApplied: merges.WithLabelValues("applied"),
		mergesStale:   merges.WithLabelValues("stale"),
		batchEntries: prometheus.NewHistogram(prometheus.HistogramOpts{
			Namespace: ns, Subsystem: sub, Name: "commit_batch_entries",
			Help:    "Writes per committed Badger transaction (group commit size).",
			Buckets: prometheus.ExponentialBuckets(1, 2, 14), // 1 .. 8192
		}),
		commitDuration: prometheus.NewHistogram(prometheus.HistogramOpts{
			Namespace: ns, Subsystem: sub, Name: "commit_duration_seconds",
			Help:    "Time to commit one Badger transaction to the memtable and its write-ahead log (before the fsync).",
			Buckets: prometheus.ExponentialBuckets(50e-6, 2, 16), // 50µs .. 1.6s
		}),
		syncDuration: prometheus.NewHistogram(prometheus.HistogramOpts{
			Namespace: ns, Subsystem: sub, Name: "sync_duration_seconds",
			Help:    "Time to fsync the files holding committed writes; one sync answers every durable write committed before it began.",
			Buckets: prometheus.ExponentialBuckets(50e-6, 2, 16), // 50µs .. 1.6s
		}),
		corrupt: prometheus.NewCounter(prometheus.CounterOpts{
			Namespace: ns, Subsystem: sub, Name: "corrupt_records_total",
			Help: "Stored records found failing their checksum (by Get, Scan or Merge).",
		}),
		corruptRemoved: prometheus.NewCounterVec(prometheus.CounterOpts{
			Namespace: ns, Subsystem: sub, Name: "corrupt_records_removed_total",
			Help: "Corrupt stored records removed, each counted once: quarantined (deleted, so the key reads as missing) or overwritten (a merge replaced it).",
		}, []string{"how"}),
		diskBytes: prometheus.NewGaugeFunc(prometheus.GaugeOpts{
			Namespace: ns, Subsystem: sub, Name: "disk_bytes",
			Help: "Size of the Badger LSM tree and value log on disk, as last measured by Badger (about once a minute).",
		}, diskBytes),
		diskFull: prometheus.NewGauge(prometheus.GaugeOpts{
			Namespace: ns, Subsystem: sub, Name: "disk_full",
			Help: "1 while the store refuses writes because its data directory is (nearly) full or a write to it failed, else 0.",
		}),
		diskReserve: prometheus.NewGauge(prometheus.GaugeOpts{
			Namespace: ns, Subsystem: sub, Name: "disk_reserve_bytes",
			Help: "Free space the store keeps in its data directory: below it, writes are refused (the larger of --min-free-bytes and the tables' size plus three memtables).",
		}),
		diskFullEvents: prometheus.NewCounter(prometheus.CounterOpts{
			Namespace: ns, Subsystem: sub, Name: "disk_full_events_total",
			Help: "Times the store entered the disk-full state.",
		}),
		diskFullRefused: prometheus.NewCounter(prometheus.CounterOpts{
			Namespace: ns, Subsystem: sub, Name: "disk_full_refused_total",
			Help: "Writes refused with ErrDiskFull.",
		}),
	}
	// merges is registered as the vector; the curried counters are kept for speed.
	m.registered = []prometheus.Collector{merges, m.batchEntries, m.commitDuration, m.syncDuration, m.corrupt, m.corruptRemoved, m.diskBytes,
		m.diskFull, m.diskReserve, m.diskFullEvents, m.diskFullRefused}
	return m
}

// register registers every collector on reg (nil: none), all or none.
func (m *metrics) register(reg prometheus.Registerer) error {
	set, err := promreg.Register(reg, m.registered...)
	if err != nil {
		return fmt.Errorf("register metrics: %w", err)
	}
	m.set = set
	return nil
}

// unregister removes the collectors, so that a store reopened on the same
// registerer can register again.
func (m *metrics) unregister() { m.set.Unregister() }
