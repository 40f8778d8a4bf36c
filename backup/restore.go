package backup

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"sync"
	"sync/atomic"
	"time"

	"storj.io/drpc"

	"github.com/ringkv/ringkv/client"
	"github.com/ringkv/ringkv/proto/kvpb"
)

// RestoreConfig configures a restore. Zero fields take their defaults.
type RestoreConfig struct {
	// Dirs are the backups to restore: a full backup and any incrementals.
	// Their order does not matter (last-writer-wins merging is
	// commutative), but each must be complete (have its manifest).
	// Required.
	Dirs []string
	// Parallelism is how many files are restored at once. Default 4.
	Parallelism int
	// BatchRecords and BatchBytes bound one Restore call. Defaults 2048
	// records, 1 MiB (drpc messages are limited to 4 MiB). Larger batches
	// cost the nodes fewer fsyncs: 2048 restored about 1.6x faster than
	// 512 on the benchmark machine.
	BatchRecords int
	BatchBytes   int
	// Attempts is how many times one batch is tried, on the nodes in
	// turn, before the restore fails. Default 5.
	Attempts int
	// Progress, if set, is updated as the restore runs.
	Progress *Progress
	// Logger receives retries and lifecycle logs; nil discards.
	Logger *slog.Logger
}

// Validate reports every problem with c, joined. Zero fields are valid
// (they take their defaults), but Dirs is required.
func (c RestoreConfig) Validate() error {
	var errs []error
	if len(c.Dirs) == 0 {
		errs = append(errs, errors.New("backup: RestoreConfig.Dirs is required"))
	}
	for _, f := range []struct {
		name string
		v    int
	}{{"Parallelism", c.Parallelism}, {"BatchRecords", c.BatchRecords}, {"BatchBytes", c.BatchBytes}, {"Attempts", c.Attempts}} {
		if f.v < 0 {
			errs = append(errs, fmt.Errorf("backup: %s is negative (%d)", f.name, f.v))
		}
	}
	if c.BatchBytes > 3<<20 {
		errs = append(errs, fmt.Errorf("backup: BatchBytes %d is over 3 MiB (drpc messages are limited to 4 MiB)", c.BatchBytes))
	}
	return errors.Join(errs...)
}

func (c RestoreConfig) withDefaults() RestoreConfig {
	if c.Parallelism <= 0 {
		c.Parallelism = 4
	}
	if c.BatchRecords <= 0 {
		c.BatchRecords = 2048
	}
	if c.BatchBytes <= 0 {
		c.BatchBytes = 1 << 20
	}
	if c.Attempts <= 0 {
		c.Attempts = 5
	}
	if c.Progress == nil {
		c.Progress = &Progress{}
	}
	if c.Logger == nil {
		c.Logger = slog.New(slog.DiscardHandler)
	}
	return c
}

// RestoreSummary is what a restore did.
type RestoreSummary struct {
	// Backups is how many backup directories were restored.
	Backups int
	// Files, Records and Bytes count what was read and merged.
	Files   int
	Records int64
	Bytes   int64
}

// Restore merges the backups in cfg.Dirs into the running cluster behind
// cl, whatever its size and partition count: every record goes, with its
// own timestamp, to a node's Backup service, which places it with the
// cluster's ring and merges it into a quorum of its replicas. A record
// older than what the cluster holds changes nothing, so a restore is
// idempotent and never undoes a newer write. Each file is checked as it
// is read (every frame's checksum as it goes, count, size and SHA-256 at
// its end); a bad frame stops the restore before its batch is sent.
//
// Errors: the joined Validate errors; ErrNoManifest; a *FileError wrapping ErrCorrupt; the nodes'
// refusals as the client package's errors; client.ErrUnavailable once a
// batch failed cfg.Attempts times.
func Restore(ctx context.Context, cl Cluster, cfg RestoreConfig) (RestoreSummary, error) {
	if err := cfg.Validate(); err != nil {
		return RestoreSummary{}, err
	}
	cfg = cfg.withDefaults()
	type job struct {
		dir string
		f   FileInfo
	}
	var jobs []job
	for _, dir := range cfg.Dirs {
		m, err := ReadManifest(dir)
		if err != nil {
			return RestoreSummary{}, err
		}
		for _, f := range m.Files {
			jobs = append(jobs, job{dir, f})
		}
	}
	topo, err := cl.Topology()
	if err != nil {
		return RestoreSummary{}, fmt.Errorf("restore: topology: %w", err)
	}
	var addrs []string
	for _, m := range topo.Members {
		if m.Alive && m.Addr != "" {
			addrs = append(addrs, m.Addr)
		}
	}
	if len(addrs) == 0 {
		return RestoreSummary{}, fmt.Errorf("restore: %w: no live member with an address", client.ErrUnavailable)
	}
	cfg.Progress.Files.Store(int64(len(jobs)))

	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	r := &restorer{cl: cl, cfg: cfg, addrs: addrs}
	work := make(chan job)
	errc := make(chan error, cfg.Parallelism)
	var wg sync.WaitGroup
	for range cfg.Parallelism {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for j := range work {
				if err := r.file(ctx, filepath.Join(j.dir, j.f.Name), j.f); err != nil {
					errc <- err
					cancel()
					return
				}
				cfg.Progress.FilesDone.Add(1)
			}
		}()
	}
