package chaos

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"math/rand/v2"
	"net/http"
	"net/url"
	"sync"
	"sync/atomic"
	"time"

	"github.com/ringkv/ringkv/client"
	"github.com/ringkv/ringkv/internal/testcluster"
)

// WorkloadConfig tunes the workloads.
type WorkloadConfig struct {
	// Workers run linearizable get/set/CAS. Default 16.
	Workers int
	// ActiveKeys is how many keys the linearizable workers share at a
	// time; a key retires after MaxOpsPerKey operations and a fresh key
	// takes its place. Defaults 32 and 100.
	ActiveKeys   int
	MaxOpsPerKey int
	// MaxUnknownPerKey bounds the writes of unknown outcome a key can
	// ever have. An unknown write stays open until the end of the
	// history, so the checker must try it at every later point: each one
	// multiplies the search, and a key that collected nine behind a
	// paused leader outran a 10-minute budget. The bound is hard: a
	// write starts on a key only while the key's writes in flight plus
	// its writes already unknown are fewer than MaxUnknownPerKey (a write
	// in flight may yet end unknown); otherwise the key retires and the
	// write goes to a fresh key. A key also retires once it has that many
	// unknown writes. Default 3.
	MaxUnknownPerKey int
	// HTTPFraction of linearizable operations go through a random
	// member's HTTP API (exercising the coordinator's forwarding through
	// the proxies) instead of the client library. Default 0.25.
	HTTPFraction float64
	// ReadsViaHTTP sends every linearizable get through a random member's
	// HTTP API (the broken-mode test reads through every node this way).
	ReadsViaHTTP bool
	// QuorumWorkers write unique keys at QUORUM for the lost-write check.
	// Default 4; negative: none.
	QuorumWorkers int
	// QuorumInterval is each QUORUM worker's pause between writes, which
	// bounds the keys the checks after the run read. Default 40ms.
	QuorumInterval time.Duration
	// OpTimeout is each write's deadline. Default 5s.
	OpTimeout time.Duration
	// ReadTimeout is each linearizable read's deadline. Reads that fail
	// are left out of the history, so a short deadline keeps reads from
	// spanning a whole partition: many long, overlapping reads make the
	// checker's search explode. Default 1s.
	ReadTimeout time.Duration
	// Seed seeds the workers' choices.
	Seed uint64
}

func (c *WorkloadConfig) fill() {
	if c.Workers <= 0 {
		c.Workers = 16
	}
	if c.ActiveKeys <= 0 {
		c.ActiveKeys = 32
	}
	if c.MaxOpsPerKey <= 0 {
		c.MaxOpsPerKey = 100
	}
	if c.MaxUnknownPerKey <= 0 {
		c.MaxUnknownPerKey = 3
	}
	if c.HTTPFraction < 0 {
		c.HTTPFraction = 0
	}
	switch {
	case c.QuorumWorkers == 0:
		c.QuorumWorkers = 4
	case c.QuorumWorkers < 0:
		c.QuorumWorkers = 0
	}
	if c.QuorumInterval <= 0 {
		c.QuorumInterval = 40 * time.Millisecond
	}
	if c.OpTimeout <= 0 {
		c.OpTimeout = 5 * time.Second
	}
	if c.ReadTimeout <= 0 {
		c.ReadTimeout = time.Second
	}
}

// Workload runs the linearizable and QUORUM workloads against a Cluster
// until Stop.
//
// Goroutines: Workers + QuorumWorkers loops, each stopped by Stop (which
// waits for them); each runs one operation at a time, bounded by
// OpTimeout.
type Workload struct {
	cfg     WorkloadConfig
	cluster *Cluster
	cl      *client.Client
	hist    *History

	keys    keySpace
	nextPID atomic.Int64

	cancel context.CancelFunc
	wg     sync.WaitGroup

	// Counts by kind and outcome: [kind][outcome].
	counts [3][3]atomic.Int64
	qOK    atomic.Int64
	qFail  atomic.Int64
	qUnk   atomic.Int64

	mu struct {
		sync.Mutex
		acked map[string]string // QUORUM key -> value acknowledged
	}
}

