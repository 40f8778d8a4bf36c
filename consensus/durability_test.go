package consensus

import (
	"context"
	"errors"
	"sync"
	"testing"
	"time"

	"github.com/hashicorp/raft"

	"github.com/ringkv/ringkv/proto/kvpb"
	"github.com/ringkv/ringkv/replica"
)

// gatedStore holds back the durability reports of WriteRawAsync until
// release is called, as a store whose fsync is still running would.
type gatedStore struct {
	*replica.Store
	mu      sync.Mutex
	pending []func(error)
}

func (g *gatedStore) WriteRawAsync(ctx context.Context, sets []replica.KV, ranges []replica.KeyRange, durable func(error)) error {
	return g.Store.WriteRawAsync(ctx, sets, ranges, func(err error) {
		g.mu.Lock()
		defer g.mu.Unlock()
		g.pending = append(g.pending, func(released error) { durable(errors.Join(err, released)) })
	})
}

// release reports every held write as durable (or failed with err).
func (g *gatedStore) release(err error) {
	g.mu.Lock()
	held := g.pending
	g.pending = nil
	g.mu.Unlock()
	for _, fn := range held {
		fn(err)
	}
}

func TestLogStoreDurability(t *testing.T) {
	gs := &gatedStore{Store: lsOpenStore(t, "", replica.Deps{})}
	ls := lsNew(t, gs, 1)
	if got := ls.DurableIndex(); got != 0 {
		t.Fatalf("empty log: DurableIndex %d, want 0", got)
	}
	if err := ls.StoreLogs(lsLogs(1, 5, 1)); err != nil {
		t.Fatal(err)
	}
	// Stored and readable, not yet durable.
	var l raft.Log
	if err := ls.GetLog(5, &l); err != nil {
		t.Fatalf("GetLog before the fsync: %v", err)
	}
	if got := ls.DurableIndex(); got != 0 {
		t.Fatalf("DurableIndex before the fsync: %d, want 0", got)
	}
	short, cancel := context.WithTimeout(t.Context(), 20*time.Millisecond)
	err := ls.WaitDurable(short, 5)
	cancel()
	if !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("WaitDurable before the fsync: %v, want the deadline", err)
	}
	waited := make(chan error, 1)
	go func() { waited <- ls.WaitDurable(t.Context(), 5) }()
	gs.release(nil)
	if err := <-waited; err != nil {
		t.Fatalf("WaitDurable: %v", err)
	}
	if got := ls.DurableIndex(); got != 5 {
		t.Fatalf("DurableIndex: %d, want 5", got)
	}

	// A conflict truncation takes the durable index back with the log;
	// compaction from the front does not.
	if err := ls.StoreLogs(lsLogs(6, 8, 1)); err != nil {
		t.Fatal(err)
	}
	gs.release(nil)
	if err := ls.DeleteRange(1, 2); err != nil {
		t.Fatal(err)
	}
	if got := ls.DurableIndex(); got != 8 {
		t.Fatalf("after compaction: DurableIndex %d, want 8", got)
	}
	if err := ls.DeleteRange(7, 8); err != nil {
		t.Fatal(err)
	}
	if got := ls.DurableIndex(); got != 6 {
		t.Fatalf("after truncating 7-8: DurableIndex %d, want 6", got)
	}
	if err := ls.StoreLogs(lsLogs(7, 9, 2)); err != nil {
		t.Fatal(err)
	}
	if got := ls.DurableIndex(); got != 6 {
		t.Fatalf("new entries 7-9 before their fsync: DurableIndex %d, want 6", got)
	}

	// A failed fsync fails every wait for what it held, and stays failed.
	boom := errors.New("EIO")
	gs.release(boom)
	if err := ls.WaitDurable(t.Context(), 9); !errors.Is(err, boom) {
		t.Fatalf("WaitDurable after a failed fsync: %v, want the failure", err)
	}
	if err := ls.WaitDurable(t.Context(), 1); !errors.Is(err, boom) {
		t.Fatalf("a later wait: %v, want the sticky failure", err)
	}
}

// TestLogStoreDurableOnDisk: on a real store every StoreLogs becomes
// durable by itself, and a reopened log counts all it holds as durable.
func TestLogStoreDurableOnDisk(t *testing.T) {
	dir := t.TempDir()
	s := lsOpenStore(t, dir, replica.Deps{})
	ls := lsNew(t, s, 3)
	for i := uint64(1); i <= 50; i += 10 {
		if err := ls.StoreLogs(lsLogs(i, i+9, 1)); err != nil {
			t.Fatal(err)
		}
	}
	ctx, cancel := context.WithTimeout(t.Context(), 10*time.Second)
	defer cancel()
	if err := ls.WaitDurable(ctx, 50); err != nil {
		t.Fatalf("WaitDurable(50): %v", err)
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	ls2 := lsNew(t, lsOpenStore(t, dir, replica.Deps{}), 3)
	if got := ls2.DurableIndex(); got != 50 {
		t.Fatalf("reopened: DurableIndex %d, want 50", got)
	}
}

// fakeDurability is a LogDurability set by hand.
type fakeDurability struct {
	mu      sync.Mutex
	index   uint64
	changed chan struct{}
}

func newFakeDurability() *fakeDurability { return &fakeDurability{changed: make(chan struct{})} }

func (f *fakeDurability) set(i uint64) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.index = i
	close(f.changed)
	f.changed = make(chan struct{})
}

