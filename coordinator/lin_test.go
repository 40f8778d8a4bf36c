package coordinator

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/hashicorp/raft"
	"storj.io/drpc/drpcerr"

	"github.com/ringkv/ringkv/consensus"
	"github.com/ringkv/ringkv/proto/kvpb"
	"github.com/ringkv/ringkv/replica"
	"github.com/ringkv/ringkv/ring"
)

type inmemTransports struct{}

func (inmemTransports) Group(uint32) raft.Transport {
	_, t := raft.NewInmemTransport("n1")
	return t
}
func (inmemTransports) RemoveGroup(uint32) {}

type noProgress struct{}

func (noProgress) AppliedIndex(context.Context, string, uint32) (uint64, error) {
	return 0, errors.New("single node")
}

// serverLin is a LinTransport that calls a LinearizableServer in process.
type serverLin struct {
	srv   *LinearizableServer
	down  bool
	fail  error // every call's answer when set (and not down)
	calls int
	mu    sync.Mutex
}

func (s *serverLin) check() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.calls++
	if s.down {
		return errors.New("test: unreachable")
	}
	return s.fail
}

func (s *serverLin) LinGet(ctx context.Context, _ string, p uint32, key []byte) (replica.Record, bool, error) {
	if err := s.check(); err != nil {
		return replica.Record{}, false, err
	}
	resp, err := s.srv.Get(ctx, &kvpb.LinGetRequest{Partition: p, Key: key})
	if err != nil {
		return replica.Record{}, false, errorFor(err)
	}
	return linGetAnswer(p, resp)
}

func (s *serverLin) LinPut(ctx context.Context, _ string, p uint32, key, value []byte, tombstone bool, expiresAt time.Time) error {
	if err := s.check(); err != nil {
		return err
	}
	resp, err := s.srv.Put(ctx, &kvpb.LinPutRequest{Partition: p, Key: key, Value: value, Tombstone: tombstone, ExpiresAtUnixNanos: expiryToWire(expiresAt)})
	if err != nil {
		return sentWriteError(err)
	}
	return redirectError(p, resp.GetRedirect())
}

func (s *serverLin) LinCAS(ctx context.Context, _ string, p uint32, key []byte, expected *[]byte, value []byte, expiresAt time.Time) (CASResult, error) {
	if err := s.check(); err != nil {
		return CASResult{}, err
	}
	req := &kvpb.LinCASRequest{Partition: p, Key: key, Value: value, ExpiresAtUnixNanos: expiryToWire(expiresAt)}
	if expected != nil {
		req.HasExpected, req.Expected = true, *expected
	}
	resp, err := s.srv.CompareAndSet(ctx, req)
	if err != nil {
		return CASResult{}, sentWriteError(err)
	}
	if err := redirectError(p, resp.GetRedirect()); err != nil {
		return CASResult{}, err
	}
	return CASResult{Swapped: resp.GetSwapped(), Found: resp.GetFound(), Current: resp.GetCurrent()}, nil
}

func (s *serverLin) LinScan(ctx context.Context, _ string, partitions []uint32, prefix, start []byte, limit int) ([]LinScanPart, error) {
	if err := s.check(); err != nil {
		return nil, err
	}
	resp, err := s.srv.Scan(ctx, &kvpb.LinScanRequest{Partitions: partitions, Prefix: prefix, Start: start, Limit: uint32(limit)})
	if err != nil {
		return nil, errorFor(err)
	}
	return linScanFromWire(resp), nil
}

