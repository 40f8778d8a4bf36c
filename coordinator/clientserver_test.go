package coordinator

import (
	"context"
	"errors"
	"fmt"
	"testing"

	"github.com/ringkv/ringkv/consensus"
	"github.com/ringkv/ringkv/proto/kvpb"
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
