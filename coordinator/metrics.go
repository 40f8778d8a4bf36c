package coordinator

import (
	"errors"
	"fmt"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/ringkv/ringkv/consensus"
	"github.com/ringkv/ringkv/internal/promreg"
)

type metrics struct {
	requests    *prometheus.CounterVec
	duration    *prometheus.HistogramVec
	readRepairs *prometheus.CounterVec
	txns        *prometheus.CounterVec
	txnDuration *prometheus.HistogramVec
	// Transactions across partitions (xtxn.go, xtxn_intents.go).
	txnAborts       *prometheus.CounterVec // by cause
	txnConflicts    prometheus.Counter
	intentsResolved *prometheus.CounterVec // by resolver
	abandoned       prometheus.Counter
	// snapshotReads counts the double reads of read-only transactions
	// across partitions (xtxn_read.go): ok, or changed (a write landed
	// between the passes).
	snapshotReads *prometheus.CounterVec
	// Logged batches (batchlog.go), by event: written, replayed.
	batches *prometheus.CounterVec
}

// Causes of an aborted attempt of a transaction across partitions
// (ringkv_coordinator_txn_aborts_total{cause}).
const (
	abortWounded     = "wounded"     // an older transaction aborted it (decide found ABORTED)
	abortDied        = "died"        // it met an older transaction's intent (wound-wait)
	abortExpired     = "expired"     // its deadline passed before it was prepared
	abortAmbiguous   = "ambiguous"   // a prepare's outcome was unknown
	abortUnavailable = "unavailable" // a prepare failed for good: reported to the client
)

// Who cleared intents (ringkv_coordinator_intents_resolved_total{by}).
const (
	byCoordinator = "coordinator" // the transaction's own coordinator, or one meeting it in a prepare
	byReader      = "reader"
	byWriter      = "writer"
	bySweep       = "sweep"
)

func newMetrics(reg prometheus.Registerer) (*metrics, error) {
	if reg == nil {
		reg = prometheus.NewRegistry()
	}
	m := &metrics{
		requests: prometheus.NewCounterVec(prometheus.CounterOpts{
			Namespace: "ringkv", Subsystem: "coordinator", Name: "requests_total",
			Help: "Client requests by operation, consistency level and outcome.",
		}, []string{"op", "level", "outcome"}),
		duration: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Namespace: "ringkv", Subsystem: "coordinator", Name: "request_duration_seconds",
			Help:    "Client request latency by operation and consistency level.",
			Buckets: prometheus.ExponentialBuckets(0.0001, 2, 17), // 100µs .. 6.5s
		}, []string{"op", "level"}),
		readRepairs: prometheus.NewCounterVec(prometheus.CounterOpts{
			Namespace: "ringkv", Subsystem: "coordinator", Name: "read_repairs_total",
			Help: "Stale replicas found by reads, by whether the repair merge succeeded.",
		}, []string{"outcome"}),
		txns: prometheus.NewCounterVec(prometheus.CounterOpts{
			Namespace: "ringkv", Subsystem: "coordinator", Name: "txn_total",
			Help: "Transactions by outcome: succeeded (compares held), failed (they did not), invalid, unavailable, ambiguous, not_implemented, conflict, not_upgraded, error.",
		}, []string{"outcome"}),
		txnDuration: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Namespace: "ringkv", Subsystem: "coordinator", Name: "txn_duration_seconds",
			Help:    "Transaction latency by the number of partitions touched (1, 2, 3-4, 5+; 0: refused before placement).",
			Buckets: prometheus.ExponentialBuckets(0.0001, 2, 17), // 100µs .. 6.5s
		}, []string{"partitions"}),
		txnAborts: prometheus.NewCounterVec(prometheus.CounterOpts{
			Namespace: "ringkv", Subsystem: "coordinator", Name: "txn_aborts_total",
			Help: "Aborted attempts of transactions across partitions, by cause (wounded, died, expired, ambiguous, unavailable).",
		}, []string{"cause"}),
		txnConflicts: prometheus.NewCounter(prometheus.CounterOpts{
			Namespace: "ringkv", Subsystem: "coordinator", Name: "txn_conflicts_total",
			Help: "Other transactions' intents met by prepares of transactions across partitions.",
		}),
		intentsResolved: prometheus.NewCounterVec(prometheus.CounterOpts{
			Namespace: "ringkv", Subsystem: "coordinator", Name: "intents_resolved_total",
			Help: "Intents cleared, by who cleared them (coordinator, reader, writer, sweep).",
		}, []string{"by"}),
		abandoned: prometheus.NewCounter(prometheus.CounterOpts{
			Namespace: "ringkv", Subsystem: "coordinator", Name: "abandoned_recovered_total",
			Help: "Transactions found past their deadline by the sweep and finished or aborted.",
		}),
		snapshotReads: prometheus.NewCounterVec(prometheus.CounterOpts{
			Namespace: "ringkv", Subsystem: "coordinator", Name: "txn_snapshot_reads_total",
			Help: "Double reads of read-only transactions across partitions: ok (answered from the snapshot), changed (a write landed between the passes).",
		}, []string{"outcome"}),
		batches: prometheus.NewCounterVec(prometheus.CounterOpts{
			Namespace: "ringkv", Subsystem: "coordinator", Name: "batches_total",
			Help: "Logged batches (mset at an eventual level) by event: written (logged by this coordinator), replayed (found old and written again by this node's replayer).",
		}, []string{"event"}),
	}
	if _, err := promreg.Register(reg, m.requests, m.duration, m.readRepairs, m.txns, m.txnDuration,
		m.txnAborts, m.txnConflicts, m.intentsResolved, m.abandoned, m.snapshotReads, m.batches); err != nil {
		return nil, fmt.Errorf("register coordinator metrics: %w", err)
	}
	for _, c := range []string{abortWounded, abortDied, abortExpired, abortAmbiguous, abortUnavailable} {
		m.txnAborts.WithLabelValues(c)
	}
	for _, e := range []string{batchWritten, batchReplayed} {
		m.batches.WithLabelValues(e)
	}
	for _, b := range []string{byCoordinator, byReader, byWriter, bySweep} {
		m.intentsResolved.WithLabelValues(b)
	}
	return m, nil
}

