package coordinator

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"net"
	"sync"
	"testing"
	"time"

	"storj.io/drpc/drpcmux"
	"storj.io/drpc/drpcserver"

	"github.com/ringkv/ringkv/consensus"
	"github.com/ringkv/ringkv/proto/kvpb"
	"github.com/ringkv/ringkv/replica"
)

type mapResolver map[string]string

func (m mapResolver) RPCAddr(id string) (string, bool) {
	a, ok := m[id]
	return a, ok
}

// serveReplica serves a fresh in-memory store over drpc on a loopback port.
func serveReplica(t *testing.T) (string, *replica.Store) {
	t.Helper()
	cfg := replica.DefaultConfig()
	cfg.InMemory = true
	store, err := replica.Open(cfg, replica.Deps{})
	if err != nil {
		t.Fatal(err)
	}
	mux := drpcmux.New()
	rs, err := NewReplicaServer(store, replica.NewClock(nil, 0), ReplicaServerOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if err := kvpb.DRPCRegisterReplica(mux, rs); err != nil {
		t.Fatal(err)
	}
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() {
		defer close(done)
		_ = drpcserver.New(mux).Serve(ctx, lis) // returns when ctx ends
	}()
	t.Cleanup(func() {
		cancel()
		<-done
		if err := store.Close(); err != nil {
			t.Error(err)
		}
	})
	return lis.Addr().String(), store
}

func TestRPCTransportRoundTrip(t *testing.T) {
	addr, store := serveReplica(t)
	dead, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	deadAddr := dead.Addr().String()
	_ = dead.Close()
	tr, err := NewRPCTransport(RPCConfig{ConnsPerPeer: 2}, mapResolver{"a": addr, "dead": deadAddr}, nil)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = tr.Close() }) // Close always returns nil; also closed below
	ctx, cancel := context.WithTimeout(t.Context(), 10*time.Second)
	defer cancel()
	clock := replica.NewClock(nil, 0)

	// Many concurrent merges share RPCs and all land.
	var wg sync.WaitGroup
	errs := make(chan error, 200)
	for i := range 200 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			rec := replica.Record{Value: fmt.Appendf(nil, "v%d", i), Timestamp: clock.Now(), NodeID: "c",
				ExpiresAt: time.Now().Add(time.Hour)}
			errs <- tr.Merge(ctx, "a", []replica.Entry{{Partition: uint32(i % 4), Key: fmt.Appendf(nil, "k%03d", i), Record: rec}})
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		if err != nil {
			t.Fatal(err)
		}
	}
	for i := range 200 {
		rec, err := tr.Read(ctx, "a", uint32(i%4), fmt.Appendf(nil, "k%03d", i))
		if err != nil || string(rec.Value) != fmt.Sprintf("v%d", i) || rec.NodeID != "c" || rec.ExpiresAt.IsZero() {
			t.Fatalf("read k%03d: %+v %v", i, rec, err)
		}
	}
	if _, err := tr.Read(ctx, "a", 0, []byte("absent")); !errors.Is(err, replica.ErrNotFound) {
		t.Fatalf("absent: got %v", err)
	}
	res, err := tr.Scan(ctx, "a", ScanRequest{Partitions: []uint32{0, 1}, Prefix: []byte("k"), Limit: 10})
	if err != nil || len(res) != 2 || len(res[0].Keys) != 10 || !res[0].Truncated {
		t.Fatalf("scan: %+v %v", res, err)
	}
	// Direct store check that the server stored what was sent.
	if rec, err := store.Get(0, []byte("k000")); err != nil || string(rec.Value) != "v0" {
		t.Fatalf("store: %+v %v", rec, err)
	}
	// Bad input travels back as invalid argument.
	err = tr.Merge(ctx, "a", []replica.Entry{{Partition: 0, Key: nil, Record: replica.Record{Value: []byte("x")}}})
	if !errors.Is(err, ErrInvalidArgument) {
		t.Fatalf("empty key merge: got %v, want ErrInvalidArgument", err)
	}
	// A record from far in the future is refused.
	future := replica.MakeTimestamp(time.Now().Add(time.Hour), 0)
	err = tr.Merge(ctx, "a", []replica.Entry{{Partition: 0, Key: []byte("f"), Record: replica.Record{Timestamp: future}}})
	if !errors.Is(err, ErrInvalidArgument) {
		t.Fatalf("future merge: got %v, want ErrInvalidArgument", err)
	}
	// Unknown and dead peers fail fast with clear errors.
	if err := tr.Merge(ctx, "nobody", nil); !errors.Is(err, ErrUnknownPeer) {
		t.Fatalf("unknown peer: got %v", err)
	}
	if _, err := tr.Read(ctx, "dead", 0, []byte("k")); !errors.Is(err, errPeer) {
		t.Fatalf("dead peer: got %v", err)
	}
	// A caller whose context ended gets its error.
	done, cancelDone := context.WithCancel(ctx)
	cancelDone()
	if _, err := tr.Read(done, "a", 0, []byte("k")); !errors.Is(err, context.Canceled) {
		t.Fatalf("canceled: got %v", err)
	}
	if err := tr.Close(); err != nil {
		t.Fatal(err)
	}
	if err := tr.Merge(ctx, "a", nil); !errors.Is(err, ErrClosed) {
		t.Fatalf("after close: got %v", err)
	}
}

