package gossip

import (
	"cmp"
	"context"
	"fmt"
	"log/slog"
	"net"
	"os"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/hashicorp/memberlist"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/ringkv/ringkv/ring"
)

// Gossip runs memberlist for one node and owns its copy of the durable ring.
// All methods are safe for concurrent use.
type Gossip struct {
	cfg  Config
	log  *slog.Logger
	meta atomic.Pointer[[]byte] // encoded metadata, advertised by NodeMeta
	// adv is the metadata meta encodes; setMeta changes both together.
	adv struct {
		sync.Mutex
		md meta
	}
	// updating serializes setMeta's calls of memberlist's UpdateNode,
	// which is not safe to run twice at once (the race detector caught
	// the ring's advertiser and the cluster id's adoption together).
	updating sync.Mutex
	// refused limits the log lines about peers refused for their wire
	// protocol (wire.go).
	refused refusals
	metrics *metrics
	ml      *memberlist.Memberlist
	addr    string
	// keyring encrypts gossip; nil without Config.KeyringFile. It has
	// its own lock; ReloadKeyring changes it.
	keyring *memberlist.Keyring
	// reloading serializes ReloadKeyring, so that concurrent reloads
	// apply in the order they read the file. It guards no field, and it
	// is held while reading the (small, local) keyring file.
	reloading sync.Mutex

	// founded is true when this Open created the cluster's ring.
	founded bool
	// cluster is the cluster id ("" while none: cluster.go); set at Open
	// or once by adoptClusterID on run.
	cluster atomic.Pointer[string]

	// snap is the adopted ring. Written only by the run goroutine (and Open).
	snap atomic.Pointer[snapshot]
	// joined is set once a node with Seeds has joined one of them (at Open
	// for a node without seeds); until then this node never claims.
	joined atomic.Bool

	// wake tells run that a memberlist event or a ring arrived. Buffer 1:
	// senders never block and events coalesce, run re-reads all state.
	// Sent by the delegate, never closed.
	wake chan struct{}
	// installs carries decided rings to run (decide.go). Unbuffered;
	// never closed.
	installs chan installReq
	// sendKick tells send that a ring was installed: outbox may hold one
	// to push, and the advertised ring version may be stale. Buffer 1,
	// coalescing; sent by run, never closed.
	sendKick chan struct{}
	// claimKick tells claimer that the claimant has nodes to join. Buffer
	// 1, coalescing; sent by run, never closed.
	claimKick chan struct{}
	// deciding is the token of the one decision this node makes at a
	// time (decide.go). Buffer 1: holding the token is having sent on it.
	deciding chan struct{}
	// store is the register ring changes are decided on; nil until
	// SetStore.
	store atomic.Pointer[Store]
	// advertised is the ring version in the metadata memberlist carries;
	// written only by send.
	advertised uint64
	// vet is Deps.Vet; nil admits every alive node.
	vet func(ctx context.Context, id, rpcAddr string) error
	// vetLog limits the warning about a node vet refused to one a minute
	// per node; touched only by deciders, which hold the deciding token.
	vetLog map[string]time.Time

	// stop is closed by Close so that pending operator calls give up.
	stop   chan struct{}
	cancel context.CancelFunc // cancels the lifetime context of every goroutine
	wg     sync.WaitGroup     // run, send, claimer, join, reconnect
	closed sync.Once
	// steps counts iterations of run; tests wait on it instead of sleeping.
	steps atomic.Uint64

	// inbox holds the newest ring received from peers and not yet seen by run.
	inbox struct {
		sync.Mutex
		r *ring.Ring
	}
	// outbox holds the newest locally made ring not yet pushed by send.
	outbox struct {
		sync.Mutex
		s *snapshot
	}
	// nodes is what memberlist told us about each node, by ID. Entries stay
	// (as Dead) after memberlist forgets a node so that ring members keep
	// their addresses.
	nodes struct {
		sync.Mutex
		m map[string]nodeState
	}
	// subs are the Subscribe channels. Sends to them happen only with the
	// mutex held and never block: the buffer is drained first and only
	// holders of the mutex send. Channels are closed with the mutex held, by
	// cancel or Close.
	subs struct {
		sync.Mutex
		next   int
		m      map[int]chan *ring.Ring
		closed bool
	}
}

