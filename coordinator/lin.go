package coordinator

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"slices"
	"sort"
	"sync"
	"time"

	"github.com/ringkv/ringkv/auth"
	"github.com/ringkv/ringkv/consensus"
	"github.com/ringkv/ringkv/replica"
	"github.com/ringkv/ringkv/ring"
)

// LinTransport forwards linearizable operations to the node that leads a
// partition's group. A receiver that is not the leader answers with a
// *consensus.NotLeaderError naming the leader it knows; an outcome that is
// unknown comes back as consensus.ErrAmbiguous.
type LinTransport interface {
	LinGet(ctx context.Context, node string, partition uint32, key []byte) (replica.Record, bool, error)
	// LinPut and LinCAS write a record expiring at expiresAt (zero:
	// never). A leader answers LinGet with found false for a record
	// that has expired by its clock.
	LinPut(ctx context.Context, node string, partition uint32, key, value []byte, tombstone bool, expiresAt time.Time) error
	LinCAS(ctx context.Context, node string, partition uint32, key []byte, expected *[]byte, value []byte, expiresAt time.Time) (CASResult, error)
	// LinScan reads up to limit records of each partition with prefix,
	// from start on, linearizably on node, which should lead them
	// (Group.Scan); each part carries its result or its own error (a
	// *consensus.NotLeaderError when node does not lead it).
	LinScan(ctx context.Context, node string, partitions []uint32, prefix, start []byte, limit int) ([]LinScanPart, error)
	// LinTxn runs a transaction whose keys are all in partition on node,
	// which should lead it (consensus.Group.Txn; wire version 2).
	LinTxn(ctx context.Context, node string, partition uint32, t *consensus.Txn) (consensus.TxnResult, error)

	// The steps of a transaction across partitions, each run on node,
	// which should lead partition (consensus.Group's Prepare, DecideTxn,
	// TxnStatus, ResolveTxn and ForgetTxn, with their errors:
	// *consensus.IntentError from LinPrepare, consensus.ErrTxnAborted and
	// consensus.ErrTxnCommitted; wire version 2).
	LinPrepare(ctx context.Context, node string, partition uint32, req *consensus.PrepareRequest) (consensus.PrepareResult, error)
	LinDecide(ctx context.Context, node string, partition uint32, id consensus.TxnID, commit bool, commitTS replica.Timestamp, writes []replica.Entry) (*consensus.TxnRecord, error)
	LinTxnStatus(ctx context.Context, node string, partition uint32, id consensus.TxnID) (*consensus.TxnRecord, error)
	LinResolve(ctx context.Context, node string, partition uint32, id consensus.TxnID, commit bool, commitTS replica.Timestamp, writes []replica.Entry) (int, error)
	LinForget(ctx context.Context, node string, partition uint32, id consensus.TxnID) error
}

// LinScanPart is one partition's page of a linearizable scan, or why it
// failed.
type LinScanPart struct {
	Result ScanResult
	Err    error
}

// CASResult is the outcome of a compare-and-set that did not fail: whether
// it swapped, and, when it did not, the current value (Found false: the key
// is absent).
type CASResult struct {
	Swapped bool
	Found   bool
	Current []byte
}

// CompareAndSet sets key to value at the linearizable level if the key's
// current value equals *expected, or, with expected nil, if the key is
// absent (put-if-absent); WithTTL or WithExpiresAt makes the new value
// expire. A key whose value has expired by the leader's clock is absent:
// put-if-absent takes it. Errors: ErrInvalidArgument (a bad TTL
// included), *UnavailableError (no leader reachable in time: not
// applied), consensus.ErrAmbiguous (the outcome is unknown: it may have
// applied; do not retry blindly).
func (c *Coordinator) CompareAndSet(ctx context.Context, key []byte, expected *[]byte, value []byte, opts ...WriteOption) (res CASResult, err error) {
	start := time.Now()
	defer func() { c.metrics.observe("cas", Linearizable, start, err) }()
	wo, err := applyWriteOptions(opts)
	if err != nil {
		return res, err
	}
	if err := c.checkKey(ctx, key); err != nil {
		return res, err
	}
	// A compare-and-set writes, and a refused one answers the current
	// value: it needs both.
	if err := c.allow(ctx, auth.OpWrite, key); err != nil {
		return res, err
	}
	if err := c.permit(ctx, auth.OpRead, key); err != nil {
		return res, err
	}
	if len(value) > c.cfg.MaxValueBytes {
		return res, fmt.Errorf("%w: value is %d bytes, limit %d", ErrInvalidArgument, len(value), c.cfg.MaxValueBytes)
	}
	return c.linCAS(ctx, key, expected, value, wo.expiry(c.deps.Clock.Now()))
}

