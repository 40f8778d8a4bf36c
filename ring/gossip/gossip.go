package gossip

import (
	"cmp"
	"context"
	"fmt"
	"log/slog"
	"os"
	"slices"
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
	cfg     Config
	log     *slog.Logger
	meta    []byte // encoded metadata, advertised by NodeMeta; read-only
	metrics *metrics
	ml      *memberlist.Memberlist
	addr    string

	// founded is true when this Open created the cluster's ring.
	founded bool

	// snap is the adopted ring. Written only by the run goroutine (and Open).
	snap atomic.Pointer[snapshot]
	// joined is set once a node with Seeds has joined one of them (at Open
	// for a node without seeds); until then this node never claims.
	joined atomic.Bool

	// wake tells run that a memberlist event or a ring arrived. Buffer 1:
	// senders never block and events coalesce, run re-reads all state.
	// Sent by the delegate, never closed.
	wake chan struct{}
	// ops carries Leave/Remove/Admit to run. Unbuffered; never closed.
	ops chan op
	// sendKick tells send that outbox holds a ring. Buffer 1, coalescing;
	// sent by run, never closed.
	sendKick chan struct{}

	// stop is closed by Close so that pending operator calls give up.
	stop   chan struct{}
	cancel context.CancelFunc // cancels the lifetime context of run, send, join
	wg     sync.WaitGroup     // run, send, join
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
}

type opKind int

const (
	opLeave opKind = iota + 1
	opRemove
	opAdmit
)

func (k opKind) String() string {
	switch k {
	case opLeave:
		return "leave"
	case opRemove:
		return "remove"
	case opAdmit:
		return "admit"
	default:
		return fmt.Sprintf("opKind(%d)", int(k))
	}
}

// op is an operator change for run. reply has buffer 1 so run never blocks
// on a caller that gave up.
type op struct {
	kind  opKind
	id    string
	reply chan error
}

// Open validates cfg, loads the persisted ring from cfg.DataDir (or
// bootstraps a new one when there is none and no Seeds), starts memberlist
// on cfg.BindAddr and the background goroutines, and starts joining Seeds in
// the background.
//
// It returns errors marked ErrInvalidConfig for a bad cfg, ErrCorrupt for an
// unreadable ring.state, and wrapped I/O, memberlist or metric registration
// errors otherwise. The caller must Close the returned Gossip.
func Open(cfg Config, deps Deps) (*Gossip, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	cfg = cfg.withDefaults()
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
	if bootstrap {
		if err := saveRing(cfg.DataDir, snap.msg[1:]); err != nil {
			return nil, err
		}
	}
	metaBytes, err := encodeMeta(cfg.meta())
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
		cfg:      cfg,
		log:      cfg.Logger.With("node_id", cfg.NodeID),
		meta:     metaBytes,
		metrics:  m,
		wake:     make(chan struct{}, 1),
		ops:      make(chan op),
		sendKick: make(chan struct{}, 1),
		stop:     make(chan struct{}),
		founded:  bootstrap,
	}
	g.snap.Store(snap)
	g.joined.Store(len(cfg.Seeds) == 0)
	g.nodes.m = make(map[string]nodeState)
	g.subs.m = make(map[int]chan *ring.Ring)

	mc, err := cfg.memberlistConfig(&delegate{g: g}, g.log)
	if err != nil {
		m.unregister(reg)
		return nil, err
	}
	ml, err := memberlist.Create(mc)
	if err != nil {
		m.unregister(reg)
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
	if len(cfg.Seeds) > 0 {
		g.wg.Go(func() { g.join(ctx) })
	}
	g.wg.Go(func() { g.reconnect(ctx) })
	g.log.Info("gossip started", "addr", g.addr, "ring_version", r.Version(), "bootstrap", bootstrap)
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
		}
	}
	return mi, inRing || known
}

// Leave marks id Leaving in the ring, persists the new ring and pushes it to
// every alive member. It returns ring.ErrUnknownMember (wrapped) if id is not
// Joined, a persistence error, ErrClosed, or ctx.Err(). If
// ctx ends after the change reached the run goroutine, the change may still
// be applied.
func (g *Gossip) Leave(ctx context.Context, id string) error { return g.do(ctx, opLeave, id) }