// keySpace hands out keys so that each gets at most maxOps operations
// and at most maxUnknown writes of unknown outcome (operations already in
// flight when a key retires still finish on it, which the second bound
// counts: see pick).
type keySpace struct {
	mu         sync.Mutex
	active     []*keyState
	next       int
	maxOps     int
	maxUnknown int
}

type keyState struct {
	name    string
	ops     int          // operations started; guarded by keySpace.mu
	writing int          // writes in flight; guarded by keySpace.mu
	unknown int          // writes ended unknown; guarded by keySpace.mu
	last    atomic.Value // string: a recently seen value, a CAS guess
}

func (ks *keySpace) init(n, maxOps, maxUnknown int) {
	ks.maxOps, ks.maxUnknown = maxOps, maxUnknown
	for range n {
		ks.active = append(ks.active, ks.freshLocked())
	}
}

func (ks *keySpace) freshLocked() *keyState {
	ks.next++
	return &keyState{name: fmt.Sprintf("lin/%06d", ks.next)}
}

// pick returns the key of the next operation, a write when write; the
// caller reports its end with done. A write never starts on a key whose
// writes in flight plus writes already unknown reach maxUnknown: each of
// those may end unknown, so the key could pass the bound. Such a key
// retires and a fresh key takes its slot and the write. So a key's
// unknown writes are at most maxUnknown, whatever the faults do.
func (ks *keySpace) pick(rng *rand.Rand, write bool) *keyState {
	ks.mu.Lock()
	defer ks.mu.Unlock()
	i := rng.IntN(len(ks.active))
	k := ks.active[i]
	if write && k.writing+k.unknown >= ks.maxUnknown {
		k = ks.freshLocked()
		ks.active[i] = k
	}
	k.ops++
	if write {
		k.writing++
	}
	if k.ops >= ks.maxOps {
		ks.active[i] = ks.freshLocked()
	}
	return k
}

// done records the end of an operation pick handed out, with its
// outcome, and retires k once it has maxUnknown writes of unknown
// outcome.
func (ks *keySpace) done(k *keyState, write bool, o Outcome) {
	ks.mu.Lock()
	defer ks.mu.Unlock()
	if !write {
		return
	}
	k.writing--
	if o != Unknown {
		return
	}
	k.unknown++
	if k.unknown < ks.maxUnknown {
		return
	}
	for i, a := range ks.active {
		if a == k {
			ks.active[i] = ks.freshLocked()
			return
		}
	}
}

// StartWorkload connects a client to the cluster and starts the workers.
func StartWorkload(c *Cluster, cfg WorkloadConfig) (*Workload, error) {
	cfg.fill()
	cl, err := c.NewClient(
		client.WithRequestTimeout(cfg.OpTimeout),
		client.WithRetry(4, 20*time.Millisecond, 500*time.Millisecond),
		client.WithRefreshInterval(time.Second))
	if err != nil {
		return nil, err
	}
	w := &Workload{cfg: cfg, cluster: c, cl: cl, hist: NewHistory()}
	w.mu.acked = map[string]string{}
	w.keys.init(cfg.ActiveKeys, cfg.MaxOpsPerKey, cfg.MaxUnknownPerKey)
	w.nextPID.Store(int64(cfg.Workers))
	ctx, cancel := context.WithCancel(context.Background())
	w.cancel = cancel
	for i := range cfg.Workers {
		w.wg.Add(1)
		go func() {
			defer w.wg.Done()
			w.linWorker(ctx, i)
		}()
	}
	for i := range cfg.QuorumWorkers {
		w.wg.Add(1)
		go func() {
			defer w.wg.Done()
			w.quorumWorker(ctx, i)
		}()
	}
	return w, nil
}

// Stop stops the workers, waits for them and closes the client.
func (w *Workload) Stop() {
	w.cancel()
	w.wg.Wait()
	_ = w.cl.Close() // nothing is in flight any more
}

// History is the linearizable history.
func (w *Workload) History() *History { return w.hist }

// Ops is how many linearizable operations completed (any outcome).
func (w *Workload) Ops() int64 {
	var n int64
	for k := range w.counts {
		for o := range w.counts[k] {
			n += w.counts[k][o].Load()
		}
	}
	return n
}