// snapshot is an adopted ring and its push message (msgRing + encoding).
type snapshot struct {
	r   *ring.Ring
	msg []byte
}

func newSnapshot(r *ring.Ring) (*snapshot, error) {
	enc, err := r.MarshalBinary()
	if err != nil {
		return nil, fmt.Errorf("encode ring: %w", err)
	}
	return &snapshot{r: r, msg: append([]byte{msgRing}, enc...)}, nil
}

// nodeState is one node as memberlist reported it.
type nodeState struct {
	liveness Liveness
	meta     meta
	metaOK   bool   // metadata decoded; nodes without it are never joined
	addr     string // gossip "host:port" last reported
	// downSince: when memberlist declared it dead or left (zero while
	// alive); downWarned: the run loop warned that it stays down.
	downSince  time.Time
	downWarned bool
}

// Open validates cfg, loads the persisted ring from cfg.DataDir (or
// bootstraps a new one when there is none and no Seeds), starts memberlist
// on cfg.BindAddr and the background goroutines, and starts joining Seeds in
// the background.
//
// With cfg.KeyringFile set, all gossip is encrypted with the keyring it
// holds (see ReloadKeyring).
//
// It returns errors marked ErrInvalidConfig for a bad cfg or a keyring file
// that cannot be read or parsed, ErrCorrupt for an unreadable ring.state,
// and wrapped I/O, memberlist or metric registration errors otherwise. The caller must Close the returned Gossip.
func Open(cfg Config, deps Deps) (*Gossip, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	cfg = cfg.withDefaults()
	var keyring *memberlist.Keyring
	if cfg.KeyringFile != "" {
		keys, err := loadKeyring(cfg.KeyringFile)
		if err != nil {
			return nil, err
		}
		if keyring, err = newKeyring(keys); err != nil {
			return nil, err
		}
		cfg.Logger.Info("gossip keyring loaded", "node_id", cfg.NodeID, "keyring_file", cfg.KeyringFile, "keys", len(keys))
	}
	if err := os.MkdirAll(cfg.DataDir, 0o755); err != nil {
		return nil, fmt.Errorf("create data dir: %w", err)
	}
	r, err := loadRing(cfg.DataDir)
	if err != nil {
		return nil, err
	}
	bootstrap := r == nil && len(cfg.Seeds) == 0
	if r == nil {
		if r, err = ring.New(cfg.Ring); err != nil {
			return nil, fmt.Errorf("new ring: %w", err)
		}
	}
	if bootstrap {
		if r, err = r.Join(ring.Member{ID: cfg.NodeID, Zone: cfg.Zone, Status: ring.Joined}); err != nil {
			return nil, fmt.Errorf("bootstrap ring: %w", err)
		}
	}
	snap, err := newSnapshot(r)
	if err != nil {
		return nil, err
	}
	clusterID, err := loadClusterID(cfg.DataDir)
	if err != nil {
		return nil, err
	}
	if bootstrap {
		// The id first: a ring without it would make a restart look like
		// a node of a cluster founded before ids.
		if clusterID, err = newClusterID(); err != nil {
			return nil, err
		}
		if err := saveClusterID(cfg.DataDir, clusterID); err != nil {
			return nil, err
		}
		if err := saveRing(cfg.DataDir, snap.msg[1:]); err != nil {
			return nil, err
		}
	}
	md := cfg.meta()
	md.Cluster = clusterID
	metaBytes, err := encodeMeta(md)
	if err != nil {
		return nil, fmt.Errorf("encode metadata: %w", err)
	}
	reg := deps.Registerer
	if reg == nil {
		reg = prometheus.NewRegistry()
	}
	m, err := newMetrics(reg)
	if err != nil {
		return nil, fmt.Errorf("register metrics: %w", err)
	}

	g := &Gossip{
		cfg:       cfg,
		log:       cfg.Logger.With("node_id", cfg.NodeID),
		metrics:   m,
		keyring:   keyring,
		wake:      make(chan struct{}, 1),
		installs:  make(chan installReq),
		sendKick:  make(chan struct{}, 1),
		claimKick: make(chan struct{}, 1),
		deciding:  make(chan struct{}, 1),
		stop:      make(chan struct{}),
		founded:   bootstrap,
	}
	g.meta.Store(&metaBytes)
	g.adv.md = md
	g.cluster.Store(&clusterID)
	g.vet = deps.Vet
	g.snap.Store(snap)
	g.joined.Store(len(cfg.Seeds) == 0)
	g.nodes.m = make(map[string]nodeState)
	g.subs.m = make(map[int]chan *ring.Ring)

	mc, err := cfg.memberlistConfig(&delegate{g: g}, g.log, keyring)
	if err != nil {
		m.unregister()
		return nil, err
	}
	ml, err := memberlist.Create(mc)
	if err != nil {
		m.unregister()
		return nil, fmt.Errorf("start memberlist on %s: %w", cfg.BindAddr, err)
	}
	g.ml = ml
	g.addr = ml.LocalNode().Address()
	m.ringVersion.Set(float64(r.Version()))
	m.setMembers(g.Members())

	ctx, cancel := context.WithCancel(context.Background())
	g.cancel = cancel
	g.wg.Go(func() { g.run(ctx) })
	g.wg.Go(func() { g.send(ctx) })
	g.wg.Go(func() { g.claimer(ctx) })
	if len(cfg.Seeds) > 0 {
		g.wg.Go(func() { g.join(ctx) })
	}
	g.wg.Go(func() { g.reconnect(ctx) })
	g.log.Info("gossip started", "addr", g.addr, "ring_version", r.Version(), "bootstrap", bootstrap, "encrypted", keyring != nil)
	return g, nil
}

