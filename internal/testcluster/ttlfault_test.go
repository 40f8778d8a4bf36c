package testcluster

import (
	"context"
	"encoding/json"
	"fmt"
	"math/rand/v2"
	"net/http"
	"net/url"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/ringkv/ringkv/internal/rpcconn"
	"github.com/ringkv/ringkv/proto/kvpb"
)

// Clock skews of TestExpiryUnderFaults: n3 returns from its first absence
// with its clock skewAhead ahead of the others', from its second
// skewBehind behind. Each is within the HLC's maximum offset δ (500 ms,
// replica.DefaultMaxClockOffset), and as only one node is skewed at a
// time every pair of clocks stays within δ, as ARCHITECTURE "Expiry"
// assumes (the chaos harness's small skew goes up to 400 ms too).
const (
	skewAhead  = 400 * time.Millisecond
	skewBehind = 400 * time.Millisecond
	// expirySlack covers the HLC's millisecond granularity (a stamp is
	// truncated to the millisecond, and the logical counter may carry
	// into it).
	expirySlack = 5 * time.Millisecond
)

// The expiry bounds TestExpiryUnderFaults holds every read to, on the
// test's clock (the machine's, which every node's clock is an offset
// from). A write sent at s and acknowledged at a with TTL d gets the
// expiry E = h + d, where h is the wall time of the HLC stamp its
// coordinator took between s and a. An HLC never runs ahead of the
// fastest physical clock in the cluster (it is the largest physical
// reading it has seen, its own or a peer's), so h <= a + skewAhead; and it
// never runs behind its own node's clock, so h >= s - skewBehind. A node
// whose clock reads T+o at instant T finds the record live iff T+o < E,
// with o in [-skewBehind, +skewAhead], and a read is judged between its
// request's send and its answer. Hence:
//
//   - no read sent at or after a + d + skewAhead + skewBehind may find
//     the value (the upper bound: skewAhead+skewBehind = 800 ms, within
//     the 2δ = 1 s that ARCHITECTURE "Expiry" gives for clocks within δ);
//   - a read answered before s + d - skewAhead - skewBehind must find it,
//     at the levels that are bound to see the write (the lower bound).
const expiryAllowance = skewAhead + skewBehind

// ttlRound is one absence of n3: the writes it missed may read stale at
// some levels until the test has repaired it (hints drained and an
// anti-entropy exchange of every partition with both peers).
type ttlRound struct {
	name     string
	repaired atomic.Int64 // Unix nanoseconds of the end of the repair; 0: not yet
}

// mayBeStale reports whether a read sent at sent may still see n3's stale
// copy of a write this round made while n3 was down.
func (r *ttlRound) mayBeStale(sent time.Time) bool {
	rep := r.repaired.Load()
	return rep == 0 || sent.UnixNano() < rep
}

// ttlKey is one key of TestExpiryUnderFaults, immutable once published.
type ttlKey struct {
	name  string
	value string        // the last value written
	ttl   time.Duration // its TTL; 0: a control that never expires
	// old is the value the key held, without a TTL, before value
	// overwrote it ("" none): it must never come back.
	old   string
	level string // the level value was written at
	via   string
	phase string
	// sent and acked bracket the write (the first attempt's send).
	sent, acked time.Time
	// round, when set, is the absence of n3 the write was made in; reads
	// at staleLevels may find old, or for a control nothing, until the
	// round's repair. ONE promises no freshness, and mixing levels gives
	// none across them (README): a read at ONE may be answered by n3's
	// stale replica, or by a follower that has not yet applied a
	// linearizable write; a linearizable read served by n3 as leader
	// reads its own replica, which holds of the writes made at quorum
	// only what hints and anti-entropy have brought it.
	round       *ttlRound
	staleLevels map[string]bool
	// liveLevels are the levels whose reads must find the value until the
	// lower bound: those bound to see the write.
	liveLevels map[string]bool
}

func (k *ttlKey) upper() time.Time { return k.acked.Add(k.ttl + expiryAllowance + expirySlack) }
func (k *ttlKey) lower() time.Time { return k.sent.Add(k.ttl - expiryAllowance - expirySlack) }

