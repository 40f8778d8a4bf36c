package testcluster

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/hashicorp/memberlist"
	"storj.io/drpc/drpcerr"

	"github.com/ringkv/ringkv/antientropy"
	"github.com/ringkv/ringkv/internal/fault"
	"github.com/ringkv/ringkv/internal/rpcconn"
	"github.com/ringkv/ringkv/proto/kvpb"
	"github.com/ringkv/ringkv/replica"
	"github.com/ringkv/ringkv/ring"
)

// drpc codes the hostile cases expect (the servers' own tables:
// coordinator/wire.go, antientropy/server.go, node/peercheck.go).
const (
	codeReplicaInvalid    = 3   // coordinator.ErrInvalidArgument, replica.ErrClockOffset
	codeReplicaNotReplica = 11  // coordinator.ErrNotReplica
	codeRepairNotReplica  = 4   // antientropy.ErrNotReplica
	codePeerRefused       = 421 // a caller of another cluster or outside the membership
)

// placement is the serving node's view of the ring, from the Client
// service's Topology.
type placement struct {
	top *kvpb.TopologyResponse
	r   *ring.Ring // for PartitionOf only
}

func (p placement) replicates(id string, part uint32) bool {
	return slices.Contains(p.top.GetTable()[part].GetReplicas(), id)
}

// key returns the first key prefix-N whose partition satisfies cond.
func (p placement) key(prefix string, cond func(part uint32) bool) ([]byte, uint32) {
	for i := 0; ; i++ {
		k := []byte(fmt.Sprintf("%s-%d", prefix, i))
		if part := p.r.PartitionOf(k); cond(part) {
			return k, part
		}
	}
}

func dialNode(t *testing.T, nd *Node, id rpcconn.Identity) *rpcconn.Conn {
	t.Helper()
	conn, err := rpcconn.Dial(t.Context(), nd.RPCAddr, nil)
	if err != nil {
		t.Fatal(err)
	}
	conn.SetIdentity(id)
	t.Cleanup(func() { _ = conn.Close() })
	return conn
}

func topology(t *testing.T, nd *Node) placement {
	t.Helper()
	top, err := kvpb.NewDRPCClientClient(dialNode(t, nd, rpcconn.Identity{})).Topology(t.Context(), &kvpb.TopologyRequest{})
	if err != nil {
		t.Fatal(err)
	}
	r, err := ring.New(ring.Config{Partitions: int(top.GetPartitions()), ReplicationFactor: int(top.GetReplicationFactor())})
	if err != nil {
		t.Fatal(err)
	}
	return placement{top: top, r: r}
}

// wantCode fails unless err is a drpc error with code.
func wantCode(t *testing.T, what string, err error, code uint64) {
	t.Helper()
	if err == nil || drpcerr.Code(err) != code {
		t.Fatalf("%s: %v (code %d), want a refusal with code %d", what, err, drpcerr.Code(err), code)
	}
	t.Logf("%s: refused: %v", what, err)
}

// readReplica reads (part, key) from nd's own replica store.
func readReplica(t *testing.T, nd *Node, part uint32, key []byte) kvpb.ReadResult_Status {
	t.Helper()
	resp, err := kvpb.NewDRPCReplicaClient(dialNode(t, nd, rpcconn.Identity{})).Read(t.Context(),
		&kvpb.ReadRequest{Keys: []*kvpb.ReadKey{{Partition: part, Key: key}}})
	if err != nil {
		t.Fatal(err)
	}
	return resp.GetResults()[0].GetStatus()
}

func metric(t *testing.T, nd *Node, name string) float64 {
	t.Helper()
	v, err := nd.Metric(t.Context(), name)
	if err != nil {
		t.Fatal(err)
	}
	return v
}

func wireRecord(value string, at time.Time) *kvpb.Record {
	return &kvpb.Record{Value: []byte(value), Timestamp: uint64(replica.MakeTimestamp(at, 0)), NodeId: "hostile"}
}

func clusterID(t *testing.T, nd *Node) string {
	t.Helper()
	code, body, err := nd.Do(t.Context(), http.MethodGet, "/api/cluster/status", url.Values{}, nil)
	if err != nil || code != http.StatusOK {
		t.Fatalf("cluster status: %d %v", code, err)
	}
	var st struct {
		ClusterID string `json:"cluster_id"`
	}
	if err := json.Unmarshal(body, &st); err != nil || len(st.ClusterID) != 32 {
		t.Fatalf("cluster status: cluster id %q (%v)", st.ClusterID, err)
	}
	return st.ClusterID
}