// Founded reports whether this Open created the cluster's ring: the node
// had no persisted ring and no seeds. Such a node bootstraps the cluster's
// Raft groups.
func (g *Gossip) Founded() bool { return g.founded }

// Addr returns the gossip "host:port" this node advertises.
func (g *Gossip) Addr() string { return g.addr }

// Ring returns the current ring snapshot; never nil (an empty ring, version
// 0, before this node is first joined). The ring is immutable.
func (g *Gossip) Ring() *ring.Ring { return g.snap.Load().r }

// Subscribe returns a channel that receives the current ring at once and
// every newer ring after it. The buffer holds one ring and a slow reader
// only misses intermediate rings: the newest always wins. The same ring may
// be delivered twice. cancel (idempotent) unsubscribes and closes the
// channel; Close closes all channels.
func (g *Gossip) Subscribe() (ch <-chan *ring.Ring, cancel func()) {
	c := make(chan *ring.Ring, 1)
	g.subs.Lock()
	defer g.subs.Unlock()
	if g.subs.closed {
		close(c)
		return c, func() {}
	}
	id := g.subs.next
	g.subs.next++
	g.subs.m[id] = c
	offerLocked(c, g.Ring())
	return c, func() {
		g.subs.Lock()
		defer g.subs.Unlock()
		if c, ok := g.subs.m[id]; ok {
			delete(g.subs.m, id)
			close(c)
		}
	}
}

// offerLocked puts r in c unless c holds a newer ring. g.subs must be held;
// it never blocks because only holders of g.subs send.
func offerLocked(c chan *ring.Ring, r *ring.Ring) {
	select {
	case old := <-c:
		if old.Newer(r) {
			r = old
		}
	default:
	}
	c <- r
}

func (g *Gossip) publish(r *ring.Ring) {
	g.subs.Lock()
	defer g.subs.Unlock()
	for _, c := range g.subs.m {
		offerLocked(c, r)
	}
}

