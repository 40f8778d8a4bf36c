package client

import (
	"context"
	"errors"
	"fmt"
	"math/bits"
	"slices"

	"github.com/cespare/xxhash/v2"

	"github.com/ringkv/ringkv/proto/kvpb"
)

// view is an immutable snapshot of the cluster's topology as one node
// reported it.
type view struct {
	version    uint64
	partitions int
	base       int // the cluster's first P (partitions before any split)
	shift      uint
	members    map[string]member // by id
	ids        []string          // member ids, sorted
	table      [][]string        // partition -> preference list (ids)
}

type member struct {
	id    string
	addr  string
	alive bool
	// draining: the member drains and refuses new requests; it is tried
	// only after the others.
	draining bool
}

// partitionOf returns key's partition for a ring of p partitions (a power
// of two): the one whose slice of the uint64 token space holds
// xxhash64(key), as ring.Ring.PartitionOf computes it.
func partitionOf(key string, shift uint) uint32 {
	return uint32(xxhash.Sum64String(key) >> shift)
}

// shiftFor returns 64 - log2(p).
func shiftFor(p int) uint { return uint(64 - bits.TrailingZeros(uint(p))) }

var errBadTopology = errors.New("client: malformed topology")

func viewFromWire(resp *kvpb.TopologyResponse) (*view, error) {
	p := int(resp.GetPartitions())
	if p <= 0 || p&(p-1) != 0 {
		return nil, fmt.Errorf("%w: %d partitions (node not in a ring yet?)", errBadTopology, p)
	}
	if len(resp.GetTable()) != p {
		return nil, fmt.Errorf("%w: table of %d rows for %d partitions", errBadTopology, len(resp.GetTable()), p)
	}
	base := int(resp.GetBasePartitions())
	if base == 0 {
		base = p // a server older than splits
	}
	if base > p || base&(base-1) != 0 {
		return nil, fmt.Errorf("%w: first partitions %d for %d partitions", errBadTopology, base, p)
	}
	v := &view{
		version:    resp.GetHeader().GetRingVersion(),
		partitions: p,
		base:       base,
		shift:      shiftFor(p),
		members:    make(map[string]member, len(resp.GetMembers())),
		table:      make([][]string, p),
	}
	for _, m := range resp.GetMembers() {
		if _, dup := v.members[m.GetId()]; !dup {
			v.ids = append(v.ids, m.GetId())
		}
		v.members[m.GetId()] = member{id: m.GetId(), addr: m.GetRpcAddr(), alive: m.GetAlive(), draining: m.GetDraining()}
	}
	slices.Sort(v.ids)
	for i, row := range resp.GetTable() {
		v.table[i] = slices.Clone(row.GetReplicas())
	}
	return v, nil
}

// leadersFromWire returns the leaders the answer names ("" unknown).
func leadersFromWire(resp *kvpb.TopologyResponse) []string {
	out := make([]string, len(resp.GetTable()))
	for i, row := range resp.GetTable() {
		out[i] = row.GetLeader()
	}
	return out
}

// requestRefresh asks the refresher for a topology refresh; it never
// blocks (a pending request covers this one).
func (c *Client) requestRefresh() {
	select {
	case c.refreshCh <- struct{}{}:
	default:
	}
}

// refresher refreshes the topology on request and every RefreshInterval
// until Close.
func (c *Client) refresher() {
	ticker := c.newTicker()
	defer ticker.Stop()
	for {
		select {
		case <-c.lifetime.Done():
			return
		case <-c.refreshCh:
		case <-ticker.C:
		}
		ctx, cancel := context.WithTimeout(c.lifetime, c.cfg.RequestTimeout)
		if err := c.refresh(ctx); err != nil {
			c.log.Debug("topology refresh failed", "err", err)
		}
		cancel()
	}
}

