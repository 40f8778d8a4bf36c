package consensus

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"slices"
	"sort"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/hashicorp/go-hclog"
	"github.com/hashicorp/raft"
	"github.com/prometheus/client_golang/prometheus"
	"golang.org/x/sync/semaphore"

	"github.com/ringkv/ringkv/replica"
	"github.com/ringkv/ringkv/ring"
)

// Config tunes the node's Raft groups. Build it with DefaultConfig.
type Config struct {
	// NodeID is this node's id: the raft ServerID and ServerAddress of
	// every group on it. Required.
	NodeID string
	// DataDir holds snapshots under DataDir/<group>. Required.
	DataDir string
	// HeartbeatTimeout and ElectionTimeout: raft's failure detection. 1s
	// each by default; failover takes about 2x.
	HeartbeatTimeout time.Duration
	ElectionTimeout  time.Duration
	// LeaderLeaseTimeout: a leader that has heard from no majority of its
	// group for this long steps down. Default 1s (it must not exceed
	// HeartbeatTimeout); it bounds QuietHeartbeatTimeout.
	LeaderLeaseTimeout time.Duration
	// QuietHeartbeatTimeout is the HeartbeatTimeout (and, if larger, the
	// ElectionTimeout) of a group while this node leads it: raft's
	// leader sends each follower a heartbeat every tenth to fifth of it.
	// Most of those never travel (liveness.go), but each still wakes a
	// goroutine; the longer timeout wakes them a third as often. It never
	// applies to followers, whose election timer stays HeartbeatTimeout,
	// so failover is unchanged; a group this node stops leading gets its
	// normal timeouts back at the next reconcile tick, and before a
	// leadership transfer. Default 3s; zero keeps HeartbeatTimeout
	// always. It must be at least HeartbeatTimeout and at most 3x
	// LeaderLeaseTimeout, so that heartbeats, at most a fifth of it
	// apart, keep the leader's lease with room to spare.
	QuietHeartbeatTimeout time.Duration
	// CommitTimeout is raft's idle tick: a leader with nothing new to
	// send tells each follower its commit index this often, and retries a
	// follower whose replication failed. DESIGN.md measured that 50ms
	// makes two thirds of idle traffic over 64 groups; each tick also
	// wakes three goroutines on the leader (liveness.go answers it).
	// Default 2s: the liveness messages carry a group's new commit index
	// to its followers within a round (LivenessInterval, 200ms), so the
	// tick is the backstop; a follower back from a failure with nothing
	// new written waits up to two ticks to be caught up.
	CommitTimeout time.Duration
	// SnapshotThreshold is how many entries a group logs between
	// snapshots; TrailingLogs how many it keeps behind a snapshot.
	// Defaults 8192 and 1024.
	SnapshotThreshold uint64
	TrailingLogs      uint64
	// LogCacheEntries is how many of its newest log entries each group
	// keeps in memory (raft.LogCache) for replication to read back
	// instead of a Badger lookup each; the cache pins the entries'
	// commands (keys and values), so a node holds up to groups x
	// LogCacheEntries x command size. A follower further behind reads
	// the store. Default 64; zero means the default.
	LogCacheEntries int
	// SnapshotInterval is how often a group checks whether to snapshot.
	// Default 10s.
	SnapshotInterval time.Duration
	// ReconcileInterval is how often leaders compare their group's
	// configuration with the ring. Default 1s.
	ReconcileInterval time.Duration
	// CatchUpEntries: a non-voter within this many entries of the leader's
	// commit index is promoted to voter. Default 64.
	CatchUpEntries uint64
	// StuckLeaderTimeout: a group this node leads whose raft instance has
	// refused every request with raft.ErrLeadershipTransferInProgress for
	// this long (hashicorp/raft#696) is restarted on this node
	// (watchdog.go). It must be longer than a transfer raft runs legitimately
	// refuses requests: about 2 ElectionTimeouts plus one transport RPC
	// timeout, 7s with the defaults. Default 10s: shorter risks restarting
	// a group in the middle of a slow transfer, longer keeps a stuck
	// partition unavailable longer.
	StuckLeaderTimeout time.Duration
	// MaxPendingProposals bounds the proposals (writes handed to
	// raft.Apply and not yet applied) one group queues on its leader;
	// beyond it a write is refused at once with ErrOverloaded (not
	// appended: safe to retry) instead of waiting in raft's queue. 0: no
	// bound. Default 1024.
	MaxPendingProposals int
	// Founder says this node created the cluster's ring (gossip.Founded):
	// at Start it bootstraps the group of every partition that has no
	// state yet, with itself as the only voter. No other node ever
	// bootstraps a group.
	Founder bool
	// UnsafeIgnoreIntents is a deliberately broken mode for testing the
	// transactions' checkers (internal/chaos): every group ignores the
	// intents of transactions across partitions, so that reads see values
	// under them and writes and prepares go through them. Never set it
	// outside tests.
	UnsafeIgnoreIntents bool
	// Logger; nil discards.
	Logger *slog.Logger
}

