package backup

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"os"
	"path/filepath"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"storj.io/drpc"

	"github.com/ringkv/ringkv/client"
	"github.com/ringkv/ringkv/proto/kvpb"
	"github.com/ringkv/ringkv/replica"
)

// Cluster is what backup and restore need of a cluster. *client.Client
// implements it.
type Cluster interface {
	// Topology returns the cluster's layout.
	Topology() (client.Topology, error)
	// Invoke runs fn with an authorized connection to the node at addr.
	Invoke(ctx context.Context, addr string, fn func(ctx context.Context, conn drpc.Conn) error) error
}

// Progress counts a backup's or restore's work; its fields are updated
// while it runs, for a progress line. The zero value is ready.
type Progress struct {
	// Files is the number of files to do; FilesDone those done.
	Files     atomic.Int64
	FilesDone atomic.Int64
	// Records and Bytes count the records written (backup) or merged
	// (restore) and their file bytes.
	Records atomic.Int64
	Bytes   atomic.Int64
}

// Config configures a backup. Zero fields take their defaults.
type Config struct {
	// Dir is the directory to write the backup into, created if missing.
	// It must not hold a backup already. Required.
	Dir string
	// Base makes the backup incremental on top of an earlier backup of
	// the same cluster: only records with an HLC timestamp above the
	// base's T, or committed on their node after the base's snapshot of
	// it (writes in flight when the base was pinned, stamped before its T),
	// are written; tombstones included, so deletions carry over. It sets
	// Since to the base's T.
	Base *Manifest
	// Since is T0 for an incremental backup by timestamp alone: only
	// records with an HLC timestamp above it are written. A write in flight
	// when the base was taken (stamped at or before T0, stored after) is
	// missed: prefer Base. 0 (and no Base): a full backup.
	Since uint64
	// Parallelism is how many partitions are read at once. Default 4.
	// Memory is about Parallelism * replicas * PageBytes.
	Parallelism int
	// PageRecords and PageBytes bound one page of a replica's scan.
	// Defaults 1024 records, 1 MiB.
	PageRecords int
	PageBytes   int64
	// Lease is the backup sessions' idle lease on the nodes. Default 60s.
	// The client renews every session every Lease/4; a session whose
	// client died is released by its node after Lease.
	Lease time.Duration
	// Attempts is how many times one page read is tried before its
	// replica is given up. Default 3.
	Attempts int
	// Progress, if set, is updated as the backup runs.
	Progress *Progress
	// Logger receives warnings (a replica given up) and lifecycle logs;
	// nil discards.
	Logger *slog.Logger
}

// Validate reports every problem with c, joined. Zero fields are valid
// (they take their defaults), but Dir is required.
func (c Config) Validate() error {
	var errs []error
	if c.Dir == "" {
		errs = append(errs, errors.New("backup: Dir is required"))
	}
	if c.Base != nil && c.Since != 0 && c.Since != c.Base.Timestamp {
		errs = append(errs, fmt.Errorf("backup: Since %d disagrees with Base's timestamp %d (give one)", c.Since, c.Base.Timestamp))
	}
	for _, f := range []struct {
		name string
		v    int64
	}{{"Parallelism", int64(c.Parallelism)}, {"PageRecords", int64(c.PageRecords)}, {"PageBytes", c.PageBytes}, {"Lease", int64(c.Lease)}, {"Attempts", int64(c.Attempts)}} {
		if f.v < 0 {
			errs = append(errs, fmt.Errorf("backup: %s is negative (%d)", f.name, f.v))
		}
	}
	return errors.Join(errs...)
}

func (c Config) withDefaults() Config {
	if c.Parallelism <= 0 {
		c.Parallelism = 4
	}
	if c.PageRecords <= 0 {
		c.PageRecords = 1024
	}
	if c.PageBytes <= 0 {
		c.PageBytes = 1 << 20
	}
	if c.Lease <= 0 {
		c.Lease = 60 * time.Second
	}
	if c.Attempts <= 0 {
		c.Attempts = 3
	}
	if c.Progress == nil {
		c.Progress = &Progress{}
	}
	if c.Logger == nil {
		c.Logger = slog.New(slog.DiscardHandler)
	}
	return c
}

// session is one node's backup session.
type session struct {
	node, addr, id string
	// version is the snapshot's commit version on the node; after is the
	// base backup's (0: none).
	version, after uint64
}

