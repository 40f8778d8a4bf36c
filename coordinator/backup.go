package coordinator

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"time"

	"storj.io/drpc/drpcerr"

	"github.com/ringkv/ringkv/auth"
	"github.com/ringkv/ringkv/proto/kvpb"
	"github.com/ringkv/ringkv/replica"
)

// ErrNoBackupSession is returned (wrapped with ErrInvalidArgument) by the
// Backup service for a session id that is unknown: never begun, ended, or
// its lease expired.
var ErrNoBackupSession = errors.New("coordinator: no such backup session (ended, or its lease expired)")

// BackupConfig tunes a BackupServer. Zero fields take their defaults.
type BackupConfig struct {
	// DefaultLease is how long a session lives without a call naming it,
	// when Begin asks for none. Default 60s. Longer survives a slower
	// client; a crashed client's snapshot is held that long.
	DefaultLease time.Duration
	// MaxLease caps the lease Begin may ask for. Default 10m.
	MaxLease time.Duration
	// MaxSessions bounds the sessions open at once on this node; Begin
	// beyond it is refused as unavailable. Default 8. Each holds a Badger
	// read snapshot, which keeps old versions from compaction.
	MaxSessions int
	// MaxScanRecords bounds the records one Scan call reads (returned or
	// filtered out), so that an incremental scan of a large partition
	// answers in pages too. Default 65536.
	MaxScanRecords int
	// RestoreTimeout bounds one Restore call when its context has no
	// deadline. Default 30s.
	RestoreTimeout time.Duration
	// Logger receives lifecycle logs; nil discards.
	Logger *slog.Logger
}

// DefaultBackupConfig returns a fresh BackupConfig with every default.
func DefaultBackupConfig() BackupConfig {
	return BackupConfig{
		DefaultLease:   60 * time.Second,
		MaxLease:       10 * time.Minute,
		MaxSessions:    8,
		MaxScanRecords: 65536,
		RestoreTimeout: 30 * time.Second,
	}
}

// Validate reports every problem with c, joined. Zero fields are valid.
func (c BackupConfig) Validate() error {
	var errs []error
	for _, f := range []struct {
		name string
		v    int64
	}{
		{"DefaultLease", int64(c.DefaultLease)},
		{"MaxLease", int64(c.MaxLease)},
		{"MaxSessions", int64(c.MaxSessions)},
		{"MaxScanRecords", int64(c.MaxScanRecords)},
		{"RestoreTimeout", int64(c.RestoreTimeout)},
	} {
		if f.v < 0 {
			errs = append(errs, fmt.Errorf("coordinator: backup %s is negative (%d)", f.name, f.v))
		}
	}
	if c.DefaultLease > 0 && c.MaxLease > 0 && c.DefaultLease > c.MaxLease {
		errs = append(errs, fmt.Errorf("coordinator: backup DefaultLease %v exceeds MaxLease %v", c.DefaultLease, c.MaxLease))
	}
	return errors.Join(errs...)
}

func (c BackupConfig) withDefaults() BackupConfig {
	d := DefaultBackupConfig()
	if c.DefaultLease == 0 {
		c.DefaultLease = d.DefaultLease
	}
	if c.MaxLease == 0 {
		c.MaxLease = max(d.MaxLease, c.DefaultLease)
	}
	if c.MaxSessions == 0 {
		c.MaxSessions = d.MaxSessions
	}
	if c.MaxScanRecords == 0 {
		c.MaxScanRecords = d.MaxScanRecords
	}
	if c.RestoreTimeout == 0 {
		c.RestoreTimeout = d.RestoreTimeout
	}
	if c.Logger == nil {
		c.Logger = slog.New(slog.DiscardHandler)
	}
	return c
}

// Scan page bounds when a request gives none.
const (
	defaultBackupScanLimit = 1024
	defaultBackupScanBytes = 2 << 20
	maxBackupScanBytes     = 3 << 20 // under drpc's 4 MiB message limit
	// maxRestoreRecords bounds the records of one Restore call.
	maxRestoreRecords = 16384
)