// DefaultConfig returns fresh defaults; NodeID and DataDir are left empty.
func DefaultConfig() Config {
	return Config{
		HeartbeatTimeout:      time.Second,
		ElectionTimeout:       time.Second,
		LeaderLeaseTimeout:    time.Second,
		CommitTimeout:         2 * time.Second,
		QuietHeartbeatTimeout: 3 * time.Second,
		SnapshotThreshold:     8192,
		TrailingLogs:          1024,
		SnapshotInterval:      10 * time.Second,
		LogCacheEntries:       DefaultLogCacheEntries,
		ReconcileInterval:     time.Second,
		CatchUpEntries:        64,
		StuckLeaderTimeout:    10 * time.Second,

		MaxPendingProposals: 1024,
	}
}

// Validate reports every problem with c, joined.
func (c Config) Validate() error {
	var errs []error
	if c.NodeID == "" {
		errs = append(errs, errors.New("consensus: NodeID is required"))
	}
	if c.DataDir == "" {
		errs = append(errs, errors.New("consensus: DataDir is required"))
	}
	for name, d := range map[string]time.Duration{
		"HeartbeatTimeout": c.HeartbeatTimeout, "ElectionTimeout": c.ElectionTimeout,
		"LeaderLeaseTimeout": c.LeaderLeaseTimeout, "CommitTimeout": c.CommitTimeout,
		"SnapshotInterval": c.SnapshotInterval, "ReconcileInterval": c.ReconcileInterval,
		"StuckLeaderTimeout": c.StuckLeaderTimeout,
	} {
		if d <= 0 {
			errs = append(errs, fmt.Errorf("consensus: %s must be positive", name))
		}
	}
	if c.StuckLeaderTimeout > 0 && c.StuckLeaderTimeout <= 2*c.ElectionTimeout {
		errs = append(errs, fmt.Errorf("consensus: StuckLeaderTimeout %v must exceed 2 ElectionTimeouts (%v): a leadership transfer refuses writes that long", c.StuckLeaderTimeout, 2*c.ElectionTimeout))
	}
	if q := c.QuietHeartbeatTimeout; q != 0 && (q < c.HeartbeatTimeout || q > 3*c.LeaderLeaseTimeout) {
		errs = append(errs, fmt.Errorf("consensus: QuietHeartbeatTimeout %v must be 0 or within [HeartbeatTimeout %v, 3x LeaderLeaseTimeout %v]", q, c.HeartbeatTimeout, 3*c.LeaderLeaseTimeout))
	}
	if c.MaxPendingProposals < 0 {
		errs = append(errs, fmt.Errorf("consensus: MaxPendingProposals must not be negative (0: no bound), got %d", c.MaxPendingProposals))
	}
	if c.LogCacheEntries < 0 {
		errs = append(errs, fmt.Errorf("consensus: LogCacheEntries must not be negative (0: the default), got %d", c.LogCacheEntries))
	}
	if c.SnapshotThreshold == 0 {
		errs = append(errs, errors.New("consensus: SnapshotThreshold must be positive"))
	}
	return errors.Join(errs...)
}

// RingSource gives the current ring.
type RingSource interface{ Ring() *ring.Ring }

// Transports hands out each group's raft transport (Transport implements
// it over drpc).
type Transports interface {
	Group(group uint32) raft.Transport
	RemoveGroup(group uint32)
}

// Progress asks another node how far a group has applied; the leader uses
// it to promote a non-voter once it has caught up.
type Progress interface {
	AppliedIndex(ctx context.Context, node string, group uint32) (uint64, error)
}