func TestErrorCodeTable(t *testing.T) {
	for _, tt := range []struct {
		err  error
		code uint64
	}{
		{replica.ErrClosed, codeUnavailable},
		{fmt.Errorf("x: %w", ErrInvalidArgument), codeInvalid},
		{replica.ErrClockOffset, codeInvalid},
		{fmt.Errorf("x: %w", replica.ErrDiskFull), codeDiskFull},
		{errors.New("boom"), codeInternal},
	} {
		if got := codeFor(tt.err); got != tt.code {
			t.Errorf("codeFor(%v): got %d, want %d", tt.err, got, tt.code)
		}
		back := errorFor(rpcError(tt.err))
		if tt.code == codeInvalid && !errors.Is(back, ErrInvalidArgument) {
			t.Errorf("errorFor(rpcError(%v)) = %v, want ErrInvalidArgument", tt.err, back)
		}
		if tt.code == codeDiskFull && !errors.Is(back, replica.ErrDiskFull) {
			t.Errorf("errorFor(rpcError(%v)) = %v, want replica.ErrDiskFull", tt.err, back)
		}
		if tt.code != codeInvalid && tt.code != codeDiskFull && !errors.Is(back, errPeer) {
			t.Errorf("errorFor(rpcError(%v)) = %v, want errPeer", tt.err, back)
		}
	}
}

// slowLin answers Put, Get and Applied only after release closes, as a
// leader that applies a write after the caller stopped waiting would.
type slowLin struct {
	kvpb.DRPCLinearizableServer // nil: only Put, Get and Applied are called
	got                         chan struct{}
	release                     chan struct{}
}

func (s *slowLin) Put(ctx context.Context, _ *kvpb.LinPutRequest) (*kvpb.LinPutResponse, error) {
	s.got <- struct{}{}
	<-s.release
	return &kvpb.LinPutResponse{}, nil
}

func (s *slowLin) Get(ctx context.Context, _ *kvpb.LinGetRequest) (*kvpb.LinGetResponse, error) {
	s.got <- struct{}{}
	<-s.release
	return &kvpb.LinGetResponse{}, nil
}

func (s *slowLin) Applied(ctx context.Context, _ *kvpb.AppliedRequest) (*kvpb.AppliedResponse, error) {
	s.got <- struct{}{}
	<-s.release
	return &kvpb.AppliedResponse{AppliedIndex: 7}, nil
}

