package client

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"net"
	"sync"
	"testing"
	"time"

	"github.com/ringkv/ringkv/proto/kvpb"
	"github.com/ringkv/ringkv/ring"
)

// TestPartitionMatchesRing cross-checks the client's key->partition
// function against ring.Ring.PartitionOf for many keys and ring sizes.
func TestPartitionMatchesRing(t *testing.T) {
	seed := uint64(time.Now().UnixNano())
	t.Logf("seed %d", seed)
	rnd := rand.New(rand.NewPCG(seed, 1))
	for _, p := range []int{1, 2, 8, 64, 256, 4096} {
		r, err := ring.New(ring.Config{Partitions: p, ReplicationFactor: 3})
		if err != nil {
			t.Fatalf("ring with %d partitions: %v", p, err)
		}
		shift := shiftFor(p)
		for i := range 20000 {
			b := make([]byte, rnd.IntN(40))
			for j := range b {
				b[j] = byte(rnd.Uint32())
			}
			if i%2 == 0 {
				b = fmt.Appendf(nil, "user:%d", i)
			}
			if got, want := partitionOf(string(b), shift), r.PartitionOf(b); got != want {
				t.Fatalf("P=%d key %q: got partition %d, want %d", p, b, got, want)
			}
		}
	}
}

func TestParseConsistency(t *testing.T) {
	for _, tc := range []struct {
		in   string
		want Consistency
		err  bool
	}{
		{"", Default, false}, {"one", One, false}, {"QUORUM", Quorum, false}, {" all ", All, false},
		{"linearizable", Linearizable, false}, {"most", Default, true},
	} {
		got, err := ParseConsistency(tc.in)
		if (err != nil) != tc.err || got != tc.want {
			t.Errorf("ParseConsistency(%q): got %v %v, want %v (error %v)", tc.in, got, err, tc.want, tc.err)
		}
		if err != nil && !errors.Is(err, ErrInvalidArgument) {
			t.Errorf("ParseConsistency(%q): error %v does not match ErrInvalidArgument", tc.in, err)
		}
		if err == nil && got.String() == "" {
			t.Errorf("%v has no name", got)
		}
	}
	if _, err := Default.wire(); !errors.Is(err, ErrInvalidArgument) {
		t.Errorf("Default.wire: got %v, want invalid argument", err)
	}
	if s := Consistency(42).String(); s != "Consistency(42)" {
		t.Errorf("got %q", s)
	}
}

func TestConfigValidate(t *testing.T) {
	if err := DefaultConfig().Validate(); err != nil {
		t.Fatalf("defaults invalid: %v", err)
	}
	bad := DefaultConfig()
	bad.ConnsPerNode, bad.Consistency, bad.BackoffMax = 0, Default, -1
	err := bad.Validate()
	if !errors.Is(err, ErrInvalidArgument) {
		t.Fatalf("got %v, want invalid argument", err)
	}
	if _, err := New([]string{"127.0.0.1:1"}, WithConnsPerNode(0)); !errors.Is(err, ErrInvalidArgument) {
		t.Fatalf("New with bad options: got %v", err)
	}
	for name, opts := range map[string][]Option{
		"TLS and CertsDir":          {WithTLS(&tls.Config{MinVersion: tls.VersionTLS13}), WithCertsDir(t.TempDir(), "")},
		"CertUser without CertsDir": {func(c *Config) { c.CertUser = "u" }},
		"password without user":     {WithTLS(&tls.Config{MinVersion: tls.VersionTLS13}), WithCredentials("", "pw")},
		"credentials in the clear":  {WithCredentials("u", "pw")},
	} {
		cfg := DefaultConfig()
		for _, o := range opts {
			o(&cfg)
		}
		if err := cfg.Validate(); !errors.Is(err, ErrInvalidArgument) {
			t.Errorf("%s: got %v, want invalid argument", name, err)
		}
	}
	if _, err := New([]string{" , "}); !errors.Is(err, ErrInvalidArgument) {
		t.Fatalf("New without addresses: got %v", err)
	}
	if s, err := NewClient(nil); !errors.Is(err, ErrInvalidArgument) || s != nil {
		t.Fatalf("NewClient without addresses: got %v, %v", s, err)
	}
	if _, err := NewClient([]string{"127.0.0.1:1"}, WithRequestTimeout(-1)); !errors.Is(err, ErrInvalidArgument) {
		t.Fatalf("NewClient with a bad option: got %v", err)
	}
}

