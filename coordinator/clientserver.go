package coordinator

import (
	"google.golang.org/protobuf/proto"

	"context"
	"errors"
	"fmt"
	"sync"
	"time"

	"storj.io/drpc/drpcerr"

	"github.com/ringkv/ringkv/auth"
	"github.com/ringkv/ringkv/consensus"
	"github.com/ringkv/ringkv/proto/kvpb"
	"github.com/ringkv/ringkv/replica"
)

// ClientMember is one cluster member as the Client service's Topology call
// reports it.
type ClientMember struct {
	ID       string
	Zone     string
	RPCAddr  string
	HTTPAddr string
	Alive    bool
	// Status is the ring membership: "joined", "leaving", "removed" or "".
	Status string
	// Draining: the member advertises that it drains.
	Draining bool
}

// MemberLister lists the cluster's members for Topology. The node adapts
// its gossip membership to it.
type MemberLister interface {
	ClientMembers() []ClientMember
}

const (
	// maxBatchOps bounds the operations of one Batch call.
	maxBatchOps = 4096
	// batchParallelism bounds how many operations of one Batch call run at
	// once on the coordinator.
	batchParallelism = 64
	// maxClientBudget caps the time budget a client may ask for.
	maxClientBudget = 5 * time.Minute
)

// ClientServer serves the Client drpc service (kvpb.DRPCClientServer): the
// protocol of the Go client library. Every data call runs through the
// node's Coordinator at the requested level, exactly as the HTTP API does;
// answers carry the node's ring version and the leader of the key's
// partition as this node knows it, so clients can tell when their view is
// stale. Errors of data calls travel inside the answer as a kvpb.ErrorCode
// (clientCode is the one table); drpc errors mean the call itself failed.
// It is safe for concurrent use.
type ClientServer struct {
	c       *Coordinator
	members MemberLister
}

// NewClientServer returns a Client service over c. members may be nil: the
// Topology answer then lists no member addresses.
func NewClientServer(c *Coordinator, members MemberLister) *ClientServer {
	return &ClientServer{c: c, members: members}
}

// clientCode maps a Coordinator error to the Client service's error code:
// the service's one table, used by every call (Do, Batch, List, Pipe,
// Login). isWrite tells whether the operation changes state: an
// unavailable write at an eventual level may have reached some replicas,
// at linearizable it was not applied (the coordinator reports an unknown
// outcome as consensus.ErrAmbiguous instead). A refusal by the Authorizer
// comes before anything is applied: unauthenticated, permission denied,
// or, when the rules cannot be read, unavailable and not applied.
func clientCode(err error, level Level, isWrite bool) kvpb.ErrorCode {
	switch {
	case err == nil:
		return kvpb.ErrorCode_ERROR_CODE_UNSPECIFIED
	case errors.Is(err, auth.ErrUnauthenticated):
		return kvpb.ErrorCode_ERROR_CODE_UNAUTHENTICATED
	case errors.Is(err, auth.ErrPermissionDenied):
		return kvpb.ErrorCode_ERROR_CODE_PERMISSION_DENIED
	case errors.Is(err, auth.ErrAuthDisabled):
		return kvpb.ErrorCode_ERROR_CODE_AUTH_DISABLED
	case errors.Is(err, auth.ErrUnavailable):
		return kvpb.ErrorCode_ERROR_CODE_UNAVAILABLE_NOT_APPLIED
	case errors.Is(err, ErrInvalidArgument):
		return kvpb.ErrorCode_ERROR_CODE_INVALID_ARGUMENT
	case errors.Is(err, ErrNotImplemented):
		return kvpb.ErrorCode_ERROR_CODE_NOT_IMPLEMENTED
	case errors.Is(err, ErrConflict):
		return kvpb.ErrorCode_ERROR_CODE_CONFLICT
	case errors.Is(err, ErrNotUpgraded):
		return kvpb.ErrorCode_ERROR_CODE_UNAVAILABLE_NOT_APPLIED
	case errors.Is(err, consensus.ErrAmbiguous):
		return kvpb.ErrorCode_ERROR_CODE_OUTCOME_UNKNOWN
	case errors.Is(err, replica.ErrDiskFull):
		return kvpb.ErrorCode_ERROR_CODE_INSUFFICIENT_STORAGE
	case overloaded(err):
		return kvpb.ErrorCode_ERROR_CODE_OVERLOADED
	case errors.Is(err, ErrUnavailable):
		if !isWrite || level == Linearizable {
			return kvpb.ErrorCode_ERROR_CODE_UNAVAILABLE_NOT_APPLIED
		}
		return kvpb.ErrorCode_ERROR_CODE_UNAVAILABLE
	case errors.Is(err, ErrClosed), errors.Is(err, ErrDraining):
		return kvpb.ErrorCode_ERROR_CODE_CLOSED
	case errors.Is(err, ErrCorrupt):
		return kvpb.ErrorCode_ERROR_CODE_CORRUPT
	case errors.Is(err, context.DeadlineExceeded):
		if isWrite {
			return kvpb.ErrorCode_ERROR_CODE_OUTCOME_UNKNOWN
		}
		return kvpb.ErrorCode_ERROR_CODE_TIMEOUT
	default:
		return kvpb.ErrorCode_ERROR_CODE_INTERNAL
	}
}