// LogFactory opens a group's log and stable store. It is called from
// several goroutines at once (the children of a split start in
// parallel).
type LogFactory func(group uint32) (raft.LogStore, raft.StableStore, error)

// Deps are the Manager's collaborators. All but Registerer are required.
type Deps struct {
	Store      Store
	Clock      *replica.Clock
	Ring       RingSource
	Transports Transports
	Logs       LogFactory
	Progress   Progress
	Registerer prometheus.Registerer
	// Drains, if set, tells which members drain: leadership is never
	// handed to them (drain.go). Optional.
	Drains DrainSource
	// Features, if set, tells whether every member speaks a wire
	// version; Group.Txn writes only while every member speaks
	// TxnWireVersion. Nil: every member does (tests, single-version
	// clusters).
	Features Features
}

// Features tells whether every member of the cluster speaks a wire
// protocol version (gossip metadata knows).
type Features interface {
	SpeaksWire(version int) bool
}

// Manager runs one Raft group per partition this node replicates. It
// creates groups as the ring assigns partitions to this node and, where it
// leads a group, changes the group's configuration toward the ring's
// preference list one server at a time.
//
// Bootstrap: the node that created the cluster's ring (Config.Founder)
// bootstraps every group with itself as sole voter; every other member
// joins groups when their leaders add it.
type Manager struct {
	cfg  Config
	deps Deps
	log  *slog.Logger
	m    *metrics

	cancel context.CancelFunc
	wg     sync.WaitGroup
	// createMu serializes the starting of groups (ensureGroups, the
	// children of a split), so that no group is started twice.
	createMu sync.Mutex
	// draining: hand leadership away instead of reconciling (drain.go).
	draining atomic.Bool

	mu struct {
		sync.Mutex
		groups  map[uint32]*Group
		leaders map[uint32]string
		closed  bool
		// starting holds the groups being started (reserve): the
		// children of splits start in parallel, outside createMu.
		starting map[uint32]bool
	}
}

// NewManager returns a Manager; Start creates its groups.
func NewManager(cfg Config, deps Deps) (*Manager, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	if deps.Store == nil || deps.Clock == nil || deps.Ring == nil || deps.Transports == nil || deps.Logs == nil || deps.Progress == nil {
		return nil, errors.New("consensus: Deps.Store, Clock, Ring, Transports, Logs and Progress are required")
	}
	log := cfg.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	if cfg.LogCacheEntries == 0 {
		cfg.LogCacheEntries = DefaultLogCacheEntries
	}
	mg := &Manager{cfg: cfg, deps: deps, log: log}
	mg.mu.groups = make(map[uint32]*Group)
	mg.mu.starting = make(map[uint32]bool)
	mg.mu.leaders = make(map[uint32]string)
	m, err := newMetrics(deps.Registerer, mg.Groups)
	if err != nil {
		return nil, err
	}
	mg.m = m
	return mg, nil
}

// Start creates the groups of every partition the ring gives this node
// (bootstrapping them if this node founds the cluster) and starts the
// reconcile loop. Goroutine: one loop, stopped by Close.
func (mg *Manager) Start() error {
	r := mg.deps.Ring.Ring()
	if mg.cfg.Founder && r != nil && r.Partitions() == r.Base() {
		// Every partition, not only this node's: members that joined
		// before this ran may already hold some of them, and leaders move
		// each group to its preference list. (Not after a split: the
		// children of a split start from their parents, split.go.)
		mg.createMu.Lock()
		for _, p := range r.IDs() {
			if _, ok := mg.Group(p); ok {
				continue
			}
			if err := mg.createGroup(p, true); err != nil {
				mg.createMu.Unlock()
				return err
			}
		}
		mg.createMu.Unlock()
	}
	if err := mg.ensureGroups(r, false); err != nil {
		return err
	}
	if lt, ok := mg.deps.Transports.(livenessTransport); ok {
		lt.SetLiveness(mg)
	}
	ctx, cancel := context.WithCancel(context.Background())
	mg.cancel = cancel
	mg.wg.Add(1)
	go func() {
		defer mg.wg.Done()
		mg.loop(ctx)
	}()
	return nil
}

