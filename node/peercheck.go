package node

import (
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"storj.io/drpc"
	"storj.io/drpc/drpcerr"
	"storj.io/drpc/drpcmetadata"

	"github.com/ringkv/ringkv/internal/loglimit"
	"github.com/ringkv/ringkv/internal/rpcconn"
	"github.com/ringkv/ringkv/ring/gossip"
)

// errPeerRefused marks a peer-service call refused by peerCheck.
var errPeerRefused = errors.New("node: peer call refused")

// codePeerRefused is the drpc code of a call peerCheck refuses.
const codePeerRefused uint64 = 421

// peerCheck is the drpc handler in front of every node's services: a call
// to a peer service (peerServices) that names its caller (the metadata
// rpcconn.Conn.SetIdentity sends) is refused when the caller says it
// belongs to another cluster than this node's, or names a node this
// node's membership does not know (neither the ring nor gossip). A node
// the ring lists as removed is still known: while it runs it may
// coordinate requests, and an operator may admit it again through it.
// Calls that name no caller (a node older than
// identities, a hand-made client) pass: like the gossip cluster id,
// this catches misconfiguration and stale nodes; authentication is the
// node certificates' job (planeGuard). Each refusal is counted
// (ringkv_node_peer_calls_refused_total{reason}) and logged, one line a
// minute per caller.
type peerCheck struct {
	next    drpc.Handler
	cluster func() string
	member  func(id string) (gossip.MemberInfo, bool)
	refused *prometheus.CounterVec
	logs    loglimit.Limiter
	warn    func(msg string, args ...any)
}

func newPeerCheck(next drpc.Handler, g *gossip.Gossip, reg prometheus.Registerer, warn func(string, ...any)) (*peerCheck, error) {
	if reg == nil {
		reg = prometheus.NewRegistry()
	}
	refused := prometheus.NewCounterVec(prometheus.CounterOpts{
		Namespace: "ringkv", Subsystem: "node", Name: "peer_calls_refused_total",
		Help: "Calls to the peer services (Replica, Linearizable, Repair, Raft) refused for their caller, by reason: cluster (another cluster id), not_member (a node id unknown to the ring and to gossip).",
	}, []string{"reason"})
	if err := reg.Register(refused); err != nil {
		return nil, fmt.Errorf("register peer check metrics: %w", err)
	}
	for _, r := range []string{"cluster", "not_member"} {
		refused.WithLabelValues(r)
	}
	return &peerCheck{next: next, cluster: g.ClusterID, member: g.Member, refused: refused, warn: warn}, nil
}

func (p *peerCheck) HandleRPC(stream drpc.Stream, rpc string) error {
	if err := p.check(stream, rpc); err != nil {
		return err
	}
	return p.next.HandleRPC(stream, rpc) //nolint:wrapcheck // the services' own errors
}

// check returns the refusal of a call to rpc on stream, or nil.
func (p *peerCheck) check(stream drpc.Stream, rpc string) error {
	if !isPeerService(rpc) {
		return nil
	}
	md, ok := drpcmetadata.Get(stream.Context())
	if !ok {
		return nil
	}
	caller := md[rpcconn.MetaNode]
	if caller == "" {
		return nil
	}
	var reason string
	var err error
	if theirs, ours := md[rpcconn.MetaCluster], p.cluster(); theirs != "" && ours != "" && theirs != ours {
		reason = "cluster"
		err = fmt.Errorf("%w: %s from node %s of cluster %s: this node belongs to cluster %s", errPeerRefused, rpc, caller, theirs, ours)
	} else if _, known := p.member(caller); !known {
		reason = "not_member"
		err = fmt.Errorf("%w: %s from node %s, unknown to this node's membership (neither the ring nor gossip)", errPeerRefused, rpc, caller)
	}
	if err == nil {
		return nil
	}
	p.refused.WithLabelValues(reason).Inc()
	if p.logs.Allow(caller, time.Now()) {
		p.warn("refused a peer call (one line a minute per caller; ringkv_node_peer_calls_refused_total counts them)", "reason", reason, "peer", remoteAddr(stream.Context()), "err", err)
	}
	return drpcerr.WithCode(err, codePeerRefused)
}

func isPeerService(rpc string) bool {
	for _, s := range peerServices {
		if strings.HasPrefix(rpc, s) {
			return true
		}
	}
	return false
}