// TestLinWriteDeadlineAfterSendIsAmbiguous: a linearizable write whose
// caller's deadline passes after the request reached the leader has an
// unknown outcome (the leader may apply it), never "not applied".
func TestLinWriteDeadlineAfterSendIsAmbiguous(t *testing.T) {
	srv := &slowLin{got: make(chan struct{}, 2), release: make(chan struct{})}
	mux := drpcmux.New()
	if err := kvpb.DRPCRegisterLinearizable(mux, srv); err != nil {
		t.Fatal(err)
	}
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() {
		defer close(done)
		_ = drpcserver.New(mux).Serve(ctx, lis) // returns when ctx ends
	}()
	tr, err := NewRPCTransport(DefaultRPCConfig(), mapResolver{"n2": lis.Addr().String()}, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer func() {
		close(srv.release)
		if err := tr.Close(); err != nil {
			t.Error(err)
		}
		cancel()
		<-done
	}()

	// The caller gives up once the request has reached the server (a
	// cancel rather than a deadline, so the sender's RPC stays in flight).
	call := func(fn func(ctx context.Context) error) error {
		ctx, cancel := context.WithCancel(context.Background())
		defer cancel()
		errc := make(chan error, 1)
		go func() { errc <- fn(ctx) }()
		<-srv.got
		cancel()
		return <-errc
	}
	err = call(func(ctx context.Context) error {
		return tr.LinPut(ctx, "n2", 0, []byte("k"), []byte("v"), false, time.Time{})
	})
	if !errors.Is(err, consensus.ErrAmbiguous) || !errors.Is(err, context.Canceled) {
		t.Fatalf("write abandoned after sending: got %v, want ErrAmbiguous wrapping context.Canceled", err)
	}
	err = call(func(ctx context.Context) error {
		_, _, err := tr.LinGet(ctx, "n2", 0, []byte("k"))
		return err
	})
	if err == nil || errors.Is(err, consensus.ErrAmbiguous) {
		t.Fatalf("read abandoned after sending: got %v, want a plain failure", err)
	}
	// The answer arrives after the caller left (release closes before
	// Close waits for the senders); the caller returns no index. (The
	// sender once wrote the answer into the caller's variable, a race
	// go test -race caught in TestClientSurvivesNodeLoss; answers now
	// travel only through the call's result.)
	err = call(func(ctx context.Context) error {
		idx, err := tr.AppliedIndex(ctx, "n2", 0)
		if idx != 0 {
			t.Errorf("abandoned AppliedIndex returned index %d with %v", idx, err)
		}
		return err
	})
	if err == nil {
		t.Fatal("AppliedIndex abandoned after sending succeeded")
	}
}

// TestRPCTransportMergeAsync: MergeAsync's done is called once per merge
// that it accepted, with the merge applied on success; an unknown peer is
// refused without calling done; Close answers merges still queued behind a
// peer that never replies (ErrClosed) and the one in flight, and refuses
// later ones.
func TestRPCTransportMergeAsync(t *testing.T) {
	addr, store := serveReplica(t)
	silent, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	received := make(chan struct{}, 1)
	go func() {
		for {
			conn, err := silent.Accept()
			if err != nil {
				return // closed by the test's cleanup
			}
			go func() {
				buf := make([]byte, 4096)
				for {
					if _, err := conn.Read(buf); err != nil {
						return
					}
					select {
					case received <- struct{}{}:
					default:
					}
				}
			}()
		}
	}()
	t.Cleanup(func() { _ = silent.Close() })
	tr, err := NewRPCTransport(RPCConfig{ConnsPerPeer: 1}, mapResolver{"a": addr, "silent": silent.Addr().String()}, nil)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = tr.Close() })
	ctx, cancel := context.WithTimeout(t.Context(), 30*time.Second)
	defer cancel()
	clock := replica.NewClock(nil, 0)
	entry := func(i int) []replica.Entry {
		return []replica.Entry{{Partition: 1, Key: fmt.Appendf(nil, "k%03d", i), Record: replica.Record{Value: []byte("v"), Timestamp: clock.Now(), NodeID: "c"}}}
	}

	// Merges to a live peer land, each answered once.
	const n = 50
	answers := make(chan error, 2*n)
	for i := range n {
		if err := tr.MergeAsync(ctx, "a", entry(i), func(err error) { answers <- err }); err != nil {
			t.Fatalf("MergeAsync %d: %v", i, err)
		}
	}
	for range n {
		if err := <-answers; err != nil {
			t.Fatalf("async merge: %v", err)
		}
	}
	for i := range n {
		if _, err := store.Get(1, fmt.Appendf(nil, "k%03d", i)); err != nil {
			t.Fatalf("k%03d after its async merge: %v", i, err)
		}
	}
	if err := tr.MergeAsync(ctx, "nobody", entry(0), func(error) { t.Error("done called for an unknown peer") }); !errors.Is(err, ErrUnknownPeer) {
		t.Fatalf("MergeAsync to an unknown peer: got %v, want ErrUnknownPeer", err)
	}

	// One merge in flight to a peer that never answers, more queued behind it.
	var counts [n]int
	var mu sync.Mutex
	finished := make(chan error, n)
	for i := range n {
		if err := tr.MergeAsync(ctx, "silent", entry(i), func(err error) {
			mu.Lock()
			counts[i]++
			mu.Unlock()
			finished <- err
		}); err != nil {
			t.Fatalf("MergeAsync %d to the silent peer: %v", i, err)
		}
		if i == 0 {
			select {
			case <-received: // the sender is now waiting for an answer
			case <-ctx.Done():
				t.Fatal("the silent peer never received the first merge")
			}
		}
	}
	select {
	case err := <-finished:
		t.Fatalf("a merge to the silent peer was answered (%v) before Close", err)
	default:
	}
	if err := tr.Close(); err != nil {
		t.Fatal(err)
	}
	closed := 0
	for range n {
		select {
		case err := <-finished:
			if err == nil {
				t.Fatal("a merge to the silent peer succeeded")
			}
			if errors.Is(err, ErrClosed) {
				closed++
			}
		case <-ctx.Done():
			t.Fatal("Close left async merges unanswered")
		}
	}
	if closed != n-1 {
		t.Errorf("%d merges answered ErrClosed, want the %d queued behind the one in flight", closed, n-1)
	}
	mu.Lock()
	for i, c := range counts {
		if c != 1 {
			t.Errorf("merge %d answered %d times", i, c)
		}
	}
	mu.Unlock()
	if err := tr.MergeAsync(ctx, "a", entry(0), func(error) { t.Error("done called after Close") }); !errors.Is(err, ErrClosed) {
		t.Fatalf("MergeAsync after Close: got %v, want ErrClosed", err)
	}
}