// Close shuts every group down and waits for the loop.
func (mg *Manager) Close() error {
	mg.mu.Lock()
	if mg.mu.closed {
		mg.mu.Unlock()
		return nil
	}
	mg.mu.closed = true
	mg.mu.Unlock()
	if mg.cancel != nil {
		mg.cancel()
	}
	mg.wg.Wait()
	// Collect the groups only now: the loop may have been creating one
	// when closed was set.
	mg.mu.Lock()
	groups := make([]*Group, 0, len(mg.mu.groups))
	for _, g := range mg.mu.groups {
		groups = append(groups, g)
	}
	mg.mu.Unlock()
	var errs []error
	var wg sync.WaitGroup
	var emu sync.Mutex
	for _, g := range groups {
		wg.Add(1)
		go func() {
			defer wg.Done()
			if err := g.shutdown(); err != nil {
				emu.Lock()
				errs = append(errs, err)
				emu.Unlock()
			}
		}()
	}
	wg.Wait()
	return errors.Join(errs...)
}

// Group returns the group of partition p, if this node hosts it.
func (mg *Manager) Group(p uint32) (*Group, bool) {
	mg.mu.Lock()
	defer mg.mu.Unlock()
	g, ok := mg.mu.groups[p]
	return g, ok
}

// Groups returns every group on this node, by id.
func (mg *Manager) Groups() []*Group {
	mg.mu.Lock()
	out := make([]*Group, 0, len(mg.mu.groups))
	for _, g := range mg.mu.groups {
		out = append(out, g)
	}
	mg.mu.Unlock()
	sort.Slice(out, func(i, j int) bool { return out[i].id < out[j].id })
	return out
}

// AppliedIndex returns how far this node's group of partition p applied.
func (mg *Manager) AppliedIndex(p uint32) (uint64, error) {
	g, ok := mg.Group(p)
	if !ok {
		return 0, fmt.Errorf("%w: %d", ErrNoGroup, p)
	}
	return g.raft.AppliedIndex(), nil
}

// leaderlessElections is how many election timeouts a group the ring
// assigns this node may go without a known leader before the Manager warns;
// leaderlessRepeat is how often it warns again while some remain so.
const (
	leaderlessElections = 20
	leaderlessRepeat    = time.Minute
)

func (mg *Manager) loop(ctx context.Context) {
	tick := time.NewTicker(mg.cfg.ReconcileInterval)
	defer tick.Stop()
	watch := newLeaderWatch(leaderlessElections*mg.cfg.ElectionTimeout, leaderlessRepeat)
	stuck := newStuckWatch(mg.cfg.StuckLeaderTimeout)
	for {
		select {
		case <-ctx.Done():
			return
		case <-tick.C:
		}
		r := mg.deps.Ring.Ring()
		if err := mg.ensureGroups(r, false); err != nil {
			mg.log.Warn("create raft groups", "err", err)
		}
		var changes changeCounts
		for _, g := range mg.Groups() {
			mg.noteLeader(g)
			mg.quiet(g)
			if mg.checkStuck(stuck, g) {
				continue // restarted: the new instance is a follower
			}
			if mg.draining.Load() {
				if err := mg.handOff(ctx, g); err != nil {
					mg.log.Log(ctx, reconcileErrLevel(err), "hand leadership over while draining", "group_id", g.id, "err", err)
				}
				continue
			}
			// Several changes per tick (each waits for the previous to
			// commit): a new member is added and promoted without waiting
			// a tick per step.
			for range 4 {
				if g.raft.State() != raft.Leader {
					break
				}
				c, err := mg.reconcile(ctx, g, r)
				if err != nil {
					mg.log.Log(ctx, reconcileErrLevel(err), "reconcile raft group", "group_id", g.id, "err", err)
					break
				}
				changes.add(c)
				if !c.kind.configChange() {
					break
				}
			}
		}
		changes.log(mg.log)
		mg.splitParents(ctx, r)
		mg.watchLeaders(watch, r)
	}
}

// reconcileErrLevel: a peer that has not created the group yet (its ring
// is a moment behind) or a leadership change under way is retried at the
// next tick; anything else is worth a warning.
func reconcileErrLevel(err error) slog.Level {
	switch {
	case errors.Is(err, ErrNoGroup), errors.Is(err, raft.ErrNotLeader), errors.Is(err, raft.ErrLeadershipLost),
		errors.Is(err, raft.ErrLeadershipTransferInProgress), errors.Is(err, ErrNoVoter):
		return slog.LevelDebug
	}
	return slog.LevelWarn
}