func levelFromWire(c kvpb.Consistency) (Level, error) {
	switch c {
	case kvpb.Consistency_CONSISTENCY_UNSPECIFIED, kvpb.Consistency_CONSISTENCY_QUORUM:
		return Quorum, nil
	case kvpb.Consistency_CONSISTENCY_ONE:
		return One, nil
	case kvpb.Consistency_CONSISTENCY_ALL:
		return All, nil
	case kvpb.Consistency_CONSISTENCY_LINEARIZABLE:
		return Linearizable, nil
	default:
		return 0, fmt.Errorf("%w: unknown consistency level %d", ErrInvalidArgument, int32(c))
	}
}

// budget bounds ctx by the client's time budget (0: the coordinator's
// RequestTimeout).
func (s *ClientServer) budget(ctx context.Context, micros uint64) (context.Context, context.CancelFunc) {
	d := s.c.cfg.RequestTimeout
	if micros > 0 {
		d = min(time.Duration(micros)*time.Microsecond, maxClientBudget)
	}
	return context.WithTimeout(ctx, d)
}

func (s *ClientServer) header() *kvpb.ClientHeader {
	h := &kvpb.ClientHeader{NodeId: s.c.cfg.NodeID}
	if r := s.c.deps.Ring.Ring(); r != nil {
		h.RingVersion = r.Version()
	}
	return h
}

// leaderOf returns the leader of key's partition as this node knows it.
func (s *ClientServer) leaderOf(key []byte) string {
	r := s.c.deps.Ring.Ring()
	if r == nil || s.c.deps.Groups == nil || len(key) == 0 {
		return ""
	}
	if g, ok := s.c.deps.Groups.Group(r.IDOf(key)); ok {
		return g.Leader()
	}
	return ""
}

// Topology reports the ring, the members and the partition leaders this
// node knows. The table is indexed by partition index under the ring's P,
// which clients compute from a key's hash; each partition's leader is
// that of the raft group with its id.
func (s *ClientServer) Topology(_ context.Context, _ *kvpb.TopologyRequest) (*kvpb.TopologyResponse, error) {
	resp := &kvpb.TopologyResponse{Header: s.header()}
	r := s.c.deps.Ring.Ring()
	if r == nil {
		return resp, nil
	}
	resp.Partitions = uint32(r.Partitions())
	resp.BasePartitions = uint32(r.Base())
	resp.ReplicationFactor = uint32(r.ReplicationFactor())
	if s.members != nil {
		for _, m := range s.members.ClientMembers() {
			resp.Members = append(resp.Members, &kvpb.TopologyMember{
				Id: m.ID, Zone: m.Zone, RpcAddr: m.RPCAddr, HttpAddr: m.HTTPAddr, Alive: m.Alive, Status: m.Status, Draining: m.Draining,
			})
		}
	}
	resp.Table = make([]*kvpb.TopologyPartition, r.Partitions())
	for p := range resp.Table {
		tp := &kvpb.TopologyPartition{Replicas: append([]string(nil), r.Replicas(uint32(p))...)}
		if s.c.deps.Groups != nil {
			if g, ok := s.c.deps.Groups.Group(r.ID(uint32(p))); ok {
				tp.Leader = g.Leader()
			}
		}
		resp.Table[p] = tp
	}
	return resp, nil
}

// Do runs one operation.
func (s *ClientServer) Do(ctx context.Context, req *kvpb.ClientRequest) (*kvpb.ClientResponse, error) {
	ctx, cancel := s.budget(ctx, req.GetTimeoutMicros())
	defer cancel()
	return &kvpb.ClientResponse{Result: s.run(ctx, req.GetOp()), Header: s.header()}, nil
}