// BackupServer serves the Backup drpc service (kvpb.DRPCBackupServer):
// backup sessions over pinned snapshots of this node's replica store, and
// Restore, which merges records with their own timestamps into the
// replicas the ring places them on. Every call needs auth.OpAdmin (Deps.Auth
// of the Coordinator decides; nil allows). It is safe for concurrent use.
//
// A session is one replica.Snapshot with an idle lease: a timer
// (time.AfterFunc, no goroutine of ours) that ends the session unless a
// Scan or Renew naming it comes first. End and Close end sessions at once.
type BackupServer struct {
	c   *Coordinator
	cfg BackupConfig
	log *slog.Logger

	mu struct {
		sync.Mutex
		sessions map[string]*backupSession
		closed   bool
	}
}

type backupSession struct {
	id    string
	snap  *replica.Snapshot
	lease time.Duration
	timer *time.Timer // ends the session when the lease runs out
	// deadline is when the lease runs out; guarded by BackupServer.mu.
	deadline time.Time
}

// NewBackupServer returns a Backup service over c's store and ring. It
// returns the Validate errors of cfg.
func NewBackupServer(c *Coordinator, cfg BackupConfig) (*BackupServer, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	cfg = cfg.withDefaults()
	s := &BackupServer{c: c, cfg: cfg, log: cfg.Logger}
	s.mu.sessions = make(map[string]*backupSession)
	return s, nil
}

// Close ends every session and refuses new ones. Call it before closing
// the store. Idempotent.
func (s *BackupServer) Close() error {
	s.mu.Lock()
	sessions := s.mu.sessions
	s.mu.sessions = map[string]*backupSession{}
	s.mu.closed = true
	s.mu.Unlock()
	for _, ss := range sessions {
		ss.timer.Stop()
		ss.snap.Close()
	}
	return nil
}

// Sessions returns how many backup sessions are open.
func (s *BackupServer) Sessions() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return len(s.mu.sessions)
}

// backupError gives err its drpc code: the Client service's ErrorCode
// (clientCode is the one table), as Login answers refusals.
func backupError(err error, isWrite bool) error {
	return drpcerr.WithCode(err, uint64(clientCode(err, Quorum, isWrite))) //nolint:gosec // codes are small
}

// Begin pins a snapshot of the store and opens a session over it. The
// answer's hlc is the node's clock read after the pin: above every
// timestamp in the snapshot.
func (s *BackupServer) Begin(ctx context.Context, req *kvpb.BackupBeginRequest) (*kvpb.BackupBeginResponse, error) {
	if err := s.c.allow(ctx, auth.OpAdmin, nil); err != nil {
		return nil, backupError(err, false)
	}
	lease := s.cfg.DefaultLease
	if ms := req.GetLeaseMillis(); ms > 0 {
		lease = min(time.Duration(min(ms, uint64(s.cfg.MaxLease/time.Millisecond)))*time.Millisecond, s.cfg.MaxLease) //nolint:gosec // capped
	}
	s.mu.Lock()
	full := len(s.mu.sessions) >= s.cfg.MaxSessions
	closed := s.mu.closed
	s.mu.Unlock()
	switch {
	case closed:
		return nil, backupError(ErrClosed, false)
	case full:
		return nil, backupError(&UnavailableError{Op: "backup", Level: Quorum, Cause: fmt.Errorf("%d backup sessions open on this node, the most allowed", s.cfg.MaxSessions)}, false)
	}
	snap, err := s.c.deps.Store.Snapshot(ctx)
	if err != nil {
		return nil, backupError(fmt.Errorf("backup: pin snapshot: %w", err), false)
	}
	hlc := s.c.deps.Clock.Now()
	var raw [16]byte
	_, _ = rand.Read(raw[:]) // crypto/rand.Read never fails
	ss := &backupSession{id: hex.EncodeToString(raw[:]), snap: snap, lease: lease}
	s.mu.Lock()
	if s.mu.closed {
		s.mu.Unlock()
		snap.Close()
		return nil, backupError(ErrClosed, false)
	}
	s.mu.sessions[ss.id] = ss
	ss.deadline = time.Now().Add(lease)
	ss.timer = time.AfterFunc(lease, func() { s.expire(ss) })
	s.mu.Unlock()
	s.log.Info("backup session begun", "session", ss.id, "lease", lease, "hlc", uint64(hlc))
	return &kvpb.BackupBeginResponse{SessionId: ss.id, NodeId: s.c.cfg.NodeID, Hlc: uint64(hlc), SnapshotVersion: snap.Version()}, nil
}

