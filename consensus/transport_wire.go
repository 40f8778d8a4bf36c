package consensus

// Conversions between raft's messages and their wire form, and the
// transport's metrics.

import (
	"errors"
	"fmt"
	"time"

	"github.com/hashicorp/raft"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/ringkv/ringkv/internal/promreg"
	"github.com/ringkv/ringkv/proto/kvpb"
)

// isHeartbeat reports whether req is a heartbeat, by the test raft's
// NetworkTransport uses for its fast path.
func isHeartbeat(req *raft.AppendEntriesRequest) bool {
	leader := req.Addr
	if len(leader) == 0 {
		leader = req.Leader //nolint:staticcheck // as raft does, for senders without RPCHeader.Addr
	}
	return req.Term != 0 && leader != nil &&
		req.PrevLogEntry == 0 && req.PrevLogTerm == 0 &&
		len(req.Entries) == 0 && req.LeaderCommitIndex == 0
}

// wireIsHeartbeat is isHeartbeat on the wire form.
func wireIsHeartbeat(w *kvpb.AppendEntriesRequest) bool {
	return w.GetTerm() != 0 && (len(w.GetHeader().GetAddr()) > 0 || len(w.GetLeader()) > 0) &&
		w.GetPrevLogEntry() == 0 && w.GetPrevLogTerm() == 0 &&
		len(w.GetEntries()) == 0 && w.GetLeaderCommitIndex() == 0
}

func headerToWire(h raft.RPCHeader) *kvpb.RPCHeader {
	return &kvpb.RPCHeader{ProtocolVersion: int32(h.ProtocolVersion), Id: h.ID, Addr: h.Addr}
}

func headerFromWire(h *kvpb.RPCHeader) raft.RPCHeader {
	return raft.RPCHeader{ProtocolVersion: raft.ProtocolVersion(h.GetProtocolVersion()), ID: h.GetId(), Addr: h.GetAddr()}
}

// appendToWire converts args; the result shares args' byte slices.
func appendToWire(group uint32, id uint64, args *raft.AppendEntriesRequest) *kvpb.AppendEntriesRequest {
	w := &kvpb.AppendEntriesRequest{
		Group: group, Id: id, Header: headerToWire(args.RPCHeader), Term: args.Term, Leader: args.Leader, //nolint:staticcheck // raft still sends and reads the deprecated field
		PrevLogEntry: args.PrevLogEntry, PrevLogTerm: args.PrevLogTerm, LeaderCommitIndex: args.LeaderCommitIndex,
	}
	if len(args.Entries) > 0 {
		w.Entries = make([]*kvpb.RaftLog, len(args.Entries))
		for i, e := range args.Entries {
			l := &kvpb.RaftLog{Index: e.Index, Term: e.Term, Type: uint32(e.Type), Data: e.Data, Extensions: e.Extensions}
			if !e.AppendedAt.IsZero() {
				l.AppendedAtUnixNanos = e.AppendedAt.UnixNano()
			}
			w.Entries[i] = l
		}
	}
	return w
}

func appendFromWire(w *kvpb.AppendEntriesRequest) *raft.AppendEntriesRequest {
	req := &raft.AppendEntriesRequest{
		RPCHeader: headerFromWire(w.GetHeader()), Term: w.GetTerm(), Leader: w.GetLeader(),
		PrevLogEntry: w.GetPrevLogEntry(), PrevLogTerm: w.GetPrevLogTerm(), LeaderCommitIndex: w.GetLeaderCommitIndex(),
	}
	if n := len(w.GetEntries()); n > 0 {
		req.Entries = make([]*raft.Log, n)
		for i, l := range w.GetEntries() {
			e := &raft.Log{Index: l.GetIndex(), Term: l.GetTerm(), Type: raft.LogType(l.GetType()), Data: l.GetData(), Extensions: l.GetExtensions()}
			if ns := l.GetAppendedAtUnixNanos(); ns != 0 {
				e.AppendedAt = time.Unix(0, ns)
			}
			req.Entries[i] = e
		}
	}
	return req
}