// Batch runs the request's operations concurrently (at most
// batchParallelism at once, and as many as the client budget admits:
// batchSlots) and answers each, in request order. A batch of
// more than maxBatchOps operations is refused with a drpc error.
func (s *ClientServer) Batch(ctx context.Context, req *kvpb.ClientBatchRequest) (*kvpb.ClientBatchResponse, error) {
	ops := req.GetOps()
	if len(ops) > maxBatchOps {
		err := fmt.Errorf("%w: batch of %d operations, limit %d", ErrInvalidArgument, len(ops), maxBatchOps)
		return nil, drpcerr.WithCode(err, uint64(kvpb.ErrorCode_ERROR_CODE_INVALID_ARGUMENT))
	}
	ctx, cancel := s.budget(ctx, req.GetTimeoutMicros())
	defer cancel()
	results := make([]*kvpb.ClientResult, len(ops))
	sem := make(chan struct{}, batchParallelism)
	slots := &batchSlots{freed: make(chan struct{})}
	var wg sync.WaitGroup
	for i, op := range ops {
		sem <- struct{}{}
		wg.Add(1)
		go func() {
			defer wg.Done()
			defer func() { <-sem }()
			release, refused := s.admitInBatch(ctx, slots, op)
			if refused != nil {
				results[i] = refused
				return
			}
			defer release()
			results[i] = s.runAdmitted(ctx, op)
		}()
	}
	wg.Wait()
	return &kvpb.ClientBatchResponse{Header: s.header(), Results: results}, nil
}

// errLoginOff answers Login on a node without an Authenticator (one that
// serves no TLS): there are no users, and every request is allowed.
var errLoginOff = fmt.Errorf("coordinator: %w: authentication is off on this node (it serves no TLS)", auth.ErrAuthDisabled)

// Login exchanges a user's password for a bearer token through
// Deps.Login. A refusal is a drpc error whose code is clientCode's:
// UNAUTHENTICATED for a wrong user or password, AUTH_DISABLED when
// authentication is disabled or off (Deps.Login nil), UNAVAILABLE_NOT_APPLIED
// when the users cannot be read, TIMEOUT, INTERNAL. The message never says
// which of user or password was wrong.
func (s *ClientServer) Login(ctx context.Context, req *kvpb.LoginRequest) (*kvpb.LoginResponse, error) {
	if s.c.deps.Login == nil {
		return nil, drpcerr.WithCode(errLoginOff, uint64(kvpb.ErrorCode_ERROR_CODE_AUTH_DISABLED))
	}
	ctx, cancel := s.budget(ctx, 0)
	defer cancel()
	token, expires, err := s.c.deps.Login.Login(ctx, req.GetUser(), req.GetPassword())
	if err != nil {
		// auth's messages say what happened ("authentication is
		// disabled", "unauthenticated") and nothing more.
		err = fmt.Errorf("login: %w", err)
		return nil, drpcerr.WithCode(err, uint64(clientCode(err, Quorum, false)))
	}
	return &kvpb.LoginResponse{Token: token, ExpiresUnixNanos: expires.UnixNano()}, nil
}

// List lists live pairs under a prefix.
func (s *ClientServer) List(ctx context.Context, req *kvpb.ClientListRequest) (*kvpb.ClientListResponse, error) {
	ctx, cancel := s.budget(ctx, req.GetTimeoutMicros())
	defer cancel()
	resp := &kvpb.ClientListResponse{Header: s.header()}
	release, err := s.c.enter(PlaneDRPC, int64(proto.Size(req)))
	if err != nil {
		resp.Error, resp.Message = clientCode(err, Quorum, false), err.Error()
		return resp, nil
	}
	defer release()
	level, err := levelFromWire(req.GetConsistency())
	var pairs []Pair
	if err == nil {
		pairs, err = s.c.List(ctx, req.GetPrefix(), int(req.GetLimit()), level)
	}
	if err != nil {
		resp.Error, resp.Message = clientCode(err, level, false), err.Error()
		return resp, nil
	}
	resp.Pairs = make([]*kvpb.ClientPair, len(pairs))
	for i, p := range pairs {
		resp.Pairs[i] = &kvpb.ClientPair{Key: p.Key, Value: p.Value}
	}
	return resp, nil
}

// run executes one operation on the coordinator and describes its outcome.
func (s *ClientServer) run(ctx context.Context, op *kvpb.ClientOp) *kvpb.ClientResult {
	release, refused := s.admit(op)
	if refused != nil {
		return refused
	}
	defer release()
	return s.runAdmitted(ctx, op)
}

// admit takes op's place in the node's client budget: it returns the
// function that gives it back, or the answer to op when it is refused
// (overloaded or draining).
func (s *ClientServer) admit(op *kvpb.ClientOp) (release func(), refused *kvpb.ClientResult) {
	release, err := s.c.enter(PlaneDRPC, opBytes(op))
	if err != nil {
		return nil, s.refusal(op, err)
	}
	return release, nil
}

// opBytes is what op counts against the client budget's bytes.
func opBytes(op *kvpb.ClientOp) int64 {
	return int64(len(op.GetKey()) + len(op.GetValue()) + len(op.GetExpected()))
}

// refusal answers op refused at admission with err.
func (s *ClientServer) refusal(op *kvpb.ClientOp, err error) *kvpb.ClientResult {
	return &kvpb.ClientResult{Error: clientCode(err, Quorum, false), Message: err.Error(), Leader: s.leaderOf(op.GetKey())}
}

