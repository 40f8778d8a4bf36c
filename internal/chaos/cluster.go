package chaos

import (
	"context"
	"crypto/tls"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"slices"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/ringkv/ringkv/client"
	"github.com/ringkv/ringkv/internal/hosts"
	"github.com/ringkv/ringkv/internal/pki"
	"github.com/ringkv/ringkv/internal/testcluster"
)

// Cluster is a cluster of real `ringkv serve` processes whose peer
// traffic runs through a Net of proxies, with spare nodes to grow it.
type Cluster struct {
	TC  *testcluster.Cluster
	Net *Net

	t testing.TB
	// maxPartitions is ClusterConfig.MaxPartitions.
	maxPartitions int
	// tls is the root user's client TLS configuration of a secure
	// cluster (nil: plaintext). Set by StartCluster, read-only after;
	// every client clones it before use.
	tls *tls.Config
	// http is the harness's HTTP client (see do), made by StartCluster.
	http *http.Client

	mu struct {
		sync.Mutex
		members []string // ids in the ring (started, not left)
		spares  []string // ids never started yet
		skewed  map[string]time.Duration
	}
}

// ClusterConfig describes a chaos cluster.
type ClusterConfig struct {
	// Nodes started at once (n1 founds). Default 5.
	Nodes int
	// Spares are nodes with proxies that the membership nemesis may join
	// later. Default 1.
	Spares int
	// Partitions of the ring. Default 16.
	Partitions int
	// MaxPartitions bounds FaultPartitionSplit: a split that would take
	// the ring past it is not injected (0: no bound). Each split doubles
	// the raft groups for the rest of a run, and a run whose target is
	// not reached would otherwise split until two cores cannot carry it.
	MaxPartitions int
	// Args are extra `ringkv serve` flags (e.g. --unsafe-stale-reads).
	Args []string
	// Race runs the servers from a race-enabled binary when the tests
	// are; default false (servers without -race are ~10x faster).
	Race bool
	// Secure runs a secure cluster (testcluster.Options.Secure): a CA,
	// a node certificate per node (spares included) and a gossip key, so
	// every port speaks TLS, peers dial each other with mutual TLS end to
	// end through the proxies (plain TCP relays), and gossip is
	// encrypted. The harness's clients present the root user's client
	// certificate: the client library over TLS, HTTP calls over HTTPS.
	// Authentication stays disabled (no `ringkv auth enable`). Default
	// false.
	Secure bool
	// Hosts, if set, runs every node on a host of its own
	// (testcluster.Options.Hosts: a network namespace, listening on
	// 0.0.0.0 with the host's address advertised), and the harness's
	// clients dial from the client host. There are no proxies (Net is
	// nil): the faults are the host kinds (HostFaults), not the links'.
	// Its hosts must number at least Nodes+Spares.
	Hosts *hosts.Net
}

func (c *ClusterConfig) fill() {
	if c.Nodes <= 0 {
		c.Nodes = 5
	}
	if c.Spares < 0 {
		c.Spares = 0
	}
	if c.Partitions <= 0 {
		c.Partitions = 16
	}
}