// hostilePeerCases speak to the first node as a client or a peer would,
// with hand-built drpc requests and a hand-built gossip member.
func hostilePeerCases(t *testing.T, c *Cluster, key string) {
	nd := c.Nodes[0]
	pl := topology(t, nd)
	ours := clusterID(t, nd)
	ctx := t.Context()

	t.Run("level impossible for the replication factor", func(t *testing.T) {
		// Levels are relative to the replication factor (one, a
		// majority, all of its N replicas), so no named level asks
		// for more replicas than N: the only impossible level a
		// request can carry is a number outside the enum.
		for _, level := range []kvpb.Consistency{kvpb.Consistency(5), kvpb.Consistency(99), kvpb.Consistency(-1)} {
			resp, err := kvpb.NewDRPCClientClient(dialNode(t, nd, rpcconn.Identity{})).Do(ctx, &kvpb.ClientRequest{
				Op: &kvpb.ClientOp{Kind: kvpb.ClientOp_KIND_SET, Key: []byte(key), Value: []byte("v"), Consistency: level},
			})
			if err != nil || resp.GetResult().GetError() != kvpb.ErrorCode_ERROR_CODE_INVALID_ARGUMENT {
				t.Fatalf("set at level %d: %v %v, want INVALID_ARGUMENT", level, resp.GetResult(), err)
			}
		}
		checkUnchanged(t, c, key)
	})

	t.Run("duplicate request id with another payload", func(t *testing.T) {
		// The one request id of the API is a Pipe operation's: two
		// operations in flight with one id could not be told apart.
		stream, err := kvpb.NewDRPCClientClient(dialNode(t, nd, rpcconn.Identity{})).Pipe(ctx)
		if err != nil {
			t.Fatal(err)
		}
		set := func(v string) *kvpb.ClientPipeOp {
			return &kvpb.ClientPipeOp{Id: 7, Op: &kvpb.ClientOp{Kind: kvpb.ClientOp_KIND_SET, Key: []byte(key), Value: []byte(v)}}
		}
		if err := stream.Send(&kvpb.ClientPipeRequest{Ops: []*kvpb.ClientPipeOp{set("a"), set("b")}}); err != nil {
			t.Fatal(err)
		}
		resp, err := stream.Recv()
		wantCode(t, fmt.Sprintf("a pipe message repeating id 7 (answered %v)", resp), err, uint64(kvpb.ErrorCode_ERROR_CODE_INVALID_ARGUMENT))
		checkUnchanged(t, c, key)
	})

	t.Run("hint or anti-entropy for a partition not replicated", func(t *testing.T) {
		k, part := pl.key("hostile-elsewhere", func(p uint32) bool { return !pl.replicates(nd.ID, p) })
		merges := metric(t, nd, "ringkv_coordinator_replica_merges_refused_total")
		repairs := metric(t, nd, "ringkv_antientropy_requests_refused_total")
		conn := dialNode(t, nd, rpcconn.Identity{})
		_, err := kvpb.NewDRPCReplicaClient(conn).Merge(ctx, &kvpb.MergeRequest{Records: []*kvpb.KeyedRecord{{Partition: part, Key: k, Record: wireRecord("v", time.Now())}}})
		wantCode(t, "a merge (hint) of a partition not replicated here", err, codeReplicaNotReplica)
		other := (pl.r.PartitionOf([]byte(key)) + 1) % uint32(pl.r.Partitions())
		_, err = kvpb.NewDRPCReplicaClient(conn).Merge(ctx, &kvpb.MergeRequest{Records: []*kvpb.KeyedRecord{{Partition: other, Key: []byte(key), Record: wireRecord("v", time.Now())}}})
		wantCode(t, "a merge naming another partition than its key's", err, codeReplicaInvalid)
		_, err = kvpb.NewDRPCRepairClient(conn).Tree(ctx, &kvpb.TreeRequest{Partition: part, Fanout: antientropy.Fanout, Depth: antientropy.Depth})
		wantCode(t, "a tree request of a partition not replicated here", err, codeRepairNotReplica)
		_, err = kvpb.NewDRPCRepairClient(conn).Fetch(ctx, &kvpb.FetchRequest{Partition: 1 << 30, Buckets: []uint32{0}, Fanout: antientropy.Fanout, Depth: antientropy.Depth})
		wantCode(t, "a fetch of a partition out of range", err, codeRepairNotReplica)
		if st := readReplica(t, nd, part, k); st != kvpb.ReadResult_STATUS_NOT_FOUND {
			t.Fatalf("%s on %s after the refused merge: %v", k, nd.ID, st)
		}
		if got := metric(t, nd, "ringkv_coordinator_replica_merges_refused_total") - merges; got != 2 {
			t.Errorf("replica_merges_refused_total grew by %v, want 2", got)
		}
		if got := metric(t, nd, "ringkv_antientropy_requests_refused_total") - repairs; got != 2 {
			t.Errorf("antientropy requests_refused_total grew by %v, want 2", got)
		}
		checkUnchanged(t, c, key)
	})

	t.Run("timestamp beyond the clock skew", func(t *testing.T) {
		// A record stamped an hour ahead would win every LWW compare
		// for an hour: refused (the maximum offset is 500 ms), so a
		// later write of the key still wins.
		k, part := pl.key("hostile-future", func(p uint32) bool { return pl.replicates(nd.ID, p) })
		before := metric(t, nd, "ringkv_coordinator_replica_merges_refused_total")
		_, err := kvpb.NewDRPCReplicaClient(dialNode(t, nd, rpcconn.Identity{})).Merge(ctx, &kvpb.MergeRequest{
			Records: []*kvpb.KeyedRecord{{Partition: part, Key: k, Record: wireRecord("poison", time.Now().Add(time.Hour))}}})
		wantCode(t, "a merge stamped an hour ahead", err, codeReplicaInvalid)
		if st := readReplica(t, nd, part, k); st != kvpb.ReadResult_STATUS_NOT_FOUND {
			t.Fatalf("%s after the refused merge: %v", k, st)
		}
		if got := metric(t, nd, "ringkv_coordinator_replica_merges_refused_total") - before; got != 1 {
			t.Errorf("replica_merges_refused_total grew by %v, want 1", got)
		}
		if code, err := nd.Set(ctx, string(k), "later", "all"); err != nil || code != http.StatusOK {
			t.Fatalf("a write after the refused one: %d %v", code, err)
		}
		if got, code, err := nd.Get(ctx, string(k), "all"); err != nil || code != http.StatusOK || got != "later" {
			t.Fatalf("read after: %q %d %v, want the later write", got, code, err)
		}
		checkUnchanged(t, c, key)
	})

	t.Run("node id not in membership", func(t *testing.T) {
		k, part := pl.key("hostile-intruder", func(p uint32) bool { return pl.replicates(nd.ID, p) })
		before := metric(t, nd, "ringkv_node_peer_calls_refused_total")
		conn := dialNode(t, nd, rpcconn.Identity{NodeID: "intruder", Cluster: func() string { return ours }})
		_, err := kvpb.NewDRPCReplicaClient(conn).Merge(ctx, &kvpb.MergeRequest{Records: []*kvpb.KeyedRecord{{Partition: part, Key: k, Record: wireRecord("v", time.Now())}}})
		wantCode(t, "a hint (merge) from a node outside the membership", err, codePeerRefused)
		_, err = kvpb.NewDRPCRaftClient(conn).RequestVote(ctx, &kvpb.RequestVoteRequest{Group: part, Term: 1 << 40, Candidate: []byte("intruder"),
			Header: &kvpb.RPCHeader{Id: []byte("intruder"), Addr: []byte("127.0.0.1:1")}})
		wantCode(t, "a raft vote request from a node outside the membership", err, codePeerRefused)
		_, err = kvpb.NewDRPCRepairClient(conn).Tree(ctx, &kvpb.TreeRequest{Partition: part, Fanout: antientropy.Fanout, Depth: antientropy.Depth})
		wantCode(t, "an anti-entropy request from a node outside the membership", err, codePeerRefused)
		if st := readReplica(t, nd, part, k); st != kvpb.ReadResult_STATUS_NOT_FOUND {
			t.Fatalf("%s after the refused merge: %v", k, st)
		}
		if got := metric(t, nd, "ringkv_node_peer_calls_refused_total") - before; got != 3 {
			t.Errorf("peer_calls_refused_total grew by %v, want 3", got)
		}
		checkUnchanged(t, c, key)
	})

	const foreign = "fedcba9876543210fedcba9876543210"
	t.Run("peer from another cluster", func(t *testing.T) {
		// Over drpc: a member's id, another cluster's id.
		k, part := pl.key("hostile-foreign", func(p uint32) bool { return pl.replicates(nd.ID, p) })
		conn := dialNode(t, nd, rpcconn.Identity{NodeID: c.Nodes[1].ID, Cluster: func() string { return foreign }})
		_, err := kvpb.NewDRPCReplicaClient(conn).Merge(ctx, &kvpb.MergeRequest{Records: []*kvpb.KeyedRecord{{Partition: part, Key: k, Record: wireRecord("v", time.Now())}}})
		wantCode(t, "a merge from a node of another cluster", err, codePeerRefused)
		if st := readReplica(t, nd, part, k); st != kvpb.ReadResult_STATUS_NOT_FOUND {
			t.Fatalf("%s after the refused merge: %v", k, st)
		}
		// Over gossip: a member advertising another cluster id.
		gossipRefused(t, c, "hostile-cluster", fmt.Sprintf(`{"v":1,"wire":[1,3],"cluster":%q}`, foreign), "cluster")
		checkUnchanged(t, c, key)
	})

	t.Run("wrong protocol version", func(t *testing.T) {
		// The drpc services carry no version; the wire protocol's
		// version range travels in gossip metadata.
		gossipRefused(t, c, "hostile-wire", `{"v":1,"wire":[99,99]}`, "wire")
		checkUnchanged(t, c, key)
	})
}