// watchLeaders feeds watch the groups of the partitions r assigns this
// node (not those it has left) and logs what it reports.
func (mg *Manager) watchLeaders(watch *leaderWatch, r *ring.Ring) {
	if r == nil {
		return
	}
	led := map[uint32]bool{}
	leading := 0
	for _, p := range r.IDsOf(mg.cfg.NodeID) {
		g, ok := mg.Group(p)
		if !ok {
			led[p] = false
			continue
		}
		switch g.raft.State() {
		case raft.Shutdown:
			continue
		case raft.Leader:
			leading++
		}
		led[p] = g.Leader() != ""
	}
	rep := watch.observe(time.Now(), led)
	if rep.ready {
		mg.log.Info("raft groups ready", "groups", len(led), "leading", leading)
	}
	if n := len(rep.leaderless); n > 0 {
		ids := rep.leaderless[:min(n, 16)] // the first 16: a node may host a thousand groups
		mg.log.Warn("raft groups without leader", "groups", n, "of", len(led), "group_ids", ids,
			"for", rep.longest.Round(time.Second))
	}
	if rep.recovered {
		mg.log.Info("raft groups have leaders again", "groups", len(led), "leading", leading)
	}
}

func (mg *Manager) noteLeader(g *Group) {
	leader := g.Leader()
	mg.mu.Lock()
	prev, seen := mg.mu.leaders[g.id]
	mg.mu.leaders[g.id] = leader
	mg.mu.Unlock()
	if leader != "" && (!seen || prev != leader) {
		mg.m.leaderChanges.WithLabelValues(strconv.FormatUint(uint64(g.id), 10)).Inc()
	}
}

// ensureGroups creates the group of every partition r assigns this node.
// The child of a split starts from its parent here (split.go) when this
// node has, or may still receive, the parent's entries: while this node
// runs the parent group unsplit, or holds the parent's state without
// running it (after a restart: the parent is started, so that it applies
// the split), the child waits. A node without the parent starts the child
// empty, and the child's leader sends it the child's snapshot.
func (mg *Manager) ensureGroups(r *ring.Ring, bootstrap bool) error {
	if r == nil {
		return nil
	}
	mg.createMu.Lock()
	defer mg.createMu.Unlock()
	for _, p := range r.IDsOf(mg.cfg.NodeID) {
		if _, ok := mg.Group(p); ok || mg.isStarting(p) {
			continue
		}
		if parent, ok := r.ParentID(p); ok {
			wait, err := mg.awaitParent(p, parent)
			if err != nil {
				return err
			}
			if wait {
				continue
			}
		}
		if !mg.reserve(p) {
			continue
		}
		err := mg.createGroup(p, bootstrap)
		mg.unreserve(p)
		if err != nil {
			return err
		}
	}
	return nil
}

// reserve marks group p as being started, unless it runs or is being
// started already (then it returns false). unreserve ends the mark.
func (mg *Manager) reserve(p uint32) bool {
	mg.mu.Lock()
	defer mg.mu.Unlock()
	if _, ok := mg.mu.groups[p]; ok || mg.mu.starting[p] {
		return false
	}
	mg.mu.starting[p] = true
	return true
}

func (mg *Manager) unreserve(p uint32) {
	mg.mu.Lock()
	delete(mg.mu.starting, p)
	mg.mu.Unlock()
}

func (mg *Manager) isStarting(p uint32) bool {
	mg.mu.Lock()
	defer mg.mu.Unlock()
	return mg.mu.starting[p]
}

// DefaultLogCacheEntries is Config.LogCacheEntries' default. Small: a
// follower that is further behind reads the store, and the cache pins the
// entries' values.
const DefaultLogCacheEntries = 64

func (mg *Manager) createGroup(p uint32, bootstrap bool) error {
	mg.mu.Lock()
	closed := mg.mu.closed
	mg.mu.Unlock()
	if closed {
		return ErrClosed
	}
	logs, stable, err := mg.deps.Logs(p)
	if err != nil {
		return fmt.Errorf("consensus: open log of group %d: %w", p, err)
	}
	return mg.startGroup(p, bootstrap, logs, stable)
}

