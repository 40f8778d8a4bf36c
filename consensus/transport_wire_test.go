package consensus

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"reflect"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/hashicorp/raft"
	"github.com/prometheus/client_golang/prometheus"
)

// TestWireRoundTrip checks that every RPC reaches the target group intact
// and its response comes back intact.
func TestWireRoundTrip(t *testing.T) {
	nodes := startTrNodes(t, 2, TransportConfig{})
	a, b := nodes[0].tr.Group(7), nodes[1].tr.Group(7)
	other := nodes[1].tr.Group(8) // must see none of group 7's traffic
	trAnswer(t, other, func(rpc raft.RPC) { t.Errorf("group 8 received %T", rpc.Command) })
	hdr := raft.RPCHeader{ProtocolVersion: raft.ProtocolVersionMax, ID: []byte("n1"), Addr: []byte("n1")}
	snapshot := bytes.Repeat([]byte("snapshot"), 3*snapshotChunkBytes/8+3) // 3 chunks and a bit

	var gotReq any
	var gotData []byte
	trAnswer(t, b, func(rpc raft.RPC) {
		gotReq = rpc.Command
		switch cmd := rpc.Command.(type) {
		case *raft.AppendEntriesRequest:
			rpc.Respond(&raft.AppendEntriesResponse{RPCHeader: hdr, Term: cmd.Term, LastLog: cmd.PrevLogEntry + uint64(len(cmd.Entries)), Success: true, NoRetryBackoff: true}, nil)
		case *raft.RequestVoteRequest:
			rpc.Respond(&raft.RequestVoteResponse{RPCHeader: hdr, Term: cmd.Term, Peers: []byte("peers"), Granted: true}, nil)
		case *raft.RequestPreVoteRequest:
			rpc.Respond(&raft.RequestPreVoteResponse{RPCHeader: hdr, Term: cmd.Term, Granted: true}, nil)
		case *raft.TimeoutNowRequest:
			rpc.Respond(&raft.TimeoutNowResponse{RPCHeader: hdr}, nil)
		case *raft.InstallSnapshotRequest:
			data, err := io.ReadAll(rpc.Reader)
			gotData = data
			rpc.Respond(&raft.InstallSnapshotResponse{RPCHeader: hdr, Term: cmd.Term, Success: true}, err)
		default:
			rpc.Respond(nil, fmt.Errorf("unexpected %T", cmd))
		}
	})

	appendReq := &raft.AppendEntriesRequest{
		RPCHeader: hdr, Term: 3, Leader: []byte("n1"), PrevLogEntry: 10, PrevLogTerm: 2, LeaderCommitIndex: 9,
		Entries: []*raft.Log{
			{Index: 11, Term: 3, Type: raft.LogCommand, Data: []byte("x"), Extensions: []byte("ext"), AppendedAt: time.Unix(1700000000, 123)},
			{Index: 12, Term: 3, Type: raft.LogNoop},
		},
	}
	tests := []struct {
		name     string
		call     func() (req, resp any, err error)
		wantResp any
	}{
		{"append entries", func() (any, any, error) {
			var resp raft.AppendEntriesResponse
			return appendReq, &resp, a.AppendEntries("n2", "n2", appendReq, &resp)
		}, &raft.AppendEntriesResponse{RPCHeader: hdr, Term: 3, LastLog: 12, Success: true, NoRetryBackoff: true}},
		{"request vote", func() (any, any, error) {
			req := &raft.RequestVoteRequest{RPCHeader: hdr, Term: 4, Candidate: []byte("n1"), LastLogIndex: 12, LastLogTerm: 3, LeadershipTransfer: true}
			var resp raft.RequestVoteResponse
			return req, &resp, a.RequestVote("n2", "n2", req, &resp)
		}, &raft.RequestVoteResponse{RPCHeader: hdr, Term: 4, Peers: []byte("peers"), Granted: true}},
		{"request pre-vote", func() (any, any, error) {
			req := &raft.RequestPreVoteRequest{RPCHeader: hdr, Term: 5, LastLogIndex: 12, LastLogTerm: 3}
			var resp raft.RequestPreVoteResponse
			pv, ok := a.(raft.WithPreVote)
			if !ok {
				t.Fatal("group transport does not implement raft.WithPreVote")
			}
			return req, &resp, pv.RequestPreVote("n2", "n2", req, &resp)
		}, &raft.RequestPreVoteResponse{RPCHeader: hdr, Term: 5, Granted: true}},
		{"timeout now", func() (any, any, error) {
			req := &raft.TimeoutNowRequest{RPCHeader: hdr}
			var resp raft.TimeoutNowResponse
			return req, &resp, a.TimeoutNow("n2", "n2", req, &resp)
		}, &raft.TimeoutNowResponse{RPCHeader: hdr}},
		{"install snapshot", func() (any, any, error) {
			req := &raft.InstallSnapshotRequest{
				RPCHeader: hdr, SnapshotVersion: raft.SnapshotVersionMax, Term: 6, Leader: []byte("n1"), LastLogIndex: 40,
				LastLogTerm: 5, Peers: []byte("p"), Configuration: []byte("conf"), ConfigurationIndex: 30, Size: int64(len(snapshot)),
			}
			var resp raft.InstallSnapshotResponse
			return req, &resp, a.InstallSnapshot("n2", "n2", req, &resp, bytes.NewReader(snapshot))
		}, &raft.InstallSnapshotResponse{RPCHeader: hdr, Term: 6, Success: true}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			req, resp, err := tc.call()
			if err != nil {
				t.Fatal(err)
			}
			if !reflect.DeepEqual(gotReq, req) {
				t.Errorf("request received: got %+v, want %+v", gotReq, req)
			}
			if !reflect.DeepEqual(resp, tc.wantResp) {
				t.Errorf("response: got %+v, want %+v", resp, tc.wantResp)
			}
		})
	}
	if !bytes.Equal(gotData, snapshot) {
		t.Errorf("snapshot data: got %d bytes, want %d identical bytes", len(gotData), len(snapshot))
	}

	t.Run("pipelined appends complete in order", func(t *testing.T) {
		p, err := a.AppendEntriesPipeline("n2", "n2")
		if err != nil {
			t.Fatal(err)
		}
		defer func() { _ = p.Close() }()
		const n = 200
		sent := make(chan struct{})
		go func() {
			defer close(sent)
			for i := range n {
				req := &raft.AppendEntriesRequest{RPCHeader: hdr, Term: 3, Leader: []byte("n1"), PrevLogEntry: uint64(i),
					Entries: []*raft.Log{{Index: uint64(i + 1), Term: 3, Data: []byte("d")}}}
				if _, err := p.AppendEntries(req, new(raft.AppendEntriesResponse)); err != nil {
					t.Errorf("pipeline append %d: %v", i, err)
					return
				}
			}
		}()
		for i := range n {
			f := <-p.Consumer()
			if err := f.Error(); err != nil {
				t.Fatalf("future %d: %v", i, err)
			}
			if got, want := f.Request().PrevLogEntry, uint64(i); got != want {
				t.Fatalf("future %d is for PrevLogEntry %d, want %d", i, got, want)
			}
			if got, want := f.Response().LastLog, uint64(i+1); got != want {
				t.Fatalf("future %d: LastLog got %d, want %d", i, got, want)
			}
		}
		<-sent
	})
}