func (k *ttlKey) stale(level string, sent time.Time) bool {
	return k.round != nil && k.staleLevels[level] && k.round.mayBeStale(sent)
}

func maxTime(a, b time.Time) time.Time {
	if b.After(a) {
		return b
	}
	return a
}

// ttlTally is what the readers saw.
type ttlTally struct {
	reads       atomic.Int64 // answered 200 or 404
	afterExpiry atomic.Int64 // of them, reads of TTL keys sent after the upper bound
	liveBefore  atomic.Int64 // reads that found a TTL key's value (before its upper bound)
	staleOld    atomic.Int64 // reads that found an overwritten value before n3's repair (allowed at their level)
	staleAbsent atomic.Int64 // control reads that found nothing before n3's repair (allowed at their level)
	unavailable atomic.Int64 // errors and other statuses (a node down, draining, restarting)

	mu       sync.Mutex
	failures []string
	stale    []string // the first few allowed stale reads, for the log
}

func (tl *ttlTally) noteStale(format string, args ...any) {
	tl.mu.Lock()
	defer tl.mu.Unlock()
	if len(tl.stale) < 10 {
		tl.stale = append(tl.stale, fmt.Sprintf(format, args...))
	}
}

func (tl *ttlTally) fail(format string, args ...any) {
	tl.mu.Lock()
	defer tl.mu.Unlock()
	tl.failures = append(tl.failures, fmt.Sprintf(format, args...))
}

// judge checks one read of k through nd at level, sent at sent and
// answered at recv with code and got.
func (tl *ttlTally) judge(k *ttlKey, nd, level string, sent, recv time.Time, code int, got string) {
	if code != http.StatusOK && code != http.StatusNotFound {
		tl.unavailable.Add(1)
		return
	}
	tl.reads.Add(1)
	expired := k.ttl > 0 && !sent.Before(k.upper())
	if expired {
		tl.afterExpiry.Add(1)
	}
	desc := func() string {
		return fmt.Sprintf("%s (%s, ttl %v, written at %s via %s, acked %s) read at %s via %s, sent %s after the ack",
			k.name, k.phase, k.ttl, k.level, k.via, k.acked.Format("15:04:05.000"), level, nd, sent.Sub(k.acked).Round(time.Millisecond))
	}
	switch {
	case code == http.StatusOK && got == k.value:
		if expired {
			tl.fail("EXPIRED VALUE READ: %s, %v past its upper bound: got %q", desc(), sent.Sub(k.upper()).Round(time.Millisecond), got)
		} else if k.ttl > 0 {
			tl.liveBefore.Add(1)
		}
	case code == http.StatusOK && k.old != "" && got == k.old:
		if k.stale(level, sent) {
			tl.staleOld.Add(1)
			tl.noteStale("overwritten value before n3's repair: %s", desc())
			return
		}
		tl.fail("OLDER VALUE CAME BACK: %s: got the overwritten %q", desc(), got)
	case code == http.StatusOK:
		tl.fail("UNKNOWN VALUE: %s: got %q, want %q", desc(), got, k.value)
	case k.ttl == 0: // a control, not found
		if k.stale(level, sent) {
			tl.staleAbsent.Add(1)
			tl.noteStale("control absent before n3's repair: %s", desc())
			return
		}
		tl.fail("CONTROL MISSING: %s: 404", desc())
	case k.liveLevels[level] && recv.Before(k.lower()):
		tl.fail("VANISHED EARLY: %s: 404 answered %v before its lower bound", desc(), k.lower().Sub(recv).Round(time.Millisecond))
	}
}

// ttlRun is the test's shared state: the published keys and the tally.
type ttlRun struct {
	t     *testing.T
	c     *Cluster
	tally ttlTally
	mu    sync.RWMutex
	keys  []*ttlKey
}

func (r *ttlRun) publish(k *ttlKey) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.keys = append(r.keys, k)
}

func (r *ttlRun) snapshot() []*ttlKey {
	r.mu.RLock()
	defer r.mu.RUnlock()
	return r.keys[:len(r.keys):len(r.keys)]
}