// startGroup starts the raft instance of group p over logs and stable
// (and the snapshots in DataDir/<p>), bootstrapping it if asked and it
// has no state, and makes it the Manager's group p.
func (mg *Manager) startGroup(p uint32, bootstrap bool, logs raft.LogStore, stable raft.StableStore) error {
	mg.mu.Lock()
	closed := mg.mu.closed
	mg.mu.Unlock()
	if closed {
		return ErrClosed
	}
	glog := newHCLogger(mg.log.With("group_id", p))
	snaps, err := mg.snapshotStore(p, glog)
	if err != nil {
		return err
	}
	rc := raft.DefaultConfig()
	rc.LocalID = raft.ServerID(mg.cfg.NodeID)
	rc.HeartbeatTimeout = mg.cfg.HeartbeatTimeout
	rc.ElectionTimeout = mg.cfg.ElectionTimeout
	rc.LeaderLeaseTimeout = mg.cfg.LeaderLeaseTimeout
	rc.CommitTimeout = mg.cfg.CommitTimeout
	rc.SnapshotThreshold = mg.cfg.SnapshotThreshold
	rc.TrailingLogs = mg.cfg.TrailingLogs
	rc.SnapshotInterval = mg.cfg.SnapshotInterval
	rc.BatchApplyCh = true
	rc.Logger = glog
	f := &fsm{group: p, store: mg.deps.Store}
	f.onSplit = func(info *splitInfo, via string) { mg.splitApplied(p, info, via) }
	trans := mg.deps.Transports.Group(p)
	if d, ok := logs.(LogDurability); ok {
		// StoreLogs returns before the fsync: the FSM and the transport
		// hold back what must wait for it (LogStore.StoreLogs).
		f.logs = d
		if dt, ok := trans.(interface{ SetLogDurability(LogDurability) }); ok {
			dt.SetLogDurability(d)
		}
	}
	// Raft reads back the entries it just appended to replicate them: the
	// newest come from memory instead of a Badger lookup each.
	cached, err := raft.NewLogCache(mg.cfg.LogCacheEntries, logs)
	if err != nil {
		return fmt.Errorf("consensus: log cache of group %d: %w", p, err)
	}
	has, err := raft.HasExistingState(logs, stable, snaps)
	if err != nil {
		return fmt.Errorf("consensus: inspect group %d: %w", p, err)
	}
	var started atomic.Pointer[raft.Raft]
	switch {
	case bootstrap && !has:
		cfg := raft.Configuration{Servers: []raft.Server{{Suffrage: raft.Voter, ID: rc.LocalID, Address: raft.ServerAddress(mg.cfg.NodeID)}}}
		if err := raft.BootstrapCluster(rc, logs, stable, snaps, trans, cfg); err != nil {
			return fmt.Errorf("consensus: bootstrap group %d: %w", p, err)
		}
	case !has:
		// Empty: a node that lost its disk must not vote before it has
		// refilled (guards.go).
		if gt, ok := trans.(interface{ GateVotes(func() uint64) }); ok {
			gt.GateVotes(func() uint64 {
				if r := started.Load(); r != nil {
					return r.LastIndex()
				}
				return 0
			})
		}
	}
	r, err := raft.NewRaft(rc, &countingFSM{fsm: f, m: mg.m}, cached, stable, snaps, trans)
	if err != nil {
		return fmt.Errorf("consensus: start group %d: %w", p, err)
	}
	started.Store(r)
	if gt, ok := trans.(interface {
		SetSnapshotCheck(func(index, term uint64) snapshotVerdict)
	}); ok {
		gt.SetSnapshotCheck(func(index, term uint64) snapshotVerdict { return judgeSnapshot(r, cached, index, term) })
	}
	if gt, ok := trans.(interface {
		SetPrevCheck(func(index, term uint64) bool)
	}); ok {
		gt.SetPrevCheck(func(index, term uint64) bool { return prevInSnapshot(r, logs, snaps, index, term) })
	}
	var timeouts *groupTimeouts
	if mg.cfg.QuietHeartbeatTimeout > mg.cfg.HeartbeatTimeout {
		timeouts = &groupTimeouts{heartbeat: mg.cfg.HeartbeatTimeout, election: mg.cfg.ElectionTimeout}
	}
	g := &Group{id: p, nodeID: mg.cfg.NodeID, timeouts: timeouts, raft: r, trans: trans, fsm: f, logs: logs, cachedLogs: cached, stable: stable, store: mg.deps.Store, clock: mg.deps.Clock, log: mg.log, m: mg.m, features: mg.deps.Features, ignoreIntents: mg.cfg.UnsafeIgnoreIntents, ring: mg.deps.Ring}
	if mg.cfg.MaxPendingProposals > 0 {
		g.proposals = semaphore.NewWeighted(int64(mg.cfg.MaxPendingProposals))
	}
	mg.mu.Lock()
	mg.mu.groups[p] = g
	mg.mu.Unlock()
	return nil
}

