package consensus

import (
	"context"
	"sync/atomic"
	"testing"
	"time"

	"github.com/hashicorp/raft"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/ringkv/ringkv/proto/kvpb"
)

// TestVoteGate: a group transport gated by GateVotes refuses vote and
// pre-vote requests itself, at the candidate's term, until its log has
// reached the first non-zero commit index an append named; then requests
// reach raft again, for good, even if the log later reads lower.
func TestVoteGate(t *testing.T) {
	tr := newLoneTransport(t, "n3", prometheus.NewRegistry())
	g, ok := tr.Group(5).(*groupTransport)
	if !ok {
		t.Fatal("not a groupTransport")
	}
	var last atomic.Uint64
	g.GateVotes(last.Load)
	// A stand-in for raft: grants every vote, accepts every append.
	var reached atomic.Int32
	go func() {
		for {
			select {
			case rpc := <-g.Consumer():
				reached.Add(1)
				switch rpc.Command.(type) {
				case *raft.RequestVoteRequest:
					rpc.Respond(&raft.RequestVoteResponse{Term: 9, Granted: true}, nil)
				case *raft.RequestPreVoteRequest:
					rpc.Respond(&raft.RequestPreVoteResponse{Term: 9, Granted: true}, nil)
				case *raft.AppendEntriesRequest:
					rpc.Respond(&raft.AppendEntriesResponse{Term: 9, Success: true}, nil)
				}
			case <-g.closed:
				return
			}
		}
	}()
	srv := raftServer{t: tr}
	ctx, cancel := context.WithTimeout(t.Context(), 10*time.Second)
	defer cancel()
	vote := func() (granted bool, term uint64) {
		t.Helper()
		v, err := srv.RequestVote(ctx, &kvpb.RequestVoteRequest{Group: 5, Term: 9, Candidate: []byte("n1")})
		if err != nil {
			t.Fatal(err)
		}
		pv, err := srv.RequestPreVote(ctx, &kvpb.RequestPreVoteRequest{Group: 5, Term: 9})
		if err != nil {
			t.Fatal(err)
		}
		if v.GetGranted() != pv.GetGranted() {
			t.Fatalf("vote granted %v, pre-vote %v", v.GetGranted(), pv.GetGranted())
		}
		return v.GetGranted(), v.GetTerm()
	}
	appendWith := func(commit uint64) {
		t.Helper()
		resp := tr.serveAppend(ctx, &kvpb.AppendEntriesRequest{Group: 5, Term: 9, Leader: []byte("n1"), PrevLogEntry: 1, LeaderCommitIndex: commit}, false)
		if resp.GetError() != "" {
			t.Fatal(resp.GetError())
		}
	}
	withheld := func() float64 {
		return testutil.ToFloat64(tr.m.votesWithheld)
	}

	if granted, term := vote(); granted || term != 9 {
		t.Fatalf("empty log, no append yet: granted %v at term %d", granted, term)
	}
	appendWith(0) // a heartbeat names no commit index
	last.Store(3)
	if granted, _ := vote(); granted {
		t.Fatal("granted before any append named a commit index")
	}
	appendWith(40)
	appendWith(90) // the target stays the first one named
	last.Store(39)
	if granted, _ := vote(); granted {
		t.Fatal("granted with the log at 39 of 40")
	}
	if got := withheld(); got != 6 {
		t.Errorf("votes withheld: %v, want 6", got)
	}
	n := reached.Load()
	last.Store(40)
	if granted, _ := vote(); !granted {
		t.Fatal("withheld with the log at the target")
	}
	if reached.Load() != n+2 {
		t.Errorf("requests that reached raft once the log reached the target: %d, want 2", reached.Load()-n)
	}
	last.Store(0) // open for good: a node lagging later votes as raft would
	if granted, _ := vote(); !granted {
		t.Fatal("the gate closed again")
	}
	if got := withheld(); got != 6 {
		t.Errorf("votes withheld after the gate opened: %v, want 6", got)
	}

	// A group that was not gated never withholds.
	g2, ok := tr.Group(6).(*groupTransport)
	if !ok {
		t.Fatal("not a groupTransport")
	}
	if g2.gate.withhold() {
		t.Error("an ungated group withholds its vote")
	}
}

// TestSnapshotsTheFollowerHasAnsweredByTransport: a snapshot whose last
// entry (index and term) the target group's log holds is answered with
// success by the target's transport, and one at or below what the group
// applied that its log does not hold is refused; neither reaches raft
// (hashicorp/raft#697: installing them would empty a monotonic log while
// raft kept its last index, and the next commit panicked), and their data
// is read to its end. Any other snapshot reaches raft as before.
func TestSnapshotsTheFollowerHasAnsweredByTransport(t *testing.T) {
	nodes := startTrNodes(t, 2, TransportConfig{})
	a, b := nodes[0].tr.Group(7), nodes[1].tr.Group(7)
	gb, ok := b.(*groupTransport)
	if !ok {
		t.Fatal("not a groupTransport")
	}
	// The follower applied up to 29 (its own snapshot) and its log holds
	// entries 30..50 at term 4.
	gb.SetSnapshotCheck(func(index, term uint64) snapshotVerdict {
		switch {
		case index >= 30 && index <= 50 && term == 4:
			return snapshotHeld
		case index < 30:
			return snapshotStale
		}
		return snapshotInstall
	})
	var reached atomic.Int32
	trAnswerSnapshots(t, b, &reached)
	install := func(index, term uint64) *raft.InstallSnapshotResponse {
		t.Helper()
		resp, err := trSendSnapshot(a, index, term)
		if err != nil {
			t.Fatalf("snapshot at %d/%d: %v", index, term, err)
		}
		return resp
	}
	if resp := install(40, 4); !resp.Success || resp.Term != 6 {
		t.Fatalf("snapshot the log holds: %+v", resp)
	}
	if resp := install(20, 3); resp.Success || resp.Term != 6 {
		t.Fatalf("snapshot below what was applied: %+v", resp)
	}
	if n := reached.Load(); n != 0 {
		t.Fatalf("a snapshot the follower has reached raft (%d)", n)
	}
	for reason, want := range map[string]float64{"held": 1, "stale": 1} {
		if got := nodes[1].metric(t, "ringkv_consensus_transport_snapshots_skipped_total", map[string]string{"reason": reason}); got != want {
			t.Errorf("snapshots skipped as %s: %v, want %v", reason, got, want)
		}
	}
	for _, c := range []struct{ index, term uint64 }{{40, 5}, {60, 4}} {
		if resp := install(c.index, c.term); !resp.Success {
			t.Fatalf("snapshot at %d/%d: %+v", c.index, c.term, resp)
		}
	}
	if n := reached.Load(); n != 2 {
		t.Errorf("snapshots the follower lacks that reached raft: %d, want 2", n)
	}
}
