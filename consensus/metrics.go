package consensus

import (
	"fmt"
	"strconv"
	"time"

	"github.com/hashicorp/raft"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/ringkv/ringkv/internal/promreg"
)

type metrics struct {
	opDuration       *prometheus.HistogramVec
	readRounds       prometheus.Counter
	leaderChanges    *prometheus.CounterVec
	snapshotDuration prometheus.Histogram
	snapshotBytes    prometheus.Histogram
	snapshotInstalls prometheus.Counter
	drainTransfers   prometheus.Counter
	groupRestarts    *prometheus.CounterVec
	proposalsRefused prometheus.Counter
	// settled counts proposals whose leader stepped down before they
	// committed and whose fate settleLost learned from the log.
	settled       prometheus.Counter
	splitsApplied *prometheus.CounterVec
}

func newMetrics(reg prometheus.Registerer, groups func() []*Group) (*metrics, error) {
	if reg == nil {
		reg = prometheus.NewRegistry()
	}
	m := &metrics{
		opDuration: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Namespace: "ringkv", Subsystem: "consensus", Name: "op_duration_seconds",
			Help:    "Linearizable operations on group leaders, from latch to apply.",
			Buckets: prometheus.ExponentialBuckets(0.0001, 2, 17),
		}, []string{"op"}),
		readRounds: prometheus.NewCounter(prometheus.CounterOpts{
			Namespace: "ringkv", Subsystem: "consensus", Name: "read_index_rounds_total",
			Help: "Leadership confirmations (heartbeat rounds) made for read-index reads; reads share them.",
		}),
		leaderChanges: prometheus.NewCounterVec(prometheus.CounterOpts{
			Namespace: "ringkv", Subsystem: "consensus", Name: "leader_changes_total",
			Help: "Times this node observed a new leader for a group.",
		}, []string{"group_id"}),
		snapshotDuration: prometheus.NewHistogram(prometheus.HistogramOpts{
			Namespace: "ringkv", Subsystem: "consensus", Name: "snapshot_duration_seconds",
			Help:    "Time to persist a group snapshot.",
			Buckets: prometheus.ExponentialBuckets(0.001, 2, 16),
		}),
		snapshotBytes: prometheus.NewHistogram(prometheus.HistogramOpts{
			Namespace: "ringkv", Subsystem: "consensus", Name: "snapshot_size_bytes",
			Help:    "Size of persisted group snapshots.",
			Buckets: prometheus.ExponentialBuckets(1024, 4, 12),
		}),
		snapshotInstalls: prometheus.NewCounter(prometheus.CounterOpts{
			Namespace: "ringkv", Subsystem: "consensus", Name: "snapshot_restores_total",
			Help: "Snapshots restored into this node's groups (InstallSnapshot from a leader, or at start).",
		}),
		drainTransfers: prometheus.NewCounter(prometheus.CounterOpts{
			Namespace: "ringkv", Subsystem: "consensus", Name: "drain_leadership_transfers_total",
			Help: "Leadership transfers this node made because it drains.",
		}),
		groupRestarts: prometheus.NewCounterVec(prometheus.CounterOpts{
			Namespace: "ringkv", Subsystem: "consensus", Name: "group_restarts_total",
			Help: "Raft groups this node's watchdog restarted, by reason (leadership_transfer_stuck: the group's leader refused every write for StuckLeaderTimeout, hashicorp/raft#696).",
		}, []string{"reason"}),
	}
	m.proposalsRefused = prometheus.NewCounter(prometheus.CounterOpts{
		Namespace: "ringkv", Subsystem: "consensus", Name: "proposals_refused_total",
		Help: "Writes refused at once because their group had MaxPendingProposals proposals queued (ErrOverloaded).",
	})
	m.settled = prometheus.NewCounter(prometheus.CounterOpts{
		Namespace: "ringkv", Subsystem: "consensus", Name: "lost_proposals_settled_total",
		Help: "Writes whose leader stepped down before they committed (leadership lost) answered with their real outcome, read from the log once this node applied their index, instead of an unknown outcome.",
	})
	m.splitsApplied = prometheus.NewCounterVec(prometheus.CounterOpts{
		Namespace: "ringkv", Subsystem: "consensus", Name: "splits_applied_total",
		Help: "Partition splits this node's groups applied, by how they learned of it (log: the split entry; snapshot: a parent snapshot's split trailer).",
	}, []string{"via"})
	m.groupRestarts.WithLabelValues(restartTransferStuck) // the series exists at 0, for alerts
	if _, err := promreg.Register(reg, m.opDuration, m.readRounds, m.leaderChanges, m.snapshotDuration, m.snapshotBytes, m.snapshotInstalls, m.drainTransfers, m.groupRestarts, m.proposalsRefused, m.settled, m.splitsApplied, groupCollector{groups}); err != nil {
		return nil, fmt.Errorf("register consensus metrics: %w", err)
	}
	return m, nil
}

func (m *metrics) observe(op string, start time.Time) {
	m.opDuration.WithLabelValues(op).Observe(time.Since(start).Seconds())
}

// groupCollector reports per-group raft state at scrape time.
type groupCollector struct{ groups func() []*Group }

var (
	descState   = prometheus.NewDesc("ringkv_consensus_state", "Raft state of the group on this node (0 follower, 1 candidate, 2 leader, 3 shutdown).", []string{"group_id"}, nil)
	descTerm    = prometheus.NewDesc("ringkv_consensus_term", "Current Raft term of the group.", []string{"group_id"}, nil)
	descCommit  = prometheus.NewDesc("ringkv_consensus_commit_index", "Commit index of the group on this node.", []string{"group_id"}, nil)
	descApplied = prometheus.NewDesc("ringkv_consensus_applied_index", "Applied index of the group on this node.", []string{"group_id"}, nil)
	descLag     = prometheus.NewDesc("ringkv_consensus_log_lag_entries", "Entries committed but not yet applied on this node (a follower's log lag).", []string{"group_id"}, nil)
)

func (c groupCollector) Describe(ch chan<- *prometheus.Desc) {
	for _, d := range []*prometheus.Desc{descState, descTerm, descCommit, descApplied, descLag} {
		ch <- d
	}
}

func (c groupCollector) Collect(ch chan<- prometheus.Metric) {
	for _, g := range c.groups() {
		id := strconv.FormatUint(uint64(g.id), 10)
		state := g.raft.State()
		commit, applied := g.raft.CommitIndex(), g.raft.AppliedIndex()
		ch <- prometheus.MustNewConstMetric(descState, prometheus.GaugeValue, float64(stateNumber(state)), id)
		ch <- prometheus.MustNewConstMetric(descTerm, prometheus.GaugeValue, float64(g.raft.CurrentTerm()), id)
		ch <- prometheus.MustNewConstMetric(descCommit, prometheus.GaugeValue, float64(commit), id)
		ch <- prometheus.MustNewConstMetric(descApplied, prometheus.GaugeValue, float64(applied), id)
		lag := 0.0
		if commit > applied {
			lag = float64(commit - applied)
		}
		ch <- prometheus.MustNewConstMetric(descLag, prometheus.GaugeValue, lag, id)
	}
}

func stateNumber(s raft.RaftState) int {
	switch s {
	case raft.Follower:
		return 0
	case raft.Candidate:
		return 1
	case raft.Leader:
		return 2
	default:
		return 3
	}
}
