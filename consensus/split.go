package consensus

import (
	"bufio"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"slices"
	"sync"
	"time"

	"github.com/hashicorp/raft"

	"github.com/ringkv/ringkv/ring"
)

// A partition split in the Raft tier (docs/ARCHITECTURE.md, "Partition
// split", step 4). When the ring doubles P, the leader of each parent
// group proposes one command, opSplit, naming the group's voters. Every
// replica applies it at the same index: it records the split, and each
// replica among those voters starts the two child groups (ids
// ring.ChildIDs) from a snapshot at index 1 of what its store holds of
// each child's keys, with those voters as configuration. Each replica has
// then applied every entry the parent committed before the split, so
// whichever voter a child elects holds them all. From the split index on
// the parent applies nothing more: every later command, and every read
// or proposal on it, answers ErrSplit, and the coordinator retries under
// the new ring. A child's history starts with that snapshot, so any
// replica that starts the child empty (a parent non-voter, a replica the
// ring adds later) is sent the snapshot before any entry. A replica that
// learns of the split from a snapshot of the parent (it was behind)
// finds it in the snapshot's trailer and does the same.

// SplitWireVersion is the wire protocol version that brings partition
// splits: the ring's format for a split ring and the opSplit command. A
// leader proposes opSplit only while every member speaks it.
const SplitWireVersion = 4

// ErrSplit is returned by every operation on a group whose partition has
// split: nothing was applied; retry on the partition's child under the
// ring that split it.
var ErrSplit = errors.New("consensus: the partition has split; retry under the new ring")

// opSplit is the split command: version | opSplit | uvarint n | n x
// (uvarint len(id) | id), the voters sorted.
const opSplit byte = 3

// splitInfo is a group's split: the index of its opSplit entry and the
// voters it named.
type splitInfo struct {
	index  uint64
	voters []string
}

func encodeSplit(voters []string) []byte {
	b := []byte{commandVersion, opSplit}
	return appendVoters(b, voters)
}

func appendVoters(b []byte, voters []string) []byte {
	b = binary.AppendUvarint(b, uint64(len(voters)))
	for _, v := range voters {
		b = binary.AppendUvarint(b, uint64(len(v)))
		b = append(b, v...)
	}
	return b
}

func isSplit(data []byte) bool {
	return len(data) >= 2 && data[0] == commandVersion && data[1] == opSplit
}

func decodeSplit(b []byte) ([]string, error) {
	if !isSplit(b) {
		return nil, fmt.Errorf("%w: not a split", ErrCorruptCommand)
	}
	voters, rest, err := decodeVoters(b[2:])
	if err != nil {
		return nil, err
	}
	if len(rest) != 0 {
		return nil, fmt.Errorf("%w: %d bytes after the split", ErrCorruptCommand, len(rest))
	}
	return voters, nil
}

func decodeVoters(b []byte) ([]string, []byte, error) {
	n, w := binary.Uvarint(b)
	if w <= 0 || n == 0 || n > uint64(len(b)) {
		return nil, nil, fmt.Errorf("%w: bad voter count", ErrCorruptCommand)
	}
	b = b[w:]
	voters := make([]string, 0, n)
	for range n {
		v, rest, err := decodeBytes(b)
		if err != nil {
			return nil, nil, err
		}
		if len(v) == 0 {
			return nil, nil, fmt.Errorf("%w: empty voter", ErrCorruptCommand)
		}
		voters = append(voters, string(v))
		b = rest
	}
	return voters, b, nil
}

// Snapshot trailer, after the records' terminator: splitTrailer | uvarint
// index | voters (appendVoters). A snapshot without it ends at the
// terminator, so older binaries read both.
const splitTrailer byte = 1

func appendSplitTrailer(b []byte, info *splitInfo) []byte {
	b = append(b, splitTrailer)
	b = binary.AppendUvarint(b, info.index)
	return appendVoters(b, info.voters)
}

// readSplitTrailer reads what follows a snapshot's terminator: nil if
// nothing does.
func readSplitTrailer(r *bufio.Reader) (*splitInfo, error) {
	kind, err := r.ReadByte()
	if errors.Is(err, io.EOF) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("read snapshot trailer: %w", err)
	}
	if kind != splitTrailer {
		return nil, fmt.Errorf("%w: snapshot trailer kind %d", ErrCorruptCommand, kind)
	}
	rest, err := io.ReadAll(io.LimitReader(r, 1<<20))
	if err != nil {
		return nil, fmt.Errorf("read snapshot trailer: %w", err)
	}
	index, w := binary.Uvarint(rest)
	if w <= 0 || index == 0 {
		return nil, fmt.Errorf("%w: bad split index in snapshot trailer", ErrCorruptCommand)
	}
	voters, tail, err := decodeVoters(rest[w:])
	if err != nil {
		return nil, err
	}
	if len(tail) != 0 {
		return nil, fmt.Errorf("%w: %d bytes after the snapshot trailer", ErrCorruptCommand, len(tail))
	}
	return &splitInfo{index: index, voters: voters}, nil
}