// Run takes a backup of the cluster into cfg.Dir and returns its
// manifest. It pins a snapshot on every live member, takes T as the
// greatest of their clocks read after the pins, then reads every
// partition from every replica it pinned (at least a majority of each),
// keeps each key's greatest record with a timestamp in (Since, T] and
// writes one file per partition; the manifest is written last. See
// docs/ARCHITECTURE.md "Backup and restore" for what T guarantees.
//
// Errors: the joined Validate errors; ErrExists; ErrTooFewReplicas; the nodes' refusals as the client
// package's errors (client.ErrPermissionDenied without the admin
// permission); file system errors. A failed backup leaves no manifest.
func Run(ctx context.Context, cl Cluster, cfg Config) (*Manifest, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	cfg = cfg.withDefaults()
	log := cfg.Logger
	if cfg.Base != nil {
		cfg.Since = cfg.Base.Timestamp
	}
	if _, err := os.Stat(filepath.Join(cfg.Dir, ManifestName)); err == nil {
		return nil, fmt.Errorf("%s: %w", cfg.Dir, ErrExists)
	} else if !errors.Is(err, fs.ErrNotExist) {
		return nil, fmt.Errorf("backup: %w", err)
	}
	if err := os.MkdirAll(cfg.Dir, 0o750); err != nil {
		return nil, fmt.Errorf("backup: %w", err)
	}
	topo, err := cl.Topology()
	if err != nil {
		return nil, fmt.Errorf("backup: topology: %w", err)
	}
	started := time.Now().UTC()
	sessions, hlc, err := begin(ctx, cl, topo, cfg)
	defer end(cl, sessions, log)
	if err != nil {
		return nil, err
	}
	if cfg.Since != 0 && cfg.Since >= hlc {
		return nil, fmt.Errorf("backup: since %d is not before the cluster's clock %d", cfg.Since, hlc)
	}
	log.Info("backup pinned", "nodes", len(sessions), "timestamp", replica.Timestamp(hlc).String(), "since", cfg.Since)

	m := &Manifest{
		Format: manifestFormat, Timestamp: hlc, Since: cfg.Since,
		Partitions: topo.Partitions, RingVersion: topo.RingVersion, Started: started,
	}
	m.Versions = map[string]uint64{}
	for id, s := range sessions {
		m.Nodes = append(m.Nodes, s.node)
		m.Versions[s.node] = s.version
		if cfg.Base != nil {
			s.after = cfg.Base.Versions[s.node]
			sessions[id] = s
		}
	}
	slices.Sort(m.Nodes)

	// sessions is read-only from here on: the keep-alive loop and the
	// partition workers share it.
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	var bg sync.WaitGroup
	bg.Add(1)
	go func() { // renews the leases until the backup is done
		defer bg.Done()
		keepAlive(ctx, cl, sessions, cfg.Lease/4, log)
	}()
	defer bg.Wait()
	defer cancel()

	cfg.Progress.Files.Store(int64(topo.Partitions))
	files := make([]FileInfo, topo.Partitions)
	work := make(chan int)
	errc := make(chan error, cfg.Parallelism)
	var wg sync.WaitGroup
	for range cfg.Parallelism {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for p := range work {
				fi, err := backupPartition(ctx, cl, topo.Replicas[p], p, partitionID(topo, p), sessions, hlc, cfg)
				if err != nil {
					errc <- fmt.Errorf("backup: partition %d: %w", p, err)
					cancel()
					return
				}
				files[p] = fi
				cfg.Progress.FilesDone.Add(1)
			}
		}()
	}
feed:
	for p := range topo.Partitions {
		select {
		case work <- p:
		case <-ctx.Done():
			break feed
		}
	}
	close(work)
	wg.Wait()
	close(errc)
	if err := <-errc; err != nil {
		return nil, err
	}
	if err := ctx.Err(); err != nil {
		return nil, fmt.Errorf("backup: %w", err)
	}
	for _, f := range files {
		m.Files = append(m.Files, f)
		m.Records += f.Records
		m.Bytes += f.Bytes
	}
	if err := syncDir(cfg.Dir); err != nil {
		return nil, err
	}
	m.Finished = time.Now().UTC()
	if err := writeManifest(cfg.Dir, m); err != nil {
		return nil, err
	}
	return m, nil
}