// expire ends ss when its lease ran out, unless it was renewed meanwhile
// (a renewal racing the timer's firing moved the deadline; the timer was
// reset and fires again).
func (s *BackupServer) expire(ss *backupSession) {
	s.mu.Lock()
	if s.mu.sessions[ss.id] != ss || time.Now().Before(ss.deadline) {
		s.mu.Unlock()
		return
	}
	delete(s.mu.sessions, ss.id)
	s.mu.Unlock()
	ss.snap.Close()
	s.log.Warn("backup session lease expired", "session", ss.id, "lease", ss.lease)
}

// session returns the session named id with its lease renewed.
func (s *BackupServer) session(id string) (*backupSession, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	ss, ok := s.mu.sessions[id]
	if !ok {
		return nil, fmt.Errorf("%w: %w", ErrInvalidArgument, ErrNoBackupSession)
	}
	ss.deadline = time.Now().Add(ss.lease)
	ss.timer.Reset(ss.lease)
	return ss, nil
}

// Renew extends a session's lease.
func (s *BackupServer) Renew(ctx context.Context, req *kvpb.BackupRenewRequest) (*kvpb.BackupRenewResponse, error) {
	if err := s.c.allow(ctx, auth.OpAdmin, nil); err != nil {
		return nil, backupError(err, false)
	}
	if _, err := s.session(req.GetSessionId()); err != nil {
		return nil, backupError(err, false)
	}
	return &kvpb.BackupRenewResponse{}, nil
}

// End ends a session and releases its snapshot. Ending an unknown session
// succeeds (it may have expired).
func (s *BackupServer) End(ctx context.Context, req *kvpb.BackupEndRequest) (*kvpb.BackupEndResponse, error) {
	if err := s.c.allow(ctx, auth.OpAdmin, nil); err != nil {
		return nil, backupError(err, false)
	}
	s.mu.Lock()
	ss, ok := s.mu.sessions[req.GetSessionId()]
	delete(s.mu.sessions, req.GetSessionId())
	s.mu.Unlock()
	if ok {
		ss.timer.Stop()
		ss.snap.Close()
		s.log.Info("backup session ended", "session", ss.id)
	}
	return &kvpb.BackupEndResponse{}, nil
}

// Scan reads one page of a partition from a session's snapshot (see
// kvpb.BackupScanRequest): records in key order from start whose
// timestamp t has t <= until and either t > since or a commit version
// above after_version (an incremental backup's base snapshot on this
// node), reserved keys left out.
func (s *BackupServer) Scan(ctx context.Context, req *kvpb.BackupScanRequest) (*kvpb.BackupScanResponse, error) {
	if err := s.c.allow(ctx, auth.OpAdmin, nil); err != nil {
		return nil, backupError(err, false)
	}
	ss, err := s.session(req.GetSessionId())
	if err != nil {
		return nil, backupError(err, false)
	}
	limit := int(req.GetLimit())
	if limit <= 0 {
		limit = defaultBackupScanLimit
	}
	maxBytes := int64(req.GetMaxBytes()) //nolint:gosec // capped below
	if maxBytes <= 0 {
		maxBytes = defaultBackupScanBytes
	}
	maxBytes = min(maxBytes, maxBackupScanBytes)
	since, until := replica.Timestamp(req.GetSince()), replica.Timestamp(req.GetUntil())
	afterVersion := req.GetAfterVersion()
	resp := &kvpb.BackupScanResponse{}
	var size int64
	scanned := 0
	err = ss.snap.Scan(req.GetPartition(), req.GetStart(), func(key []byte, rec replica.Record, version uint64) bool {
		if len(resp.Records) >= limit || scanned >= s.cfg.MaxScanRecords || (size >= maxBytes && len(resp.Records) > 0) {
			resp.Next = key
			return false
		}
		scanned++
		newer := rec.Timestamp > since || (afterVersion > 0 && version > afterVersion)
		if IsReserved(key) || !newer || (until != 0 && rec.Timestamp > until) {
			return true
		}
		size += int64(len(key) + len(rec.Value))
		resp.Records = append(resp.Records, &kvpb.KeyedRecord{Partition: req.GetPartition(), Key: key, Record: recordToWire(rec)})
		return true
	})
	if err != nil {
		return nil, backupError(fmt.Errorf("backup scan: %w", err), false)
	}
	resp.Scanned = uint64(scanned) //nolint:gosec // a count
	return resp, nil
}

