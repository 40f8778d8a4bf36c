package coordinator

import (
	"context"
	"errors"
	"slices"
	"sync"

	"github.com/ringkv/ringkv/consensus"
	"github.com/ringkv/ringkv/replica"
)

// Read-only transactions across partitions do not lock (docs/ARCHITECTURE.md,
// "Multi-key reads"): every key is read linearizably on its leader (intent
// aware: a key under a PENDING intent answers its value before the
// transaction, one under a COMMITTED one the committed value), noting its
// version, then every key again. If no version changed, each key held
// its value from its first read to its second, so all of them held their
// values together at the instant between the two passes, which lies
// inside the call (versions never repeat): the compares are judged and
// the gets answered from that snapshot. A change means a write landed in
// between; after snapshotTries such tries the transaction runs through
// prepare and commit like any other, where it cannot starve.

// snapshotTries bounds the double reads of a read-only transaction
// before it falls back to the locking protocol.
const snapshotTries = 3

// snapshotParallelism bounds the keys one pass reads at once.
const snapshotParallelism = 32

// keyRead is one key as one pass read it.
type keyRead struct {
	rec   replica.Record
	found bool
	err   error
}

// sameVersion reports whether two reads of a key found the same version.
// An absent key has one too: its tombstone's or expired record's
// timestamp, 0 when it has no record. Two absent reads of a key written
// and deleted between them differ, so the snapshot is not answered from
// them.
func (k keyRead) sameVersion(o keyRead) bool {
	return k.found == o.found && k.rec.Timestamp == o.rec.Timestamp
}

// readPass reads every key linearizably, concurrently. With local set, a
// key whose partition this node replicates is read from the local replica
// instead (localRead), without a round to its leader.
func (c *Coordinator) readPass(ctx context.Context, keys [][]byte, local bool, pass int) ([]keyRead, error) {
	hook := c.hooks.snapshotRead
	out := make([]keyRead, len(keys))
	sem := make(chan struct{}, snapshotParallelism)
	var wg sync.WaitGroup
	for i, k := range keys {
		wg.Add(1)
		sem <- struct{}{}
		go func() {
			defer wg.Done()
			defer func() { <-sem }()
			if hook != nil {
				hook(pass, k, false)
				defer hook(pass, k, true)
			}
			if local {
				if rec, found, ok := c.localRead(k); ok {
					out[i] = keyRead{rec: rec, found: found}
					return
				}
			}
			rec, found, err := c.linGet(ctx, k)
			out[i] = keyRead{rec: rec, found: found, err: err}
		}()
	}
	wg.Wait()
	for _, r := range out {
		if r.err != nil {
			return nil, r.err
		}
	}
	return out, nil
}

// localRead reads key from this node's replica of its partition, without
// Raft and without looking at intents: ok false when this node does not
// replicate the partition or the read fails. The first pass of a double
// read uses it. Its answer may be stale, but it is a version the key held
// at some instant before the read (a replica applies only what its group
// committed; a record under an intent is the value before the
// transaction), and the second pass is linearizable: when it finds the
// same version, the key held it from that instant through the second
// read, so all the keys still held their versions together at the
// instant between the two passes. A stale first read only costs a third
// pass.
func (c *Coordinator) localRead(key []byte) (rec replica.Record, found, ok bool) {
	p, replicas, err := c.placement("get", key, Linearizable)
	if err != nil || c.deps.Store == nil || !slices.Contains(replicas, c.cfg.NodeID) {
		return rec, false, false
	}
	rec, err = c.deps.Store.Get(p, key)
	switch {
	case errors.Is(err, replica.ErrNotFound):
		return replica.Record{}, false, true
	case err != nil:
		return rec, false, false
	}
	return rec, !rec.Tombstone && rec.Live(c.now()), true
}

// snapshotTxn answers the read-only transaction t from a double read. ok
// false (and no error) says every try saw a write land between its
// passes: run t through the locking protocol instead.
func (c *Coordinator) snapshotTxn(ctx context.Context, t *consensus.Txn) (res consensus.TxnResult, ok bool, err error) {
	keys := t.Keys()
	first, err := c.readPass(ctx, keys, true, 1)
	if err != nil {
		return res, false, err
	}
	for try := range snapshotTries {
		second, err := c.readPass(ctx, keys, false, try+2)
		if err != nil {
			return res, false, err
		}
		same := true
		for i := range keys {
			if !first[i].sameVersion(second[i]) {
				same = false
				break
			}
		}
		if same {
			reads := make(map[string]consensus.KeyRead, len(keys))
			for i, k := range keys {
				reads[string(k)] = consensus.KeyRead{Found: second[i].found, Record: second[i].rec}
			}
			res, err := consensus.EvaluateReads(t, reads, c.now())
			if err != nil {
				return res, false, txnError(err)
			}
			c.metrics.snapshotReads.WithLabelValues("ok").Inc()
			return res, true, nil
		}
		c.metrics.snapshotReads.WithLabelValues("changed").Inc()
		first = second
	}
	return res, false, nil
}