// Members returns the union of the current ring's members and the nodes
// memberlist has reported, sorted by ID. Ring members memberlist never saw or
// declared dead are Dead; nodes outside the ring have Status 0. The slice is
// the caller's.
func (g *Gossip) Members() []MemberInfo {
	r := g.Ring()
	g.nodes.Lock()
	defer g.nodes.Unlock()
	out := make([]MemberInfo, 0, len(r.Members())+len(g.nodes.m))
	for _, m := range r.Members() {
		mi, _ := g.infoLocked(r, m.ID)
		out = append(out, mi)
	}
	for id := range g.nodes.m {
		if _, inRing := r.Member(id); !inRing {
			mi, _ := g.infoLocked(r, id)
			out = append(out, mi)
		}
	}
	slices.SortFunc(out, func(a, b MemberInfo) int { return cmp.Compare(a.ID, b.ID) })
	return out
}

// Member returns what Members reports for id, and whether it reports id.
// It looks id up alone: the coordinator resolves a peer's address with it
// on every replica call.
func (g *Gossip) Member(id string) (MemberInfo, bool) {
	r := g.Ring()
	g.nodes.Lock()
	defer g.nodes.Unlock()
	return g.infoLocked(r, id)
}

// infoLocked merges what r and memberlist know of id, and says whether
// either knows it. Caller holds g.nodes.
func (g *Gossip) infoLocked(r *ring.Ring, id string) (MemberInfo, bool) {
	var mi MemberInfo
	m, inRing := r.Member(id)
	if inRing {
		mi = MemberInfo{ID: id, Zone: m.Zone, Status: m.Status, Liveness: Dead}
	}
	n, known := g.nodes.m[id]
	if known {
		if !inRing {
			mi = MemberInfo{ID: id, Zone: n.meta.Zone}
		}
		mi.Liveness = n.liveness
		if n.metaOK {
			mi.RPCAddr, mi.HTTPAddr = n.meta.RPCAddr, n.meta.HTTPAddr
			mi.RingVersion = n.meta.RingVersion
			mi.Wire = wireOf(n.meta)
			mi.Draining = n.meta.Draining && n.liveness == Alive
			mi.Starting = n.meta.Starting && n.liveness == Alive
		}
	}
	if id == g.cfg.NodeID {
		mi.RingVersion = r.Version()
		g.adv.Lock()
		mi.Draining, mi.Starting, mi.Wire = g.adv.md.Draining, g.adv.md.Starting, wireOf(g.adv.md)
		g.adv.Unlock()
	}
	return mi, inRing || known
}

// closing returns a channel closed once Close has started.
func (g *Gossip) closing() <-chan struct{} { return g.stop }

// Close leaves memberlist (waiting briefly for the leave to spread), shuts
// it down, stops the background goroutines and waits for them, and closes
// every Subscribe channel. It returns memberlist's shutdown error; calling
// it again returns nil.
func (g *Gossip) Close() error { return g.shutdown(true) }

// shutdown implements Close; leave=false skips memberlist's Leave so peers
// have to detect the failure by probing (tests use it to simulate a crash).
func (g *Gossip) shutdown(leave bool) error {
	var err error
	g.closed.Do(func() {
		close(g.stop)
		g.cancel()
		g.wg.Wait()
		if leave {
			if lerr := g.ml.Leave(g.leaveTimeout()); lerr != nil {
				// A timeout: no member took the leave message in time, as
				// when the whole cluster stops at once. Those still up
				// find out by probing.
				level := slog.LevelWarn
				if strings.Contains(lerr.Error(), "timeout waiting for leave broadcast") {
					level = slog.LevelInfo
				}
				g.log.Log(context.Background(), level, "leave memberlist", "err", lerr)
			}
		}
		if serr := g.ml.Shutdown(); serr != nil {
			err = fmt.Errorf("gossip: shutdown memberlist: %w", serr)
		}
		g.subs.Lock()
		g.subs.closed = true
		for id, c := range g.subs.m {
			delete(g.subs.m, id)
			close(c)
		}
		g.subs.Unlock()
		g.log.Info("gossip stopped")
	})
	return err
}

func (g *Gossip) leaveTimeout() time.Duration {
	if g.cfg.Profile == Local {
		return time.Second
	}
	return 2 * time.Second
}

