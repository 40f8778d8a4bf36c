package node

import (
	"context"
	"errors"
	"testing"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
	"storj.io/drpc"
	"storj.io/drpc/drpcerr"
	"storj.io/drpc/drpcmetadata"

	"github.com/ringkv/ringkv/internal/rpcconn"
	"github.com/ringkv/ringkv/ring"
	"github.com/ringkv/ringkv/ring/gossip"
)

type ctxStream struct {
	drpc.Stream
	ctx context.Context
}

func (s ctxStream) Context() context.Context { return s.ctx }

type countHandler struct{ calls int }

func (h *countHandler) HandleRPC(drpc.Stream, string) error { h.calls++; return nil }

// TestPeerCheck: a peer-service call naming a caller of another cluster,
// or a node the membership does not know, is refused with
// codePeerRefused and counted; calls naming no caller, calls to the
// client-facing services, and calls from members pass.
func TestPeerCheck(t *testing.T) {
	const ours, theirs = "0123456789abcdef0123456789abcdef", "fedcba9876543210fedcba9876543210"
	members := map[string]ring.Status{"n1": ring.Joined, "n2": ring.Leaving, "n3": ring.Removed, "new": 0}
	next := &countHandler{}
	reg := prometheus.NewRegistry()
	refused := prometheus.NewCounterVec(prometheus.CounterOpts{Name: "refused"}, []string{"reason"})
	reg.MustRegister(refused)
	pc := &peerCheck{
		next:    next,
		cluster: func() string { return ours },
		member: func(id string) (gossip.MemberInfo, bool) {
			st, ok := members[id]
			return gossip.MemberInfo{ID: id, Status: st}, ok
		},
		refused: refused,
		warn:    func(string, ...any) {},
	}
	call := func(rpc string, md map[string]string) error {
		ctx := context.Background()
		if md != nil {
			ctx = drpcmetadata.AddPairs(ctx, md)
		}
		return pc.HandleRPC(ctxStream{ctx: ctx}, rpc)
	}
	const merge = "/ringkv.v1.Replica/Merge"
	for _, tc := range []struct {
		name, rpc string
		md        map[string]string
		reason    string // "" passes
	}{
		{"no metadata", merge, nil, ""},
		{"no caller", merge, map[string]string{"x": "y"}, ""},
		{"a member of this cluster", merge, map[string]string{rpcconn.MetaNode: "n1", rpcconn.MetaCluster: ours}, ""},
		{"a leaving member", "/ringkv.v1.Raft/AppendEntries", map[string]string{rpcconn.MetaNode: "n2"}, ""},
		{"a node gossip knows, not yet in the ring", merge, map[string]string{rpcconn.MetaNode: "new"}, ""},
		{"another cluster", merge, map[string]string{rpcconn.MetaNode: "n1", rpcconn.MetaCluster: theirs}, "cluster"},
		{"an unknown node", "/ringkv.v1.Repair/Fetch", map[string]string{rpcconn.MetaNode: "intruder", rpcconn.MetaCluster: ours}, "not_member"},
		{"a removed node (it may still coordinate, or be admitted again)", "/ringkv.v1.Linearizable/Put", map[string]string{rpcconn.MetaNode: "n3"}, ""},
		{"a client service, whatever it says", "/ringkv.v1.Client/Do", map[string]string{rpcconn.MetaNode: "intruder", rpcconn.MetaCluster: theirs}, ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			before := next.calls
			var count float64
			if tc.reason != "" {
				count = testutil.ToFloat64(refused.WithLabelValues(tc.reason))
			}
			err := call(tc.rpc, tc.md)
			if tc.reason == "" {
				if err != nil || next.calls != before+1 {
					t.Fatalf("refused: %v", err)
				}
				return
			}
			if !errors.Is(err, errPeerRefused) || drpcerr.Code(err) != codePeerRefused || next.calls != before {
				t.Fatalf("got %v (code %d), want a refusal", err, drpcerr.Code(err))
			}
			if got := testutil.ToFloat64(refused.WithLabelValues(tc.reason)) - count; got != 1 {
				t.Errorf("refused{%s} grew by %v", tc.reason, got)
			}
		})
	}
}