// changeKind is what reconcile did to a group.
type changeKind int

const (
	noChange changeKind = iota
	addedNonvoter
	promotedVoter
	removedServer
	handedOver           // this leader transferred leadership before leaving
	transferredToPrimary // leadership handed to the partition's primary
)

// configChange says whether the group's configuration changed (so
// reconcile may make another change at once).
func (k changeKind) configChange() bool {
	return k == addedNonvoter || k == promotedVoter || k == removedServer
}

// change is one change reconcile made and the server it concerned.
type change struct {
	kind changeKind
	peer string
}

// changeCounts sums up one tick's changes for a single log line: each
// change is logged at Debug, and a new member (64 groups or more, each
// added then promoted) would otherwise take hundreds of lines.
type changeCounts struct {
	byKind [transferredToPrimary + 1]int
	peers  []string
}

func (c *changeCounts) add(ch change) {
	if ch.kind == noChange {
		return
	}
	c.byKind[ch.kind]++
	if !slices.Contains(c.peers, ch.peer) {
		c.peers = append(c.peers, ch.peer)
	}
}

func (c *changeCounts) log(l *slog.Logger) {
	if len(c.peers) == 0 {
		return
	}
	slices.Sort(c.peers)
	l.Info("raft groups reconfigured", "non_voters_added", c.byKind[addedNonvoter], "voters_promoted", c.byKind[promotedVoter],
		"servers_removed", c.byKind[removedServer], "leadership_transfers", c.byKind[handedOver]+c.byKind[transferredToPrimary],
		"peers", c.peers)
}