// TestHeartbeatsTakeFastPathAndCoalesce sends heartbeats of many groups to
// one peer at once: they travel in fewer frames than heartbeats and are
// answered by each group's heartbeat handler, not its consumer.
func TestHeartbeatsTakeFastPathAndCoalesce(t *testing.T) {
	const groups = 32
	nodes := startTrNodes(t, 2, TransportConfig{HeartbeatWindow: time.Second})
	for g := range uint32(groups) {
		tr := nodes[1].tr.Group(g)
		tr.SetHeartbeatHandler(func(rpc raft.RPC) {
			req, ok := rpc.Command.(*raft.AppendEntriesRequest)
			if !ok {
				rpc.Respond(nil, fmt.Errorf("unexpected %T", rpc.Command))
				return
			}
			rpc.Respond(&raft.AppendEntriesResponse{Term: req.Term, LastLog: uint64(g), Success: true}, nil)
		})
		trAnswer(t, tr, func(rpc raft.RPC) { t.Errorf("group %d consumer received %T", g, rpc.Command) })
	}
	var wg sync.WaitGroup
	for g := range uint32(groups) {
		wg.Go(func() {
			req := &raft.AppendEntriesRequest{Term: 9, RPCHeader: raft.RPCHeader{Addr: []byte("n1")}}
			var resp raft.AppendEntriesResponse
			if err := nodes[0].tr.Group(g).AppendEntries("n2", "n2", req, &resp); err != nil {
				t.Errorf("heartbeat group %d: %v", g, err)
				return
			}
			if want := (raft.AppendEntriesResponse{Term: 9, LastLog: uint64(g), Success: true}); !reflect.DeepEqual(resp, want) {
				t.Errorf("heartbeat group %d: got %+v, want %+v", g, resp, want)
			}
		})
	}
	wg.Wait()
	sent := nodes[0].metric(t, "ringkv_consensus_transport_rpcs_sent_total", map[string]string{"rpc": rpcHeartbeat})
	frames := nodes[0].metric(t, "ringkv_consensus_transport_heartbeat_batch_size", nil)
	if sent != groups || frames >= sent {
		t.Errorf("heartbeats: %v sent in %v frames, want %d in fewer", sent, frames, groups)
	}
	t.Logf("%v heartbeats in %v frames", sent, frames)
}

