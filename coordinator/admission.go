package coordinator

import (
	"errors"
	"fmt"
	"net/http"
	"strconv"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"golang.org/x/sync/semaphore"

	"github.com/ringkv/ringkv/consensus"
	"github.com/ringkv/ringkv/internal/promreg"
)

// Admission control
//
// A node bounds the work it accepts and refuses what is beyond the bound
// at once, with a retryable error, instead of queueing it without limit
// (docs/ARCHITECTURE.md, "Admission control"). Two budgets, each a count
// of requests in flight and a sum of their bytes (keys and values):
//
//   - the client budget (Config.MaxInflight, MaxInflightBytes), shared by
//     the client planes: the HTTP data API, the Client drpc service and
//     the Redis protocol;
//   - the peer budget (MaxPeerInflight, MaxPeerInflightBytes): replica
//     reads and writes and linearizable operations forwarded by other
//     nodes' coordinators.
//
// A client flood fills the client budget and no more: peer calls (the
// replica writes of other coordinators) keep their own room. Raft's own
// RPCs are never refused here (refusing a heartbeat would cause the very
// election the budgets are there to prevent); they are bounded by raft's
// pipeline and by each group's queued proposals (consensus.Config's
// MaxPendingProposals).
//
// A refusal is ErrOverloaded: HTTP 429 with Retry-After, the Client
// service's ERROR_CODE_OVERLOADED (the Go client backs off and retries),
// RESP -BUSY. Nothing was done. Every refusal is counted in
// ringkv_coordinator_admission_refused_total{plane,reason}.

// Plane is a kind of traffic with an admission budget.
type Plane int

// Planes. The three client planes share the client budget.
const (
	PlaneHTTP Plane = iota // the HTTP data API
	PlaneDRPC              // the Client drpc service
	PlaneRESP              // the Redis protocol
	PlanePeer              // Replica and Linearizable services: other coordinators
	numPlanes
)

func (p Plane) String() string {
	switch p {
	case PlaneHTTP:
		return "http"
	case PlaneDRPC:
		return "drpc"
	case PlaneRESP:
		return "resp"
	case PlanePeer:
		return "peer"
	default:
		return "plane(" + strconv.Itoa(int(p)) + ")"
	}
}

// Reasons for a refusal (ringkv_coordinator_admission_refused_total{reason}).
const (
	reasonInflight = "inflight" // the budget's request count was full
	reasonBytes    = "bytes"    // the budget's bytes were full
)

// budget is one bound of requests and bytes in flight; a nil semaphore
// is no bound.
type budget struct {
	requests *bound
	bytes    *semaphore.Weighted
	maxBytes int64
}

func newBudget(requests int, bytes int64) budget {
	b := budget{maxBytes: bytes}
	if requests > 0 {
		b.requests = newBound(requests)
	}
	if bytes > 0 {
		b.bytes = semaphore.NewWeighted(bytes)
	}
	return b
}

// admission holds the node's budgets. Safe for concurrent use.
type admission struct {
	client, peer budget
	retryAfter   time.Duration
	m            *admissionMetrics
	// The client bound's range and the scheduling latency it keeps
	// (adaptive.go); target 0: a fixed bound.
	minInflight, maxInflight int64
	target                   time.Duration
	// refusals holds the error of each kind of refusal, made once: a
	// flood is refused at tens of thousands a second, and formatting
	// each refusal's message took CPU from the requests admitted.
	refusals [numPlanes][2]error
	// busy, if set, is called for every request admitted (Deps.Busy).
	busy func()
}

func newAdmission(cfg Config, reg prometheus.Registerer) (*admission, error) {
	m, err := newAdmissionMetrics(reg)
	if err != nil {
		return nil, err
	}
	a := &admission{
		client:      newBudget(cfg.MaxInflight, cfg.MaxInflightBytes),
		peer:        newBudget(cfg.MaxPeerInflight, cfg.MaxPeerInflightBytes),
		retryAfter:  cfg.RetryAfter,
		m:           m,
		maxInflight: int64(cfg.MaxInflight),
		minInflight: int64(min(cfg.MinInflight, cfg.MaxInflight)),
	}
	if cfg.MaxInflight > 0 && cfg.SchedLatencyTarget > 0 {
		a.target = cfg.SchedLatencyTarget
	}
	m.limit.Set(float64(cfg.MaxInflight))
	for p := range numPlanes {
		a.refusals[p][refusedInflight] = fmt.Errorf("%w: %s requests in flight at the node's bound; retry after %s", ErrOverloaded, p, a.retryAfter)
		a.refusals[p][refusedBytes] = fmt.Errorf("%w: %s request bytes in flight at the node's bound; retry after %s", ErrOverloaded, p, a.retryAfter)
	}
	return a, nil
}

// adaptive reports whether the client bound follows the scheduler.
func (a *admission) adaptive() bool { return a.target > 0 }

// admit takes one request of n bytes from p's budget, without waiting.
// It returns the function that gives it back (call it once, when the
// request is answered), or an error wrapping ErrOverloaded. A request
// larger than the whole bytes budget is admitted when nothing else holds
// bytes (it is bounded by MaxValueBytes and the frame limits anyway).
func (a *admission) admit(p Plane, n int64) (func(), error) {
	release, reason := a.take(p, n)
	if release == nil {
		a.refused(p, reason)
		return nil, a.refusals[p][reason]
	}
	return release, nil
}

// refused counts a refusal of p for reason (refusedInflight or
// refusedBytes).
func (a *admission) refused(p Plane, reason int) { a.m.refused[p][reason].Inc() }

