package node

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"strconv"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/ringkv/ringkv/consensus"
)

// Disks that fill up or stall
//
// The replica store refuses admitted writes (client and repair merges,
// Raft log appends, hints) with replica.ErrDiskFull while its data
// directory is (nearly) full or after a failed write, and stops
// acknowledging durable writes after a failed fsync (replica/space.go).
// watchDisk turns that, and an fsync that runs longer than
// Config.DiskStallTimeout, into what the cluster sees:
//
//   - /ready answers 503 with "disk" naming the reason, and the node
//     advertises draining in its gossip metadata: no leader hands it
//     leadership, other coordinators read from it last and clients send
//     their requests elsewhere;
//   - leadership of every Raft group it leads goes to another voter
//     (consensus.Manager.HandOff), and while the disk is bad the reconcile
//     loop hands on any group that elects it again. A transfer waits for
//     a barrier, which a stalled fsync holds up, so each Raft log store
//     also refuses appends while an fsync has run longer than
//     DiskStallTimeout (consensus.ErrSyncStalled): a leader steps down at
//     its next write, and its followers elect another;
//   - ringkv_node_disk_unhealthy is 1.
//
// Reads are served throughout, and client writes it coordinates still
// reach the other replicas (a QUORUM write needs two of three). Once the
// store admits writes again (space freed) and no fsync stalls, all of it
// is undone, unless an operator drain (Drain) is in effect. A failed
// fsync is only undone by a restart.

func newDiskGauge() prometheus.Gauge {
	return prometheus.NewGauge(prometheus.GaugeOpts{
		Namespace: "ringkv", Subsystem: "node", Name: "disk_unhealthy",
		Help: "1 while the node refuses writes and hands leadership away because its disk is full, failed a write or fsync, or stalls an fsync beyond --disk-stall-timeout; else 0.",
	})
}

// diskWatchInterval is how often watchDisk looks at the store's disk state.
const diskWatchInterval = 100 * time.Millisecond

// DiskHealth is the node's view of its disk (GET /ready's "disk").
type DiskHealth struct {
	// Healthy: writes are admitted and no fsync stalls.
	Healthy bool `json:"healthy"`
	// Reason says why the disk is not healthy; empty when it is.
	Reason string `json:"reason,omitempty"`
	// FreeBytes is the data directory's free space at the last check; -1
	// if unknown.
	FreeBytes int64 `json:"free_bytes"`
}

// diskHealth evaluates the store's disk state against the stall bound.
func (n *Node) diskHealth() DiskHealth {
	st := n.store.DiskState()
	// The Raft WAL is on the same disk: its fdatasync stalls and fails too.
	if n.wal != nil {
		st.SyncStall = max(st.SyncStall, n.wal.SyncStall())
		if err := n.wal.Err(); err != nil && !st.SyncFailed {
			st.SyncFailed, st.Reason = true, "raft WAL: "+err.Error()
		}
	}
	h := DiskHealth{Healthy: true, FreeBytes: st.FreeBytes}
	stall := n.cfg.diskStallTimeout()
	switch {
	case st.SyncFailed:
		h.Healthy, h.Reason = false, "fsync failed (restart the node): "+st.Reason
	case st.Full:
		h.Healthy, h.Reason = false, "insufficient storage: "+st.Reason
	case stall > 0 && st.SyncStall > stall:
		n.stalledAt.Store(time.Now().UnixNano())
		h.Healthy, h.Reason = false, fmt.Sprintf("fsync stalled for %v (over %v)", st.SyncStall.Round(time.Millisecond), stall)
	case stall > 0 && time.Since(time.Unix(0, n.stalledAt.Load())) < stallQuiet*stall:
		// A disk that stalled may stall again at the next fsync: leadership
		// comes back only after a quiet spell.
		h.Healthy, h.Reason = false, fmt.Sprintf("an fsync stalled over %v less than %v ago", stall, stallQuiet*stall)
	}
	return h
}

// diskStallTimeout is DiskStallTimeout with its default filled in.
func (c Config) diskStallTimeout() time.Duration {
	if c.DiskStallTimeout == 0 {
		return DefaultDiskStallTimeout
	}
	return c.DiskStallTimeout
}