// StartCluster starts the cluster and waits until its membership converged
// and every raft group has a leader. The processes and proxies are
// stopped when the test ends.
func StartCluster(t testing.TB, cfg ClusterConfig) *Cluster {
	t.Helper()
	cfg.fill()
	c := &Cluster{t: t, maxPartitions: cfg.MaxPartitions}
	c.mu.skewed = map[string]time.Duration{}
	// Anti-entropy every 2 s: after a heal or a membership change it is
	// what brings a replica the eventual writes it missed (hints cover
	// only writes made while it was known to be away).
	args := append([]string{"--partitions", strconv.Itoa(cfg.Partitions), "--log-level", "info", "--chaos-hooks", "--ae-interval", "2s"}, cfg.Args...)
	var netErr, certErr error
	prepare := func(nodes []*testcluster.Node) {
		ids := make([]string, len(nodes))
		rpc := map[string]string{}
		var reserved []string
		for i, nd := range nodes {
			ids[i] = nd.ID
			rpc[nd.ID] = nd.RPCAddr
			reserved = append(reserved, nd.RPCAddr, nd.HTTPAddr, nd.GossipAddr)
		}
		c.Net, netErr = NewNet(ids, rpc, reserved...)
		if netErr != nil {
			return
		}
		t.Cleanup(func() { _ = c.Net.Close() }) // after the processes are killed
		for _, nd := range nodes {
			if cfg.Secure && !slices.Contains(nd.Args, "--certs-dir") {
				// A spare without certificates would serve plaintext
				// and never be let into a secure ring.
				certErr = fmt.Errorf("chaos: %s has no --certs-dir in a secure cluster", nd.ID)
			}
			nd.Args = append(nd.Args, "--chaos-dial-overrides", c.Net.Overrides(nd.ID))
		}
	}
	if cfg.Hosts != nil {
		prepare = nil // host faults need no proxies
	}
	c.TC = testcluster.StartOptions(t, testcluster.Options{
		Nodes:   cfg.Nodes,
		Spares:  cfg.Spares,
		Args:    args,
		NoRace:  !cfg.Race,
		Secure:  cfg.Secure,
		Hosts:   cfg.Hosts,
		Prepare: prepare,
	})
	if netErr != nil {
		t.Fatalf("chaos: proxies: %v", netErr)
	}
	if certErr != nil {
		t.Fatal(certErr)
	}
	if cfg.Secure {
		var err error
		if c.tls, err = pki.ClientTLS(c.TC.Certs, "root"); err != nil {
			t.Fatalf("chaos: client TLS: %v", err)
		}
	}
	// Up to 32 idle connections per node: the convergence check reads
	// with 16 goroutines and the workload's HTTP path with a quarter of
	// its workers. With net/http's default of 2, most requests of a
	// secure cluster paid a TLS handshake (3,000 reads at ONE from 16
	// goroutines: 2.0 s through testcluster's Node.Do, 0.55 s here;
	// plaintext 0.63 s and 0.47 s), which showed as slower convergence.
	tr := &http.Transport{TLSClientConfig: c.tls, MaxIdleConnsPerHost: 32, IdleConnTimeout: time.Minute, DialContext: c.TC.Dialer()}
	c.http = &http.Client{Transport: tr, Timeout: time.Minute}
	t.Cleanup(tr.CloseIdleConnections)
	for i, nd := range c.TC.Nodes {
		if i < cfg.Nodes {
			c.mu.members = append(c.mu.members, nd.ID)
		} else {
			c.mu.spares = append(c.mu.spares, nd.ID)
		}
	}
	c.WaitLeaders(120 * time.Second)
	return c
}

// Members returns the ids of the nodes in the ring, in order.
func (c *Cluster) Members() []string {
	c.mu.Lock()
	defer c.mu.Unlock()
	return slices.Clone(c.mu.members)
}

// Node returns the node with id.
func (c *Cluster) Node(id string) *testcluster.Node {
	for _, nd := range c.TC.Nodes {
		if nd.ID == id {
			return nd
		}
	}
	c.t.Fatalf("chaos: no node %s", id)
	return nil
}

// RunningMembers returns the members whose process runs.
func (c *Cluster) RunningMembers() []*testcluster.Node {
	var out []*testcluster.Node
	for _, id := range c.Members() {
		if nd := c.Node(id); nd.Running() {
			out = append(out, nd)
		}
	}
	return out
}

// Secure reports whether the cluster speaks TLS (ClusterConfig.Secure).
func (c *Cluster) Secure() bool { return c.tls != nil }

// NewClient connects a client library client to the members' drpc
// addresses with opts, over TLS as the root user on a secure cluster.
// The caller closes it. Errors are client.New's.
func (c *Cluster) NewClient(opts ...client.Option) (*client.Client, error) {
	if c.tls != nil {
		opts = append(opts, client.WithTLS(c.tls))
	}
	if d := c.TC.Dialer(); d != nil {
		opts = append(opts, client.WithDialer(d))
	}
	cl, err := client.New(c.RPCAddrs(), opts...)
	if err != nil {
		return nil, fmt.Errorf("chaos: client: %w", err)
	}
	return cl, nil
}

