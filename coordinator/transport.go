package coordinator

import (
	"context"
	"fmt"

	"github.com/ringkv/ringkv/replica"
)

// Transport reaches the replica store of another node. Every method is safe
// for concurrent use and honours ctx. The coordinator never calls it for
// its own node: it uses its local Store directly.
//
// RPCTransport is the production implementation; tests may use an
// in-memory one.
type Transport interface {
	// Merge durably merges entries into node's replica.
	Merge(ctx context.Context, node string, entries []replica.Entry) error
	// Read returns node's record for key, replica.ErrNotFound when it has
	// none, or an error wrapping replica.ErrCorrupt when its copy is bad.
	Read(ctx context.Context, node string, partition uint32, key []byte) (replica.Record, error)
	// Scan lists records (tombstones included) of the partitions in req.
	Scan(ctx context.Context, node string, req ScanRequest) ([]ScanResult, error)
}

// ScanRequest asks one replica for the records of some partitions whose
// keys have Prefix and are >= Start, at most Limit per partition.
type ScanRequest struct {
	Partitions []uint32
	Prefix     []byte
	Start      []byte
	Limit      int
}

// ScanResult is one partition's answer to a ScanRequest. Truncated is set
// when the partition held more matching records than Limit.
type ScanResult struct {
	Partition uint32
	Keys      [][]byte
	Records   []replica.Record
	Truncated bool
}

// scanLocal answers a ScanRequest from a local store. ReplicaServer and the
// coordinator's own local path share it.
func scanLocal(store *replica.Store, req ScanRequest) ([]ScanResult, error) {
	out := make([]ScanResult, 0, len(req.Partitions))
	for _, p := range req.Partitions {
		res := ScanResult{Partition: p}
		err := store.Scan(p, req.Prefix, req.Start, func(key []byte, rec replica.Record) bool {
			if req.Limit > 0 && len(res.Keys) == req.Limit {
				res.Truncated = true
				return false
			}
			res.Keys = append(res.Keys, key)
			res.Records = append(res.Records, rec)
			return true
		})
		if err != nil {
			return nil, fmt.Errorf("scan partition %d: %w", p, err)
		}
		out = append(out, res)
	}
	return out, nil
}