// stallQuiet is how many stall bounds must pass without a stalled fsync
// before a disk that stalled counts healthy again.
const stallQuiet = 10

// DiskUnhealthy reports whether watchDisk last found the disk unhealthy.
func (n *Node) DiskUnhealthy() bool { return n.diskBad.Load() }

// watchDisk follows the disk's health every diskWatchInterval until ctx
// ends. Goroutine: one, started by Open.
func (n *Node) watchDisk(ctx context.Context) {
	tick := time.NewTicker(diskWatchInterval)
	defer tick.Stop()
	var handoff atomic.Bool // a HandOff runs
	for {
		h := n.diskHealth()
		switch bad := !h.Healthy; {
		case bad && !n.diskBad.Swap(true):
			n.diskGauge.Set(1)
			n.log.Error("disk unhealthy: refusing writes and handing leadership away", "reason", h.Reason, "free_bytes", h.FreeBytes)
			n.groups.SetDraining(true)
			if err := n.gossip.SetDraining(true); err != nil {
				n.log.Debug("advertise draining", "err", err)
			}
			if !handoff.Swap(true) {
				n.wg.Add(1)
				go func() {
					defer n.wg.Done()
					defer handoff.Store(false)
					hctx, cancel := context.WithTimeout(ctx, 10*time.Second)
					defer cancel()
					if err := n.groups.HandOff(hctx); err != nil && !errors.Is(err, consensus.ErrNoVoter) {
						n.log.Warn("leadership hand-off for an unhealthy disk", "err", err)
					}
				}()
			}
		case !bad && n.diskBad.Load():
			n.diskBad.Store(false)
			n.diskGauge.Set(0)
			n.log.Info("disk healthy again: accepting writes", "free_bytes", h.FreeBytes)
			if !n.Draining() {
				n.groups.SetDraining(false)
				if err := n.gossip.SetDraining(false); err != nil {
					n.log.Debug("advertise end of drain", "err", err)
				}
			}
		}
		select {
		case <-ctx.Done():
			return
		case <-tick.C:
		}
	}
}

// chaosDisk sets the fsync fault of this node's store (test-only,
// Config.ChaosHooks): POST /chaos/disk?sync-delay=5s stalls every fsync
// for that long (0 ends it); ?sync-fail=true fails the next fsyncs
// (sticky in the store: only a restart recovers).
func (n *Node) chaosDisk(w http.ResponseWriter, r *http.Request) {
	q := r.URL.Query()
	if s := q.Get("sync-delay"); s != "" {
		d, err := time.ParseDuration(s)
		if err != nil || d < 0 {
			writeJSON(w, http.StatusBadRequest, map[string]string{"error": fmt.Sprintf("sync-delay %q: want a Go duration >= 0", s)})
			return
		}
		n.syncDelay.Store(int64(d))
	}
	if s := q.Get("sync-fail"); s != "" {
		on, err := strconv.ParseBool(s)
		if err != nil {
			writeJSON(w, http.StatusBadRequest, map[string]string{"error": fmt.Sprintf("sync-fail %q: want true or false", s)})
			return
		}
		n.syncFail.Store(on)
	}
	n.log.Warn("chaos: fsync fault set", "sync_delay", time.Duration(n.syncDelay.Load()), "sync_fail", n.syncFail.Load())
	writeJSON(w, http.StatusOK, map[string]any{"sync_delay": time.Duration(n.syncDelay.Load()).String(), "sync_fail": n.syncFail.Load()})
}

// errChaosSync is the fsync failure POST /chaos/disk?sync-fail=true injects.
var errChaosSync = errors.New("node: chaos: injected fsync failure")

// syncFault is the store's Deps.SyncFault under Config.ChaosHooks: it
// stalls each fsync by the delay set through POST /chaos/disk, or fails it.
func (n *Node) syncFault() error {
	if n.syncFail.Load() {
		return errChaosSync
	}
	if d := time.Duration(n.syncDelay.Load()); d > 0 {
		t := time.NewTimer(d) // the injected stall itself
		defer t.Stop()
		<-t.C
	}
	return nil
}