// set writes key=value (with ttl unless 0) through nd at level, retrying
// while the cluster answers 503 (an election after a node stopped), and
// returns the first attempt's send time and the acknowledgement's.
func setRetry(ctx context.Context, nd *Node, key, value string, ttl time.Duration, level string) (time.Time, time.Time, error) {
	body := map[string]string{"key": key, "value": value}
	if ttl > 0 {
		body["ttl"] = fmt.Sprintf("%dms", ttl.Milliseconds())
	}
	sent := time.Now()
	for {
		code, b, err := nd.Do(ctx, http.MethodPost, "/api/set", url.Values{"consistency": {level}}, body)
		if err == nil && code == http.StatusOK {
			return sent, time.Now(), nil
		}
		switch {
		case err != nil && time.Since(sent) > 15*time.Second:
			return sent, time.Time{}, fmt.Errorf("set %s at %s via %s: %w", key, level, nd.ID, err)
		case err == nil && (code != http.StatusServiceUnavailable || time.Since(sent) > 15*time.Second):
			return sent, time.Time{}, fmt.Errorf("set %s at %s via %s: HTTP %d: %s", key, level, nd.ID, code, b)
		}
		pause(50 * time.Millisecond)
	}
}

// pause waits d, between the tries of a poll.
func pause(d time.Duration) {
	timer := time.NewTimer(d)
	<-timer.C
}

// write writes every key (value, ttl, level, via set by the caller) in
// parallel and publishes each once acknowledged.
func (r *ttlRun) write(ctx context.Context, nodes map[string]*Node, keys []*ttlKey) {
	r.t.Helper()
	err := parallel(len(keys), func(i int) error {
		k := keys[i]
		sent, acked, err := setRetry(ctx, nodes[k.via], k.name, k.value, k.ttl, k.level)
		if err != nil {
			return err
		}
		k.sent, k.acked = sent, acked
		r.publish(k)
		return nil
	})
	if err != nil {
		r.t.Fatal(err)
	}
}

// read reads k through nd at level and judges the answer. It reports
// whether the node answered 200 or 404.
func (r *ttlRun) read(ctx context.Context, k *ttlKey, nd *Node, level string) bool {
	ctx, cancel := context.WithTimeout(ctx, 3*time.Second)
	defer cancel()
	sent := time.Now()
	got, code, err := nd.Get(ctx, k.name, level)
	recv := time.Now()
	if err != nil {
		r.tally.unavailable.Add(1)
		return false
	}
	r.tally.judge(k, nd.ID, level, sent, recv, code, got)
	return code == http.StatusOK || code == http.StatusNotFound
}

var ttlLevels = []string{"one", "quorum", "all", "linearizable"}

// sweep reads every published key at every level through every node
// (all running), each until it is answered (three tries), and returns
// how many reads were judged.
func (r *ttlRun) sweep(ctx context.Context) int {
	r.t.Helper()
	keys := r.snapshot()
	var wg sync.WaitGroup
	var judged, unanswered atomic.Int64
	for _, nd := range r.c.Nodes {
		for _, level := range ttlLevels {
			wg.Add(1)
			go func() {
				defer wg.Done()
				for _, k := range keys {
					answered := false
					for try := 0; try < 3 && !answered; try++ {
						answered = r.read(ctx, k, nd, level)
					}
					if answered {
						judged.Add(1)
					} else {
						unanswered.Add(1)
					}
				}
			}()
		}
	}
	wg.Wait()
	if n := unanswered.Load(); n > 0 {
		r.t.Fatalf("sweep: %d reads not answered in three tries", n)
	}
	return int(judged.Load())
}