// metaDelegate is a memberlist delegate that advertises md and nothing else.
type metaDelegate []byte

func (d metaDelegate) NodeMeta(int) []byte           { return d }
func (metaDelegate) NotifyMsg([]byte)                {}
func (metaDelegate) GetBroadcasts(int, int) [][]byte { return nil }
func (metaDelegate) LocalState(bool) []byte          { return nil }
func (metaDelegate) MergeRemoteState([]byte, bool)   {}

// gossipRefused starts a gossip member named name advertising md on
// 127.0.0.1, joins it to the first node, and waits for that node to count
// a refusal for reason; then checks no node lists it alive.
func gossipRefused(t *testing.T, c *Cluster, name, md, reason string) {
	t.Helper()
	nd := c.Nodes[0]
	before := metric(t, nd, fmt.Sprintf(`ringkv_gossip_peers_refused_total{reason=%q}`, reason))
	mc := memberlist.DefaultLocalConfig()
	mc.Name, mc.BindAddr, mc.BindPort, mc.AdvertisePort = name, "127.0.0.1", 0, 0
	mc.Delegate = metaDelegate(md)
	mc.LogOutput = io.Discard
	ml, err := memberlist.Create(mc)
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = ml.Shutdown() }()
	_, err = ml.Join([]string{nd.GossipAddr}) // the node's refusal may or may not reach us as an error
	t.Logf("join of %s: %v", name, err)
	c.WaitFor(20*time.Second, "the node to refuse "+name, func(ctx context.Context) error {
		if got := metric(t, nd, fmt.Sprintf(`ringkv_gossip_peers_refused_total{reason=%q}`, reason)); got <= before {
			return fmt.Errorf("peers_refused_total{reason=%q} still %v", reason, got)
		}
		return nil
	})
	for _, n := range c.Nodes {
		s, err := n.Stats(t.Context())
		if err != nil {
			t.Fatal(err)
		}
		for _, m := range s.Members {
			if m.ID == name && m.Liveness == "alive" {
				t.Fatalf("%s lists %s alive", n.ID, name)
			}
		}
	}
}