// refresh asks the known nodes in turn (live members first, then the
// seeds) for the topology and adopts the first answer that is not older
// than the view held. It returns the last error when no node answered.
func (c *Client) refresh(ctx context.Context) error {
	last := ErrUnavailable
	for _, addr := range c.refreshOrder() {
		if ctx.Err() != nil {
			return timeoutError(ctx, c.isClosed(), last)
		}
		resp, err := c.topologyFrom(ctx, addr)
		if err != nil {
			last = err
			continue
		}
		v, err := viewFromWire(resp)
		if err != nil {
			last = err
			continue
		}
		c.adopt(v, leadersFromWire(resp))
		return nil
	}
	return last
}

func (c *Client) topologyFrom(ctx context.Context, addr string) (*kvpb.TopologyResponse, error) {
	p := c.pool(addr)
	if p == nil {
		return nil, ErrClosed
	}
	conn, err := p.get(ctx)
	if err != nil {
		var de *dialError
		if errors.As(err, &de) {
			c.markDown(addr)
		}
		return nil, err
	}
	resp, err := kvpb.NewDRPCClientClient(conn).Topology(ctx, &kvpb.TopologyRequest{})
	p.put(conn, err == nil)
	if err != nil {
		return nil, fmt.Errorf("topology from %s: %w", addr, err)
	}
	return resp, nil
}

// refreshOrder lists the addresses to ask for the topology: live members
// neither draining nor marked down, then seeds, then the rest; no
// duplicates.
func (c *Client) refreshOrder() []string {
	c.mu.RLock()
	defer c.mu.RUnlock()
	var good, bad []string
	seen := map[string]bool{}
	add := func(addr string, ok bool) {
		if addr == "" || seen[addr] {
			return
		}
		seen[addr] = true
		if ok {
			good = append(good, addr)
		} else {
			bad = append(bad, addr)
		}
	}
	if v := c.mu.view; v != nil {
		for _, id := range v.ids {
			m := v.members[id]
			// A member that drains or is starting may hold a partial
			// view (a restarted node learns its peers as they reconnect).
			add(m.addr, m.alive && !m.draining && !c.downLocked(m.addr))
		}
	}
	for _, s := range c.seeds {
		add(s, !c.downLocked(s))
	}
	return append(good, bad...)
}

// adopt installs v unless the view held is newer, and merges leaders.
func (c *Client) adopt(v *view, leaders []string) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if old := c.mu.view; old == nil || v.version >= old.version {
		if old == nil || old.partitions != v.partitions {
			c.mu.leaders = make([]string, v.partitions)
		}
		c.mu.view = v
	}
	if len(leaders) == len(c.mu.leaders) {
		for i, l := range leaders {
			if l != "" {
				c.mu.leaders[i] = l
			}
		}
	}
}

// observe notes what an answer from addr says: the serving node's ring
// version (a newer one prompts a refresh) and the leader of key's
// partition.
func (c *Client) observe(hdr *kvpb.ClientHeader, key string, leader string) {
	c.mu.RLock()
	v := c.mu.view
	stale := v == nil || hdr.GetRingVersion() > v.version
	known := ""
	var p uint32
	if v != nil && leader != "" && key != "" {
		p = partitionOf(key, v.shift)
		known = c.mu.leaders[p]
	}
	c.mu.RUnlock()
	if stale {
		c.requestRefresh()
	}
	if v != nil && leader != "" && key != "" && leader != known {
		c.mu.Lock()
		if c.mu.view == v {
			c.mu.leaders[p] = leader
		}
		c.mu.Unlock()
	}
}

// Leader returns the id of the node the client believes leads key's
// partition, or "" when it does not know.
func (c *Client) Leader(key string) string {
	c.mu.RLock()
	defer c.mu.RUnlock()
	if c.mu.view == nil {
		return ""
	}
	return c.mu.leaders[partitionOf(key, c.mu.view.shift)]
}

// RingVersion returns the version of the ring the client's topology came
// from (0 before the first topology was learned).
func (c *Client) RingVersion() uint64 {
	c.mu.RLock()
	defer c.mu.RUnlock()
	if c.mu.view == nil {
		return 0
	}
	return c.mu.view.version
}