// observe records one finished request.
func (m *metrics) observe(op string, level Level, start time.Time, err error) {
	m.requests.WithLabelValues(op, level.String(), outcome(err)).Inc()
	m.duration.WithLabelValues(op, level.String()).Observe(time.Since(start).Seconds())
}

// observeTxn records one finished transaction over partitions
// partitions (0: refused before they were known).
func (m *metrics) observeTxn(partitions int, succeeded bool, start time.Time, err error) {
	o := "failed"
	switch {
	case err == nil && succeeded:
		o = "succeeded"
	case err == nil:
	case errors.Is(err, ErrNotImplemented):
		o = "not_implemented"
	case errors.Is(err, ErrConflict):
		o = "conflict"
	case errors.Is(err, ErrNotUpgraded):
		o = "not_upgraded"
	case errors.Is(err, consensus.ErrAmbiguous):
		o = "ambiguous"
	default:
		o = outcome(err)
	}
	m.txns.WithLabelValues(o).Inc()
	var label string
	switch {
	case partitions >= 5:
		label = "5+"
	case partitions >= 3:
		label = "3-4"
	default:
		label = fmt.Sprint(partitions)
	}
	m.txnDuration.WithLabelValues(label).Observe(time.Since(start).Seconds())
}

func outcome(err error) string {
	switch {
	case err == nil:
		return "ok"
	case errors.Is(err, ErrInvalidArgument):
		return "invalid"
	case errors.Is(err, ErrUnavailable):
		return "unavailable"
	case errors.Is(err, ErrCorrupt):
		return "corrupt"
	default:
		return "error"
	}
}

// hintMetrics are hinted handoff's (hints.go). target labels are member ids,
// bounded by the cluster's size.
type hintMetrics struct {
	stored   *prometheus.CounterVec
	replayed *prometheus.CounterVec
	dropped  *prometheus.CounterVec
	pending  *prometheus.GaugeVec
}

// Reasons a hint is dropped without being replayed.
const (
	dropExpired  = "expired"  // older than HintWindow
	dropRemoved  = "removed"  // its target left the ring for good
	dropOverflow = "overflow" // its target already had MaxHintBytesPerTarget
	dropCorrupt  = "corrupt"  // it failed its checksum
	dropMoved    = "moved"    // the ring no longer makes its target a replica of its partition
	dropError    = "error"    // storing it failed
)

func newHintMetrics(reg prometheus.Registerer) (*hintMetrics, error) {
	if reg == nil {
		reg = prometheus.NewRegistry()
	}
	m := &hintMetrics{
		stored: prometheus.NewCounterVec(prometheus.CounterOpts{
			Namespace: "ringkv", Subsystem: "coordinator", Name: "hints_stored_total",
			Help: "Hints stored durably for replicas a write did not reach, by target.",
		}, []string{"target"}),
		replayed: prometheus.NewCounterVec(prometheus.CounterOpts{
			Namespace: "ringkv", Subsystem: "coordinator", Name: "hints_replayed_total",
			Help: "Hints delivered to their target and deleted, by target.",
		}, []string{"target"}),
		dropped: prometheus.NewCounterVec(prometheus.CounterOpts{
			Namespace: "ringkv", Subsystem: "coordinator", Name: "hints_dropped_total",
			Help: "Hints given up without delivery, by reason (expired, removed, moved, overflow, corrupt, error).",
		}, []string{"reason"}),
		pending: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Namespace: "ringkv", Subsystem: "coordinator", Name: "hints_pending",
			Help: "Hints stored and not yet delivered or dropped, by target.",
		}, []string{"target"}),
	}
	if _, err := promreg.Register(reg, m.stored, m.replayed, m.dropped, m.pending); err != nil {
		return nil, fmt.Errorf("register hint metrics: %w", err)
	}
	for _, r := range []string{dropExpired, dropRemoved, dropOverflow, dropCorrupt, dropError} {
		m.dropped.WithLabelValues(r) // export zeros, so that a rate() sees the first drop
	}
	return m, nil
}