// Split reports whether the group's partition has split here (its opSplit
// entry is applied) and at which index.
func (g *Group) Split() (index uint64, ok bool) {
	if s := g.fsm.split.Load(); s != nil {
		return s.index, true
	}
	return 0, false
}

// proposeSplit proposes opSplit with the group's current voters. The
// leader calls it when the ring has split past the group's level.
func (g *Group) proposeSplit(ctx context.Context) error {
	if _, ok := g.Split(); ok {
		return nil
	}
	cf := g.raft.GetConfiguration()
	if err := cf.Error(); err != nil {
		return fmt.Errorf("consensus: group %d: get configuration: %w", g.id, err)
	}
	var voters []string
	for _, s := range cf.Configuration().Servers {
		if s.Suffrage == raft.Voter {
			voters = append(voters, string(s.ID))
		}
	}
	if len(voters) == 0 {
		return fmt.Errorf("consensus: group %d has no voters to split with", g.id)
	}
	slices.Sort(voters)
	err := g.proposeData(ctx, encodeSplit(voters))
	if errors.Is(err, ErrSplit) {
		return nil // a split applied before this one
	}
	return err
}

// splitParents proposes the split of every group this node leads whose
// partition the ring has split past (its level is below the ring's P), if
// every member speaks SplitWireVersion.
func (mg *Manager) splitParents(ctx context.Context, r *ring.Ring) {
	if r == nil || r.Partitions() == r.Base() {
		return
	}
	if mg.deps.Features != nil && !mg.deps.Features.SpeaksWire(SplitWireVersion) {
		return
	}
	// Every group at once (each proposal waits for its commit): one
	// after another, 64 groups took 1.5 s, and their keys waited.
	var wg sync.WaitGroup
	sem := make(chan struct{}, 32)
	for _, g := range mg.Groups() {
		if g.raft.State() != raft.Leader {
			continue
		}
		if _, done := g.Split(); done {
			continue
		}
		if lvl := r.LevelOf(g.id); lvl == 0 || lvl >= r.Partitions() {
			continue
		}
		sem <- struct{}{}
		wg.Go(func() {
			defer func() { <-sem }()
			cctx, cancel := context.WithTimeout(ctx, 5*time.Second)
			err := g.proposeSplit(cctx)
			cancel()
			if err != nil {
				mg.log.Log(ctx, reconcileErrLevel(err), "propose partition split", "group_id", g.id, "err", err)
				return
			}
			idx, _ := g.Split()
			mg.log.Info("partition split", "group_id", g.id, "children", r.ChildIDs(g.id), "index", idx)
		})
	}
	wg.Wait()
}

// splitApplied is the parent's FSM telling the Manager that the split
// entry (or a snapshot carrying it) is applied here. It runs on the
// parent's FSM goroutine (or within raft.NewRaft, restoring a snapshot),
// so the children are started on a goroutine of their own: what they
// start from is the store, which holds at least the parent's state at the
// split index from now on. The goroutines of every parent's split run at
// once (each child reserved, not under createMu): a child's start writes
// and syncs its first snapshot, and one after another the children of 64
// parents took 4 s.
func (mg *Manager) splitApplied(parent uint32, info *splitInfo, via string) {
	mg.m.splitsApplied.WithLabelValues(via).Inc()
	mg.log.Info("partition split applied", "group_id", parent, "index", info.index, "voters", info.voters, "via", via)
	if !slices.Contains(info.voters, mg.cfg.NodeID) {
		return // the child's leader sends its snapshot once the ring adds this node
	}
	mg.mu.Lock()
	if mg.mu.closed {
		mg.mu.Unlock()
		return
	}
	mg.wg.Add(1) // before closed is set, so before Close waits
	mg.mu.Unlock()
	go func() {
		defer mg.wg.Done()
		if err := mg.startChildren(parent, info); err != nil {
			mg.log.Error("start the child groups of a split", "group_id", parent, "err", err)
		}
	}()
}

// startChildren starts the children of parent this node neither runs nor
// is starting, from info.
func (mg *Manager) startChildren(parent uint32, info *splitInfo) error {
	r := mg.deps.Ring.Ring()
	if r == nil || r.LevelOf(parent) == 0 {
		return fmt.Errorf("consensus: no ring names partition %d", parent)
	}
	for _, c := range r.ChildIDs(parent) {
		if !mg.reserve(c) {
			continue
		}
		err := mg.startChild(c, info.voters)
		mg.unreserve(c)
		if err != nil {
			return err
		}
	}
	return nil
}