func (f *fakeDurability) DurableIndex() uint64 {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.index
}

func (f *fakeDurability) WaitDurable(ctx context.Context, index uint64) error {
	for {
		f.mu.Lock()
		ok, ch := f.index >= index, f.changed
		f.mu.Unlock()
		if ok {
			return nil
		}
		select {
		case <-ch:
		case <-ctx.Done():
			return ctx.Err()
		}
	}
}

// TestTransportHoldsBackForDurability: the leader's commit index goes out
// only as far as its log is durable, and a follower's answer to an append
// waits until the appended entries are durable.
func TestTransportHoldsBackForDurability(t *testing.T) {
	cfg := DefaultTransportConfig()
	cfg.NodeID = "n1"
	tr, err := NewTransport(cfg, &trResolver{}, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = tr.Close() }()
	g, ok := tr.Group(7).(*groupTransport)
	if !ok {
		t.Fatal("not a groupTransport")
	}
	args := &raft.AppendEntriesRequest{Term: 2, LeaderCommitIndex: 10, Entries: []*raft.Log{{Index: 11, Term: 2}}}
	if got := g.appendToWire(args).GetLeaderCommitIndex(); got != 10 {
		t.Fatalf("without durability: commit %d, want 10", got)
	}
	d := newFakeDurability()
	d.set(4)
	g.SetLogDurability(d)
	if got := g.appendToWire(args).GetLeaderCommitIndex(); got != 4 {
		t.Fatalf("leader durable to 4: commit sent %d, want 4", got)
	}
	d.set(20)
	if got := g.appendToWire(args).GetLeaderCommitIndex(); got != 10 {
		t.Fatalf("leader durable to 20: commit sent %d, want 10", got)
	}

	// The answering side: nothing to wait for, then a wait that ends when
	// the entries are durable, and one that ends with the caller.
	if err := g.appendDurable(t.Context(), 0); err != nil {
		t.Fatalf("no entries: %v", err)
	}
	var none *groupTransport
	if err := none.appendDurable(t.Context(), 5); err != nil {
		t.Fatalf("unknown group: %v", err)
	}
	done := make(chan error, 1)
	go func() { done <- g.appendDurable(t.Context(), 30) }()
	select {
	case err := <-done:
		t.Fatalf("answered (%v) before entry 30 was durable", err)
	case <-time.After(20 * time.Millisecond):
	}
	d.set(30)
	if err := <-done; err != nil {
		t.Fatalf("after entry 30 is durable: %v", err)
	}
	short, cancel := context.WithTimeout(t.Context(), 10*time.Millisecond)
	defer cancel()
	if err := g.appendDurable(short, 31); !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("never durable: %v, want the deadline", err)
	}
	resp := appendFailure(&kvpb.AppendEntriesRequest{Group: 7, Id: 3}, ErrTransportClosed)
	if resp.GetGroup() != 7 || resp.GetId() != 3 || resp.GetError() == "" {
		t.Fatalf("failure answer: %+v", resp)
	}
}

// TestFSMAppliesOnlyDurableEntries: the state machine applies an entry
// only once the local log is durable through it.
func TestFSMAppliesOnlyDurableEntries(t *testing.T) {
	store := lsOpenStore(t, "", replica.Deps{})
	d := newFakeDurability()
	f := &fsm{group: 0, store: store, logs: d}
	rec := replica.Record{Value: []byte("v"), Timestamp: 1, NodeID: "n1"}
	logs := []*raft.Log{{Index: 3, Type: raft.LogCommand, Data: encodeMerge([]byte("k"), rec)}}
	applied := make(chan []any, 1)
	go func() { applied <- f.ApplyBatch(logs) }()
	select {
	case <-applied:
		t.Fatal("applied before the log was durable")
	case <-time.After(20 * time.Millisecond):
	}
	if _, err := store.Get(0, []byte("k")); !errors.Is(err, replica.ErrNotFound) {
		t.Fatalf("record visible before the log was durable: %v", err)
	}
	d.set(3)
	if out := <-applied; out[0] != nil {
		t.Fatalf("apply: %v", out[0])
	}
	if got, err := store.Get(0, []byte("k")); err != nil || string(got.Value) != "v" {
		t.Fatalf("after apply: %q %v", got.Value, err)
	}
}