// Remove marks id Removed in the ring, which takes it out of every
// preference list, then persists and pushes the ring like Leave. The
// claimant never re-joins a removed member; see Admit. It returns
// ring.ErrUnknownMember (wrapped) if id is absent or already Removed, and
// otherwise errors as for Leave.
func (g *Gossip) Remove(ctx context.Context, id string) error { return g.do(ctx, opRemove, id) }

// Admit re-joins a Leaving or Removed member now, using the zone it
// advertises; it is a no-op for an id that is Joined or absent from the ring
// (the claimant joins absent nodes by itself). It returns ErrNotAlive
// (wrapped) if memberlist does not report id alive with valid metadata, and
// otherwise errors as for Leave.
func (g *Gossip) Admit(ctx context.Context, id string) error { return g.do(ctx, opAdmit, id) }

func (g *Gossip) do(ctx context.Context, kind opKind, id string) error {
	o := op{kind: kind, id: id, reply: make(chan error, 1)}
	select {
	case g.ops <- o:
	case <-ctx.Done():
		return ctx.Err()
	case <-g.closing():
		return ErrClosed
	}
	select {
	case err := <-o.reply:
		return err
	case <-ctx.Done():
		return ctx.Err()
	}
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
				g.log.Warn("leave memberlist", "err", lerr)
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
	if old, ok := g.nodes.m[n.Name]; ok {
		if !st.metaOK {
			st.meta, st.metaOK = old.meta, old.metaOK // dead notices may omit metadata
		}
		if st.addr == "" {
			st.addr = old.addr
		}
	}
	g.nodes.m[n.Name] = st
	g.nodes.Unlock()
	if err != nil && l == Alive {
		g.log.Warn("node without ringkv metadata", "peer", n.Name, "err", err)
	}
	g.wakeRun()
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
		case o := <-g.ops:
			o.reply <- g.apply(o)
		}
		g.adoptReceived()
		if g.joined.Load() {
			g.claim()
		}
		g.metrics.setMembers(g.Members())
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

// claim runs the claimant's decision and installs its result.
func (g *Gossip) claim() {
	next, ids, err := claim(g.cfg.NodeID, g.Ring(), g.aliveNodes())
	if err != nil {
		g.log.Warn("claim", "err", err)
	}
	if next == nil {
		return
	}
	if err := g.install(next, "claim", true); err != nil {
		g.log.Error("install claimed ring", "ring_version", next.Version(), "err", err)
		return
	}
	g.log.Info("members joined", "members", ids, "ring_version", next.Version())
}

// apply computes and installs an operator change.
func (g *Gossip) apply(o op) error {
	cur := g.Ring()
	var next *ring.Ring
	var err error
	switch o.kind {
	case opLeave:
		next, err = cur.Leave(o.id)
	case opRemove:
		next, err = cur.Remove(o.id)
	case opAdmit:
		m, ok := cur.Member(o.id)
		if !ok || m.Status == ring.Joined {
			return nil
		}
		md, alive := g.aliveNodes()[o.id]
		if !alive {
			return fmt.Errorf("admit %s: %w", o.id, ErrNotAlive)
		}
		next, err = cur.Join(ring.Member{ID: o.id, Zone: md.Zone, Status: ring.Joined})
	}
	if err != nil {
		return err // the ring's errors already name the operation and id
	}
	if err := g.install(next, o.kind.String(), true); err != nil {
		return fmt.Errorf("%s %s: %w", o.kind, o.id, err)
	}
	return nil
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
		select {
		case g.sendKick <- struct{}{}:
		default:
		}
	}
	return nil
}

// send pushes locally made rings to every alive member.
func (g *Gossip) send(ctx context.Context) {
	for {
		select {
		case <-ctx.Done():
			return
		case <-g.sendKick:
		}
		g.outbox.Lock()
		s := g.outbox.s
		g.outbox.s = nil
		g.outbox.Unlock()
		if s == nil {
			continue
		}
		for _, n := range g.ml.Members() {
			if n.Name == g.cfg.NodeID {
				continue
			}
			if ctx.Err() != nil {
				return
			}
			if err := g.ml.SendReliable(n, s.msg); err != nil {
				g.log.Warn("push ring", "peer", n.Name, "ring_version", s.r.Version(), "err", err)
			}
		}
	}
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