// newLinNode runs a one-node ring (n1) whose raft groups it founds, and a
// second coordinator n9 outside the ring that forwards to n1.
func newLinNode(t *testing.T) (n1, n9 *Coordinator, lin *serverLin) {
	t.Helper()
	r, err := ring.New(ring.Config{Partitions: 4, ReplicationFactor: 3})
	if err != nil {
		t.Fatal(err)
	}
	if r, err = r.Join(ring.Member{ID: "n1"}); err != nil {
		t.Fatal(err)
	}
	src := &staticRing{}
	src.r.Store(r)
	scfg := replica.DefaultConfig()
	scfg.InMemory = true
	store, err := replica.Open(scfg, replica.Deps{})
	if err != nil {
		t.Fatal(err)
	}
	ccfg := consensus.DefaultConfig()
	ccfg.NodeID, ccfg.DataDir = "n1", t.TempDir()
	ccfg.HeartbeatTimeout, ccfg.ElectionTimeout, ccfg.LeaderLeaseTimeout = 100*time.Millisecond, 100*time.Millisecond, 50*time.Millisecond
	ccfg.QuietHeartbeatTimeout = 150 * time.Millisecond
	ccfg.CommitTimeout = 10 * time.Millisecond
	ccfg.Founder = true
	clock := replica.NewClock(nil, 0)
	var logsMu sync.Mutex // the children of a split start at once
	logs := map[uint32]*raft.InmemStore{}
	mgr, err := consensus.NewManager(ccfg, consensus.Deps{
		Store: store, Clock: clock, Ring: src, Transports: inmemTransports{}, Progress: noProgress{},
		Logs: func(g uint32) (raft.LogStore, raft.StableStore, error) {
			logsMu.Lock()
			defer logsMu.Unlock()
			logs[g] = raft.NewInmemStore()
			return logs[g], logs[g], nil
		},
	})
	if err != nil {
		t.Fatal(err)
	}
	if err := mgr.Start(); err != nil {
		t.Fatal(err)
	}
	// n9's manager hosts no group: n9 is not in the ring.
	ccfg9 := ccfg
	ccfg9.NodeID, ccfg9.DataDir = "n9", t.TempDir()
	ccfg9.Founder = false
	mgr9, err := consensus.NewManager(ccfg9, consensus.Deps{
		Store: store, Clock: clock, Ring: src, Transports: inmemTransports{}, Progress: noProgress{},
		Logs: func(uint32) (raft.LogStore, raft.StableStore, error) { return nil, nil, errors.New("unused") },
	})
	if err != nil {
		t.Fatal(err)
	}
	lin = &serverLin{srv: NewLinearizableServer(mgr)}
	mk := func(id string, groups *consensus.Manager) *Coordinator {
		cfg := DefaultConfig()
		cfg.NodeID = id
		cfg.RequestTimeout = 3 * time.Second
		cfg.ListPageSize = 4 // lists page even over few keys
		c, err := New(cfg, Deps{Store: store, Clock: clock, Ring: src, Transport: &memTransport{}, Groups: groups, Lin: lin})
		if err != nil {
			t.Fatal(err)
		}
		return c
	}
	n1, n9 = mk("n1", mgr), mk("n9", mgr9)
	lin.srv.SetResolver(n1) // n1 leads every group: forwarded operations read and write through intents there
	t.Cleanup(func() {
		_ = n1.Close() // always nil
		_ = n9.Close() // always nil
		if err := mgr.Close(); err != nil {
			t.Error(err)
		}
		if err := store.Close(); err != nil {
			t.Error(err)
		}
	})
	return n1, n9, lin
}

func TestLinearizableLevel(t *testing.T) {
	n1, n9, lin := newLinNode(t)
	ctx := t.Context()
	for _, c := range []*Coordinator{n1, n9} {
		t.Run(c.cfg.NodeID, func(t *testing.T) {
			key := []byte("k-" + c.cfg.NodeID)
			if err := c.Set(ctx, key, []byte("v1"), Linearizable); err != nil {
				t.Fatal(err)
			}
			got, found, err := c.Get(ctx, key, Linearizable)
			if err != nil || !found || string(got) != "v1" {
				t.Fatalf("get: %q %v %v", got, found, err)
			}
			// Eventual levels see linearizable writes (they are merges too).
			if got, _, _ := n1.Get(ctx, key, One); string(got) != "v1" {
				t.Fatalf("one after linearizable set: %q", got)
			}
			old := []byte("v1")
			res, err := c.CompareAndSet(ctx, key, &old, []byte("v2"))
			if err != nil || !res.Swapped {
				t.Fatalf("cas: %+v %v", res, err)
			}
			res, err = c.CompareAndSet(ctx, key, &old, []byte("v3"))
			if err != nil || res.Swapped || !res.Found || string(res.Current) != "v2" {
				t.Fatalf("stale cas: %+v %v", res, err)
			}
			res, err = c.CompareAndSet(ctx, key, nil, []byte("v3"))
			if err != nil || res.Swapped || string(res.Current) != "v2" {
				t.Fatalf("put-if-absent on present key: %+v %v", res, err)
			}
			if err := c.Delete(ctx, key, Linearizable); err != nil {
				t.Fatal(err)
			}
			if _, found, err := c.Get(ctx, key, Linearizable); err != nil || found {
				t.Fatalf("after delete: found %v err %v", found, err)
			}
			res, err = c.CompareAndSet(ctx, key, &old, []byte("v4"))
			if err != nil || res.Swapped || res.Found {
				t.Fatalf("cas on deleted key: %+v %v", res, err)
			}
			res, err = c.CompareAndSet(ctx, key, nil, []byte("v5"))
			if err != nil || !res.Swapped {
				t.Fatalf("put-if-absent after delete: %+v %v", res, err)
			}
		})
	}
	if lin.calls == 0 {
		t.Fatal("n9 never forwarded")
	}
	// A linearizable eventual-level write is overwritten only by newer ones.
	if err := n1.Set(ctx, []byte("mix"), []byte("eventual"), Quorum); err != nil {
		t.Fatal(err)
	}
	if err := n1.Set(ctx, []byte("mix"), []byte("linear"), Linearizable); err != nil {
		t.Fatal(err)
	}
	if got, _, _ := n1.Get(ctx, []byte("mix"), Quorum); string(got) != "linear" {
		t.Fatalf("linearizable write lost to an older eventual one: %q", got)
	}
	// Bad input and unsupported list.
	if _, err := n1.CompareAndSet(ctx, nil, nil, []byte("v")); !errors.Is(err, ErrInvalidArgument) {
		t.Fatalf("empty key cas: %v", err)
	}
	if _, err := n1.CompareAndSet(ctx, []byte("k"), nil, make([]byte, 2<<20)); !errors.Is(err, ErrInvalidArgument) {
		t.Fatalf("huge cas: %v", err)
	}
	// Linearizable list, local (n1) and forwarded (n9), over pages of 4
	// records per partition: sorted, deletes honoured, limit respected.
	for i := range 30 {
		if err := n1.Set(ctx, fmt.Appendf(nil, "list:%02d", i), fmt.Appendf(nil, "v%d", i), Linearizable); err != nil {
			t.Fatal(err)
		}
	}
	if err := n9.Delete(ctx, []byte("list:07"), Linearizable); err != nil {
		t.Fatal(err)
	}
	for _, c := range []*Coordinator{n1, n9} {
		pairs, err := c.List(ctx, []byte("list:"), 0, Linearizable)
		if err != nil || len(pairs) != 29 {
			t.Fatalf("%s: linearizable list: %d pairs, %v", c.cfg.NodeID, len(pairs), err)
		}
		for i, p := range pairs {
			want := i
			if i >= 7 {
				want = i + 1
			}
			if string(p.Key) != fmt.Sprintf("list:%02d", want) || string(p.Value) != fmt.Sprintf("v%d", want) {
				t.Fatalf("%s: pair %d is %s=%s", c.cfg.NodeID, i, p.Key, p.Value)
			}
		}
		if pairs, err := c.List(ctx, []byte("list:"), 10, Linearizable); err != nil || len(pairs) != 10 || string(pairs[9].Key) != "list:10" {
			t.Fatalf("%s: limited list: %v %v", c.cfg.NodeID, pairs, err)
		}
	}
	// Leader unreachable from n9: unavailable within the deadline.
	lin.mu.Lock()
	lin.down = true
	lin.mu.Unlock()
	short, cancel := context.WithTimeout(ctx, 300*time.Millisecond)
	defer cancel()
	if _, _, err := n9.Get(short, []byte("k"), Linearizable); !errors.Is(err, ErrUnavailable) {
		t.Fatalf("unreachable leader: %v", err)
	}
}

