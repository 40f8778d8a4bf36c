package coordinator

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus/testutil"
	"storj.io/drpc/drpcerr"

	"github.com/ringkv/ringkv/auth"
	"github.com/ringkv/ringkv/consensus"
	"github.com/ringkv/ringkv/proto/kvpb"
	"github.com/ringkv/ringkv/replica"
)

type fixedMembers []ClientMember

func (m fixedMembers) ClientMembers() []ClientMember { return m }

func TestClientCodeTable(t *testing.T) {
	unavail := &UnavailableError{Op: "set", Level: Quorum, Required: 2}
	for _, tc := range []struct {
		err     error
		level   Level
		isWrite bool
		want    kvpb.ErrorCode
	}{
		{nil, Quorum, true, kvpb.ErrorCode_ERROR_CODE_UNSPECIFIED},
		{fmt.Errorf("x: %w", ErrInvalidArgument), Quorum, true, kvpb.ErrorCode_ERROR_CODE_INVALID_ARGUMENT},
		{fmt.Errorf("x: %w", consensus.ErrAmbiguous), Linearizable, true, kvpb.ErrorCode_ERROR_CODE_OUTCOME_UNKNOWN},
		{unavail, Quorum, true, kvpb.ErrorCode_ERROR_CODE_UNAVAILABLE},
		{unavail, Linearizable, true, kvpb.ErrorCode_ERROR_CODE_UNAVAILABLE_NOT_APPLIED},
		{unavail, Quorum, false, kvpb.ErrorCode_ERROR_CODE_UNAVAILABLE_NOT_APPLIED},
		{ErrClosed, Quorum, true, kvpb.ErrorCode_ERROR_CODE_CLOSED},
		{fmt.Errorf("get: %w", ErrCorrupt), Quorum, false, kvpb.ErrorCode_ERROR_CODE_CORRUPT},
		{context.DeadlineExceeded, Quorum, false, kvpb.ErrorCode_ERROR_CODE_TIMEOUT},
		{context.DeadlineExceeded, Quorum, true, kvpb.ErrorCode_ERROR_CODE_OUTCOME_UNKNOWN},
		{errors.New("boom"), Quorum, false, kvpb.ErrorCode_ERROR_CODE_INTERNAL},
		{&UnavailableError{Cause: fmt.Errorf("x: %w", replica.ErrDiskFull)}, All, true, kvpb.ErrorCode_ERROR_CODE_INSUFFICIENT_STORAGE},
		{fmt.Errorf("x: %w", auth.ErrUnauthenticated), Quorum, true, kvpb.ErrorCode_ERROR_CODE_UNAUTHENTICATED},
		{&auth.PermissionError{User: "u", Need: auth.Permission{Access: auth.Write, Prefix: "k"}}, Quorum, true, kvpb.ErrorCode_ERROR_CODE_PERMISSION_DENIED},
		{fmt.Errorf("x: %w", auth.ErrAuthDisabled), Quorum, false, kvpb.ErrorCode_ERROR_CODE_AUTH_DISABLED},
		// Refused before anything was applied, even for an eventual write.
		{fmt.Errorf("x: %w: %w", auth.ErrUnavailable, context.DeadlineExceeded), Quorum, true, kvpb.ErrorCode_ERROR_CODE_UNAVAILABLE_NOT_APPLIED},
	} {
		if got := clientCode(tc.err, tc.level, tc.isWrite); got != tc.want {
			t.Errorf("clientCode(%v, %v, write=%v): got %v, want %v", tc.err, tc.level, tc.isWrite, got, tc.want)
		}
	}
	if _, err := levelFromWire(kvpb.Consistency(42)); !errors.Is(err, ErrInvalidArgument) {
		t.Errorf("unknown level: got %v", err)
	}
}