// Restore merges the request's records, each with its own timestamp, into
// the replicas this node's ring places its key on, and answers once a
// quorum of every key's replicas has it durably. Replicas that failed get
// it later from anti-entropy (no hints: a restore is retried whole).
// Records older than what a replica holds change nothing there (LWW), so
// a restore is idempotent and never undoes a newer write. The clock
// observes every timestamp, so later writes stamp after the restored
// records.
func (s *BackupServer) Restore(ctx context.Context, req *kvpb.RestoreRequest) (*kvpb.RestoreResponse, error) {
	if err := s.c.allow(ctx, auth.OpAdmin, nil); err != nil {
		return nil, backupError(err, true)
	}
	// A draining node takes no new writes: the client sends the batch to
	// another node. Backup sessions (reads) go on while it drains.
	if !s.c.gate.enter() {
		return nil, backupError(ErrDraining, true)
	}
	defer s.c.gate.exit()
	if err := s.restore(ctx, req.GetRecords()); err != nil {
		return nil, backupError(err, true)
	}
	return &kvpb.RestoreResponse{}, nil
}

func (s *BackupServer) restore(ctx context.Context, records []*kvpb.KeyedRecord) error {
	c := s.c
	if c.closed.Load() {
		return ErrClosed
	}
	if len(records) > maxRestoreRecords {
		return fmt.Errorf("%w: %d records in one restore call, limit %d", ErrInvalidArgument, len(records), maxRestoreRecords)
	}
	r := c.deps.Ring.Ring()
	if r == nil || r.ActiveCount() == 0 {
		return &UnavailableError{Op: "restore", Level: Quorum, Required: 1, Cause: errors.New("node has not joined a ring yet")}
	}
	byNode := map[string][]replica.Entry{}
	owners := map[string][]int{} // node -> indexes of the records it holds
	need := make([]int, len(records))
	for i, kr := range records {
		key := kr.GetKey()
		switch {
		case len(key) == 0 || kr.GetRecord() == nil:
			return fmt.Errorf("%w: record %d has no key or no record", ErrInvalidArgument, i)
		case len(key) > c.cfg.MaxKeyBytes:
			return fmt.Errorf("%w: record %d: key is %d bytes, limit %d", ErrInvalidArgument, i, len(key), c.cfg.MaxKeyBytes)
		case len(kr.GetRecord().GetValue()) > c.cfg.MaxValueBytes:
			return fmt.Errorf("%w: record %d: value is %d bytes, limit %d", ErrInvalidArgument, i, len(kr.GetRecord().GetValue()), c.cfg.MaxValueBytes)
		case IsReserved(key):
			return fmt.Errorf("%w: record %d", errReservedKey, i)
		}
		rec := recordFromWire(kr.GetRecord())
		if err := c.deps.Clock.Update(rec.Timestamp); err != nil {
			return fmt.Errorf("%w: record %d: %w", ErrInvalidArgument, i, err)
		}
		id := r.IDOf(key)
		replicas := r.ReplicasOf(id)
		need[i] = Quorum.required(len(replicas))
		for _, node := range replicas {
			byNode[node] = append(byNode[node], replica.Entry{Partition: id, Key: key, Record: rec})
			owners[node] = append(owners[node], i)
		}
	}
	if _, ok := ctx.Deadline(); !ok {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, s.cfg.RestoreTimeout)
		defer cancel()
	}
	// One merge per replica node, all at once: at most the cluster's size.
	type result struct {
		node string
		err  error
	}
	results := make(chan result, len(byNode))
	var wg sync.WaitGroup
	for node, entries := range byNode {
		wg.Add(1)
		go func() {
			defer wg.Done()
			results <- result{node, c.mergeInto(ctx, node, entries)}
		}()
	}
	wg.Wait()
	close(results)
	acks := make([]int, len(records))
	var last error
	for res := range results {
		if res.err != nil {
			last = res.err
			s.log.Debug("restore merge failed", "peer", res.node, "err", res.err)
			continue
		}
		for _, i := range owners[res.node] {
			acks[i]++
		}
	}
	for i := range records {
		if acks[i] < need[i] {
			return &UnavailableError{Op: "restore", Level: Quorum, Required: need[i], Answered: acks[i], Replicas: len(r.ReplicasOf(r.IDOf(records[i].GetKey()))), Cause: last}
		}
	}
	return nil
}