// do sends an HTTP request to nd (HTTPS as root on a secure cluster) and
// returns the status and the body, as testcluster's Node.Do does but
// through the harness's client, which keeps more connections per node
// open. Errors wrap the transport's. Safe for concurrent use.
func (c *Cluster) do(ctx context.Context, nd *testcluster.Node, method, path string, query url.Values, body any) (int, []byte, error) {
	code, b, err := nd.DoWith(ctx, c.http, method, path, query, body)
	if err != nil {
		return code, b, fmt.Errorf("chaos: %w", err)
	}
	return code, b, nil
}

// RPCAddrs returns the drpc addresses of the members (for clients).
func (c *Cluster) RPCAddrs() []string {
	var out []string
	for _, id := range c.Members() {
		out = append(out, c.Node(id).RPCAddr)
	}
	return out
}

// WaitLeaders polls until every running member runs a raft group for
// each partition the ring gives it and each of those knows a leader.
// (Not /ready: it also counts the idle groups of partitions a node was
// removed from, which may never learn a leader.)
func (c *Cluster) WaitLeaders(timeout time.Duration) {
	c.t.Helper()
	c.TC.WaitFor(timeout, "every group to have a leader", func(ctx context.Context) error {
		for _, nd := range c.RunningMembers() {
			s, err := nd.Stats(ctx)
			if err != nil {
				return err
			}
			if len(s.Partitions) == 0 {
				return fmt.Errorf("%s replicates no partition yet", nd.ID)
			}
			led := map[uint32]bool{}
			for _, g := range s.Groups {
				if g.Leader != "" {
					led[g.Partition] = true
				}
			}
			for _, p := range s.Partitions {
				if !led[p] {
					return fmt.Errorf("%s: group %d has no leader", nd.ID, p)
				}
			}
		}
		return nil
	})
}

// LeadersOf returns how many groups each running member leads, asking
// each node for the groups it leads itself.
func (c *Cluster) LeadersOf(ctx context.Context) map[string]int {
	out := map[string]int{}
	for _, nd := range c.RunningMembers() {
		s, err := nd.Stats(ctx)
		if err != nil {
			continue // paused or partitioned from us: it leads nothing we can see
		}
		for _, g := range s.Groups {
			if g.State == "Leader" {
				out[nd.ID]++
			}
		}
	}
	return out
}