// batchSlots are the places one Batch call holds in the client budget.
// A batch's operations run concurrently, and at a small bound (the
// adaptive one shrinks to MinInflight under load) most of them would be
// refused by their own batch's running operations: the client then
// retried each alone, a flood of single calls where there was one RPC.
// So an operation refused while others of its batch run waits for one of
// them to end and asks again: the batch runs with the parallelism the
// budget gives it, never refused by itself. An operation is refused only
// when none of its batch's operations holds a place (the node is at its
// bound with other callers' requests), when the node drains, or when the
// call's deadline ends first.
type batchSlots struct {
	mu       sync.Mutex
	inflight int           // operations of the batch admitted and running
	freed    chan struct{} // closed, and replaced, when one of them ends
}

// admitInBatch is admit for an operation of the batch holding slots.
// The place is taken, and counted in the batch's inflight, under the
// batch's lock (tryEnter never waits): an operation that finds the bound
// full and none of its batch counted knows that no place of its batch
// is held, not even one just taken by a sibling that has yet to count
// it.
func (s *ClientServer) admitInBatch(ctx context.Context, b *batchSlots, op *kvpb.ClientOp) (release func(), refused *kvpb.ClientResult) {
	adm := s.c.adm
	for {
		b.mu.Lock()
		freed := b.freed
		// Taken without counting a refusal: a wait for the batch's own
		// places is not one.
		release, reason, err := s.c.tryEnter(PlaneDRPC, opBytes(op))
		if release != nil {
			b.inflight++
		}
		alone := b.inflight == 0
		b.mu.Unlock()
		if err != nil {
			return nil, s.refusal(op, err)
		}
		if release != nil {
			return func() {
				b.mu.Lock()
				release()
				b.inflight--
				close(b.freed)
				b.freed = make(chan struct{})
				b.mu.Unlock()
			}, nil
		}
		if !alone {
			// A place of the batch's ends after this ask: freed, read
			// under the same lock, is closed then.
			select {
			case <-freed:
				continue
			case <-ctx.Done():
			}
		}
		adm.refused(PlaneDRPC, reason)
		return nil, s.refusal(op, adm.refusals[PlaneDRPC][reason])
	}
}

// runAdmitted is run for an operation admit admitted.
func (s *ClientServer) runAdmitted(ctx context.Context, op *kvpb.ClientOp) *kvpb.ClientResult {
	res := &kvpb.ClientResult{}
	key := op.GetKey()
	level, err := levelFromWire(op.GetConsistency())
	isWrite := op.GetKind() != kvpb.ClientOp_KIND_GET
	var wopts []WriteOption
	ttl := time.Duration(op.GetTtlMicros()) * time.Microsecond
	switch {
	case op.GetTtlMicros() < 0 || op.GetTtlMicros() > int64(MaxTTL/time.Microsecond):
		err = errors.Join(err, fmt.Errorf("%w: ttl_micros %d outside 0..%d", ErrInvalidArgument, op.GetTtlMicros(), int64(MaxTTL/time.Microsecond)))
	case ttl > 0:
		wopts = append(wopts, WithTTL(ttl))
	}
	if err == nil {
		switch op.GetKind() {
		case kvpb.ClientOp_KIND_GET:
			var it Item
			it, res.Found, err = s.c.GetItem(ctx, key, level)
			res.Value = it.Value
			res.TtlMicros = int64(it.TTL(s.c.now()) / time.Microsecond)
		case kvpb.ClientOp_KIND_SET:
			err = s.c.Set(ctx, key, op.GetValue(), level, wopts...)
		case kvpb.ClientOp_KIND_EXPIRE:
			res.Found, err = s.c.Expire(ctx, key, ttl, level)
		case kvpb.ClientOp_KIND_PERSIST:
			res.Found, err = s.c.Persist(ctx, key, level)
		case kvpb.ClientOp_KIND_DELETE:
			err = s.c.Delete(ctx, key, level)
		case kvpb.ClientOp_KIND_CAS:
			level = Linearizable
			var expected *[]byte
			if op.GetHasExpected() {
				e := op.GetExpected()
				if e == nil {
					e = []byte{}
				}
				expected = &e
			}
			var cas CASResult
			cas, err = s.c.CompareAndSet(ctx, key, expected, op.GetValue(), wopts...)
			res.Swapped, res.Found, res.Value = cas.Swapped, cas.Found, cas.Current
		default:
			err = fmt.Errorf("%w: unknown operation kind %d", ErrInvalidArgument, int32(op.GetKind()))
		}
	}
	if err != nil {
		res = &kvpb.ClientResult{Error: clientCode(err, level, isWrite), Message: err.Error()}
	}
	res.Leader = s.leaderOf(key)
	return res
}