func TestCodeErrors(t *testing.T) {
	for _, tc := range []struct {
		code kvpb.ErrorCode
		want error
		how  outcome
	}{
		{kvpb.ErrorCode_ERROR_CODE_INVALID_ARGUMENT, ErrInvalidArgument, final},
		{kvpb.ErrorCode_ERROR_CODE_UNAVAILABLE, ErrUnavailable, final},
		{kvpb.ErrorCode_ERROR_CODE_UNAVAILABLE_NOT_APPLIED, ErrUnavailable, retry},
		{kvpb.ErrorCode_ERROR_CODE_OUTCOME_UNKNOWN, ErrOutcomeUnknown, final},
		{kvpb.ErrorCode_ERROR_CODE_TIMEOUT, ErrTimeout, final},
		{kvpb.ErrorCode_ERROR_CODE_TIMEOUT, context.DeadlineExceeded, final},
		{kvpb.ErrorCode_ERROR_CODE_CORRUPT, ErrCorrupt, final},
		{kvpb.ErrorCode_ERROR_CODE_CLOSED, ErrUnavailable, retry},
		{kvpb.ErrorCode_ERROR_CODE_INTERNAL, errInternal, final},
		{kvpb.ErrorCode_ERROR_CODE_UNAUTHENTICATED, ErrUnauthenticated, final},
		{kvpb.ErrorCode_ERROR_CODE_PERMISSION_DENIED, ErrPermissionDenied, final},
		{kvpb.ErrorCode_ERROR_CODE_CONFLICT, ErrConflict, final},
		{kvpb.ErrorCode_ERROR_CODE_INSUFFICIENT_STORAGE, ErrInsufficientStorage, final},
	} {
		how, err := codeError(tc.code, "m")
		if !errors.Is(err, tc.want) || how != tc.how {
			t.Errorf("code %v: got %v (%d), want %v (%d)", tc.code, err, how, tc.want, tc.how)
		}
	}
}

func TestBackoffAndBudget(t *testing.T) {
	c, err := newClient([]string{"127.0.0.1:1"}, []Option{WithRetry(3, time.Millisecond, 4*time.Millisecond)})
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = c.Close() }()
	for n := 1; n < 40; n++ {
		if !c.backoff(t.Context(), n) {
			t.Fatal("backoff ended early")
		}
	}
	ctx, cancel := context.WithCancel(t.Context())
	cancel()
	if c.backoff(ctx, 30) && c.cfg.BackoffMax > 0 {
		// A zero draw may still win the race with the cancelled context.
		t.Log("backoff drew zero")
	}
	if b := serverBudget(t.Context()); b != 0 {
		t.Errorf("budget without deadline: got %d, want 0", b)
	}
	ctx, cancel = context.WithTimeout(t.Context(), time.Second)
	defer cancel()
	if b := time.Duration(serverBudget(ctx)) * time.Microsecond; b > 900*time.Millisecond || b < 500*time.Millisecond {
		t.Errorf("budget for 1s: got %v, want about 900ms", b)
	}
}

// fakeNode is a TCP server that reads whatever a client sends and then
// either closes the connection (drop) or holds it open without answering.
type fakeNode struct {
	lis  net.Listener
	drop bool
	wg   sync.WaitGroup
}

