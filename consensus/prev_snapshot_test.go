package consensus

import (
	"errors"
	"fmt"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/hashicorp/raft"
)

// errCut is what a cut link of prevTransport answers.
var errCut = errors.New("test: link cut")

// linkCuts are the switches of one node's transport of one group.
type linkCuts struct {
	votes, appends atomic.Bool // refuse outgoing (pre-)votes, appends
	// lossy: outgoing appends are delivered, their answers lost.
	lossy atomic.Bool
}

// prevTransport is a fabric group transport whose incoming appends go
// through matchPrev, as the Transport's do (handleAppend), and whose
// outgoing votes and appends a test can cut. It does not pipeline.
type prevTransport struct {
	*raft.InmemTransport
	cuts    *linkCuts
	check   atomic.Pointer[func(index, term uint64) bool]
	matched atomic.Int64
	in      chan raft.RPC
}

func newPrevTransport(t testing.TB, tr *raft.InmemTransport, cuts *linkCuts) *prevTransport {
	pt := &prevTransport{InmemTransport: tr, cuts: cuts, in: make(chan raft.RPC)}
	done := make(chan struct{})
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		for {
			var rpc raft.RPC
			select {
			case rpc = <-tr.Consumer():
			case <-done:
				return
			}
			if req, ok := rpc.Command.(*raft.AppendEntriesRequest); ok {
				cp := *req // the sender's own request: leave it alone
				if c := pt.check.Load(); c != nil && matchPrev(*c, &cp) {
					pt.matched.Add(1)
				}
				rpc.Command = &cp
			}
			select {
			case pt.in <- rpc:
			case <-done:
				return
			}
		}
	}()
	t.Cleanup(func() { close(done); wg.Wait() })
	return pt
}

func (t *prevTransport) Consumer() <-chan raft.RPC { return t.in }

func (t *prevTransport) SetPrevCheck(check func(index, term uint64) bool) { t.check.Store(&check) }

func (t *prevTransport) AppendEntriesPipeline(raft.ServerID, raft.ServerAddress) (raft.AppendPipeline, error) {
	return nil, raft.ErrPipelineReplicationNotSupported
}

func (t *prevTransport) AppendEntries(id raft.ServerID, target raft.ServerAddress, args *raft.AppendEntriesRequest, resp *raft.AppendEntriesResponse) error {
	if t.cuts.appends.Load() {
		return errCut
	}
	if t.cuts.lossy.Load() {
		_ = t.InmemTransport.AppendEntries(id, target, args, resp) // delivered; its answer lost below
		return errCut
	}
	return t.InmemTransport.AppendEntries(id, target, args, resp) //nolint:wrapcheck // a test seam passes errors through
}

func (t *prevTransport) RequestVote(id raft.ServerID, target raft.ServerAddress, args *raft.RequestVoteRequest, resp *raft.RequestVoteResponse) error {
	if t.cuts.votes.Load() {
		return errCut
	}
	return t.InmemTransport.RequestVote(id, target, args, resp) //nolint:wrapcheck // a test seam passes errors through
}

func (t *prevTransport) RequestPreVote(id raft.ServerID, target raft.ServerAddress, args *raft.RequestPreVoteRequest, resp *raft.RequestPreVoteResponse) error {
	if t.cuts.votes.Load() {
		return errCut
	}
	return t.InmemTransport.RequestPreVote(id, target, args, resp) //nolint:wrapcheck // a test seam passes errors through
}

// cutFabric is a fabric whose group transports are prevTransports, with
// switches per node and group.
type cutFabric struct {
	f     *fabric
	mu    sync.Mutex
	cuts  map[string]*linkCuts
	trans map[string]*prevTransport
}

func newCutFabric(t testing.TB) *cutFabric {
	cf := &cutFabric{f: newFabric(), cuts: map[string]*linkCuts{}, trans: map[string]*prevTransport{}}
	cf.f.wrap = func(node string, group uint32, tr raft.Transport) raft.Transport {
		inmem, ok := tr.(*raft.InmemTransport)
		if !ok {
			panic(fmt.Sprintf("test: fabric transport %T", tr))
		}
		pt := newPrevTransport(t, inmem, cf.cutsOf(node, group))
		cf.mu.Lock()
		cf.trans[fmt.Sprintf("%s/%d", node, group)] = pt
		cf.mu.Unlock()
		return pt
	}
	return cf
}

// cutsOf returns the switches of node's transport of group.
func (cf *cutFabric) cutsOf(node string, group uint32) *linkCuts {
	cf.mu.Lock()
	defer cf.mu.Unlock()
	k := fmt.Sprintf("%s/%d", node, group)
	if cf.cuts[k] == nil {
		cf.cuts[k] = &linkCuts{}
	}
	return cf.cuts[k]
}

// transport returns node's transport of group (nil before it starts).
func (cf *cutFabric) transport(node string, group uint32) *prevTransport {
	cf.mu.Lock()
	defer cf.mu.Unlock()
	return cf.trans[fmt.Sprintf("%s/%d", node, group)]
}