// observe records what memberlist reported about n. Called by the delegate
// with memberlist's node lock held: it must not block.
func (g *Gossip) observe(n *memberlist.Node, l Liveness) {
	md, err := decodeMeta(n.Meta)
	st := nodeState{liveness: l, meta: md, metaOK: err == nil}
	if n.Addr != nil {
		st.addr = n.Address()
	}
	g.nodes.Lock()
	old, known := g.nodes.m[n.Name]
	if known {
		if !st.metaOK {
			st.meta, st.metaOK = old.meta, old.metaOK // dead notices may omit metadata
		}
		if st.addr == "" {
			st.addr = old.addr
		}
	}
	if l == Dead {
		st.downSince, st.downWarned = old.downSince, old.downWarned
		if st.downSince.IsZero() {
			st.downSince = time.Now()
		}
	}
	g.nodes.m[n.Name] = st
	g.nodes.Unlock()
	if err != nil && l == Alive {
		g.log.Warn("node without ringkv metadata", "peer", n.Name, "err", err)
	}
	// One line per change of a member's liveness (the Raft transport's
	// failed calls to a member that is down are at Debug); warnDown warns
	// when it stays down. memberlist does not tell a leave from a failure
	// here.
	if known && n.Name != g.cfg.NodeID && old.liveness != l {
		switch l {
		case Dead:
			g.log.Info("member down", "peer", n.Name, "addr", st.addr)
		case Alive:
			g.log.Info("member up", "peer", n.Name, "addr", st.addr)
		}
	}
	g.wakeRun()
}

// downWarnAfter is how long a member of the ring may be down (failed or
// stopped) before the run loop warns about it: long enough for a restart.
func (g *Gossip) downWarnAfter() time.Duration {
	if g.cfg.Profile == Local {
		return 10 * time.Second
	}
	return time.Minute
}

// warnDown warns, once per outage, about each member of the ring (not
// removed) that has been down for longer than downWarnAfter.
func (g *Gossip) warnDown(now time.Time) {
	r := g.Ring()
	type down struct {
		id  string
		dur time.Duration
	}
	var warn []down
	g.nodes.Lock()
	for id, st := range g.nodes.m {
		if st.liveness != Dead || st.downWarned || st.downSince.IsZero() || now.Sub(st.downSince) <= g.downWarnAfter() {
			continue
		}
		if m, ok := r.Member(id); !ok || m.Status == ring.Removed {
			continue
		}
		st.downWarned = true
		g.nodes.m[id] = st
		warn = append(warn, down{id, now.Sub(st.downSince)})
	}
	g.nodes.Unlock()
	for _, d := range warn {
		g.log.Warn("member still down", "peer", d.id, "for", d.dur.Round(time.Second))
	}
}

// offer hands a received ring to run, keeping only the newest.
func (g *Gossip) offer(r *ring.Ring) {
	g.inbox.Lock()
	if g.inbox.r == nil || r.Newer(g.inbox.r) {
		g.inbox.r = r
	}
	g.inbox.Unlock()
	g.wakeRun()
}

func (g *Gossip) wakeRun() {
	select {
	case g.wake <- struct{}{}:
	default:
	}
}

// aliveNodes returns the metadata of nodes memberlist reports alive with
// valid metadata. This node counts as alive.
func (g *Gossip) aliveNodes() map[string]meta {
	alive := make(map[string]meta)
	g.nodes.Lock()
	for id, n := range g.nodes.m {
		if n.liveness != Dead && n.metaOK {
			alive[id] = n.meta
		}
	}
	g.nodes.Unlock()
	alive[g.cfg.NodeID] = g.cfg.meta()
	return alive
}

// run is the only writer of the ring; see the package documentation.
func (g *Gossip) run(ctx context.Context) {
	t := time.NewTicker(g.cfg.ClaimInterval)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-g.wake:
		case <-t.C:
		case req := <-g.installs:
			var err error
			if req.r.Newer(g.Ring()) {
				err = g.install(req.r, "decided", req.push)
			}
			req.done <- err
		}
		g.adoptReceived()
		g.adoptClusterID()
		if g.joined.Load() && g.store.Load() != nil {
			if next, _, _ := claim(g.cfg.NodeID, g.Ring(), g.aliveNodes()); next != nil {
				select {
				case g.claimKick <- struct{}{}:
				default:
				}
			}
		}
		g.metrics.setMembers(g.Members())
		g.warnDown(time.Now())
		g.steps.Add(1)
	}
}