func TestClientServerEventual(t *testing.T) {
	tc := newTestCluster(t, nil)
	s := NewClientServer(tc.coords["n1"], fixedMembers{{ID: "n1", RPCAddr: "a:1", Alive: true, Status: "joined"}})
	ctx := t.Context()
	top, err := s.Topology(ctx, &kvpb.TopologyRequest{})
	if err != nil || top.GetPartitions() != 64 || len(top.GetTable()) != 64 || len(top.GetTable()[0].GetReplicas()) != 3 ||
		len(top.GetMembers()) != 1 || top.GetHeader().GetRingVersion() == 0 {
		t.Fatalf("topology: %v %v", top, err)
	}
	do := func(op *kvpb.ClientOp, micros uint64) *kvpb.ClientResult {
		t.Helper()
		resp, err := s.Do(ctx, &kvpb.ClientRequest{Op: op, TimeoutMicros: micros})
		if err != nil {
			t.Fatal(err)
		}
		if resp.GetHeader().GetNodeId() != "n1" {
			t.Fatalf("header %v", resp.GetHeader())
		}
		return resp.GetResult()
	}
	all := kvpb.Consistency_CONSISTENCY_ALL
	if r := do(&kvpb.ClientOp{Kind: kvpb.ClientOp_KIND_SET, Key: []byte("k"), Value: []byte("v"), Consistency: all}, 1_000_000); r.GetError() != 0 {
		t.Fatalf("set: %v", r)
	}
	if r := do(&kvpb.ClientOp{Kind: kvpb.ClientOp_KIND_GET, Key: []byte("k")}, 0); !r.GetFound() || string(r.GetValue()) != "v" {
		t.Fatalf("get: %v", r)
	}
	if r := do(&kvpb.ClientOp{Kind: kvpb.ClientOp_KIND_DELETE, Key: []byte("k"), Consistency: all}, 0); r.GetError() != 0 {
		t.Fatalf("delete: %v", r)
	}
	for name, op := range map[string]*kvpb.ClientOp{
		"empty key":   {Kind: kvpb.ClientOp_KIND_GET},
		"bad kind":    {Kind: kvpb.ClientOp_Kind(9), Key: []byte("k")},
		"bad level":   {Kind: kvpb.ClientOp_KIND_GET, Key: []byte("k"), Consistency: kvpb.Consistency(9)},
		"unspecified": {Key: []byte("k")},
	} {
		if r := do(op, 0); r.GetError() != kvpb.ErrorCode_ERROR_CODE_INVALID_ARGUMENT {
			t.Errorf("%s: got %v, want invalid argument", name, r)
		}
	}
	// Without raft groups, linearizable calls are unavailable and not applied.
	r := do(&kvpb.ClientOp{Kind: kvpb.ClientOp_KIND_CAS, Key: []byte("k"), Value: []byte("v")}, 0)
	if r.GetError() != kvpb.ErrorCode_ERROR_CODE_UNAVAILABLE_NOT_APPLIED {
		t.Fatalf("cas without groups: %v", r)
	}
	// A replica down: an ALL write is unavailable and may have applied.
	tc.trans.setDown("n2", true)
	r = do(&kvpb.ClientOp{Kind: kvpb.ClientOp_KIND_SET, Key: []byte("k2"), Value: []byte("v"), Consistency: all}, 500_000)
	if r.GetError() != kvpb.ErrorCode_ERROR_CODE_UNAVAILABLE {
		t.Fatalf("all with a replica down: %v", r)
	}
	tc.trans.setDown("n2", false)

	batch, err := s.Batch(ctx, &kvpb.ClientBatchRequest{Ops: []*kvpb.ClientOp{
		{Kind: kvpb.ClientOp_KIND_SET, Key: []byte("b1"), Value: []byte("1"), Consistency: all},
		{Kind: kvpb.ClientOp_KIND_GET, Key: []byte("absent")},
		{Kind: kvpb.ClientOp_KIND_GET},
	}})
	if err != nil || len(batch.GetResults()) != 3 || batch.GetResults()[0].GetError() != 0 ||
		batch.GetResults()[1].GetFound() || batch.GetResults()[2].GetError() != kvpb.ErrorCode_ERROR_CODE_INVALID_ARGUMENT {
		t.Fatalf("batch: %v %v", batch, err)
	}
	if _, err := s.Batch(ctx, &kvpb.ClientBatchRequest{Ops: make([]*kvpb.ClientOp, maxBatchOps+1)}); err == nil {
		t.Fatal("oversized batch accepted")
	}
	list, err := s.List(ctx, &kvpb.ClientListRequest{Prefix: []byte("b"), Consistency: all})
	if err != nil || len(list.GetPairs()) != 1 || string(list.GetPairs()[0].GetKey()) != "b1" {
		t.Fatalf("list: %v %v", list, err)
	}
	list, err = s.List(ctx, &kvpb.ClientListRequest{Consistency: kvpb.Consistency_CONSISTENCY_LINEARIZABLE})
	if err != nil || (list.GetError() != kvpb.ErrorCode_ERROR_CODE_UNAVAILABLE && list.GetError() != kvpb.ErrorCode_ERROR_CODE_UNAVAILABLE_NOT_APPLIED) {
		t.Fatalf("linearizable list without raft groups: %v %v", list, err)
	}
}