// repair runs POST /api/cluster/repair on nd: it exchanges every partition
// with every other live replica now. An exchange that failed (a peer busy
// or still building its tree after a restart) is tried again, up to three
// times in all.
func (r *ttlRun) repair(ctx context.Context, nd *Node) {
	r.t.Helper()
	var body []byte
	for attempt := 1; ; attempt++ {
		var code int
		var err error
		code, body, err = nd.Do(ctx, http.MethodPost, "/api/cluster/repair", nil, nil)
		if err != nil || code != http.StatusOK {
			r.t.Fatalf("repair on %s: %d %s %v", nd.ID, code, body, err)
		}
		var rep struct {
			Exchanges int      `json:"exchanges"`
			Pulled    int      `json:"keys_pulled"`
			Pushed    int      `json:"keys_pushed"`
			Failed    []string `json:"failed"`
			Skipped   []string `json:"skipped"`
		}
		if err := json.Unmarshal(body, &rep); err != nil {
			r.t.Fatalf("repair on %s: %v", nd.ID, err)
		}
		if len(rep.Failed)+len(rep.Skipped) == 0 && rep.Exchanges > 0 {
			r.t.Logf("repair on %s: %d exchanges, %d records pulled, %d pushed", nd.ID, rep.Exchanges, rep.Pulled, rep.Pushed)
			return
		}
		if attempt == 3 {
			r.t.Fatalf("repair on %s: %s", nd.ID, body)
		}
		r.t.Logf("repair on %s incomplete, again: %s", nd.ID, body)
		pause(time.Second)
	}
}

// awaitTime waits until the test's clock reaches at.
func (r *ttlRun) awaitTime(at time.Time, what string) {
	r.t.Helper()
	r.c.WaitFor(time.Until(at)+10*time.Second, what, func(context.Context) error {
		if now := time.Now(); now.Before(at) {
			return fmt.Errorf("%v to go", at.Sub(now))
		}
		return nil
	})
}

// awaitExchanges waits until every node has initiated cycles more
// scheduled anti-entropy rounds: an exchange of each of its partitions
// with each other replica per round.
func (r *ttlRun) awaitExchanges(ctx context.Context, cycles int) {
	r.t.Helper()
	const metric = "ringkv_antientropy_exchanges_total"
	want := map[string]float64{}
	for _, nd := range r.c.Nodes {
		s, err := nd.Stats(ctx)
		if err != nil {
			r.t.Fatal(err)
		}
		base, err := nd.Metric(ctx, metric)
		if err != nil {
			r.t.Fatal(err)
		}
		want[nd.ID] = base + float64(cycles*len(s.Partitions)*(len(r.c.Nodes)-1))
	}
	r.c.WaitFor(60*time.Second, fmt.Sprintf("%d anti-entropy rounds", cycles), func(ctx context.Context) error {
		for _, nd := range r.c.Nodes {
			got, err := nd.Metric(ctx, metric)
			if err != nil {
				return err
			}
			if got < want[nd.ID] {
				return fmt.Errorf("%s: %v exchanges, want %v", nd.ID, got, want[nd.ID])
			}
		}
		return nil
	})
}

// awaitHints waits until no node holds a hint.
func (r *ttlRun) awaitHints() {
	r.t.Helper()
	r.c.WaitFor(60*time.Second, "hints to drain", func(ctx context.Context) error {
		var running []*Node
		for _, nd := range r.c.Nodes {
			if nd.Running() {
				running = append(running, nd)
			}
		}
		pending, err := sumMetric(ctx, "ringkv_coordinator_hints_pending", running...)
		if err != nil {
			return err
		}
		if pending != 0 {
			return fmt.Errorf("%v hints pending", pending)
		}
		return nil
	})
}

// rawRecords returns every record nd's own replica holds under prefix,
// tombstones and expired records included, as the Replica service's Scan
// gives them to peers.
func rawRecords(ctx context.Context, nd *Node, prefix string) (map[string]*kvpb.Record, error) {
	s, err := nd.Stats(ctx)
	if err != nil {
		return nil, err
	}
	conn, err := rpcconn.Dial(ctx, nd.RPCAddr, nil)
	if err != nil {
		return nil, fmt.Errorf("dial %s: %w", nd.ID, err)
	}
	defer func() { _ = conn.Close() }()
	resp, err := kvpb.NewDRPCReplicaClient(conn).Scan(ctx, &kvpb.ScanRequest{Partitions: s.Partitions, Prefix: []byte(prefix)})
	if err != nil {
		return nil, fmt.Errorf("scan %s: %w", nd.ID, err)
	}
	out := map[string]*kvpb.Record{}
	for _, res := range resp.GetResults() {
		if res.GetTruncated() {
			return nil, fmt.Errorf("scan %s: partition %d truncated", nd.ID, res.GetPartition())
		}
		for _, kr := range res.GetRecords() {
			out[string(kr.GetKey())] = kr.GetRecord()
		}
	}
	return out, nil
}