// take is admit without counting a refusal: it returns nil and the
// reason when the budget is full.
func (a *admission) take(p Plane, n int64) (func(), int) {
	b := &a.client
	if p == PlanePeer {
		b = &a.peer
	}
	if b.requests != nil && !b.requests.tryAcquire() {
		return nil, refusedInflight
	}
	n = max(0, min(n, b.maxBytes))
	if b.bytes != nil && n > 0 && !b.bytes.TryAcquire(n) {
		if b.requests != nil {
			b.requests.release()
		}
		return nil, refusedBytes
	}
	if a.busy != nil {
		a.busy()
	}
	gauge := a.m.inflight[p]
	gauge.Inc()
	return func() {
		gauge.Dec()
		if b.bytes != nil && n > 0 {
			b.bytes.Release(n)
		}
		if b.requests != nil {
			b.requests.release()
		}
	}, 0
}

// Admit takes one request of n bytes (its keys and values) from plane p's
// budget without waiting: the node's front ends (the Redis protocol
// server) call it before they run a request. It returns the function
// that gives the request's share back, to be called exactly once when
// the request is answered, or an error wrapping ErrOverloaded when the
// budget is full (nothing was done; the caller answers at once, e.g.
// -BUSY). Safe for concurrent use.
func (c *Coordinator) Admit(p Plane, n int64) (release func(), err error) {
	return c.adm.admit(p, n)
}

// enter admits one client request of n bytes on plane p: it refuses it
// with ErrDraining while the node drains, else with ErrOverloaded beyond
// the client budget. The caller calls the returned function once it has
// answered.
func (c *Coordinator) enter(p Plane, n int64) (func(), error) {
	release, reason, err := c.tryEnter(p, n)
	if release == nil && err == nil {
		c.adm.refused(p, reason)
		err = c.adm.refusals[p][reason]
	}
	return release, err
}

// tryEnter is enter without counting or wording an overload refusal: it
// returns nil and the refusal's reason when the budget is full (a
// caller that may wait for room decides whether it is a refusal), or
// ErrDraining.
func (c *Coordinator) tryEnter(p Plane, n int64) (func(), int, error) {
	if !c.gate.enter() {
		return nil, 0, ErrDraining
	}
	release, reason := c.adm.take(p, n)
	if release == nil {
		c.gate.exit()
		return nil, reason, nil
	}
	return func() { release(); c.gate.exit() }, 0, nil
}

// overloaded reports whether err is a refusal at an admission bound:
// this node's budgets, or a group's queued proposals (here or on the
// leader a request was forwarded to).
func overloaded(err error) bool {
	return errors.Is(err, ErrOverloaded) || errors.Is(err, consensus.ErrOverloaded)
}

// RetryAfter is how long refused callers are told to wait (HTTP's
// Retry-After).
func (c *Coordinator) RetryAfter() time.Duration { return c.adm.retryAfter }

// setRetryAfter sets the Retry-After header of a refusal: whole seconds,
// at least 1.
func setRetryAfter(w http.ResponseWriter, d time.Duration) {
	secs := int64((d + time.Second - 1) / time.Second)
	w.Header().Set("Retry-After", strconv.FormatInt(max(secs, 1), 10))
}

// Indexes of admissionMetrics.refused's second dimension.
const (
	refusedInflight = iota
	refusedBytes
)

// admissionMetrics count admission's refusals and the requests it holds,
// resolved per plane up front (no label lookup per request).
type admissionMetrics struct {
	refused  [numPlanes][2]prometheus.Counter
	inflight [numPlanes]prometheus.Gauge
	limit    prometheus.Gauge // the client bound (adaptive.go)
	schedP99 prometheus.Gauge // what it follows
}

func newAdmissionMetrics(reg prometheus.Registerer) (*admissionMetrics, error) {
	if reg == nil {
		reg = prometheus.NewRegistry()
	}
	refused := prometheus.NewCounterVec(prometheus.CounterOpts{
		Namespace: "ringkv", Subsystem: "coordinator", Name: "admission_refused_total",
		Help: "Requests refused at once because a budget was full, by plane (http, drpc, resp, peer) and reason (inflight, bytes).",
	}, []string{"plane", "reason"})
	inflight := prometheus.NewGaugeVec(prometheus.GaugeOpts{
		Namespace: "ringkv", Subsystem: "coordinator", Name: "admission_inflight",
		Help: "Requests admitted and not yet answered, by plane.",
	}, []string{"plane"})
	limit := prometheus.NewGauge(prometheus.GaugeOpts{
		Namespace: "ringkv", Subsystem: "coordinator", Name: "admission_client_limit",
		Help: "The client budget's current bound on requests in flight (between --min-inflight and --max-inflight, following the scheduler's latency; 0: no bound).",
	})
	schedP99 := prometheus.NewGauge(prometheus.GaugeOpts{
		Namespace: "ringkv", Subsystem: "coordinator", Name: "sched_latency_p99_seconds",
		Help: "p99 of the time runnable goroutines waited for a CPU over the last adjustment interval (the process's; what the client bound follows).",
	})
	if _, err := promreg.Register(reg, refused, inflight, limit, schedP99); err != nil {
		return nil, fmt.Errorf("register admission metrics: %w", err)
	}
	m := &admissionMetrics{limit: limit, schedP99: schedP99}
	for p := range numPlanes {
		m.inflight[p] = inflight.WithLabelValues(p.String())
		m.refused[p][refusedInflight] = refused.WithLabelValues(p.String(), reasonInflight)
		m.refused[p][refusedBytes] = refused.WithLabelValues(p.String(), reasonBytes)
	}
	return m, nil
}