func TestLinearizableCounter(t *testing.T) {
	n1, n9, _ := newLinNode(t)
	ctx := t.Context()
	key := []byte("counter")
	if res, err := n1.CompareAndSet(ctx, key, nil, []byte("0")); err != nil || !res.Swapped {
		t.Fatalf("init: %+v %v", res, err)
	}
	var mu sync.Mutex
	swaps := 0
	var wg sync.WaitGroup
	for w := range 6 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			c := []*Coordinator{n1, n9}[w%2]
			for range 10 {
				cur, _, err := c.Get(ctx, key, Linearizable)
				if err != nil {
					t.Error(err)
					return
				}
				n, _ := strconv.Atoi(string(cur))
				res, err := c.CompareAndSet(ctx, key, &cur, []byte(strconv.Itoa(n+1)))
				if err != nil {
					t.Error(err)
					return
				}
				if res.Swapped {
					mu.Lock()
					swaps++
					mu.Unlock()
				}
			}
		}()
	}
	wg.Wait()
	got, _, err := n1.Get(ctx, key, Linearizable)
	if err != nil || string(got) != strconv.Itoa(swaps) {
		t.Fatalf("counter %q after %d swaps (%v)", got, swaps, err)
	}
}

func TestNoGroupsMeansUnavailable(t *testing.T) {
	tc := newTestCluster(t, nil)
	err := tc.coords["n1"].Set(t.Context(), []byte("k"), []byte("v"), Linearizable)
	if !errors.Is(err, ErrUnavailable) {
		t.Fatalf("got %v", err)
	}
	if _, err := tc.coords["n1"].List(t.Context(), nil, 0, Linearizable); !errors.Is(err, ErrUnavailable) {
		t.Fatalf("linearizable list without groups: %v", err)
	}
	if StatusFor(consensus.ErrAmbiguous) != 504 {
		t.Fatal("ambiguous must map to 504")
	}
}

// TestLeaderRefusalIsNotRetried: a peer leader that refuses a forwarded
// request as invalid answers the caller at once, as invalid, rather than
// being asked again until the deadline and reported unavailable.
func TestLeaderRefusalIsNotRetried(t *testing.T) {
	_, n9, lin := newLinNode(t)
	lin.mu.Lock()
	lin.fail = errorFor(drpcerr.WithCode(errors.New("test: timestamp too far ahead"), codeInvalid))
	lin.mu.Unlock()
	ctx, cancel := context.WithTimeout(t.Context(), 10*time.Second)
	defer cancel()
	start := time.Now()
	err := n9.Set(ctx, []byte("k"), []byte("v"), Linearizable)
	if !errors.Is(err, ErrInvalidArgument) || errors.Is(err, ErrUnavailable) {
		t.Fatalf("forwarded set the leader refused: got %v, want ErrInvalidArgument", err)
	}
	lin.mu.Lock()
	calls := lin.calls
	lin.mu.Unlock()
	if calls != 1 {
		t.Errorf("leader asked %d times, want 1 (in %v)", calls, time.Since(start))
	}
}