// TestRPCTransportSplitsLargeMerges: concurrent merges whose values add
// up to more than drpc's 4 MiB message limit are coalesced into several
// Merge RPCs, not one that the peer would refuse.
func TestRPCTransportSplitsLargeMerges(t *testing.T) {
	addr, store := serveReplica(t)
	tr, err := NewRPCTransport(RPCConfig{ConnsPerPeer: 1}, mapResolver{"a": addr}, nil)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = tr.Close() })
	clock := replica.NewClock(nil, 0)
	value := bytes.Repeat([]byte("v"), 700<<10)
	var wg sync.WaitGroup
	errs := make(chan error, 12)
	for i := range 12 { // 8.4 MB in all
		wg.Add(1)
		go func() {
			defer wg.Done()
			rec := replica.Record{Value: value, Timestamp: clock.Now(), NodeID: "c"}
			errs <- tr.Merge(t.Context(), "a", []replica.Entry{{Partition: 1, Key: fmt.Appendf(nil, "big%02d", i), Record: rec}})
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		if err != nil {
			t.Fatalf("merge: got %v, want nil", err)
		}
	}
	for i := range 12 {
		if _, err := store.Get(1, fmt.Appendf(nil, "big%02d", i)); err != nil {
			t.Fatalf("big%02d: %v", i, err)
		}
	}
}

func TestRPCConfigFillThenValidate(t *testing.T) {
	// Zero fields take their defaults.
	if _, err := NewRPCTransport(RPCConfig{}, mapResolver{}, nil); err != nil {
		t.Fatalf("zero config: %v", err)
	}
	// A negative field is refused, not silently replaced.
	for _, cfg := range []RPCConfig{{ConnsPerPeer: -1}, {InvokeConnsPerPeer: -2}, {MaxBatch: -1}, {QueueDepth: -1}, {DialTimeout: -time.Second}} {
		if _, err := NewRPCTransport(cfg, mapResolver{}, nil); err == nil {
			t.Errorf("%+v: accepted", cfg)
		}
	}
}
