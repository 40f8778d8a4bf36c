package coordinator

import (
	"google.golang.org/protobuf/proto"

	"context"
	"fmt"
	"time"

	"github.com/ringkv/ringkv/proto/kvpb"
)

// MGet reads several keys (Coordinator.MGet) for a client library. Errors
// travel in the answer, coded by clientCode.
func (s *ClientServer) MGet(ctx context.Context, req *kvpb.ClientMGetRequest) (*kvpb.ClientMGetResponse, error) {
	ctx, cancel := s.budget(ctx, req.GetTimeoutMicros())
	defer cancel()
	resp := &kvpb.ClientMGetResponse{Header: s.header()}
	level, err := levelFromWire(req.GetConsistency())
	if err != nil {
		resp.Error, resp.Message = clientCode(err, level, false), err.Error()
		return resp, nil
	}
	release, err := s.c.enter(PlaneDRPC, int64(proto.Size(req)))
	if err != nil {
		resp.Error, resp.Message = clientCode(err, level, false), err.Error()
		return resp, nil
	}
	defer release()
	res, err := s.c.MGet(ctx, req.GetKeys(), level)
	if err != nil {
		resp.Error, resp.Message = clientCode(err, level, false), err.Error()
		return resp, nil
	}
	resp.Results = make([]*kvpb.ClientTxnResult, len(res))
	now := s.c.now()
	for i, r := range res {
		out := &kvpb.ClientTxnResult{Found: r.Found}
		if r.Found {
			out.Value, out.Version = r.Value, r.Version
			out.TtlMicros = int64(Item{ExpiresAt: r.ExpiresAt}.TTL(now) / time.Microsecond)
		}
		resp.Results[i] = out
	}
	return resp, nil
}

// MSet writes several keys (Coordinator.MSet) for a client library.
// Errors travel in the answer, coded by clientCode.
func (s *ClientServer) MSet(ctx context.Context, req *kvpb.ClientMSetRequest) (*kvpb.ClientMSetResponse, error) {
	ctx, cancel := s.budget(ctx, req.GetTimeoutMicros())
	defer cancel()
	resp := &kvpb.ClientMSetResponse{Header: s.header()}
	level, err := levelFromWire(req.GetConsistency())
	pairs := make([]MSetPair, len(req.GetPairs()))
	for i, p := range req.GetPairs() {
		pairs[i] = MSetPair{Key: p.GetKey(), Value: p.GetValue()}
		if us := p.GetTtlMicros(); us < 0 || us > int64(MaxTTL/time.Microsecond) {
			err = fmt.Errorf("%w: pair %d: ttl_micros %d outside 0..%d", ErrInvalidArgument, i, us, int64(MaxTTL/time.Microsecond))
		} else {
			pairs[i].TTL = time.Duration(us) * time.Microsecond
		}
	}
	if err != nil {
		resp.Error, resp.Message = clientCode(err, level, true), err.Error()
		return resp, nil
	}
	release, err := s.c.enter(PlaneDRPC, int64(proto.Size(req)))
	if err != nil {
		resp.Error, resp.Message = clientCode(err, level, true), err.Error()
		return resp, nil
	}
	defer release()
	if err := s.c.MSet(ctx, pairs, level); err != nil {
		resp.Error, resp.Message = clientCode(err, level, true), err.Error()
	}
	return resp, nil
}