func TestClientServerLinearizable(t *testing.T) {
	n1, _, _ := newLinNode(t)
	s := NewClientServer(n1, nil)
	ctx := t.Context()
	do := func(op *kvpb.ClientOp) *kvpb.ClientResult {
		t.Helper()
		resp, err := s.Do(ctx, &kvpb.ClientRequest{Op: op})
		if err != nil {
			t.Fatal(err)
		}
		return resp.GetResult()
	}
	lin := kvpb.Consistency_CONSISTENCY_LINEARIZABLE
	if r := do(&kvpb.ClientOp{Kind: kvpb.ClientOp_KIND_CAS, Key: []byte("lock"), Value: []byte("a")}); !r.GetSwapped() || r.GetLeader() != "n1" {
		t.Fatalf("put-if-absent: %v", r)
	}
	if r := do(&kvpb.ClientOp{Kind: kvpb.ClientOp_KIND_CAS, Key: []byte("lock"), HasExpected: true, Expected: []byte("x"), Value: []byte("b")}); r.GetSwapped() || !r.GetFound() || string(r.GetValue()) != "a" {
		t.Fatalf("stale cas: %v", r)
	}
	if r := do(&kvpb.ClientOp{Kind: kvpb.ClientOp_KIND_CAS, Key: []byte("lock"), HasExpected: true, Expected: []byte("a"), Value: []byte("b")}); !r.GetSwapped() {
		t.Fatalf("cas: %v", r)
	}
	if r := do(&kvpb.ClientOp{Kind: kvpb.ClientOp_KIND_GET, Key: []byte("lock"), Consistency: lin}); string(r.GetValue()) != "b" {
		t.Fatalf("get: %v", r)
	}
	top, err := s.Topology(ctx, &kvpb.TopologyRequest{})
	if err != nil || top.GetTable()[0].GetLeader() != "n1" || len(top.GetMembers()) != 0 {
		t.Fatalf("topology: %v %v", top, err)
	}
}

// prefixAuthz is an Authorizer that refuses by key prefix: "anon/" as
// unauthenticated, "deny/" as not permitted, "down/" as rules unreadable;
// anything else is allowed.
type prefixAuthz struct{}

func (prefixAuthz) Authorize(_ context.Context, act auth.Action) error {
	switch {
	case bytes.HasPrefix(act.Key, []byte("anon/")):
		return fmt.Errorf("%w: no credentials", auth.ErrUnauthenticated)
	case bytes.HasPrefix(act.Key, []byte("deny/")):
		return &auth.PermissionError{User: "alice", Need: auth.Permission{Access: auth.Write, Prefix: string(act.Key)}}
	case bytes.HasPrefix(act.Key, []byte("down/")):
		return fmt.Errorf("%w: auth record unreadable", auth.ErrUnavailable)
	}
	return nil
}