func startFake(t *testing.T, drop bool) *fakeNode {
	t.Helper()
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	f := &fakeNode{lis: lis, drop: drop}
	f.wg.Add(1)
	go func() {
		defer f.wg.Done()
		for {
			conn, err := lis.Accept()
			if err != nil {
				return
			}
			f.wg.Add(1)
			go func() {
				defer f.wg.Done()
				defer func() { _ = conn.Close() }()
				buf := make([]byte, 4096)
				if f.drop {
					_, _ = conn.Read(buf) // the request arrived: now break the connection
					return
				}
				for {
					if _, err := conn.Read(buf); err != nil {
						return
					}
				}
			}()
		}
	}()
	t.Cleanup(func() {
		_ = lis.Close()
		f.wg.Wait()
	})
	return f
}

func (f *fakeNode) addr() string { return f.lis.Addr().String() }

// TestWriteNeverRetriedBlindly: a node that takes the request and then
// breaks the connection makes writes return ErrOutcomeUnknown after one
// attempt, while reads are retried until they give up as unavailable.
func TestWriteNeverRetriedBlindly(t *testing.T) {
	f := startFake(t, true)
	c, err := newClient([]string{f.addr()}, []Option{WithRetry(3, time.Millisecond, 5*time.Millisecond)})
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = c.Close() }()
	ctx := t.Context()
	for name, call := range map[string]func() error{
		"set":    func() error { return c.Set(ctx, "k", []byte("v")) },
		"delete": func() error { return c.Delete(ctx, "k") },
		"cas":    func() error { return c.CompareAndSet(ctx, "k", []byte("a"), []byte("b")) },
		"pia":    func() error { return c.PutIfAbsent(ctx, "k", []byte("b")) },
	} {
		if err := call(); !errors.Is(err, ErrOutcomeUnknown) {
			t.Errorf("%s: got %v, want ErrOutcomeUnknown", name, err)
		}
	}
	_, err = c.Get(ctx, "k")
	if !errors.Is(err, ErrUnavailable) || errors.Is(err, ErrOutcomeUnknown) {
		t.Errorf("get: got %v, want ErrUnavailable after retries", err)
	}
	if _, err := c.List(ctx, "k"); !errors.Is(err, ErrUnavailable) {
		t.Errorf("list: got %v, want ErrUnavailable", err)
	}
	res := c.Batch(ctx, []Op{GetOp("a"), SetOp("b", []byte("v")), DeleteOp("")})
	if !errors.Is(res[0].Err, ErrUnavailable) || !errors.Is(res[1].Err, ErrOutcomeUnknown) || !errors.Is(res[2].Err, ErrInvalidArgument) {
		t.Errorf("batch: got %v", res)
	}
}

// TestDeadlineOnSilentNode: a node that never answers cannot make a call
// outlive its deadline; reads time out, writes in flight are outcome
// unknown (and timed out).
func TestDeadlineOnSilentNode(t *testing.T) {
	f := startFake(t, false)
	c, err := newClient([]string{f.addr()}, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = c.Close() }()
	ctx, cancel := context.WithTimeout(t.Context(), 300*time.Millisecond)
	defer cancel()
	start := time.Now()
	_, err = c.Get(ctx, "k")
	if !errors.Is(err, ErrTimeout) || !errors.Is(err, context.DeadlineExceeded) {
		t.Errorf("get: got %v, want ErrTimeout", err)
	}
	if d := time.Since(start); d > 5*time.Second {
		t.Errorf("get took %v past a 300ms deadline", d)
	}
	ctx, cancel = context.WithTimeout(t.Context(), 300*time.Millisecond)
	defer cancel()
	err = c.Set(ctx, "k", []byte("v"))
	if !errors.Is(err, ErrOutcomeUnknown) || !errors.Is(err, ErrTimeout) {
		t.Errorf("set: got %v, want ErrOutcomeUnknown and ErrTimeout", err)
	}
	// Close cuts an async call short.
	fut := c.GetAsync(context.Background(), "k")
	_ = c.Close()
	if _, err := fut.Wait(); !errors.Is(err, ErrClosed) {
		t.Errorf("get cut by Close: got %v, want ErrClosed", err)
	}
	if err := c.Set(t.Context(), "k", nil); !errors.Is(err, ErrClosed) {
		t.Errorf("after Close: got %v", err)
	}
	if res := c.Batch(t.Context(), []Op{GetOp("k")}); !errors.Is(res[0].Err, ErrClosed) {
		t.Errorf("batch after Close: got %v", res[0].Err)
	}
}