// SetClockOffset shifts id's physical clock by d (0 removes the skew).
func (c *Cluster) SetClockOffset(ctx context.Context, id string, d time.Duration) error {
	nd := c.Node(id)
	// The member may have been restarted a moment ago (the heal of a
	// kill) and not listen yet: retry failed connections for a while.
	ctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	var code int
	var body []byte
	var err error
	for {
		code, body, err = c.do(ctx, nd, http.MethodPost, "/chaos/clock-offset", url.Values{"offset": {d.String()}}, nil)
		if err == nil || ctx.Err() != nil {
			break
		}
		wait(ctx, 100*time.Millisecond)
	}
	if err != nil {
		return fmt.Errorf("chaos: clock offset on %s: %w", id, err)
	}
	if code != http.StatusOK {
		return fmt.Errorf("chaos: clock offset on %s: HTTP %d: %s", id, code, body)
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if d == 0 {
		delete(c.mu.skewed, id)
	} else {
		c.mu.skewed[id] = d
	}
	return nil
}

// Skewed returns the nodes whose clock is shifted.
func (c *Cluster) Skewed() map[string]time.Duration {
	c.mu.Lock()
	defer c.mu.Unlock()
	out := make(map[string]time.Duration, len(c.mu.skewed))
	for k, v := range c.mu.skewed {
		out[k] = v
	}
	return out
}

// memberStatus is the ring membership part of GET /api/cluster/status.
type memberStatus struct {
	RingVersion    uint64 `json:"ring_version"`
	PartitionCount int    `json:"partition_count"`
	Members        []struct {
		ID     string `json:"id"`
		Status string `json:"status"`
	} `json:"members"`
	Partitions []struct {
		Preference []string `json:"preference"`
	} `json:"partitions"`
	Converged bool `json:"converged"`
}

func (c *Cluster) clusterStatus(ctx context.Context, nd *testcluster.Node) (memberStatus, error) {
	var s memberStatus
	code, body, err := c.do(ctx, nd, http.MethodGet, "/api/cluster/status", nil, nil)
	if err != nil {
		return s, fmt.Errorf("chaos: cluster status: %w", err)
	}
	if code != http.StatusOK {
		return s, fmt.Errorf("chaos: cluster status of %s: HTTP %d: %s", nd.ID, code, body)
	}
	if err := json.Unmarshal(body, &s); err != nil {
		return s, fmt.Errorf("chaos: cluster status: %w", err)
	}
	return s, nil
}

// admin posts a cluster change (leave, remove) about id to any running
// member other than id.
func (c *Cluster) admin(ctx context.Context, op, id string) error {
	var errs []error
	for _, nd := range c.RunningMembers() {
		if nd.ID == id {
			continue
		}
		code, body, err := c.do(ctx, nd, http.MethodPost, "/api/cluster/"+op, url.Values{"id": {id}}, nil)
		if err == nil && (code == http.StatusOK || (code == http.StatusConflict && alreadyDone(op, body))) {
			return nil
		}
		errs = append(errs, fmt.Errorf("%s on %s: HTTP %d %s: %w", op, nd.ID, code, body, err))
	}
	return fmt.Errorf("chaos: %w", errors.Join(errs...))
}

// alreadyDone reports whether a 409 answer to op says the member already
// has the status op gives it: an earlier attempt whose answer was lost
// (a 504, a timeout) made the change.
func alreadyDone(op string, body []byte) bool {
	var c struct {
		MemberStatus string `json:"member_status"`
	}
	if json.Unmarshal(body, &c) != nil {
		return false
	}
	switch op {
	case "leave":
		return c.MemberStatus == "leaving" || c.MemberStatus == "removed"
	case "remove":
		return c.MemberStatus == "removed"
	}
	return false
}

// poll runs cond until it returns nil or timeout passes (its last error).
func poll(ctx context.Context, timeout time.Duration, cond func(ctx context.Context) error) error {
	deadline := time.Now().Add(timeout)
	for {
		cctx, cancel := context.WithTimeout(ctx, 5*time.Second)
		err := cond(cctx)
		cancel()
		if err == nil {
			return nil
		}
		if time.Now().After(deadline) || ctx.Err() != nil {
			return err
		}
		t := time.NewTimer(200 * time.Millisecond)
		select {
		case <-t.C:
		case <-ctx.Done():
			t.Stop()
		}
	}
}

// Join starts the next spare node and waits until the ring on every
// running member lists it joined and every member's groups converged. It
// returns the new member's id ("" with no spare left).
func (c *Cluster) Join(ctx context.Context, timeout time.Duration) (string, error) {
	c.mu.Lock()
	if len(c.mu.spares) == 0 {
		c.mu.Unlock()
		return "", nil
	}
	id := c.mu.spares[0]
	c.mu.spares = c.mu.spares[1:]
	c.mu.members = append(c.mu.members, id)
	c.mu.Unlock()
	c.Node(id).Start()
	err := poll(ctx, timeout, func(ctx context.Context) error {
		for _, nd := range c.RunningMembers() {
			s, err := c.clusterStatus(ctx, nd)
			if err != nil {
				return err
			}
			joined := false
			for _, m := range s.Members {
				joined = joined || (m.ID == id && m.Status == "joined")
			}
			if !joined {
				return fmt.Errorf("%s does not see %s joined", nd.ID, id)
			}
			if !s.Converged {
				return fmt.Errorf("%s: groups not converged", nd.ID)
			}
		}
		return nil
	})
	if err != nil {
		return id, fmt.Errorf("chaos: join %s: %w", id, err)
	}
	return id, nil
}

// Leave makes member id leave the ring (POST /api/cluster/leave), waits
// until no preference list names it and the groups converged, then
// removes it, stops its process and forgets it.
func (c *Cluster) Leave(ctx context.Context, id string, timeout time.Duration) error {
	if err := poll(ctx, timeout, func(ctx context.Context) error { return c.admin(ctx, "leave", id) }); err != nil {
		return err
	}
	err := poll(ctx, timeout, func(ctx context.Context) error {
		for _, nd := range c.RunningMembers() {
			if nd.ID == id {
				continue
			}
			s, err := c.clusterStatus(ctx, nd)
			if err != nil {
				return err
			}
			for p, ps := range s.Partitions {
				if slices.Contains(ps.Preference, id) {
					return fmt.Errorf("%s: partition %d still lists %s", nd.ID, p, id)
				}
			}
			if !s.Converged {
				return fmt.Errorf("%s: groups not converged", nd.ID)
			}
		}
		return nil
	})
	if err != nil {
		return fmt.Errorf("chaos: leave %s: %w", id, err)
	}
	if err := poll(ctx, timeout, func(ctx context.Context) error { return c.admin(ctx, "remove", id) }); err != nil {
		return err
	}
	c.mu.Lock()
	c.mu.members = without(c.mu.members, id)
	c.mu.Unlock()
	c.Node(id).Kill()
	return nil
}

// errSplitBound: a split would take the ring past
// ClusterConfig.MaxPartitions.
var errSplitBound = errors.New("chaos: the ring is at its partition bound")

// SplitPartitions doubles the ring's partitions (POST
// /api/cluster/split?partitions=2P on a running member, retried on
// another until one answers) and waits until every running member holds
// a ring of 2P partitions and reports every group it runs converged. It
// returns the new P, or the current one and errSplitBound when 2P would
// pass ClusterConfig.MaxPartitions.
func (c *Cluster) SplitPartitions(ctx context.Context, timeout time.Duration) (int, error) {
	var from int
	err := poll(ctx, timeout, func(ctx context.Context) error {
		for _, nd := range c.RunningMembers() {
			s, err := c.clusterStatus(ctx, nd)
			if err != nil {
				continue
			}
			from = s.PartitionCount
			return nil
		}
		return errors.New("chaos: no member answered its status")
	})
	if err != nil {
		return 0, err
	}
	to := 2 * from
	if c.maxPartitions > 0 && to > c.maxPartitions {
		return from, errSplitBound
	}
	err = poll(ctx, timeout, func(ctx context.Context) error {
		var errs []error
		for _, nd := range c.RunningMembers() {
			code, body, err := c.do(ctx, nd, http.MethodPost, "/api/cluster/split", url.Values{"partitions": {strconv.Itoa(to)}}, nil)
			if err == nil && code == http.StatusOK {
				return nil
			}
			errs = append(errs, fmt.Errorf("split on %s: HTTP %d %s: %w", nd.ID, code, body, err))
		}
		return fmt.Errorf("chaos: %w", errors.Join(errs...))
	})
	if err != nil {
		return 0, err
	}
	err = poll(ctx, timeout, func(ctx context.Context) error {
		for _, nd := range c.RunningMembers() {
			s, err := c.clusterStatus(ctx, nd)
			if err != nil {
				return err
			}
			if s.PartitionCount != to {
				return fmt.Errorf("%s holds a ring of %d partitions", nd.ID, s.PartitionCount)
			}
			if !s.Converged {
				return fmt.Errorf("%s: groups not converged", nd.ID)
			}
		}
		return nil
	})
	if err != nil {
		return 0, fmt.Errorf("chaos: split to %d partitions: %w", to, err)
	}
	return to, nil
}