feed:
	for _, j := range jobs {
		select {
		case work <- j:
		case <-ctx.Done():
			break feed
		}
	}
	close(work)
	wg.Wait()
	close(errc)
	if err := <-errc; err != nil {
		return RestoreSummary{}, err
	}
	if err := ctx.Err(); err != nil {
		return RestoreSummary{}, fmt.Errorf("restore: %w", err)
	}
	return RestoreSummary{Backups: len(cfg.Dirs), Files: len(jobs), Records: r.records.Load(), Bytes: r.bytes.Load()}, nil
}

// restorer sends batches to the nodes in turn.
type restorer struct {
	cl    Cluster
	cfg   RestoreConfig
	addrs []string
	next  atomic.Uint64
	// records and bytes count what this restore merged.
	records, bytes atomic.Int64
}

// file restores one backup file described by want.
func (r *restorer) file(ctx context.Context, path string, want FileInfo) error {
	f, err := os.Open(path) //nolint:gosec // a file the manifest names, inside the operator's directory
	if err != nil {
		return &FileError{Path: path, Err: err}
	}
	defer f.Close() //nolint:errcheck // read-only
	rd, err := NewReader(f)
	if err != nil {
		return &FileError{Path: path, Err: err}
	}
	var batch []*kvpb.KeyedRecord
	size, lastBytes := 0, rd.Bytes()
	flush := func() error {
		if len(batch) == 0 {
			return nil
		}
		if err := r.send(ctx, batch); err != nil {
			return fmt.Errorf("restore %s: %w", path, err)
		}
		r.cfg.Progress.Records.Add(int64(len(batch)))
		r.cfg.Progress.Bytes.Add(rd.Bytes() - lastBytes)
		r.records.Add(int64(len(batch)))
		r.bytes.Add(rd.Bytes() - lastBytes)
		lastBytes = rd.Bytes()
		batch, size = batch[:0], 0
		return nil
	}
	for {
		key, rec, err := rd.Next()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			return &FileError{Path: path, Err: err}
		}
		batch = append(batch, &kvpb.KeyedRecord{Key: key, Record: recordToWire(rec)})
		size += len(key) + len(rec.Value) + 64
		if len(batch) >= r.cfg.BatchRecords || size >= r.cfg.BatchBytes {
			if err := flush(); err != nil {
				return err
			}
		}
	}
	if err := flush(); err != nil {
		return err
	}
	if err := checkFile(rd, want); err != nil {
		return &FileError{Path: path, Err: err}
	}
	return nil
}

// send delivers one batch, trying the nodes in turn. Refusals (bad
// input, no permission) are final; anything else is retried: merging a
// record twice is harmless.
func (r *restorer) send(ctx context.Context, batch []*kvpb.KeyedRecord) error {
	req := &kvpb.RestoreRequest{Records: batch}
	var err error
	for attempt := range r.cfg.Attempts {
		if attempt > 0 && !pause(ctx, time.Duration(attempt)*250*time.Millisecond) {
			return fmt.Errorf("%w (last error: %w)", ctx.Err(), err)
		}
		addr := r.addrs[r.next.Add(1)%uint64(len(r.addrs))]
		err = r.cl.Invoke(ctx, addr, func(ctx context.Context, conn drpc.Conn) error {
			_, err := kvpb.NewDRPCBackupClient(conn).Restore(ctx, req)
			return err //nolint:wrapcheck // Invoke classifies it
		})
		if err == nil {
			return nil
		}
		if ctx.Err() != nil || errors.Is(err, client.ErrInvalidArgument) || errors.Is(err, client.ErrPermissionDenied) || errors.Is(err, client.ErrUnauthenticated) {
			return err
		}
		r.cfg.Logger.Warn("restore batch failed, retrying", "addr", addr, "attempt", attempt+1, "err", err)
	}
	return fmt.Errorf("%w: a batch failed %d times: %w", client.ErrUnavailable, r.cfg.Attempts, err)
}

// checkFile compares a file read to its end with its manifest entry.
func checkFile(rd *Reader, want FileInfo) error {
	switch {
	case rd.Records() != want.Records:
		return fmt.Errorf("%w: %d records, manifest says %d", ErrCorrupt, rd.Records(), want.Records)
	case rd.Bytes() != want.Bytes:
		return fmt.Errorf("%w: %d bytes, manifest says %d", ErrCorrupt, rd.Bytes(), want.Bytes)
	case rd.SHA256() != want.SHA256:
		return fmt.Errorf("%w: sha256 %s, manifest says %s", ErrCorrupt, rd.SHA256(), want.SHA256)
	}
	return nil
}

// Verify checks the backup in dir: its manifest, and every file it lists
// (each frame's checksum and record encoding, key order, record count,
// size and SHA-256). It returns the manifest and nil when all is well,
// else the errors of every bad file joined, each a *FileError naming the
// file (wrapping ErrCorrupt, or the file system's error).
func Verify(dir string) (*Manifest, error) {
	m, err := ReadManifest(dir)
	if err != nil {
		return nil, err
	}
	var errs []error
	for _, f := range m.Files {
		path := filepath.Join(dir, f.Name)
		if err := verifyFile(path, f); err != nil {
			errs = append(errs, &FileError{Path: path, Err: err})
		}
	}
	return m, errors.Join(errs...)
}

func verifyFile(path string, want FileInfo) error {
	f, err := os.Open(path) //nolint:gosec // a file the manifest names
	if err != nil {
		return err //nolint:wrapcheck // the FileError names the path
	}
	defer f.Close() //nolint:errcheck // read-only
	rd, err := NewReader(f)
	if err != nil {
		return err
	}
	for {
		_, _, err := rd.Next()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			return err
		}
	}
	return checkFile(rd, want)
}