// TestUnreachable: with nothing listening, New fails as unavailable and
// calls retry with backoff, then fail as unavailable.
func TestUnreachable(t *testing.T) {
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := lis.Addr().String()
	_ = lis.Close()
	if _, err := New([]string{addr}, WithRequestTimeout(time.Second)); !errors.Is(err, ErrUnavailable) {
		t.Fatalf("New: got %v, want ErrUnavailable", err)
	}
	s, err := NewClient([]string{addr}, WithRetry(3, time.Millisecond, 2*time.Millisecond))
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = s.Close() }()
	if err := s.Set("k", "v"); !errors.Is(err, ErrUnavailable) || errors.Is(err, ErrOutcomeUnknown) {
		t.Fatalf("set: got %v, want ErrUnavailable (never sent)", err)
	}
	if _, err := s.List("k"); !errors.Is(err, ErrUnavailable) {
		t.Fatalf("list: got %v", err)
	}
	if err := s.Delete("k"); !errors.Is(err, ErrUnavailable) {
		t.Fatalf("delete: got %v", err)
	}
	var me *MismatchError
	if errors.As(io.EOF, &me) {
		t.Fatal("EOF is not a mismatch")
	}
}

// TestAsyncAcrossClose starts async calls from 8 goroutines while the
// client closes: every Future completes, Close waits for the calls it
// counted, and a call made after Close is refused with ErrClosed without
// starting a goroutine (a bare WaitGroup's Add could race Close's Wait).
func TestAsyncAcrossClose(t *testing.T) {
	for range 20 {
		c, err := newClient([]string{"127.0.0.1:1"}, []Option{WithRetry(1, time.Millisecond, time.Millisecond)})
		if err != nil {
			t.Fatal(err)
		}
		var wg sync.WaitGroup
		start := make(chan struct{})
		for range 8 {
			wg.Go(func() {
				<-start
				for {
					ctx, cancel := context.WithTimeout(t.Context(), 50*time.Millisecond)
					_, err := c.GetAsync(ctx, "k").Wait()
					cancel()
					if errors.Is(err, ErrClosed) {
						return
					}
				}
			})
		}
		close(start)
		if err := c.Close(); err != nil {
			t.Fatal(err)
		}
		wg.Wait()
		if _, err := c.GetAsync(t.Context(), "k").Wait(); !errors.Is(err, ErrClosed) {
			t.Fatalf("GetAsync after Close: got %v, want ErrClosed", err)
		}
	}
}

// TestViewBasePartitions: the topology's first P, absent from a server
// older than splits, is P; one that is not a power of two at most P is
// refused.
func TestViewBasePartitions(t *testing.T) {
	wire := func(p, base uint32) *kvpb.TopologyResponse {
		resp := &kvpb.TopologyResponse{Partitions: p, BasePartitions: base}
		for range p {
			resp.Table = append(resp.Table, &kvpb.TopologyPartition{Replicas: []string{"n1"}})
		}
		return resp
	}
	for _, tc := range []struct {
		p, base uint32
		want    int // 0: refused
	}{{4, 0, 4}, {4, 4, 4}, {4, 2, 2}, {4, 3, 0}, {4, 8, 0}} {
		v, err := viewFromWire(wire(tc.p, tc.base))
		switch {
		case tc.want == 0 && !errors.Is(err, errBadTopology):
			t.Errorf("P=%d base %d: %v, want errBadTopology", tc.p, tc.base, err)
		case tc.want != 0 && (err != nil || v.base != tc.want):
			t.Errorf("P=%d base %d: %+v %v, want base %d", tc.p, tc.base, v, err, tc.want)
		}
	}
}