// TestAppendMatchedInSnapshot: a split child's group starts from a
// snapshot at index 1 on every voter, and no log holds entry 1. A voter X
// becomes the child's first leader and appends its entry 2, which reaches
// no one; the others elect a leader that appends its own entry 2. That
// leader backs up to entry 1 to bring X in line, which X's raft refuses
// (its log holds 2 but not 1) and its snapshot cannot fix, so without
// matchPrev X never caught up (TestChaosTxnSplit, 2026-12-06). With it,
// X matches entry 1 against its snapshot, drops its own entry 2 and
// applies everything the leader committed.
func TestAppendMatchedInSnapshot(t *testing.T) {
	const P = 2
	cf := newCutFabric(t)
	cutsOf := cf.cutsOf
	c, mgrs := newClusterOn(t, cf.f, P)
	for _, s := range c.stores {
		if err := s.SetBasePartitions(P); err != nil {
			t.Fatal(err)
		}
	}
	r := c.ring.Ring()
	split, err := r.Split()
	if err != nil {
		t.Fatal(err)
	}
	child := split.ChildIDs(r.IDs()[0])[0]
	x := split.ReplicasOf(child)[1]
	var others []string
	for _, id := range split.ReplicasOf(child) {
		if id != x {
			others = append(others, id)
		}
	}
	// Only X can be elected, and its appends reach no one.
	for _, id := range others {
		cutsOf(id, child).votes.Store(true)
	}
	cutsOf(x, child).appends.Store(true)
	c.ring.r.Store(split)

	var firstTerm uint64
	waitFor(t, 30*time.Second, fmt.Sprintf("%s leading child %d with an entry of its own", x, child), func() error {
		g, ok := mgrs[x].Group(child)
		if !ok {
			return errors.New("no group yet")
		}
		if g.raft.State() != raft.Leader || g.raft.LastIndex() < 2 {
			return fmt.Errorf("%s, last index %d", g.raft.State(), g.raft.LastIndex())
		}
		var l raft.Log
		if err := g.logs.GetLog(2, &l); err != nil {
			return err
		}
		firstTerm = l.Term
		return nil
	})
	// X can no longer be elected; the others elect one of themselves.
	cutsOf(x, child).votes.Store(true)
	for _, id := range others {
		cutsOf(id, child).votes.Store(false)
	}
	live := map[string]*Manager{others[0]: mgrs[others[0]], others[1]: mgrs[others[1]]}
	waitFor(t, 30*time.Second, "a leader of the others", func() error {
		l := leaderOf(live, child)
		if l == nil {
			return errors.New("none")
		}
		if l.raft.CommitIndex() < 2 {
			return fmt.Errorf("commit index %d", l.raft.CommitIndex())
		}
		return nil
	})
	cutsOf(x, child).appends.Store(false)

	g, _ := mgrs[x].Group(child)
	waitFor(t, 20*time.Second, fmt.Sprintf("%s applying what the leader committed", x), func() error {
		l := leaderOf(live, child)
		if l == nil {
			return errors.New("no leader")
		}
		if a, ci := g.raft.AppliedIndex(), l.raft.CommitIndex(); a < ci {
			return fmt.Errorf("applied %d of %d", a, ci)
		}
		var mine, theirs raft.Log
		if err := g.logs.GetLog(2, &mine); err != nil {
			return err
		}
		if err := l.logs.GetLog(2, &theirs); err != nil {
			return err
		}
		if mine.Term != theirs.Term || mine.Term == firstTerm {
			return fmt.Errorf("entry 2 of term %d, the leader's of term %d (%s's own was %d)", mine.Term, theirs.Term, x, firstTerm)
		}
		return nil
	})
	matched := cf.transport(x, child).matched.Load()
	if matched == 0 {
		t.Fatal("caught up without an append matched in the snapshot: the test did not make the case")
	}
	t.Logf("%s matched %d appends against its snapshot", x, matched)
}

// TestMatchPrev: which appends matchPrev rewrites, and the commit index
// it leaves them.
func TestMatchPrev(t *testing.T) {
	in := func(index, term uint64) bool { return index == 1 && term == 1 } // the snapshot (1, 1)
	entries := func(from, to uint64) []*raft.Log {
		var out []*raft.Log
		for i := from; i <= to; i++ {
			out = append(out, &raft.Log{Index: i, Term: 3})
		}
		return out
	}
	for _, tc := range []struct {
		name                 string
		req                  raft.AppendEntriesRequest
		matched              bool
		wantPrev, wantCommit uint64
	}{
		{"entries after the snapshot", raft.AppendEntriesRequest{PrevLogEntry: 1, PrevLogTerm: 1, Entries: entries(2, 4), LeaderCommitIndex: 9}, true, 0, 4},
		{"commit below the entries", raft.AppendEntriesRequest{PrevLogEntry: 1, PrevLogTerm: 1, Entries: entries(2, 4), LeaderCommitIndex: 3}, true, 0, 3},
		{"no entries", raft.AppendEntriesRequest{PrevLogEntry: 1, PrevLogTerm: 1, LeaderCommitIndex: 9}, true, 0, 1},
		{"another term", raft.AppendEntriesRequest{PrevLogEntry: 1, PrevLogTerm: 2, Entries: entries(2, 4), LeaderCommitIndex: 9}, false, 1, 9},
		{"not the snapshot's entry", raft.AppendEntriesRequest{PrevLogEntry: 2, PrevLogTerm: 1, Entries: entries(3, 4), LeaderCommitIndex: 9}, false, 2, 9},
		{"entries not right after it", raft.AppendEntriesRequest{PrevLogEntry: 1, PrevLogTerm: 1, Entries: entries(3, 4), LeaderCommitIndex: 9}, false, 1, 9},
		{"no previous entry", raft.AppendEntriesRequest{Entries: entries(1, 2), LeaderCommitIndex: 9}, false, 0, 9},
	} {
		req := tc.req
		if got := matchPrev(in, &req); got != tc.matched || req.PrevLogEntry != tc.wantPrev || req.LeaderCommitIndex != tc.wantCommit {
			t.Errorf("%s: matched %v, previous entry %d, commit %d; want %v, %d, %d", tc.name, got, req.PrevLogEntry, req.LeaderCommitIndex, tc.matched, tc.wantPrev, tc.wantCommit)
		}
	}
}