// begin opens a session on every live member with an address, and
// returns them with T, the greatest clock they reported.
func begin(ctx context.Context, cl Cluster, topo client.Topology, cfg Config) (map[string]session, uint64, error) {
	type answer struct {
		s   session
		hlc uint64
		err error
	}
	var wg sync.WaitGroup
	answers := make(chan answer, len(topo.Members))
	for _, m := range topo.Members {
		if m.Addr == "" || !m.Alive {
			cfg.Logger.Warn("backup skips a member that is down", "node", m.ID)
			continue
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			var resp *kvpb.BackupBeginResponse
			err := cl.Invoke(ctx, m.Addr, func(ctx context.Context, conn drpc.Conn) error {
				var err error
				resp, err = kvpb.NewDRPCBackupClient(conn).Begin(ctx, &kvpb.BackupBeginRequest{LeaseMillis: uint64(cfg.Lease / time.Millisecond)}) //nolint:gosec // positive
				return err                                                                                                                         //nolint:wrapcheck // Invoke classifies it
			})
			if err != nil {
				answers <- answer{err: fmt.Errorf("begin on %s: %w", m.ID, err)}
				return
			}
			answers <- answer{s: session{node: m.ID, addr: m.Addr, id: resp.GetSessionId(), version: resp.GetSnapshotVersion()}, hlc: resp.GetHlc()}
		}()
	}
	wg.Wait()
	close(answers)
	sessions := map[string]session{}
	var hlc uint64
	var errs []error
	for a := range answers {
		if a.err != nil {
			errs = append(errs, a.err)
			continue
		}
		sessions[a.s.node] = a.s
		hlc = max(hlc, a.hlc)
	}
	// A refusal (no permission, wrong credentials) is final; a node that
	// did not answer is left out, and partitions decide whether enough
	// replicas remain.
	for _, err := range errs {
		if errors.Is(err, client.ErrPermissionDenied) || errors.Is(err, client.ErrUnauthenticated) || errors.Is(err, client.ErrInvalidArgument) {
			return sessions, 0, fmt.Errorf("backup: %w", err)
		}
		cfg.Logger.Warn("backup leaves out a member", "err", err)
	}
	if len(sessions) == 0 {
		return sessions, 0, fmt.Errorf("backup: no member could pin a snapshot: %w", errors.Join(errs...))
	}
	return sessions, hlc, nil
}

// end ends every session, best effort: a session not ended expires.
func end(cl Cluster, sessions map[string]session, log *slog.Logger) {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	for _, s := range sessions {
		err := cl.Invoke(ctx, s.addr, func(ctx context.Context, conn drpc.Conn) error {
			_, err := kvpb.NewDRPCBackupClient(conn).End(ctx, &kvpb.BackupEndRequest{SessionId: s.id})
			return err //nolint:wrapcheck // Invoke classifies it
		})
		if err != nil {
			log.Warn("backup session not ended (its lease will expire)", "node", s.node, "err", err)
		}
	}
}

// keepAlive renews every session each interval until ctx ends.
func keepAlive(ctx context.Context, cl Cluster, sessions map[string]session, every time.Duration, log *slog.Logger) {
	t := time.NewTicker(every)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		for _, s := range sessions {
			err := cl.Invoke(ctx, s.addr, func(ctx context.Context, conn drpc.Conn) error {
				_, err := kvpb.NewDRPCBackupClient(conn).Renew(ctx, &kvpb.BackupRenewRequest{SessionId: s.id})
				return err //nolint:wrapcheck // Invoke classifies it
			})
			if err != nil && ctx.Err() == nil {
				log.Warn("backup session renewal failed", "node", s.node, "err", err)
			}
		}
	}
}