// fakeLogin is an Authenticator: alice/secret gets a token; "off" answers
// that authentication is disabled, "down" that the users cannot be read,
// "boom" something unexpected; anything else is a wrong password.
type fakeLogin struct{ expires time.Time }

func (f fakeLogin) Login(_ context.Context, user, password string) (string, time.Time, error) {
	switch {
	case user == "alice" && password == "secret":
		return "tok-alice", f.expires, nil
	case user == "off":
		return "", time.Time{}, auth.ErrAuthDisabled
	case user == "down":
		return "", time.Time{}, fmt.Errorf("%w: read timed out", auth.ErrUnavailable)
	case user == "boom":
		return "", time.Time{}, errors.New("boom")
	}
	return "", time.Time{}, auth.ErrUnauthenticated
}

// authedServer returns a Client service over a coordinator of tc's n1
// that authorizes with prefixAuthz and logs in with login (nil: none).
func authedServer(t *testing.T, tc *testCluster, login Authenticator) *ClientServer {
	t.Helper()
	cfg := DefaultConfig()
	cfg.NodeID = "n1"
	cfg.RequestTimeout = 2 * time.Second
	c, err := New(cfg, Deps{Store: tc.stores["n1"], Clock: replica.NewClock(nil, 0), Ring: tc.ring, Transport: tc.trans, Auth: prefixAuthz{}, Login: login})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := c.Close(); err != nil {
			t.Error(err)
		}
	})
	return NewClientServer(c, nil)
}

