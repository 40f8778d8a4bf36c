package antientropy

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"golang.org/x/time/rate"

	"github.com/ringkv/ringkv/proto/kvpb"
	"github.com/ringkv/ringkv/ring"
)

// Store is the local replica storage as anti-entropy reads and repairs it.
// The node implements it over replica.Store.
type Store interface {
	// ScanSnapshot calls fn with the key hash and record hash of every
	// record of partition (an id: for a split partition, the records of
	// its hash range) in one snapshot; begin is called once, at the
	// snapshot's moment, ordered with the change stream fed to
	// Trees.Apply, before ScanSnapshot returns nil (see
	// replica.Store.ScanSnapshot).
	ScanSnapshot(ctx context.Context, partition uint32, begin func(), fn func(keyHash, recHash uint64) bool) error
	// Records calls fn, in key order from start (inclusive; nil: the
	// first), with every readable record of partition, its record hash
	// and its wire form, until fn returns false. fn owns its arguments.
	Records(partition uint32, start []byte, fn func(key []byte, hash uint64, rec *kvpb.Record) bool) error
	// Merge durably merges records (last writer wins).
	Merge(ctx context.Context, records []*kvpb.KeyedRecord) error
}

// Scrubbable is the optional part of the store the scrubber needs.
type Scrubbable interface {
	// Verify checks up to limit records of partition from start; see
	// replica.Store.Verify.
	Verify(partition uint32, start []byte, limit int, corrupt func(key []byte)) (next []byte, checked int, readBytes int64, err error)
	// Quarantine removes key's record if it still fails its checksum.
	Quarantine(ctx context.Context, partition uint32, key []byte) (bool, error)
}

// Collector is the optional part of the store tombstone collection needs.
type Collector interface {
	// DeleteIfEqual removes key's record if it is still exactly rec.
	DeleteIfEqual(ctx context.Context, partition uint32, key []byte, rec *kvpb.Record) (bool, error)
}

// Peers reaches the other replicas. Client implements it over drpc.
type Peers interface {
	Tree(ctx context.Context, node string, req *kvpb.TreeRequest) ([]uint64, error)
	Fetch(ctx context.Context, node string, req *kvpb.FetchRequest) (*kvpb.FetchResponse, error)
	Merge(ctx context.Context, node string, records []*kvpb.KeyedRecord) error
	Read(ctx context.Context, node string, keys []*kvpb.ReadKey) ([]*kvpb.ReadResult, error)
}

// RingSource gives the current ring (nil before the node has one).
type RingSource interface{ Ring() *ring.Ring }

// Liveness tells whether a member is believed alive.
type Liveness interface{ Alive(id string) bool }

// Deps are a Service's dependencies.
type Deps struct {
	// Trees must be the Trees the replica store's observer feeds. Required.
	Trees *Trees
	// Store, Peers and Ring are required.
	Store Store
	Peers Peers
	Ring  RingSource
	// Scrub enables the scrubber; Collect enables tombstone collection.
	Scrub   Scrubbable
	Collect Collector
	// Liveness; nil treats every member as alive.
	Liveness Liveness
	// Registerer receives the metrics; nil keeps them private.
	Registerer prometheus.Registerer
}

// Service runs this node's anti-entropy: it builds the partition trees
// from disk, exchanges them with peer replicas on a schedule and on
// demand, scrubs stored records for corruption and collects tombstones. It
// also serves the Repair drpc service (kvpb.DRPCRepairServer) to peers.
// Safe for concurrent use. See doc.go for its goroutines.
type Service struct {
	cfg     Config
	deps    Deps
	log     *slog.Logger
	metrics *metrics
	// lastRefusal is when a refused request was last logged (Unix
	// nanoseconds): one line a minute.
	lastRefusal atomic.Int64

	// keys and bytes budget every record transfer (pull and push).
	keys, bytes *rate.Limiter
	// scrubKeys and scrubBytes budget the scrubber's reads.
	scrubKeys, scrubBytes *rate.Limiter

	// treesLevel is the P of the ring whose ids the trees were last kept
	// for (runBuilder's goroutine only).
	treesLevel int

	lifetime context.Context
	cancel   context.CancelFunc
	wg       sync.WaitGroup
	closed   sync.Once
}