func (c *Coordinator) linPut(ctx context.Context, key, value []byte, tombstone bool, expiresAt time.Time) error {
	return c.onLeader(ctx, "set", key, func(ctx context.Context, node string, p uint32, g *consensus.Group) error {
		if g != nil {
			return c.writeThrough(ctx, func() error {
				return g.Put(ctx, key, value, tombstone, expiresAt) //nolint:wrapcheck // classified by onLeader
			})
		}
		return c.deps.Lin.LinPut(ctx, node, p, key, value, tombstone, expiresAt) //nolint:wrapcheck // classified by onLeader
	})
}

func (c *Coordinator) linGet(ctx context.Context, key []byte) (replica.Record, bool, error) {
	if c.cfg.UnsafeStaleReads {
		if rec, found, ok := c.unsafeLocalGet(key); ok {
			return rec, found, nil
		}
	}
	var rec replica.Record
	var found bool
	err := c.onLeader(ctx, "get", key, func(ctx context.Context, node string, p uint32, g *consensus.Group) error {
		if g != nil {
			// This node leads: its clock decides expiry, as a remote
			// leader's does in LinearizableServer.Get; intents are read
			// through here.
			var err error
			rec, found, err = c.getOn(ctx, g, key)
			return err
		}
		r, f, err := c.deps.Lin.LinGet(ctx, node, p, key)
		rec, found = r, f
		return err //nolint:wrapcheck // classified by onLeader
	})
	if err != nil {
		return rec, false, err
	}
	// The leader decided expiry; a tombstone is absent.
	return rec, found && !rec.Tombstone, nil
}

// unsafeLocalGet is the broken read of Config.UnsafeStaleReads: the local
// replica's record, when this node replicates the key's partition (ok
// false otherwise, or when the local read fails).
func (c *Coordinator) unsafeLocalGet(key []byte) (rec replica.Record, found, ok bool) {
	p, replicas, err := c.placement("get", key, Linearizable)
	if err != nil || !slices.Contains(replicas, c.cfg.NodeID) {
		return rec, false, false
	}
	rec, err = c.deps.Store.Get(p, key)
	switch {
	case errors.Is(err, replica.ErrNotFound):
		return rec, false, true
	case err != nil:
		return rec, false, false
	}
	return rec, rec.Live(c.now()), true
}

// onLeader runs op on the leader of key's partition: locally when this
// node leads, else through Lin. It follows NotLeader redirects, and waits
// (backing off) while an election leaves the leader unknown, until ctx
// ends; then it reports the partition unavailable. Ambiguous outcomes are
// returned as they are: never retried.
func (c *Coordinator) onLeader(ctx context.Context, op string, key []byte, run func(ctx context.Context, node string, p uint32, g *consensus.Group) error) error {
	if c.deps.Groups == nil {
		return &UnavailableError{Op: op, Level: Linearizable, Required: 1, Cause: errors.New("this node runs no raft groups")}
	}
	ctx, cancel := c.withTimeout(ctx)
	defer cancel()
	for {
		r := c.deps.Ring.Ring()
		p, replicas, err := c.placement(op, key, Linearizable)
		if err != nil {
			return err
		}
		err = c.onPartitionLeader(ctx, op, p, replicas, run)
		if !errors.Is(err, consensus.ErrSplit) {
			return err
		}
		// The partition split: nothing was applied. Again on the key's
		// child, once this node holds the ring that split it.
		if err := c.awaitSplitRing(ctx, op, r, err); err != nil {
			return err
		}
	}
}