// TestClientServerAuthCodes: every path of the Client service (Do, Batch,
// List, Pipe) answers an Authorizer's refusal with its code, and a refused
// write changes nothing.
func TestClientServerAuthCodes(t *testing.T) {
	tc := newTestCluster(t, nil)
	s := authedServer(t, tc, nil)
	cl := servePipe(t, s)
	ctx := t.Context()
	one := kvpb.Consistency_CONSISTENCY_ONE
	ops := map[string]func(key string) *kvpb.ClientOp{
		"get": func(k string) *kvpb.ClientOp {
			return &kvpb.ClientOp{Kind: kvpb.ClientOp_KIND_GET, Key: []byte(k), Consistency: one}
		},
		"set": func(k string) *kvpb.ClientOp {
			return &kvpb.ClientOp{Kind: kvpb.ClientOp_KIND_SET, Key: []byte(k), Value: []byte("x"), Consistency: one}
		},
		"delete": func(k string) *kvpb.ClientOp {
			return &kvpb.ClientOp{Kind: kvpb.ClientOp_KIND_DELETE, Key: []byte(k), Consistency: one}
		},
		"cas": func(k string) *kvpb.ClientOp {
			return &kvpb.ClientOp{Kind: kvpb.ClientOp_KIND_CAS, Key: []byte(k), Value: []byte("x")}
		},
	}
	// Written before the refusals, through the unguarded coordinator.
	for _, k := range []string{"anon/k", "deny/k", "down/k"} {
		if err := tc.coords["n1"].Set(ctx, []byte(k), []byte("before"), All); err != nil {
			t.Fatal(err)
		}
	}
	for _, tc := range []struct {
		prefix string
		want   kvpb.ErrorCode
	}{
		{"anon/", kvpb.ErrorCode_ERROR_CODE_UNAUTHENTICATED},
		{"deny/", kvpb.ErrorCode_ERROR_CODE_PERMISSION_DENIED},
		{"down/", kvpb.ErrorCode_ERROR_CODE_UNAVAILABLE_NOT_APPLIED},
	} {
		key := tc.prefix + "k"
		for name, mk := range ops {
			t.Run(tc.prefix+name, func(t *testing.T) {
				resp, err := s.Do(ctx, &kvpb.ClientRequest{Op: mk(key)})
				if err != nil {
					t.Fatal(err)
				}
				if got := resp.GetResult().GetError(); got != tc.want {
					t.Fatalf("do: got %v (%q), want %v", got, resp.GetResult().GetMessage(), tc.want)
				}
				batch, err := s.Batch(ctx, &kvpb.ClientBatchRequest{Ops: []*kvpb.ClientOp{mk(key), ops["get"]("ok/k")}})
				if err != nil || len(batch.GetResults()) != 2 {
					t.Fatalf("batch: %v %v", batch, err)
				}
				if got := batch.GetResults()[0].GetError(); got != tc.want {
					t.Fatalf("batch: got %v, want %v", got, tc.want)
				}
				if got := batch.GetResults()[1].GetError(); got != 0 {
					t.Fatalf("batch: the allowed get got %v", got)
				}
				stream := openPipe(t, cl)
				sendPipe(t, stream, &kvpb.ClientPipeOp{Id: 7, Op: mk(key)})
				pr, err := stream.Recv()
				if err != nil || len(pr.GetResults()) != 1 || pr.GetResults()[0].GetId() != 7 {
					t.Fatalf("pipe: %v %v", pr, err)
				}
				if got := pr.GetResults()[0].GetResult().GetError(); got != tc.want {
					t.Fatalf("pipe: got %v, want %v", got, tc.want)
				}
				if err := stream.Close(); err != nil {
					t.Fatal(err)
				}
			})
		}
		t.Run(tc.prefix+"list", func(t *testing.T) {
			resp, err := s.List(ctx, &kvpb.ClientListRequest{Prefix: []byte(tc.prefix), Consistency: one})
			if err != nil {
				t.Fatal(err)
			}
			if got := resp.GetError(); got != tc.want || len(resp.GetPairs()) != 0 {
				t.Fatalf("list: got %v %v, want %v and no pairs", got, resp.GetPairs(), tc.want)
			}
		})
	}
	// Nothing refused was applied.
	for _, k := range []string{"anon/k", "deny/k", "down/k"} {
		v, found, err := tc.coords["n1"].Get(ctx, []byte(k), All)
		if err != nil || !found || string(v) != "before" {
			t.Fatalf("%s after refused writes: %q %v %v, want \"before\"", k, v, found, err)
		}
	}
	// What the Authorizer allows runs as before.
	resp, err := s.Do(ctx, &kvpb.ClientRequest{Op: ops["set"]("ok/k")})
	if err != nil || resp.GetResult().GetError() != 0 {
		t.Fatalf("allowed set: %v %v", resp, err)
	}
}