// Acked returns the QUORUM writes that were acknowledged: key -> value.
func (w *Workload) Acked() map[string]string {
	w.mu.Lock()
	defer w.mu.Unlock()
	out := make(map[string]string, len(w.mu.acked))
	for k, v := range w.mu.acked {
		out[k] = v
	}
	return out
}

func (w *Workload) linWorker(ctx context.Context, worker int) {
	rng := rand.New(rand.NewPCG(w.cfg.Seed, uint64(worker)+1))
	pid := worker
	seq := 0
	for ctx.Err() == nil {
		seq++
		op := Op{Client: pid}
		switch r := rng.IntN(10); {
		case r < 5:
			op.Kind = OpGet
		case r < 8:
			op.Kind = OpSet
			op.Value = fmt.Sprintf("%d.%d", worker, seq)
		default:
			op.Kind = OpCAS
		}
		write := op.Kind != OpGet
		k := w.keys.pick(rng, write)
		op.Key = k.name
		if op.Kind == OpCAS {
			op.Value = fmt.Sprintf("%d.%d", worker, seq)
			if last, ok := k.last.Load().(string); ok && rng.IntN(5) > 0 {
				op.Expected = last
			} else {
				op.ExpectAbsent = true
			}
		}
		viaHTTP := rng.Float64() < w.cfg.HTTPFraction || (op.Kind == OpGet && w.cfg.ReadsViaHTTP)
		var nd *testcluster.Node
		if viaHTTP {
			members := w.cluster.RunningMembers()
			if len(members) > 0 {
				nd = members[rng.IntN(len(members))]
			}
		}
		timeout := w.cfg.OpTimeout
		if op.Kind == OpGet {
			timeout = w.cfg.ReadTimeout
		}
		octx, cancel := context.WithTimeout(ctx, timeout)
		op.Call = w.hist.Now()
		if nd != nil {
			op.Via = nd.ID
			w.httpOp(octx, nd, &op)
		} else {
			op.Via = "client"
			w.clientOp(octx, &op)
		}
		op.Return = w.hist.Now()
		cancel()
		if ctx.Err() != nil && op.Outcome != OK && write {
			op.Outcome = Unknown // cut short by Stop: still in the history
		}
		w.keys.done(k, write, op.Outcome)
		if ctx.Err() != nil && op.Outcome != OK && !write {
			continue // a read that did not finish is not in the history
		}
		w.counts[op.Kind][op.Outcome].Add(1)
		switch {
		case op.Outcome != OK:
		case op.Kind == OpSet, op.Kind == OpGet && op.Found, op.Kind == OpCAS && op.Swapped:
			k.last.Store(op.Value)
		case op.Kind == OpCAS && op.Found:
			k.last.Store(op.Current)
		}
		if op.Outcome == Failed {
			continue // known not to have happened
		}
		w.hist.Add(op)
		if op.Outcome == Unknown {
			// A process with an operation in doubt never issues another
			// (Jepsen's rule): continue as a new one.
			pid = int(w.nextPID.Add(1))
		}
	}
}

// clientOp runs op through the client library and sets its outcome.
func (w *Workload) clientOp(ctx context.Context, op *Op) {
	lin := client.WithConsistency(client.Linearizable)
	var err error
	switch op.Kind {
	case OpGet:
		var v []byte
		v, err = w.cl.Get(ctx, op.Key, lin)
		switch {
		case err == nil:
			op.Outcome, op.Found, op.Value = OK, true, string(v)
			return
		case errors.Is(err, client.ErrNotFound):
			op.Outcome = OK
			return
		}
	case OpSet:
		err = w.cl.Set(ctx, op.Key, []byte(op.Value), lin)
	case OpCAS:
		if op.ExpectAbsent {
			err = w.cl.PutIfAbsent(ctx, op.Key, []byte(op.Value))
		} else {
			err = w.cl.CompareAndSet(ctx, op.Key, []byte(op.Expected), []byte(op.Value))
		}
		var mm *client.MismatchError
		if errors.As(err, &mm) {
			// Found/current of a failed CAS are not part of the model's
			// output: a CAS that did not swap only says the value differed.
			op.Outcome, op.Found, op.Current = OK, mm.Found, string(mm.Current)
			return
		}
		if err == nil {
			op.Outcome, op.Swapped = OK, true
			return
		}
	}
	if err == nil {
		op.Outcome = OK
		return
	}
	op.Err = err.Error()
	switch {
	case op.Kind == OpGet:
		op.Outcome = Failed // a read with no answer has no effect
	case errors.Is(err, client.ErrUnavailable), errors.Is(err, client.ErrInvalidArgument):
		op.Outcome = Failed // documented: not applied
	default:
		op.Outcome = Unknown // ErrOutcomeUnknown, ErrTimeout, anything else: in doubt
	}
}