// checkReplicas reads every replica's own records (after a repair of
// every replica). Every replica holds every control. A copy of a TTL key
// must be the expiring value (never the value it overwrote), with an
// expiry no later than the key's stamp bound (ack + TTL + skewAhead);
// once the key is past its upper bound, no replica may hold a copy that a
// node's clock (up to skewBehind behind) would find live.
func (r *ttlRun) checkReplicas(ctx context.Context, what string) {
	r.t.Helper()
	now := time.Now()
	expired, live, collected := 0, 0, 0
	for _, nd := range r.c.Nodes {
		recs, err := rawRecords(ctx, nd, "ttlf-")
		if err != nil {
			r.t.Fatal(err)
		}
		for _, k := range r.snapshot() {
			rec, ok := recs[k.name]
			if k.ttl == 0 {
				if !ok || rec.GetTombstone() || string(rec.GetValue()) != k.value || rec.GetExpiresAtUnixNanos() != 0 {
					r.t.Errorf("%s: %s's replica holds control %s as %v, want %q without expiry", what, nd.ID, k.name, rec, k.value)
				}
				continue
			}
			past := !now.Before(k.upper())
			if !ok {
				collected++
				continue
			}
			exp := time.Unix(0, rec.GetExpiresAtUnixNanos())
			stampBound := k.acked.Add(k.ttl + skewAhead + expirySlack)
			switch {
			case rec.GetTombstone():
				r.t.Errorf("%s: %s's replica holds a tombstone for %s", what, nd.ID, k.name)
			case string(rec.GetValue()) != k.value:
				r.t.Errorf("%s: %s's replica holds %s = %q, want the expiring %q (old %q)", what, nd.ID, k.name, rec.GetValue(), k.value, k.old)
			case rec.GetExpiresAtUnixNanos() == 0 || exp.After(stampBound):
				r.t.Errorf("%s: %s's replica holds %s expiring at %v, after its bound %v", what, nd.ID, k.name, exp, stampBound)
			case past && exp.Add(skewBehind).After(now):
				r.t.Errorf("%s: %s's replica holds %s live at %v (expiry %v), past its upper bound", what, nd.ID, k.name, now, exp)
			case past:
				expired++
			default:
				live++
			}
		}
	}
	r.t.Logf("%s: replicas hold %d expired copies of TTL keys past their bounds, %d copies not yet past them, %d copies collected (or never held); every control on every replica",
		what, expired, live, collected)
}