// TestErrors checks the errors a group transport returns.
func TestErrors(t *testing.T) {
	nodes := startTrNodes(t, 2, TransportConfig{})
	g := nodes[0].tr.Group(99) // n2 hosts no group 99
	hb := &raft.AppendEntriesRequest{Term: 1, Leader: []byte("n1")}
	tests := []struct {
		name string
		call func() error
		want error
	}{
		{"unknown peer", func() error {
			return g.RequestVote("ghost", "ghost", &raft.RequestVoteRequest{}, &raft.RequestVoteResponse{})
		}, ErrUnknownPeer},
		{"unknown peer pipeline", func() error {
			_, err := g.AppendEntriesPipeline("ghost", "ghost")
			return err
		}, ErrUnknownPeer},
		{"unknown group vote", func() error {
			return g.RequestVote("n2", "n2", &raft.RequestVoteRequest{}, &raft.RequestVoteResponse{})
		}, ErrUnknownGroup},
		{"unknown group heartbeat", func() error {
			return g.AppendEntries("n2", "n2", hb, &raft.AppendEntriesResponse{})
		}, ErrUnknownGroup},
		{"unknown group append", func() error {
			return g.AppendEntries("n2", "n2", &raft.AppendEntriesRequest{Term: 1, PrevLogEntry: 4}, &raft.AppendEntriesResponse{})
		}, ErrUnknownGroup},
		{"unknown group snapshot", func() error {
			return g.InstallSnapshot("n2", "n2", &raft.InstallSnapshotRequest{Size: 3}, &raft.InstallSnapshotResponse{}, strings.NewReader("abc"))
		}, ErrUnknownGroup},
		{"unknown group pipeline", func() error {
			p, err := g.AppendEntriesPipeline("n2", "n2")
			if err != nil {
				return err
			}
			defer func() { _ = p.Close() }()
			if _, err := p.AppendEntries(&raft.AppendEntriesRequest{Term: 1}, &raft.AppendEntriesResponse{}); err != nil {
				return err
			}
			return (<-p.Consumer()).Error()
		}, ErrUnknownGroup},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			if err := tc.call(); !errors.Is(err, tc.want) {
				t.Errorf("got %v, want %v", err, tc.want)
			}
		})
	}

	t.Run("closed", func(t *testing.T) {
		removed := nodes[0].tr.Group(5)
		nodes[0].tr.RemoveGroup(5)
		if err := removed.RequestVote("n2", "n2", &raft.RequestVoteRequest{}, &raft.RequestVoteResponse{}); !errors.Is(err, ErrTransportClosed) {
			t.Errorf("removed group: got %v, want ErrTransportClosed", err)
		}
		if nodes[0].tr.Group(5) == removed {
			t.Errorf("Group after RemoveGroup returned the removed transport")
		}
		if err := nodes[0].tr.Close(); err != nil {
			t.Fatal(err)
		}
		if err := nodes[0].tr.Close(); err != nil {
			t.Errorf("second Close: %v", err)
		}
		if err := g.AppendEntries("n2", "n2", hb, &raft.AppendEntriesResponse{}); !errors.Is(err, ErrTransportClosed) {
			t.Errorf("after Close: got %v, want ErrTransportClosed", err)
		}
		if err := nodes[0].tr.Group(1).TimeoutNow("n2", "n2", &raft.TimeoutNowRequest{}, &raft.TimeoutNowResponse{}); !errors.Is(err, ErrTransportClosed) {
			t.Errorf("new group after Close: got %v, want ErrTransportClosed", err)
		}
	})
}