// httpOp runs op through nd's HTTP API at the linearizable level.
func (w *Workload) httpOp(ctx context.Context, nd *testcluster.Node, op *Op) {
	var (
		code int
		body []byte
		err  error
	)
	lin := url.Values{"consistency": {"linearizable"}}
	switch op.Kind {
	case OpGet:
		lin.Set("key", op.Key)
		code, body, err = w.cluster.do(ctx, nd, http.MethodGet, "/api/get", lin, nil)
	case OpSet:
		code, body, err = w.cluster.do(ctx, nd, http.MethodPost, "/api/set", lin, map[string]string{"key": op.Key, "value": op.Value})
	case OpCAS:
		req := map[string]any{"key": op.Key, "value": op.Value}
		if !op.ExpectAbsent {
			req["expected"] = op.Expected
		}
		code, body, err = w.cluster.do(ctx, nd, http.MethodPost, "/api/cas", nil, req)
	}
	if err != nil {
		op.Err = err.Error()
		if op.Kind == OpGet {
			op.Outcome = Failed
		} else {
			op.Outcome = Unknown // the request may have been delivered
		}
		return
	}
	switch {
	case op.Kind == OpGet && code == http.StatusNotFound:
		op.Outcome = OK
	case code == http.StatusOK:
		var out struct {
			Value   string `json:"value"`
			Found   bool   `json:"found"`
			Success bool   `json:"success"`
		}
		if jerr := json.Unmarshal(body, &out); jerr != nil {
			op.Outcome, op.Err = Unknown, jerr.Error()
			if op.Kind == OpGet {
				op.Outcome = Failed
			}
			return
		}
		op.Outcome = OK
		switch op.Kind {
		case OpGet:
			op.Found, op.Value = out.Found, out.Value
		case OpCAS:
			op.Swapped = out.Success
		}
	case op.Kind == OpGet, code == http.StatusServiceUnavailable, code == http.StatusBadRequest:
		op.Outcome, op.Err = Failed, fmt.Sprintf("HTTP %d: %s", code, body)
	default: // 504: ambiguous; 500: unexpected
		op.Outcome, op.Err = Unknown, fmt.Sprintf("HTTP %d: %s", code, body)
	}
}

// quorumWorker writes unique keys at QUORUM, remembering the acknowledged
// ones for the lost-write check.
func (w *Workload) quorumWorker(ctx context.Context, worker int) {
	seq := 0
	for ctx.Err() == nil {
		seq++
		key := fmt.Sprintf("q/%02d/%07d", worker, seq)
		val := fmt.Sprintf("v%d.%d", worker, seq)
		octx, cancel := context.WithTimeout(ctx, w.cfg.OpTimeout)
		err := w.cl.Set(octx, key, []byte(val), client.WithConsistency(client.Quorum))
		cancel()
		switch {
		case err == nil:
			w.qOK.Add(1)
			w.mu.Lock()
			w.mu.acked[key] = val
			w.mu.Unlock()
		case errors.Is(err, client.ErrUnavailable):
			w.qFail.Add(1)
		default:
			w.qUnk.Add(1)
		}
		wait(ctx, w.cfg.QuorumInterval)
	}
}

// Counts returns the linearizable operations by kind and outcome.
func (w *Workload) Counts() map[string]int64 {
	out := map[string]int64{}
	for k := range w.counts {
		for o := range w.counts[k] {
			if n := w.counts[k][o].Load(); n > 0 {
				out[OpKind(k).String()+"/"+Outcome(o).String()] = n
			}
		}
	}
	out["quorum-set/ok"] = w.qOK.Load()
	out["quorum-set/fail"] = w.qFail.Load()
	out["quorum-set/unknown"] = w.qUnk.Load()
	return out
}