// hostileRestartCases stop the third node: a membership change that
// would leave partitions without a live majority is refused while it is
// down; one of its records is corrupted on disk meanwhile, and reads of
// it after its restart get a corruption status or the good value from
// the other replica, never the damaged bytes.
func hostileRestartCases(t *testing.T, c *Cluster, key string) {
	pl := topology(t, c.Nodes[0])
	// Ring changes are decided on the ring record's Raft group (Known
	// limits): the node stopped (n3 here) must not be one of its two
	// voters, or no change could be decided at all; n1 decides, and the
	// change asked is the removal of the other voter, n2.
	reg := pl.top.GetTable()[pl.r.PartitionOf([]byte("\x00ringkv/ring"))].GetReplicas()
	var n1, n2, n3 *Node
	for _, nd := range c.Nodes {
		switch {
		case !slices.Contains(reg, nd.ID):
			n3 = nd
		case n1 == nil:
			n1 = nd
		default:
			n2 = nd
		}
	}
	if n1 == nil || n2 == nil || n3 == nil {
		t.Fatalf("the ring record's partition is replicated by %v", reg)
	}
	ctx := t.Context()
	k, part := pl.key("hostile-corrupt", func(p uint32) bool { return pl.replicates(n3.ID, p) })
	if code, err := n1.Set(ctx, string(k), "good", "all"); err != nil || code != http.StatusOK {
		t.Fatalf("set %s: %d %v", k, code, err)
	}
	n3.Stop()
	c.WaitFor(30*time.Second, n1.ID+" to see "+n3.ID+" down", func(ctx context.Context) error {
		s, err := n1.Stats(ctx)
		if err != nil {
			return err
		}
		for _, m := range s.Members {
			if m.ID == n3.ID && m.Liveness == "alive" {
				return errors.New("still alive")
			}
		}
		return nil
	})

	t.Run("membership change losing quorum", func(t *testing.T) {
		// With n3 down, removing n2 would leave every partition's two
		// replicas on n1 and n3: one of two alive, no majority.
		before, err := n1.Stats(ctx)
		if err != nil {
			t.Fatal(err)
		}
		for _, op := range []string{"remove", "leave"} {
			code, body, err := n1.Do(ctx, http.MethodPost, "/api/cluster/"+op, url.Values{"id": {n2.ID}}, nil)
			if err != nil {
				t.Fatal(err)
			}
			var out struct {
				Error string `json:"error"`
			}
			if code != http.StatusConflict || json.Unmarshal(body, &out) != nil || !strings.Contains(out.Error, "majority") {
				t.Fatalf("%s %s with %s down: %d %s, want 409 naming the majority", op, n2.ID, n3.ID, code, clipBody(body))
			}
			t.Logf("%s %s: %d %s", op, n2.ID, code, out.Error)
		}
		after, err := n1.Stats(ctx)
		if err != nil {
			t.Fatal(err)
		}
		if after.RingVersion != before.RingVersion {
			t.Fatalf("ring version moved from %d to %d", before.RingVersion, after.RingVersion)
		}
	})

	t.Run("read of a corrupt record", func(t *testing.T) {
		bad, err := fault.CorruptRecords(filepath.Join(n3.DataDir, "replica"), func(_ int, _ uint32, key []byte) bool { return string(key) == string(k) })
		if err != nil || len(bad) != 1 {
			t.Fatalf("corrupt %s on %s: %v %v", k, n3.ID, bad, err)
		}
		n3.Start()
		c.WaitConverged(60 * time.Second)
		if st := readReplica(t, n3, part, k); st != kvpb.ReadResult_STATUS_CORRUPT {
			t.Fatalf("read of the corrupt record from %s's replica: %v, want STATUS_CORRUPT", n3.ID, st)
		}
		// Through the coordinators: the good value (from the healthy
		// replica) or an error, never the damaged bytes.
		for _, nd := range []*Node{n3, n1} {
			for _, level := range []string{"one", "quorum", "all"} {
				code, body, err := nd.Do(ctx, http.MethodGet, "/api/get", url.Values{"key": {string(k)}, "consistency": {level}}, nil)
				if err != nil {
					t.Fatal(err)
				}
				var out struct {
					Value string `json:"value"`
					Error string `json:"error"`
				}
				if json.Unmarshal(body, &out) != nil || (code == http.StatusOK && out.Value != "good") || (code != http.StatusOK && out.Error == "") {
					t.Fatalf("get %s at %s via %s: %d %s", k, level, nd.ID, code, clipBody(body))
				}
			}
		}
		checkUnchanged(t, c, key)
	})
}