// TestClientServerLogin: Login answers a token, or a drpc error whose
// code says why not.
func TestClientServerLogin(t *testing.T) {
	tc := newTestCluster(t, nil)
	expires := time.Unix(1_900_000_000, 0)
	withLogin := servePipe(t, authedServer(t, tc, fakeLogin{expires: expires}))
	without := servePipe(t, authedServer(t, tc, nil))
	for _, c := range []struct {
		name     string
		cl       kvpb.DRPCClientClient
		user     string
		password string
		want     kvpb.ErrorCode
		msg      string
	}{
		{"good password", withLogin, "alice", "secret", 0, ""},
		{"wrong password", withLogin, "alice", "nope", kvpb.ErrorCode_ERROR_CODE_UNAUTHENTICATED, "unauthenticated"},
		{"unknown user", withLogin, "mallory", "secret", kvpb.ErrorCode_ERROR_CODE_UNAUTHENTICATED, "unauthenticated"},
		{"auth disabled", withLogin, "off", "x", kvpb.ErrorCode_ERROR_CODE_AUTH_DISABLED, "authentication is disabled"},
		{"no authenticator", without, "alice", "secret", kvpb.ErrorCode_ERROR_CODE_AUTH_DISABLED, "authentication is off"},
		{"rules unreadable", withLogin, "down", "x", kvpb.ErrorCode_ERROR_CODE_UNAVAILABLE_NOT_APPLIED, "unavailable"},
		{"unexpected", withLogin, "boom", "x", kvpb.ErrorCode_ERROR_CODE_INTERNAL, "boom"},
	} {
		t.Run(c.name, func(t *testing.T) {
			resp, err := c.cl.Login(t.Context(), &kvpb.LoginRequest{User: c.user, Password: c.password})
			if c.want == 0 {
				if err != nil || resp.GetToken() != "tok-alice" || resp.GetExpiresUnixNanos() != expires.UnixNano() {
					t.Fatalf("got %v %v, want tok-alice expiring %v", resp, err, expires)
				}
				return
			}
			if got := kvpb.ErrorCode(drpcerr.Code(err)); got != c.want || !strings.Contains(err.Error(), c.msg) { //nolint:gosec // codes are small
				t.Fatalf("got %v (code %v), want code %v and %q", err, got, c.want, c.msg)
			}
		})
	}
}

// TestBatchWithinItsBound: a batch larger than the client bound runs
// every operation (its own operations wait for each other's places
// instead of refusing each other), and is refused only when other
// callers hold the whole bound.
func TestBatchWithinItsBound(t *testing.T) {
	tc := newTestCluster(t, func(c *Config) { c.MaxInflight, c.SchedLatencyTarget = 3, 0 })
	s := NewClientServer(tc.coords["n1"], fixedMembers{{ID: "n1", RPCAddr: "a:1", Alive: true, Status: "joined"}})
	ctx := t.Context()
	var ops []*kvpb.ClientOp
	for i := range 200 {
		ops = append(ops, &kvpb.ClientOp{Kind: kvpb.ClientOp_KIND_SET, Key: fmt.Appendf(nil, "b%03d", i), Value: []byte("v")})
	}
	resp, err := s.Batch(ctx, &kvpb.ClientBatchRequest{Ops: ops})
	if err != nil {
		t.Fatal(err)
	}
	for i, r := range resp.GetResults() {
		if r.GetError() != kvpb.ErrorCode_ERROR_CODE_UNSPECIFIED {
			t.Fatalf("op %d of a batch of 200 at a bound of 3: %v", i, r)
		}
	}
	if got := testutil.ToFloat64(tc.coords["n1"].adm.m.refused[PlaneDRPC][refusedInflight]); got != 0 {
		t.Fatalf("refusals: got %v, want 0", got)
	}

	// Other callers hold the bound: the batch's operations are refused
	// at once, nothing applied.
	var held []func()
	for range 3 {
		release, err := tc.coords["n1"].Admit(PlaneHTTP, 1)
		if err != nil {
			t.Fatal(err)
		}
		held = append(held, release)
	}
	resp, err = s.Batch(ctx, &kvpb.ClientBatchRequest{Ops: []*kvpb.ClientOp{
		{Kind: kvpb.ClientOp_KIND_SET, Key: []byte("held1"), Value: []byte("v")},
		{Kind: kvpb.ClientOp_KIND_SET, Key: []byte("held2"), Value: []byte("v")},
	}})
	if err != nil {
		t.Fatal(err)
	}
	for i, r := range resp.GetResults() {
		if r.GetError() != kvpb.ErrorCode_ERROR_CODE_OVERLOADED {
			t.Fatalf("op %d with the bound held by others: %v, want overloaded", i, r)
		}
	}
	for _, release := range held {
		release()
	}
	if _, found, err := tc.coords["n1"].Get(ctx, []byte("held1"), Quorum); err != nil || found {
		t.Fatalf("a refused operation applied: found=%v err=%v", found, err)
	}
}