// awaitSplitRing waits until this node holds a ring of more partitions
// than r, under which a partition answered ErrSplit (cause): gossip
// brings it within seconds of the split. It reports the partition
// unavailable if ctx ends first.
func (c *Coordinator) awaitSplitRing(ctx context.Context, op string, r *ring.Ring, cause error) error {
	tick := time.NewTicker(10 * time.Millisecond)
	defer tick.Stop()
	for {
		if now := c.deps.Ring.Ring(); now != nil && (r == nil || now.Partitions() > r.Partitions()) {
			return nil
		}
		select {
		case <-tick.C:
		case <-ctx.Done():
			return &UnavailableError{Op: op, Level: Linearizable, Required: 1, Cause: errors.Join(cause, ctx.Err())}
		}
	}
}

// onPartitionLeader is onLeader for the partition with id p (its raft
// group's id) with the given replicas.
func (c *Coordinator) onPartitionLeader(ctx context.Context, op string, p uint32, replicas []string, run func(ctx context.Context, node string, p uint32, g *consensus.Group) error) error {
	if len(replicas) == 0 {
		return &UnavailableError{Op: op, Level: Linearizable, Required: 1, Cause: fmt.Errorf("partition %d has no replicas", p)}
	}
	ctx, cancel := c.withTimeout(ctx)
	defer cancel()
	var err error
	target := ""
	if g, ok := c.deps.Groups.Group(p); ok {
		target = g.Leader()
	}
	backoff := 10 * time.Millisecond
	tried := 0
	var last error
	for {
		if target == "" {
			// Leader unknown: ask the replicas in turn; they redirect.
			target = replicas[tried%len(replicas)]
		}
		tried++
		var g *consensus.Group
		if target == c.cfg.NodeID {
			if lg, ok := c.deps.Groups.Group(p); ok {
				g = lg
			}
		}
		if target == c.cfg.NodeID && g == nil {
			err = &consensus.NotLeaderError{Group: p}
		} else {
			err = run(ctx, target, p, g)
		}
		var nle *consensus.NotLeaderError
		switch {
		case err == nil:
			return nil
		case errors.Is(err, consensus.ErrAmbiguous), errors.Is(err, consensus.ErrSplit):
			// A split partition applied nothing: its children answer,
			// under the ring that split it (the caller places again).
			return err
		case errors.Is(err, ErrInvalidArgument), errors.Is(err, ErrNotUpgraded), errors.Is(err, ErrConflict):
			// The leader refused the request itself (a peer's answer
			// comes back as these through errorFor): asking again,
			// there or elsewhere, gets the same answer.
			return err
		case errors.As(err, &nle) && nle.Leader != "" && nle.Leader != target:
			target = nle.Leader // follow the redirect at once
			last = err
			continue
		case ctx.Err() != nil:
			return &UnavailableError{Op: op, Level: Linearizable, Required: 1, Replicas: len(replicas), Cause: errors.Join(last, err)}
		}
		last = err
		target = ""
		timer := time.NewTimer(backoff)
		select {
		case <-timer.C:
		case <-ctx.Done():
			timer.Stop()
			return &UnavailableError{Op: op, Level: Linearizable, Required: 1, Replicas: len(replicas), Cause: errors.Join(last, ctx.Err())}
		}
		backoff = min(2*backoff, 500*time.Millisecond)
	}
}

// linListParallelism bounds the partitions a linearizable list reads at
// once.
const linListParallelism = 16

// A linearizable List reads each page with linListPage: every partition
// on its leader after a read-index round (Group.Scan), so every pair
// returned reflects every write acknowledged before the List began and no
// write that began after it ended. It is linearizable per key, not a
// snapshot across partitions (as Cassandra's SERIAL range reads are not
// either): two keys of different partitions are read at different moments
// inside the call.