// TestExpiryUnderFaults is issue 19's expiry test under faults. On three
// processes (N = 3, every node a replica of every partition), n3 is down
// twice. Each time, keys with 1-5 s TTLs are written through n1 and n2 at
// one, quorum and linearizable, with controls without a TTL and keys that
// held a value without a TTL and are overwritten with a TTL; n3 stays
// away 3 s, long enough for the shortest TTLs and their collection grace
// (--tombstone-grace 1s) to pass, then comes back with its clock skewed
// (400 ms ahead the first time, 400 ms behind the second, from its first
// instant: --chaos-clock-offset), and more such keys are written at every
// level through every node, n3 included, while it is skewed. What n3
// missed reaches it by hints (writes n1 coordinated) or by anti-entropy
// alone (n2 drops its hints after 1 s), scheduled every second and forced
// (POST /api/cluster/repair). Readers at every level through every node
// read the keys all along, each read judged against the bounds above
// expiryAllowance: no read may find a value after its upper bound; an
// overwritten value may be read only at a level allowed to be stale, and
// only before n3's repair; controls stay; keys are live until their lower
// bound at the levels bound to see them. After each repair, after every
// TTL has passed, and again after one more forced anti-entropy round and
// a restart of n1: the replicas' own records, read through the Replica
// service, hold no live copy and no overwritten value, and (the last two
// times) a sweep of every key at every level through every node finds
// every TTL key absent and every control present.
func TestExpiryUnderFaults(t *testing.T) {
	if testing.Short() {
		t.Skip("starts real processes")
	}
	start := time.Now()
	const grace, gcInterval = time.Second, 500 * time.Millisecond
	base := []string{"--chaos-hooks", "--ae-interval", "1s", "--scrub-rate", "-1",
		"--tombstone-grace", grace.String(), "--gc-interval", gcInterval.String(), "--hint-replay-rate", "20000"}
	// n2 drops its hints after a second: what n3 misses of the writes n2
	// coordinates while n3 is away reaches n3 by anti-entropy alone, what
	// n1 coordinates by hints first.
	c := StartOptions(t, Options{Nodes: 3, Args: base, Prepare: func(nodes []*Node) {
		nodes[1].Args = append(nodes[1].Args, "--hint-window", "1s")
	}})
	c.WaitRaftReady(120*time.Second, 0)
	ctx := t.Context()
	n1, n2, n3 := c.Nodes[0], c.Nodes[1], c.Nodes[2]
	nodes := map[string]*Node{"n1": n1, "n2": n2, "n3": n3}
	run := &ttlRun{t: t, c: c}
	ttlOf := func(i int) time.Duration { return time.Second + time.Duration((i*379)%4001)*time.Millisecond } // 1-5 s
	levelsSet := func(ls ...string) map[string]bool {
		m := map[string]bool{}
		for _, l := range ls {
			m[l] = true
		}
		return m
	}
	// liveAt: the levels bound to see a write made at level.
	liveAt := map[string]map[string]bool{
		"one":          {},
		"quorum":       levelsSet("quorum", "all"),
		"all":          levelsSet(ttlLevels...),
		"linearizable": levelsSet("linearizable"),
	}
	// staleWhileDown: the levels at which a write made at level while n3
	// was down may read stale until n3's repair.
	staleWhileDown := map[string]map[string]bool{
		"one":          levelsSet("one", "linearizable"),
		"quorum":       levelsSet("one", "linearizable"),
		"linearizable": levelsSet("one"),
	}

	// The values that expiring writes overwrite, written at all before
	// any fault.
	const overwrites = 20 // per round and phase
	var olds []*ttlKey
	for _, round := range []string{"r1", "r2"} {
		for _, phase := range []string{"down", "skewed"} {
			for i := range overwrites {
				name := fmt.Sprintf("ttlf-%s-%s-over-%03d", round, phase, i)
				olds = append(olds, &ttlKey{name: name, value: "old-" + name})
			}
		}
	}
	if err := parallel(len(olds), func(i int) error {
		_, _, err := setRetry(ctx, n1, olds[i].name, olds[i].value, 0, "all")
		return err
	}); err != nil {
		t.Fatal(err)
	}

	// Readers through every running node at every level, all along.
	stop := make(chan struct{})
	var readers sync.WaitGroup
	for w := range 4 {
		readers.Add(1)
		go func() {
			defer readers.Done()
			rng := rand.New(rand.NewPCG(uint64(w), uint64(start.UnixNano()))) //nolint:gosec // test load
			for {
				select {
				case <-stop:
					return
				default:
				}
				keys := run.snapshot()
				if len(keys) == 0 {
					pause(10 * time.Millisecond)
					continue
				}
				nd := c.Nodes[rng.IntN(len(c.Nodes))]
				if !nd.Running() {
					continue
				}
				run.read(ctx, keys[rng.IntN(len(keys))], nd, ttlLevels[rng.IntN(len(ttlLevels))])
			}
		}()
	}
	stopReaders := sync.OnceFunc(func() { close(stop); readers.Wait() })
	defer stopReaders()

	// makeKeys builds one phase's keys: n TTL keys, controls and
	// overwrites, spread over levels and coordinators.
	makeKeys := func(round *ttlRound, phase string, n int, levels []string, via []string, down bool) []*ttlKey {
		var ks []*ttlKey
		add := func(k *ttlKey) {
			k.phase = round.name + "/" + phase
			k.liveLevels = liveAt[k.level]
			if down {
				k.round, k.staleLevels = round, staleWhileDown[k.level]
			}
			ks = append(ks, k)
		}
		for i := range n {
			name := fmt.Sprintf("ttlf-%s-%s-ttl-%03d", round.name, phase, i)
			add(&ttlKey{name: name, value: "v-" + name, ttl: ttlOf(i), level: levels[i%len(levels)], via: via[(i/len(levels))%len(via)]})
		}
		// Controls and overwrites at the levels that can write
		// durably to more than one replica (not one). Every level goes
		// through every coordinator.
		durable := []string{"quorum", "linearizable"}
		if !down {
			durable = []string{"all"} // with n3 up: nothing is stale after the ack
		}
		for i := range 5 {
			name := fmt.Sprintf("ttlf-%s-%s-control-%03d", round.name, phase, i)
			add(&ttlKey{name: name, value: "c-" + name, level: durable[i%len(durable)], via: via[(i/len(durable))%len(via)]})
		}
		for i := range overwrites {
			name := fmt.Sprintf("ttlf-%s-%s-over-%03d", round.name, phase, i)
			add(&ttlKey{name: name, value: "v-" + name, old: "old-" + name, ttl: time.Second + time.Duration(i/4)*time.Second, level: durable[i%len(durable)], via: via[(i/len(durable))%len(via)]})
		}
		return ks
	}

	// probeSkew checks that n3's clock is off by want: the time left of a
	// key with a long TTL by n3's clock, read between two reads of it by
	// n1's, brackets the offset whatever the reads' latency.
	probeSkew := func(name string, want time.Duration) {
		t.Helper()
		key := "ttlf-probe-" + name
		if _, _, err := setRetry(ctx, n1, key, "p", time.Minute, "all"); err != nil {
			t.Fatal(err)
		}
		var left [3]int64
		for i, nd := range []*Node{n1, n3, n1} {
			code, ms, err := getTTL(ctx, nd, key, "one")
			if err != nil || code != http.StatusOK {
				t.Fatalf("probe skew via %s: %d %v", nd.ID, code, err)
			}
			left[i] = ms
		}
		// n1's time left at n3's read lies in [left[2], left[0]]; n3's
		// is less by n3's offset. 20 ms for ttl_ms's and the stamp's
		// millisecond rounding.
		lo := time.Duration(left[2]-left[1])*time.Millisecond - 20*time.Millisecond
		hi := time.Duration(left[0]-left[1])*time.Millisecond + 20*time.Millisecond
		if want < lo || want > hi {
			t.Fatalf("n3's clock is between %v and %v ahead of n1's, want %v", lo, hi, want)
		}
		t.Logf("n3's clock measured between %v and %v ahead of n1's (set: %v)", lo, hi, want)
	}

	rounds := []struct {
		round  *ttlRound
		offset time.Duration
	}{
		{&ttlRound{name: "r1"}, skewAhead},
		{&ttlRound{name: "r2"}, -skewBehind},
	}
	for _, rd := range rounds {
		// n3 down: writes at one, quorum and linearizable through n1 and n2.
		n3.Stop()
		c.WaitRaftReady(60*time.Second, 0)
		down := makeKeys(rd.round, "down", 120, []string{"quorum", "quorum", "linearizable", "one"}, []string{"n1", "n2"}, true)
		run.write(ctx, nodes, down)
		t.Logf("%s: %d keys written with n3 down, %s after start", rd.round.name, len(down), time.Since(start).Round(time.Millisecond))
		// n3 stays away while the shortest TTLs run out and their grace
		// passes (and a collector pass more): it holds the overwritten
		// values of keys that expire meanwhile, and the expired records
		// that hide them must not be collected while it is away.
		var away time.Time
		for _, k := range down {
			if k.old != "" && k.ttl == time.Second {
				away = maxTime(away, k.acked.Add(k.ttl+grace+gcInterval+skewAhead))
			}
		}
		run.awaitTime(away, "the shortest TTLs and their grace to pass with n3 away")

		// n3 back, its clock skewed from its first instant.
		n3.Args = append(append([]string(nil), base...), "--chaos-clock-offset", rd.offset.String())
		n3.Start()
		c.WaitConverged(60 * time.Second)
		c.WaitRaftReady(60*time.Second, 0)
		probeSkew(rd.round.name, rd.offset)
		skewed := makeKeys(rd.round, "skewed", 60, ttlLevels, []string{"n1", "n2", "n3"}, false)
		run.write(ctx, nodes, skewed)
		t.Logf("%s: %d keys written with n3's clock %+v, %s after start", rd.round.name, len(skewed), rd.offset, time.Since(start).Round(time.Millisecond))

		// Hints delivered and an exchange of every partition between n3
		// and both peers: from here on n3 holds every write it missed.
		run.awaitHints()
		run.repair(ctx, n3)
		rd.round.repaired.Store(time.Now().UnixNano())
		t.Logf("%s: n3 repaired %s after start", rd.round.name, time.Since(start).Round(time.Millisecond))
		run.checkReplicas(ctx, rd.round.name+" after n3's repair")
	}

	// Every TTL past its upper bound.
	var last time.Time
	for _, k := range run.snapshot() {
		if k.ttl > 0 {
			last = maxTime(last, k.upper())
		}
	}
	run.awaitTime(last, "every TTL to pass its bound")
	t.Logf("every TTL past its bound %s after start", time.Since(start).Round(time.Millisecond))

	final := func(what string) {
		t.Helper()
		for _, nd := range c.Nodes {
			run.repair(ctx, nd)
		}
		n := run.sweep(ctx)
		t.Logf("%s: %d reads, every key at every level through every node", what, n)
		run.checkReplicas(ctx, what)
	}
	final("after every TTL")
	// Two scheduled anti-entropy rounds more, then n1 restarts (its
	// partitions' leadership moves), two rounds more, and once more.
	run.awaitExchanges(ctx, 2)
	n1.Restart()
	c.WaitConverged(60 * time.Second)
	c.WaitRaftReady(60*time.Second, 0)
	run.awaitExchanges(ctx, 2)
	final("after n1's restart")

	stopReaders()

	collected, err := sumMetric(ctx, "ringkv_antientropy_tombstones_collected_total", n1, n2, n3)
	if err != nil {
		t.Fatal(err)
	}
	tl := &run.tally
	ttlKeys, overwritten, controls := 0, 0, 0
	for _, k := range run.snapshot() {
		switch {
		case k.ttl == 0:
			controls++
		case k.old != "":
			overwritten++
			ttlKeys++
		default:
			ttlKeys++
		}
	}
	t.Logf("%d TTL keys (1-5 s; %d overwriting a value without TTL) and %d controls; %d reads judged (200 or 404): %d of TTL keys after their upper bound, %d found a TTL key live before it, %d found an overwritten value and %d missed a control at a level allowed to be stale before n3's repair; %d errors or other statuses (a node down or restarting); %v expired records and tombstones collected (n1 counts since its restart); %s in all",
		ttlKeys, overwritten, controls, tl.reads.Load(), tl.afterExpiry.Load(), tl.liveBefore.Load(), tl.staleOld.Load(), tl.staleAbsent.Load(), tl.unavailable.Load(), collected, time.Since(start).Round(time.Millisecond))
	tl.mu.Lock()
	defer tl.mu.Unlock()
	for _, s := range tl.stale {
		t.Logf("allowed stale read: %s", s)
	}
	for i, f := range tl.failures {
		if i == 30 {
			t.Errorf("... and %d more", len(tl.failures)-30)
			break
		}
		t.Error(f)
	}
	if len(tl.failures) > 0 {
		t.Fatalf("%d reads broke expiry (skew %v ahead, %v behind; allowance %v)", len(tl.failures), skewAhead, skewBehind, expiryAllowance)
	}
	if tl.afterExpiry.Load() < 1000 || tl.liveBefore.Load() < 100 {
		t.Fatalf("too few reads to show anything: %d after expiry, %d live", tl.afterExpiry.Load(), tl.liveBefore.Load())
	}
}