// adoptReceived adopts the newest received ring if it is newer than ours.
func (g *Gossip) adoptReceived() {
	g.inbox.Lock()
	r := g.inbox.r
	g.inbox.r = nil
	g.inbox.Unlock()
	if r == nil || !r.Newer(g.Ring()) {
		return
	}
	if err := g.install(r, "received", false); err != nil {
		g.log.Error("adopt received ring", "ring_version", r.Version(), "err", err)
	}
}

// claimTimeout bounds one claim decision.
const claimTimeout = 10 * time.Second

// claimer decides the claimant's joins when run finds nodes to join.
// Deciding goes through the Store, which may block for a while, so it is
// kept off run.
func (g *Gossip) claimer(ctx context.Context) {
	for {
		select {
		case <-ctx.Done():
			return
		case <-g.claimKick:
		}
		cctx, cancel := context.WithTimeout(ctx, claimTimeout)
		_, err := g.decide(cctx, Change{Op: opClaim})
		cancel()
		if err != nil && ctx.Err() == nil {
			g.log.Warn("claim", "err", err)
		}
	}
}

// install persists r, adopts it, publishes it and, if push is set, queues
// it for send. Only run calls it.
func (g *Gossip) install(r *ring.Ring, origin string, push bool) error {
	s, err := newSnapshot(r)
	if err != nil {
		return err
	}
	if err := saveRing(g.cfg.DataDir, s.msg[1:]); err != nil {
		return err
	}
	g.snap.Store(s)
	g.metrics.ringVersion.Set(float64(r.Version()))
	g.metrics.ringChanges.Inc()
	g.publish(r)
	g.log.Info("ring adopted", "ring_version", r.Version(), "origin", origin)
	if push {
		g.outbox.Lock()
		g.outbox.s = s
		g.outbox.Unlock()
	}
	select {
	case g.sendKick <- struct{}{}:
	default:
	}
	return nil
}

// send pushes locally decided rings to every alive member, and advertises
// the version of the ring this node holds in its metadata.
func (g *Gossip) send(ctx context.Context) {
	for {
		select {
		case <-ctx.Done():
			return
		case <-g.sendKick:
		}
		g.push(ctx)
		g.advertise()
	}
}

// advertise puts the current ring version in this node's memberlist
// metadata, which memberlist spreads by gossip, so that every member can
// tell which ring each other member holds.
func (g *Gossip) advertise() {
	v := g.Ring().Version()
	if v == g.advertised {
		return
	}
	if err := g.setMeta(func(md *meta) { md.RingVersion = v }); err != nil {
		g.log.Debug("advertise ring version", "ring_version", v, "err", err)
	}
	g.advertised = v
}

// SetDraining advertises (on true) or stops advertising that this node is
// draining: it refuses new client requests, so other coordinators and
// clients should send them elsewhere (MemberInfo.Draining). It returns
// memberlist's error when the update could not be broadcast in time; the
// metadata is changed anyway and spreads with the next gossip.
func (g *Gossip) SetDraining(on bool) error {
	return g.setMeta(func(md *meta) { md.Draining = on })
}

// SetStarting advertises (on true) or stops advertising that this node is
// starting: not ready yet, so client requests go elsewhere first
// (MemberInfo.Starting). Errors as for SetDraining.
func (g *Gossip) SetStarting(on bool) error {
	return g.setMeta(func(md *meta) { md.Starting = on })
}

// setMeta applies change to this node's metadata and asks memberlist to
// spread it.
func (g *Gossip) setMeta(change func(*meta)) error {
	g.updating.Lock()
	defer g.updating.Unlock()
	g.adv.Lock()
	md := g.adv.md
	change(&md)
	b, err := encodeMeta(md)
	if err == nil {
		g.adv.md = md
		g.meta.Store(&b)
	}
	g.adv.Unlock()
	if err != nil {
		return err
	}
	if err := g.ml.UpdateNode(g.leaveTimeout()); err != nil {
		return fmt.Errorf("update node metadata: %w", err)
	}
	return nil
}