func TestNewTransportValidates(t *testing.T) {
	res := &trResolver{}
	tests := []struct {
		name     string
		cfg      TransportConfig
		resolver Resolver
		want     string
	}{
		{"no node id", TransportConfig{}, res, "NodeID"},
		{"negative conns", TransportConfig{NodeID: "n1", ConnsPerPeer: -1}, res, "ConnsPerPeer"},
		{"negative timeout", TransportConfig{NodeID: "n1", Timeout: -time.Second}, res, "Timeout"},
		{"no resolver", TransportConfig{NodeID: "n1"}, nil, "Resolver"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			_, err := NewTransport(tc.cfg, tc.resolver, nil)
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Errorf("got %v, want an error about %s", err, tc.want)
			}
		})
	}
	t.Run("metrics registered twice", func(t *testing.T) {
		reg := prometheus.NewRegistry()
		tr, err := NewTransport(TransportConfig{NodeID: "n1"}, res, reg)
		if err != nil {
			t.Fatal(err)
		}
		defer func() { _ = tr.Close() }()
		if _, err := NewTransport(TransportConfig{NodeID: "n1"}, res, reg); err == nil {
			t.Errorf("second transport on one registry: got nil error")
		}
	})
}

// TestSnapshotsBackToBack: snapshots sent one after another to the same
// peer all arrive. The sender once cancelled each snapshot stream's
// context before the stream had finished, drpc ended the connection for
// it, and the next call on that connection failed with "context
// canceled" (2026-12-06).
func TestSnapshotsBackToBack(t *testing.T) {
	nodes := startTrNodes(t, 2, TransportConfig{})
	a := nodes[0].tr.Group(7)
	trAnswerSnapshots(t, nodes[1].tr.Group(7), nil)
	for i := range 5 {
		resp, err := trSendSnapshot(a, uint64(60+i), 4)
		if err != nil {
			t.Fatalf("snapshot %d: %v", i, err)
		}
		if !resp.Success {
			t.Fatalf("snapshot %d: %+v", i, resp)
		}
	}
}

// trAnswerSnapshots answers, as raft would, every snapshot that reaches
// tr's consumer with success once its data is read, counting them in
// reached if it is not nil.
func trAnswerSnapshots(t *testing.T, tr raft.Transport, reached *atomic.Int32) {
	trAnswer(t, tr, func(rpc raft.RPC) {
		if reached != nil {
			reached.Add(1)
		}
		cmd, ok := rpc.Command.(*raft.InstallSnapshotRequest)
		if !ok {
			rpc.Respond(nil, fmt.Errorf("unexpected %T", rpc.Command))
			return
		}
		_, err := io.Copy(io.Discard, rpc.Reader)
		rpc.Respond(&raft.InstallSnapshotResponse{Term: cmd.Term, Success: true}, err)
	})
}

// trSendSnapshot sends, from a to n2, a snapshot of two chunks and a bit
// ending at index with term, at term 6.
func trSendSnapshot(a raft.Transport, index, term uint64) (*raft.InstallSnapshotResponse, error) {
	data := bytes.Repeat([]byte("s"), 2*snapshotChunkBytes+5)
	req := &raft.InstallSnapshotRequest{
		RPCHeader:       raft.RPCHeader{ProtocolVersion: raft.ProtocolVersionMax, ID: []byte("n1"), Addr: []byte("n1")},
		SnapshotVersion: raft.SnapshotVersionMax, Term: 6, Leader: []byte("n1"),
		LastLogIndex: index, LastLogTerm: term, Size: int64(len(data)),
	}
	var resp raft.InstallSnapshotResponse
	err := a.InstallSnapshot("n2", "n2", req, &resp, bytes.NewReader(data))
	return &resp, err
}

// newLoneTransport is a Transport of node id with no peers, closed when
// the test ends.
func newLoneTransport(t *testing.T, id string, reg prometheus.Registerer) *Transport {
	t.Helper()
	tr, err := NewTransport(TransportConfig{NodeID: id}, &trResolver{}, reg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := tr.Close(); err != nil {
			t.Error(err)
		}
	})
	return tr
}