// reconcile makes at most one change (reporting which, once it took
// effect) that moves the group toward the ring's preference list: add a
// missing replica as non-voter, promote a caught-up non-voter, remove a
// server the ring no longer lists (handing leadership away first if it is
// this node), and last hand leadership to the partition's primary.
func (mg *Manager) reconcile(ctx context.Context, g *Group, r *ring.Ring) (change, error) {
	want := r.ReplicasOf(g.id) // none for a parent the ring has split past
	if len(want) == 0 {
		return change{}, nil
	}
	cf := g.raft.GetConfiguration()
	if err := cf.Error(); err != nil {
		return change{}, fmt.Errorf("get configuration: %w", err)
	}
	servers := cf.Configuration().Servers
	has := func(id string) (raft.Server, bool) {
		for _, s := range servers {
			if string(s.ID) == id {
				return s, true
			}
		}
		return raft.Server{}, false
	}
	done := func(kind changeKind, peer string, err error) (change, error) {
		if err != nil {
			return change{}, err
		}
		return change{kind: kind, peer: peer}, nil
	}
	const changeTimeout = 5 * time.Second
	for _, id := range want {
		if _, ok := has(id); !ok {
			mg.log.Debug("adding raft non-voter", "group_id", g.id, "peer", id)
			return done(addedNonvoter, id, g.raftOutcome(wrapFuture(g.raft.AddNonvoter(raft.ServerID(id), raft.ServerAddress(id), 0, changeTimeout), "add non-voter")))
		}
	}
	for _, id := range want {
		s, _ := has(id)
		if s.Suffrage == raft.Voter {
			continue
		}
		cctx, cancel := context.WithTimeout(ctx, 2*time.Second)
		applied, err := mg.deps.Progress.AppliedIndex(cctx, id, g.id)
		cancel()
		if err != nil {
			return change{}, fmt.Errorf("progress of %s: %w", id, err)
		}
		if applied+mg.cfg.CatchUpEntries >= g.raft.CommitIndex() {
			mg.log.Debug("promoting raft voter", "group_id", g.id, "peer", id, "applied", applied)
			return done(promotedVoter, id, g.raftOutcome(wrapFuture(g.raft.AddVoter(raft.ServerID(id), raft.ServerAddress(id), 0, changeTimeout), "promote voter")))
		}
		return change{}, nil // still catching up
	}
	for _, s := range servers {
		if slices.Contains(want, string(s.ID)) {
			continue
		}
		if string(s.ID) == mg.cfg.NodeID {
			mg.log.Debug("handing over leadership before leaving group", "group_id", g.id)
			return done(handedOver, mg.cfg.NodeID, g.transferLeadership(""))
		}
		mg.log.Debug("removing raft server", "group_id", g.id, "peer", s.ID)
		return done(removedServer, string(s.ID), g.raftOutcome(wrapFuture(g.raft.RemoveServer(s.ID, 0, changeTimeout), "remove server")))
	}
	// The configuration matches the ring: hand leadership to the
	// partition's primary, so leaders spread as evenly as primaries do
	// (the ring balances those), if it has caught up and does not drain.
	if primary := want[0]; primary != mg.cfg.NodeID && (mg.deps.Drains == nil || !mg.deps.Drains.Draining(primary)) {
		cctx, cancel := context.WithTimeout(ctx, 2*time.Second)
		applied, err := mg.deps.Progress.AppliedIndex(cctx, primary, g.id)
		cancel()
		if err != nil || applied+mg.cfg.CatchUpEntries < g.raft.CommitIndex() {
			return change{}, nil //nolint:nilerr // a primary that is down or behind keeps the leader where it is
		}
		mg.log.Debug("transferring leadership to primary", "group_id", g.id, "peer", primary)
		err = g.transferLeadership(raft.ServerID(primary))
		if errors.Is(err, raft.ErrLeadershipTransferInProgress) {
			return change{}, nil // an earlier transfer is still running; the next tick looks again
		}
		return done(transferredToPrimary, primary, err)
	}
	return change{}, nil
}

func wrapFuture(f raft.Future, what string) error {
	if err := f.Error(); err != nil {
		return fmt.Errorf("%s: %w", what, err)
	}
	return nil
}

// countingFSM counts snapshot persists and restores.
type countingFSM struct {
	*fsm
	m *metrics
}

func (c *countingFSM) Snapshot() (raft.FSMSnapshot, error) {
	s, err := c.fsm.Snapshot()
	if err != nil {
		return nil, err
	}
	return &timedSnapshot{FSMSnapshot: s, m: c.m}, nil
}

func (c *countingFSM) Restore(rc io.ReadCloser) error {
	c.m.snapshotInstalls.Inc()
	return c.fsm.Restore(rc)
}

type timedSnapshot struct {
	raft.FSMSnapshot
	m *metrics
}

func (t *timedSnapshot) Persist(sink raft.SnapshotSink) error {
	start := time.Now()
	cs := &countingSink{SnapshotSink: sink}
	err := t.FSMSnapshot.Persist(cs)
	t.m.snapshotDuration.Observe(time.Since(start).Seconds())
	t.m.snapshotBytes.Observe(float64(cs.n))
	return err //nolint:wrapcheck // fsm's Persist wraps its own errors
}

type countingSink struct {
	raft.SnapshotSink
	n int64
}

func (c *countingSink) Write(p []byte) (int, error) {
	n, err := c.SnapshotSink.Write(p)
	c.n += int64(n)
	return n, err //nolint:wrapcheck // an io.Writer passes errors through
}

// snapshotStore opens group p's raft snapshot store, DataDir/<p>
// (startGroup's, and openState's to tell whether the group has state).
func (mg *Manager) snapshotStore(p uint32, glog hclog.Logger) (*raft.FileSnapshotStore, error) {
	dir := filepath.Join(mg.cfg.DataDir, strconv.FormatUint(uint64(p), 10))
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return nil, fmt.Errorf("consensus: snapshot dir: %w", err)
	}
	snaps, err := raft.NewFileSnapshotStoreWithLogger(dir, 2, glog)
	if err != nil {
		return nil, fmt.Errorf("consensus: snapshot store of group %d: %w", p, err)
	}
	return snaps, nil
}