// appendRespFromWire fills resp from w, or returns the error w carries.
func appendRespFromWire(w *kvpb.AppendEntriesResponse, resp *raft.AppendEntriesResponse) error {
	if code := w.GetErrorCode(); code != 0 {
		return remoteError(code, errors.New(w.GetError()))
	}
	*resp = raft.AppendEntriesResponse{
		RPCHeader: headerFromWire(w.GetHeader()), Term: w.GetTerm(), LastLog: w.GetLastLog(),
		Success: w.GetSuccess(), NoRetryBackoff: w.GetNoRetryBackoff(),
	}
	return nil
}

// rpc label values of the transport metrics.
const (
	rpcHeartbeat       = "heartbeat"
	rpcAppendEntries   = "append_entries"
	rpcPipeline        = "append_entries_pipeline"
	rpcRequestVote     = "request_vote"
	rpcRequestPreVote  = "request_pre_vote"
	rpcTimeoutNow      = "timeout_now"
	rpcInstallSnapshot = "install_snapshot"
)

// transportMetrics are the Transport's metrics. They are declared here,
// not in metrics.go, to keep the transport in one file.
type transportMetrics struct {
	// sent counts Raft RPCs sent, by rpc; frames counts the drpc calls and
	// stream frames (rpc="append_entries_pipeline", heartbeats included)
	// that carried them, so sent/frames is the coalescing factor.
	sent   *prometheus.CounterVec
	frames *prometheus.CounterVec
	// received counts Raft RPCs handed to a local group, by rpc.
	received *prometheus.CounterVec
	// heartbeatBatch observes the heartbeats per stream frame that has any.
	heartbeatBatch prometheus.Histogram
	// snapshotsInstalled counts snapshots received that raft installed.
	snapshotsInstalled prometheus.Counter
	// livenessSent counts liveness messages queued to peers;
	// heartbeatsElided the periodic heartbeats a follower's liveness
	// answered here; heartbeatsInjected the heartbeats a leader's liveness
	// handed to local followers (liveness.go).
	livenessSent       prometheus.Counter
	heartbeatsElided   prometheus.Counter
	heartbeatsInjected prometheus.Counter
	// commitsInjected counts the idle appends handed to local followers
	// for a commit index a leader's liveness message reported.
	commitsInjected prometheus.Counter
	// votesWithheld counts vote and pre-vote requests refused by a group
	// that started empty and has not refilled (guards.go).
	votesWithheld prometheus.Counter
	// snapshotsSkipped counts snapshots answered without installing them,
	// by reason: held (the log holds their last entry: success) or stale
	// (at or below what the group applied: refused) (guards.go).
	snapshotsSkipped *prometheus.CounterVec
	// prevInSnapshot counts appends whose previous entry was the last
	// entry of the local group's snapshot, not in its log (guards.go).
	prevInSnapshot prometheus.Counter
	// confirmRounds counts node-level leadership confirmation rounds and
	// confirmGroups observes the groups per round; confirmUnresolved
	// counts groups a round left unconfirmed (they asked raft);
	// confirmsAnswered counts peers' Confirms answered here (confirm.go).
	confirmRounds     prometheus.Counter
	confirmGroups     prometheus.Histogram
	confirmUnresolved prometheus.Counter
	confirmsAnswered  prometheus.Counter
}