// startChild starts child group c from a snapshot at index 1, term 1,
// of the child's keys in the store, with voters as its configuration, as
// raft.BootstrapCluster starts a group from a configuration entry. It
// does nothing to a group with state: a restart, or a second apply of the
// split after a restart, finds the child's own state.
func (mg *Manager) startChild(c uint32, voters []string) error {
	st, err := mg.openState(c)
	if err != nil {
		return err
	}
	if !st.has {
		cfg := raft.Configuration{}
		for _, v := range voters {
			cfg.Servers = append(cfg.Servers, raft.Server{Suffrage: raft.Voter, ID: raft.ServerID(v), Address: raft.ServerAddress(v)})
		}
		// As BootstrapCluster: the term of the first entry is 1.
		if err := st.stable.SetUint64([]byte("CurrentTerm"), 1); err != nil {
			return fmt.Errorf("consensus: start group %d: %w", c, err)
		}
		sink, err := st.snaps.Create(raft.SnapshotVersionMax, 1, 1, cfg, 1, mg.deps.Transports.Group(c))
		if err != nil {
			return fmt.Errorf("consensus: first snapshot of group %d: %w", c, err)
		}
		if err := (&snapshot{group: c, store: mg.deps.Store}).Persist(sink); err != nil {
			return err
		}
	}
	return mg.startGroup(c, false, st.logs, st.stable)
}

// awaitParent says whether child, whose parent is parent, must wait for
// the parent's split before it starts here (ensureGroups; the caller
// holds createMu). It starts what can be started: the child itself, from
// the split, if this node is one of the split's voters; the parent, if
// this node holds its state but does not run it (after a restart), so
// that it applies the split. A child with state of its own, or with no
// parent here, need not wait.
func (mg *Manager) awaitParent(child, parent uint32) (bool, error) {
	st, err := mg.openState(child)
	if err != nil {
		return true, err
	}
	if st.has {
		return false, nil // started as any group with state
	}
	if g, ok := mg.Group(parent); ok {
		info := g.fsm.split.Load()
		switch {
		case info == nil:
			return true, nil
		case slices.Contains(info.voters, mg.cfg.NodeID):
			return true, mg.startChildren(parent, info)
		default:
			return false, nil
		}
	}
	pst, err := mg.openState(parent)
	if err != nil {
		return true, err
	}
	if !pst.has {
		return false, nil // no parent here: the child starts empty
	}
	mg.log.Info("starting a split partition's group to apply its split", "group_id", parent)
	return true, mg.startGroup(parent, false, pst.logs, pst.stable)
}

// groupState is a group's raft storage on this node, and whether it holds
// any state.
type groupState struct {
	logs   raft.LogStore
	stable raft.StableStore
	snaps  raft.SnapshotStore
	has    bool
}

// openState opens group id's raft storage, as startGroup finds it.
func (mg *Manager) openState(id uint32) (groupState, error) {
	logs, stable, err := mg.deps.Logs(id)
	if err != nil {
		return groupState{}, fmt.Errorf("consensus: open log of group %d: %w", id, err)
	}
	snaps, err := mg.snapshotStore(id, newHCLogger(mg.log.With("group_id", id)))
	if err != nil {
		return groupState{}, err
	}
	has, err := raft.HasExistingState(logs, stable, snaps)
	if err != nil {
		return groupState{}, fmt.Errorf("consensus: inspect group %d: %w", id, err)
	}
	return groupState{logs: logs, stable: stable, snaps: snaps, has: has}, nil
}

// ownsKey reports whether key belongs to the group's partition. The
// store's scans of a split partition keep the cluster's own records of
// both children of their storage partition (replica.Store.Scan), so a
// group judges an intent by the key it guards, and a write of a
// transaction by its key (its Partition may name this partition's parent).
// Without a ring (tests of one group) every key is the group's.
func (g *Group) ownsKey(key []byte) bool {
	if g.ring == nil {
		return true
	}
	r := g.ring.Ring()
	return r == nil || r.KeyIn(g.id, key)
}

// ownsRecord reports whether a transaction record stored by this group's
// storage partition under key is this group's to decide and sweep: the
// partition ring.Ring.RecordOwner names, the group itself until a split.
func (g *Group) ownsRecord(key []byte) bool {
	if g.ring == nil {
		return true
	}
	r := g.ring.Ring()
	return r == nil || r.RecordOwner(g.id, key) == g.id
}

// TxnRecordKey returns the reserved key of transaction id's record, which
// lives in its anchor's partition (ring.Ring.RecordOwner places it after
// a split).
func TxnRecordKey(id TxnID) []byte { return txnRecordKey(id) }