// backupPartition merges partition p from the pinned replicas among
// replicas into its file.
func backupPartition(ctx context.Context, cl Cluster, replicas []string, p int, id uint32, sessions map[string]session, hlc uint64, cfg Config) (FileInfo, error) {
	need := len(replicas)/2 + 1
	var cursors []*cursor
	for _, node := range replicas {
		s, ok := sessions[node]
		if !ok {
			continue
		}
		cursors = append(cursors, &cursor{name: node, fetch: scanPages(cl, s, id, hlc, cfg)})
	}
	if len(cursors) < need {
		return FileInfo{}, fmt.Errorf("%w: %d of %d replicas (%v) pinned, %d needed", ErrTooFewReplicas, len(cursors), len(replicas), replicas, need)
	}
	name := fileName(p)
	path := filepath.Join(cfg.Dir, name)
	f, err := os.OpenFile(path, os.O_CREATE|os.O_TRUNC|os.O_WRONLY, 0o600) //nolint:gosec // inside the operator's directory
	if err != nil {
		return FileInfo{}, fmt.Errorf("create %s: %w", path, err)
	}
	defer f.Close() //nolint:errcheck // closed below on success
	w, err := NewWriter(f)
	if err != nil {
		return FileInfo{}, &FileError{Path: path, Err: err}
	}
	last := w.Bytes()
	err = mergeReplicas(ctx, cursors, need, func(key []byte, rec replica.Record) error {
		if err := w.Write(key, rec); err != nil {
			return err
		}
		cfg.Progress.Records.Add(1)
		cfg.Progress.Bytes.Add(w.Bytes() - last)
		last = w.Bytes()
		return nil
	}, func(node string, err error) {
		cfg.Logger.Warn("backup gives up a replica of a partition", "partition", p, "node", node, "err", err)
	})
	if err != nil {
		return FileInfo{}, err
	}
	if err := w.Flush(); err != nil {
		return FileInfo{}, &FileError{Path: path, Err: err}
	}
	if err := f.Sync(); err != nil {
		return FileInfo{}, &FileError{Path: path, Err: fmt.Errorf("sync: %w", err)}
	}
	if err := f.Close(); err != nil {
		return FileInfo{}, &FileError{Path: path, Err: fmt.Errorf("close: %w", err)}
	}
	return FileInfo{Name: name, Partition: p, Records: w.Records(), Bytes: w.Bytes(), SHA256: w.SHA256()}, nil
}

// scanPages returns the pageFunc of the partition with id on session s:
// records with timestamps in (Since, hlc], retried up to cfg.Attempts
// times.
func scanPages(cl Cluster, s session, id uint32, hlc uint64, cfg Config) pageFunc {
	return func(ctx context.Context, start []byte) ([]item, []byte, error) {
		req := &kvpb.BackupScanRequest{
			SessionId: s.id, Partition: id, Start: start,
			Since: cfg.Since, Until: hlc, AfterVersion: s.after,
			Limit: uint32(cfg.PageRecords), MaxBytes: uint64(cfg.PageBytes), //nolint:gosec // positive
		}
		var resp *kvpb.BackupScanResponse
		var err error
		for attempt := range cfg.Attempts {
			if attempt > 0 && !pause(ctx, time.Duration(attempt)*200*time.Millisecond) {
				break
			}
			err = cl.Invoke(ctx, s.addr, func(ctx context.Context, conn drpc.Conn) error {
				var err error
				resp, err = kvpb.NewDRPCBackupClient(conn).Scan(ctx, req)
				return err //nolint:wrapcheck // Invoke classifies it
			})
			if err == nil || errors.Is(err, client.ErrInvalidArgument) || errors.Is(err, client.ErrPermissionDenied) {
				break
			}
		}
		if err != nil {
			return nil, nil, fmt.Errorf("scan: %w", err)
		}
		page := make([]item, len(resp.GetRecords()))
		for i, kr := range resp.GetRecords() {
			page[i] = item{key: kr.GetKey(), rec: recordFromWire(kr.GetRecord())}
		}
		next := resp.GetNext()
		if len(next) == 0 {
			next = nil
		}
		return page, next, nil
	}
}

// pause waits d or until ctx ends; false if ctx ended.
func pause(ctx context.Context, d time.Duration) bool {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return false
	case <-t.C:
		return true
	}
}

func recordFromWire(w *kvpb.Record) replica.Record {
	r := replica.Record{
		Value:     w.GetValue(),
		Timestamp: replica.Timestamp(w.GetTimestamp()),
		NodeID:    w.GetNodeId(),
		Tombstone: w.GetTombstone(),
	}
	if ns := w.GetExpiresAtUnixNanos(); ns != 0 {
		r.ExpiresAt = time.Unix(0, ns).UTC()
	}
	return r
}

func recordToWire(r replica.Record) *kvpb.Record {
	w := &kvpb.Record{Value: r.Value, Timestamp: uint64(r.Timestamp), NodeId: r.NodeID, Tombstone: r.Tombstone}
	if !r.ExpiresAt.IsZero() {
		w.ExpiresAtUnixNanos = r.ExpiresAt.UnixNano()
	}
	return w
}

// partitionID returns the id of partition index p of topo, which names it
// in a scan: p until the cluster's first split, P+p after.
func partitionID(topo client.Topology, p int) uint32 {
	if topo.BasePartitions == 0 || topo.BasePartitions == topo.Partitions {
		return uint32(p) //nolint:gosec // below MaxPartitions
	}
	return uint32(topo.Partitions + p) //nolint:gosec // below 2*MaxPartitions
}