// New returns a Service; Start starts its loops.
func New(cfg Config, deps Deps) (*Service, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	cfg = cfg.withDefaults()
	if deps.Trees == nil || deps.Store == nil || deps.Peers == nil || deps.Ring == nil {
		return nil, errors.New("antientropy: Deps.Trees, Store, Peers and Ring are required")
	}
	m, err := newMetrics(deps.Registerer)
	if err != nil {
		return nil, err
	}
	ctx, cancel := context.WithCancel(context.Background())
	s := &Service{
		cfg: cfg, deps: deps, log: cfg.Logger, metrics: m,
		keys:       rate.NewLimiter(rate.Limit(cfg.KeysPerSec), max(int(cfg.KeysPerSec), cfg.PageRecords)),
		bytes:      rate.NewLimiter(rate.Limit(cfg.BytesPerSec), max(int(cfg.BytesPerSec), 1<<20)),
		scrubKeys:  rate.NewLimiter(rate.Limit(max(cfg.ScrubPerSec, 1)), max(int(cfg.ScrubPerSec), 1)),
		scrubBytes: rate.NewLimiter(rate.Limit(max(cfg.ScrubBytesPerSec, 1)), max(int(cfg.ScrubBytesPerSec), 1<<20)),
		lifetime:   ctx, cancel: cancel,
	}
	return s, nil
}

// Start starts the tree builder, and, as configured, the exchange,
// scrubber and collector loops.
func (s *Service) Start() {
	s.goLoop(s.runBuilder)
	if s.cfg.Interval > 0 {
		s.goLoop(s.runExchanges)
	}
	if s.deps.Scrub != nil && s.cfg.ScrubPerSec > 0 {
		s.goLoop(s.runScrubber)
	}
	if s.deps.Collect != nil && s.cfg.TombstoneGrace > 0 {
		s.goLoop(s.runCollector)
	}
}

func (s *Service) goLoop(f func(ctx context.Context)) {
	s.wg.Add(1)
	go func() {
		defer s.wg.Done()
		f(s.lifetime)
	}()
}

// Close stops every loop and waits for them; in-flight exchanges are
// cancelled. Idempotent.
func (s *Service) Close() error {
	s.closed.Do(func() {
		s.cancel()
		s.wg.Wait()
		s.metrics.unregister()
	})
	return nil
}

// wait blocks for d or until ctx ends; false means ctx ended.
func wait(ctx context.Context, d time.Duration) bool {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return false
	case <-t.C:
		return true
	}
}

// ringNow returns the ring once the node has one with partitions, waiting
// for it; nil if ctx ends first.
func (s *Service) ringNow(ctx context.Context) *ring.Ring {
	for {
		if r := s.deps.Ring.Ring(); r != nil && r.Partitions() > 0 && r.ActiveCount() > 0 {
			return r
		}
		if !wait(ctx, 100*time.Millisecond) {
			return nil
		}
	}
}

// runBuilder builds the tree of every partition id of the ring, then
// rebuilds stale ones (after a corrupt record was replaced or removed) and
// follows the ring: once its P doubles (a split) the trees of the ids it
// no longer has are dropped and those of its new ids built.
func (s *Service) runBuilder(ctx context.Context) {
	r := s.ringNow(ctx)
	if r == nil {
		return
	}
	start := time.Now()
	s.syncTrees(ctx, r)
	if ctx.Err() != nil {
		return
	}
	s.log.Info("merkle trees built", "partitions", r.Partitions(), "took", time.Since(start))
	tick := time.NewTicker(time.Second)
	defer tick.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case p := <-s.deps.Trees.rebuild:
			if _, ok := s.deps.Ring.Ring().Index(p); ok { // not a tree dropped since
				s.rebuild(ctx, p)
			}
		case <-tick.C:
			s.syncTrees(ctx, s.deps.Ring.Ring())
		}
	}
}

// syncTrees drops, once r's P differs from the last ring's, the trees of
// ids r does not have (those of the level before a split: the store's
// observer reports their keys' changes under r's ids, so they would only
// grow wrong), and builds r's missing and stale ones.
func (s *Service) syncTrees(ctx context.Context, r *ring.Ring) {
	ids := r.IDs()
	if r.Partitions() != s.treesLevel {
		for _, p := range s.deps.Trees.retain(ids) {
			s.metrics.lastFull.DeleteLabelValues(fmt.Sprint(p))
		}
		s.treesLevel = r.Partitions()
	}
	for _, p := range ids {
		if ctx.Err() != nil {
			return
		}
		if s.deps.Trees.needsBuild(p) {
			s.rebuild(ctx, p)
		}
	}
}