// push sends the newest locally decided ring, if any, to every alive
// member.
func (g *Gossip) push(ctx context.Context) {
	g.outbox.Lock()
	s := g.outbox.s
	g.outbox.s = nil
	g.outbox.Unlock()
	if s == nil {
		return
	}
	for _, n := range g.aliveAddrs() {
		if ctx.Err() != nil {
			return
		}
		if err := g.ml.SendReliable(n, s.msg); err != nil {
			g.log.Warn("push ring", "peer", n.Name, "ring_version", s.r.Version(), "err", err)
		}
	}
}

// aliveAddrs returns the other nodes memberlist reports alive, as fresh
// Nodes built from the addresses observe recorded. memberlist's own
// Members returns pointers into its state, whose addresses it rewrites
// (without a lock the caller could take) whenever a node's metadata or
// incarnation changes.
func (g *Gossip) aliveAddrs() []*memberlist.Node {
	g.nodes.Lock()
	defer g.nodes.Unlock()
	var out []*memberlist.Node
	for id, n := range g.nodes.m {
		if id == g.cfg.NodeID || n.liveness == Dead || n.addr == "" {
			continue
		}
		host, port, err := net.SplitHostPort(n.addr)
		if err != nil {
			continue
		}
		p, err := strconv.ParseUint(port, 10, 16)
		if err != nil {
			continue
		}
		out = append(out, &memberlist.Node{Name: id, Addr: net.ParseIP(host), Port: uint16(p)})
	}
	return out
}

// reconnectInterval is how often reconnect looks for ring members that
// memberlist does not report alive.
func (g *Gossip) reconnectInterval() time.Duration {
	if g.cfg.Profile == Local {
		return time.Second
	}
	return 10 * time.Second
}

// reconnect keeps trying to reach ring members that memberlist reports
// dead, at the gossip addresses they last had, and the seeds, as serf's
// reconnect does. memberlist gives up on a node it declared dead (it
// gossips to it only for a short while), so without this the two sides of
// a healed partition that each declared the other dead, or a restarted
// node that has no seeds, could stay apart for good and never see each
// other's rings. A join is a push-pull: the dead side learns it was
// declared dead and refutes it, and both exchange rings.
func (g *Gossip) reconnect(ctx context.Context) {
	t := time.NewTicker(g.reconnectInterval())
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		addrs := g.lostMembers()
		if len(addrs) == 0 {
			continue
		}
		addrs = append(addrs, g.cfg.Seeds...)
		if n, err := g.ml.Join(addrs); n > 0 {
			g.log.Debug("reconnected", "addrs", addrs, "reached", n)
		} else if err != nil {
			g.log.Debug("reconnect", "addrs", addrs, "err", err)
		}
	}
}

// lostMembers returns the last known gossip addresses of ring members
// (other than this node, and not yet removed) that memberlist does not
// report alive.
func (g *Gossip) lostMembers() []string {
	var addrs []string
	r := g.Ring()
	g.nodes.Lock()
	defer g.nodes.Unlock()
	for _, m := range r.Members() {
		if m.ID == g.cfg.NodeID {
			continue
		}
		n, ok := g.nodes.m[m.ID]
		if ok && n.liveness == Dead && n.addr != "" {
			addrs = append(addrs, n.addr)
		}
	}
	return addrs
}

// join joins Seeds, retrying with capped exponential backoff.
func (g *Gossip) join(ctx context.Context) {
	backoff, maxBackoff := time.Second, 30*time.Second
	if g.cfg.Profile == Local {
		backoff, maxBackoff = 100*time.Millisecond, time.Second
	}
	for {
		n, err := g.ml.Join(g.cfg.Seeds)
		if n > 0 {
			g.joined.Store(true)
			g.wakeRun()
			g.log.Info("joined cluster", "seeds_reached", n)
			return
		}
		g.log.Warn("join seeds", "seeds", g.cfg.Seeds, "retry_in", backoff, "err", err)
		t := time.NewTimer(backoff)
		select {
		case <-ctx.Done():
			t.Stop()
			return
		case <-t.C:
		}
		backoff = min(2*backoff, maxBackoff)
	}
}