func newTransportMetrics(reg prometheus.Registerer) (transportMetrics, error) {
	m := transportMetrics{
		sent: prometheus.NewCounterVec(prometheus.CounterOpts{
			Namespace: "ringkv", Subsystem: "consensus", Name: "transport_rpcs_sent_total",
			Help: "Raft RPCs sent to peers, by rpc.",
		}, []string{"rpc"}),
		frames: prometheus.NewCounterVec(prometheus.CounterOpts{
			Namespace: "ringkv", Subsystem: "consensus", Name: "transport_frames_sent_total",
			Help: "drpc calls and stream frames that carried the Raft RPCs sent, by rpc.",
		}, []string{"rpc"}),
		received: prometheus.NewCounterVec(prometheus.CounterOpts{
			Namespace: "ringkv", Subsystem: "consensus", Name: "transport_rpcs_received_total",
			Help: "Raft RPCs received for a local group, by rpc.",
		}, []string{"rpc"}),
		heartbeatBatch: prometheus.NewHistogram(prometheus.HistogramOpts{
			Namespace: "ringkv", Subsystem: "consensus", Name: "transport_heartbeat_batch_size",
			Help:    "Heartbeats coalesced into one stream frame.",
			Buckets: prometheus.ExponentialBuckets(1, 2, 10),
		}),
		snapshotsInstalled: prometheus.NewCounter(prometheus.CounterOpts{
			Namespace: "ringkv", Subsystem: "consensus", Name: "transport_snapshots_installed_total",
			Help: "Snapshots received from a leader and installed by a local group.",
		}),
		livenessSent: prometheus.NewCounter(prometheus.CounterOpts{
			Namespace: "ringkv", Subsystem: "consensus", Name: "transport_liveness_sent_total",
			Help: "Liveness messages queued to peers; each stands for the periodic heartbeats of the groups the two nodes share.",
		}),
		heartbeatsElided: prometheus.NewCounter(prometheus.CounterOpts{
			Namespace: "ringkv", Subsystem: "consensus", Name: "transport_heartbeats_elided_total",
			Help: "Periodic heartbeats and idle appends (raft's CommitTimeout tick) of groups led here answered by the follower node's liveness instead of sent.",
		}),
		heartbeatsInjected: prometheus.NewCounter(prometheus.CounterOpts{
			Namespace: "ringkv", Subsystem: "consensus", Name: "transport_heartbeats_injected_total",
			Help: "Heartbeats handed to local followers on behalf of their leader node's liveness message.",
		}),
		commitsInjected: prometheus.NewCounter(prometheus.CounterOpts{
			Namespace: "ringkv", Subsystem: "consensus", Name: "transport_commits_injected_total",
			Help: "Idle appends handed to local followers for a commit index their leader node's liveness message reported (raft's CommitTimeout tick, standing in).",
		}),
		votesWithheld: prometheus.NewCounter(prometheus.CounterOpts{
			Namespace: "ringkv", Subsystem: "consensus", Name: "transport_votes_withheld_total",
			Help: "Vote and pre-vote requests refused by a local group that started with no state (a node that lost its disk) until its log reached its leader's commit index.",
		}),
		snapshotsSkipped: prometheus.NewCounterVec(prometheus.CounterOpts{
			Namespace: "ringkv", Subsystem: "consensus", Name: "transport_snapshots_skipped_total",
			Help: "Snapshots from a leader answered without installing them, by reason: held (the local group's log held their last entry; answered with success) or stale (at or below what the group had applied; refused).",
		}, []string{"reason"}),
		prevInSnapshot: prometheus.NewCounter(prometheus.CounterOpts{
			Namespace: "ringkv", Subsystem: "consensus", Name: "transport_appends_prev_in_snapshot_total",
			Help: "Appends whose previous entry was the last entry of the local group's snapshot, which its log does not hold: matched against the snapshot (hashicorp/raft would refuse them).",
		}),
		confirmRounds: prometheus.NewCounter(prometheus.CounterOpts{
			Namespace: "ringkv", Subsystem: "consensus", Name: "transport_confirm_rounds_total",
			Help: "Node-level leadership confirmation rounds: one Confirm per peer for every group with linearizable reads waiting.",
		}),
		confirmGroups: prometheus.NewHistogram(prometheus.HistogramOpts{
			Namespace: "ringkv", Subsystem: "consensus", Name: "transport_confirm_round_groups",
			Help:    "Groups confirmed together in one node-level leadership confirmation round.",
			Buckets: prometheus.ExponentialBuckets(1, 2, 10),
		}),
		confirmUnresolved: prometheus.NewCounter(prometheus.CounterOpts{
			Namespace: "ringkv", Subsystem: "consensus", Name: "transport_confirm_unresolved_total",
			Help: "Groups a node-level confirmation round left without a quorum's answer; their reads asked raft (VerifyLeader).",
		}),
		confirmsAnswered: prometheus.NewCounter(prometheus.CounterOpts{
			Namespace: "ringkv", Subsystem: "consensus", Name: "transport_confirms_answered_total",
			Help: "Peers' leadership Confirm messages answered by this node.",
		}),
	}
	if _, err := promreg.Register(reg, m.sent, m.frames, m.received, m.heartbeatBatch, m.snapshotsInstalled, m.livenessSent, m.heartbeatsElided, m.heartbeatsInjected, m.commitsInjected, m.votesWithheld, m.snapshotsSkipped, m.prevInSnapshot, m.confirmRounds, m.confirmGroups, m.confirmUnresolved, m.confirmsAnswered); err != nil {
		return transportMetrics{}, fmt.Errorf("register raft transport metrics: %w", err)
	}
	return m, nil
}