// linListPage reads one page of every partition on its leader and
// returns the records up to cutoff in key order, and cutoff (nil when no
// partition was truncated), as listPage does. Partitions are sent in one
// request per node believed to lead them (this node's groups know the
// leaders); a partition that fails there, say because leadership moved,
// is retried alone through onPartitionLeader, which follows redirects.
func (c *Coordinator) linListPage(ctx context.Context, r *ring.Ring, prefix, from []byte) ([]keyedRecord, []byte, error) {
	ids := r.IDs()
	// results and errs are by index in r; requests name partitions by id.
	results := make([]ScanResult, len(ids))
	errs := make([]error, len(ids))
	byNode := map[string][]int{}
	for p, id := range ids {
		target := ""
		if g, ok := c.deps.Groups.Group(id); ok {
			target = g.Leader()
		}
		if reps := r.ReplicasOf(id); target == "" && len(reps) > 0 {
			target = reps[0]
		}
		byNode[target] = append(byNode[target], p)
	}
	var wg sync.WaitGroup
	retry := make(chan int, len(ids))
	for node, ps := range byNode {
		wg.Add(1)
		go func() {
			defer wg.Done()
			asked := make([]uint32, len(ps))
			for i, p := range ps {
				asked[i] = ids[p]
			}
			got := c.linScanOn(ctx, node, asked, prefix, from)
			for i, p := range ps {
				if got[i].Err != nil {
					retry <- p
					continue
				}
				results[p] = got[i].Result
			}
		}()
	}
	wg.Wait()
	close(retry)
	sem := make(chan struct{}, linListParallelism)
	for p := range retry {
		wg.Add(1)
		sem <- struct{}{}
		go func() {
			defer wg.Done()
			defer func() { <-sem }()
			errs[p] = c.onPartitionLeader(ctx, "list", ids[p], r.ReplicasOf(ids[p]), func(ctx context.Context, node string, id uint32, _ *consensus.Group) error {
				got := c.linScanOn(ctx, node, []uint32{id}, prefix, from)
				results[p] = got[0].Result
				return got[0].Err
			})
		}()
	}
	wg.Wait()
	if err := errors.Join(errs...); err != nil {
		return nil, nil, err
	}
	var cutoff []byte
	for _, res := range results {
		if res.Truncated && len(res.Keys) > 0 {
			if last := res.Keys[len(res.Keys)-1]; cutoff == nil || bytes.Compare(last, cutoff) < 0 {
				cutoff = last
			}
		}
	}
	var out []keyedRecord
	for _, res := range results {
		for i, k := range res.Keys {
			if cutoff == nil || bytes.Compare(k, cutoff) <= 0 {
				out = append(out, keyedRecord{key: k, rec: res.Records[i]})
			}
		}
	}
	sort.Slice(out, func(i, j int) bool { return bytes.Compare(out[i].key, out[j].key) < 0 })
	// On a split ring a reserved key shows in every partition of its
	// storage partition (replica.Store.Scan): keep one, the newest.
	kept := out[:0]
	for _, kr := range out {
		if n := len(kept); n > 0 && bytes.Equal(kept[n-1].key, kr.key) {
			if kr.rec.Newer(kept[n-1].rec) {
				kept[n-1] = kr
			}
			continue
		}
		kept = append(kept, kr)
	}
	return kept, cutoff, nil
}

// linScanOn reads partitions ps on node: locally (concurrently, through
// this node's groups) or with one LinScan RPC. It always returns one part
// per partition.
func (c *Coordinator) linScanOn(ctx context.Context, node string, ps []uint32, prefix, from []byte) []LinScanPart {
	out := make([]LinScanPart, len(ps))
	if node != c.cfg.NodeID {
		got, err := c.deps.Lin.LinScan(ctx, node, ps, prefix, from, c.cfg.ListPageSize)
		for i, p := range ps {
			switch {
			case err != nil:
				out[i].Err = err
			case i < len(got) && got[i].Result.Partition == p:
				out[i] = got[i]
			default:
				out[i].Err = fmt.Errorf("linearizable scan on %s: no answer for partition %d", node, p)
			}
		}
		return out
	}
	sem := make(chan struct{}, linListParallelism)
	var wg sync.WaitGroup
	for i, p := range ps {
		wg.Add(1)
		sem <- struct{}{}
		go func() {
			defer wg.Done()
			defer func() { <-sem }()
			g, ok := c.deps.Groups.Group(p)
			if !ok {
				out[i].Err = &consensus.NotLeaderError{Group: p}
				return
			}
			keys, recs, truncated, err := c.scanThrough(ctx, g, prefix, from, c.cfg.ListPageSize)
			out[i] = LinScanPart{Result: ScanResult{Partition: p, Keys: keys, Records: recs, Truncated: truncated}, Err: err}
		}()
	}
	wg.Wait()
	return out
}