// rebuild builds p's tree from a snapshot plus the changes since.
func (s *Service) rebuild(ctx context.Context, p uint32) {
	fresh := NewTree()
	var pt *partTree // set at the snapshot's moment, before ScanSnapshot returns
	err := s.deps.Store.ScanSnapshot(ctx, p, func() { pt = s.deps.Trees.beginRebuild(p) }, func(kh, rh uint64) bool {
		fresh.Update(kh, 0, rh)
		return true
	})
	if err == nil && pt == nil {
		err = errors.New("antientropy: the store's snapshot never began")
	}
	if err != nil {
		if pt != nil {
			pt.abortRebuild()
		}
		if ctx.Err() == nil {
			s.log.Warn("merkle tree build failed", "partition", p, "err", err)
		}
		return
	}
	pt.finishRebuild(fresh)
	s.metrics.rebuilds.Inc()
}

// runExchanges runs an exchange cycle every Interval.
func (s *Service) runExchanges(ctx context.Context) {
	if s.ringNow(ctx) == nil {
		return
	}
	for wait(ctx, s.cfg.Interval) {
		s.cycle(ctx, nil, false)
	}
}

// Report summarises a repair run.
type Report struct {
	// Partitions is how many partitions were exchanged with every live peer.
	Partitions int `json:"partitions"`
	// Exchanges counts (partition, peer) exchanges attempted.
	Exchanges int `json:"exchanges"`
	// Differing counts leaf buckets found differing.
	Differing int `json:"buckets_differing"`
	// Pulled and Pushed count records merged here and sent to peers.
	Pulled int `json:"keys_pulled"`
	Pushed int `json:"keys_pushed"`
	// Failed lists exchanges that failed, as "partition/peer: error".
	Failed []string `json:"failed,omitempty"`
	// Skipped lists peers not exchanged with because they are not alive.
	Skipped []string `json:"skipped,omitempty"`
}

// Repair exchanges partitions, by id (all this node replicates when
// empty), with every other live replica now, and returns what it did. Ids
// of partitions this node does not replicate in the ring it holds are
// ignored. It runs in the caller's goroutine under the same rate limits
// as scheduled exchanges. Errors: ErrClosed; ctx.Err().
func (s *Service) Repair(ctx context.Context, partitions []uint32) (Report, error) {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	stop := context.AfterFunc(s.lifetime, cancel)
	defer stop()
	if s.lifetime.Err() != nil {
		return Report{}, ErrClosed
	}
	rep := s.cycle(ctx, partitions, true)
	if err := ctx.Err(); err != nil {
		if s.lifetime.Err() != nil {
			return rep, ErrClosed
		}
		return rep, err //nolint:wrapcheck // documented: ctx.Err() itself
	}
	return rep, nil
}

// cycle exchanges the given partition ids (nil: all of this node's) with
// each of their other live replicas, one exchange at a time. Every replica
// initiates with every other, so a pair is compared twice per interval;
// the second comparison is one root RPC when the first repaired them.
func (s *Service) cycle(ctx context.Context, only []uint32, onDemand bool) Report {
	var rep Report
	r := s.deps.Ring.Ring()
	if r == nil {
		return rep
	}
	for _, p := range r.IDsOf(s.cfg.NodeID) {
		if only != nil && !slices.Contains(only, p) {
			continue
		}
		full := true
		for _, peer := range r.ReplicasOf(p) {
			if peer == s.cfg.NodeID {
				continue
			}
			if ctx.Err() != nil {
				return rep
			}
			if s.deps.Liveness != nil && !s.deps.Liveness.Alive(peer) {
				full = false
				rep.Skipped = append(rep.Skipped, fmt.Sprintf("%d/%s", p, peer))
				continue
			}
			rep.Exchanges++
			res, err := s.exchange(ctx, p, peer)
			rep.Differing += res.differing
			rep.Pulled += res.pulled
			rep.Pushed += res.pushed
			if err != nil {
				full = false
				s.metrics.exchanges.WithLabelValues("failed").Inc()
				rep.Failed = append(rep.Failed, fmt.Sprintf("%d/%s: %v", p, peer, err))
				if ctx.Err() == nil {
					s.log.Debug("exchange failed", "partition", p, "peer", peer, "err", err)
				}
				continue
			}
			if res.differing == 0 {
				s.metrics.exchanges.WithLabelValues("equal").Inc()
			} else {
				s.metrics.exchanges.WithLabelValues("repaired").Inc()
				s.log.Info("anti-entropy repaired", "partition", p, "peer", peer, "buckets", res.differing,
					"pulled", res.pulled, "pushed", res.pushed, "on_demand", onDemand)
			}
		}
		if full {
			rep.Partitions++
			s.metrics.lastFull.WithLabelValues(fmt.Sprint(p)).Set(float64(time.Now().UnixNano()) / 1e9)
		}
	}
	return rep
}
