package coordinator

import (
	"errors"
	"fmt"
	"time"

	"storj.io/drpc/drpcerr"

	"github.com/ringkv/ringkv/consensus"
	"github.com/ringkv/ringkv/proto/kvpb"
	"github.com/ringkv/ringkv/replica"
)

// drpc error codes of the Replica service. codeFor and errorFor are the one
// table that maps errors across the RPC boundary, in both directions.
const (
	codeInternal    uint64 = 1
	codeUnavailable uint64 = 2
	codeInvalid     uint64 = 3
	codeAmbiguous   uint64 = 4
	codeNoGroup     uint64 = 5
	codeNotUpgraded uint64 = 6
	codeTxnAborted  uint64 = 7  // consensus.ErrTxnAborted
	codeTxnCommit   uint64 = 8  // consensus.ErrTxnCommitted
	codeConflict    uint64 = 9  // ErrConflict
	codeDiskFull    uint64 = 10 // replica.ErrDiskFull
	codeNotReplica  uint64 = 11 // ErrNotReplica
	codeOverloaded  uint64 = 12 // ErrOverloaded, consensus.ErrOverloaded
	codeSplit       uint64 = 13 // consensus.ErrSplit
)

// errPeer marks errors that came back from a peer's Replica service.
var errPeer = errors.New("coordinator: peer error")

func codeFor(err error) uint64 {
	switch {
	case errors.Is(err, replica.ErrClosed):
		return codeUnavailable
	case errors.Is(err, ErrInvalidArgument), errors.Is(err, replica.ErrClockOffset),
		errors.Is(err, consensus.ErrInvalidTxn), errors.Is(err, consensus.ErrTxnTooLarge):
		return codeInvalid
	case errors.Is(err, consensus.ErrNotUpgraded):
		return codeNotUpgraded
	case errors.Is(err, consensus.ErrTxnAborted):
		return codeTxnAborted
	case errors.Is(err, consensus.ErrTxnCommitted):
		return codeTxnCommit
	case errors.Is(err, ErrConflict):
		return codeConflict
	case errors.Is(err, consensus.ErrAmbiguous):
		return codeAmbiguous
	case errors.Is(err, consensus.ErrNoGroup):
		return codeNoGroup
	case errors.Is(err, consensus.ErrSplit):
		return codeSplit
	case errors.Is(err, replica.ErrDiskFull):
		return codeDiskFull
	case errors.Is(err, ErrNotReplica):
		return codeNotReplica
	case overloaded(err):
		return codeOverloaded
	default:
		return codeInternal
	}
}

// rpcError wraps a server-side error with its drpc code.
func rpcError(err error) error {
	return drpcerr.WithCode(err, codeFor(err))
}

// errorFor turns an error returned by a drpc call into ours.
func errorFor(err error) error {
	switch drpcerr.Code(err) {
	case codeInvalid:
		return fmt.Errorf("%w: %w", ErrInvalidArgument, err)
	case codeAmbiguous:
		return fmt.Errorf("%w: %w", consensus.ErrAmbiguous, err)
	case codeNoGroup:
		return fmt.Errorf("%w: %w", consensus.ErrNoGroup, err)
	case codeSplit:
		return fmt.Errorf("%w: %w", consensus.ErrSplit, err)
	case codeNotUpgraded:
		return fmt.Errorf("%w: %w", ErrNotUpgraded, err)
	case codeTxnAborted:
		return fmt.Errorf("%w: %w", consensus.ErrTxnAborted, err)
	case codeTxnCommit:
		return fmt.Errorf("%w: %w", consensus.ErrTxnCommitted, err)
	case codeConflict:
		return fmt.Errorf("%w: %w", ErrConflict, err)
	case codeDiskFull:
		return fmt.Errorf("%w: %w", replica.ErrDiskFull, err)
	case codeNotReplica:
		return fmt.Errorf("%w: %w", ErrNotReplica, err)
	case codeOverloaded:
		return fmt.Errorf("%w: %w", ErrOverloaded, err)
	default:
		return fmt.Errorf("%w: %w", errPeer, err)
	}
}

func recordToWire(r replica.Record) *kvpb.Record {
	w := &kvpb.Record{
		Value:     r.Value,
		Timestamp: uint64(r.Timestamp),
		NodeId:    r.NodeID,
		Tombstone: r.Tombstone,
	}
	if !r.ExpiresAt.IsZero() {
		w.ExpiresAtUnixNanos = r.ExpiresAt.UnixNano()
	}
	return w
}

func recordFromWire(w *kvpb.Record) replica.Record {
	r := replica.Record{
		Value:     w.GetValue(),
		Timestamp: replica.Timestamp(w.GetTimestamp()),
		NodeID:    w.GetNodeId(),
		Tombstone: w.GetTombstone(),
	}
	if ns := w.GetExpiresAtUnixNanos(); ns != 0 {
		r.ExpiresAt = time.Unix(0, ns)
	}
	return r
}

func entriesToWire(entries []replica.Entry) []*kvpb.KeyedRecord {
	out := make([]*kvpb.KeyedRecord, len(entries))
	for i, e := range entries {
		out[i] = &kvpb.KeyedRecord{Partition: e.Partition, Key: e.Key, Record: recordToWire(e.Record)}
	}
	return out
}

func scanResultsFromWire(w []*kvpb.ScanResult) []ScanResult {
	out := make([]ScanResult, len(w))
	for i, r := range w {
		res := ScanResult{Partition: r.GetPartition(), Truncated: r.GetTruncated()}
		for _, kr := range r.GetRecords() {
			res.Keys = append(res.Keys, kr.GetKey())
			res.Records = append(res.Records, recordFromWire(kr.GetRecord()))
		}
		out[i] = res
	}
	return out
}

func scanResultsToWire(rs []ScanResult) []*kvpb.ScanResult {
	out := make([]*kvpb.ScanResult, len(rs))
	for i, r := range rs {
		w := &kvpb.ScanResult{Partition: r.Partition, Truncated: r.Truncated}
		for j, k := range r.Keys {
			w.Records = append(w.Records, &kvpb.KeyedRecord{Partition: r.Partition, Key: k, Record: recordToWire(r.Records[j])})
		}
		out[i] = w
	}
	return out
}

// expiryToWire encodes an expiry as Unix nanoseconds, 0 for never.
func expiryToWire(t time.Time) int64 {
	if t.IsZero() {
		return 0
	}
	return t.UnixNano()
}

// expiryFromWire decodes expiryToWire's encoding.
func expiryFromWire(ns int64) time.Time {
	if ns == 0 {
		return time.Time{}
	}
	return time.Unix(0, ns)
}
