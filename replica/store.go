package replica

import (
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/cespare/xxhash/v2"
	"github.com/dgraph-io/badger/v4"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/ringkv/ringkv/internal/partid"
)

// Config configures a Store. The zero value of every field but Dir means its
// default; DefaultConfig returns the defaults spelled out.
type Config struct {
	// Dir is the data directory, created if missing. Required unless InMemory.
	Dir string
	// InMemory keeps everything in memory: no disk, no durability. Tests only.
	// Dir must be empty.
	InMemory bool
	// BlockCacheBytes is Badger's block cache. Default 16 MiB; Badger's own
	// default (256 MiB) trades a lot of memory for fewer SST reads.
	BlockCacheBytes int64
	// IndexCacheBytes bounds memory for SST indexes and bloom filters.
	// Default 8 MiB; lower means more index reads from disk.
	IndexCacheBytes int64
	// MemTableBytes is the size of one memtable (at most two are held).
	// Default 16 MiB, minimum 1 MiB. One Badger transaction holds at most 15%
	// of it, so it also bounds how much one group commit can carry.
	MemTableBytes int64
	// VersionCacheEntries bounds the version cache (versions.go): the
	// newest version of the most recently merged keys, so that a merge of
	// a newer write skips its Badger read. An entry costs about 350 bytes
	// with a short key, the map's overhead included (10.5-11.8 MB measured
	// at 32,768 entries, docs/BENCHMARKS.md "Memory"). Default 131,072
	// (about 45 MB). Fewer entries save
	// memory; a merge of a key that fell out reads Badger.
	VersionCacheEntries int
	// MaxBatchEntries caps the entries the committer gathers into one group
	// commit. Default 1024. Larger batches mean fewer commits under load and
	// a longer wait for the callers in the batch.
	MaxBatchEntries int
	// SyncLinger is the longest the syncer waits for more committed writes
	// when it holds fewer than LingerBelow, before an fsync; it stops early
	// once none has come for a quarter of it. It waits only under load (the
	// writes in hand, or the previous fsync's, came in more than one
	// request), so a lone write on an idle node is synced at once. Writes
	// are committed (visible) at once either way: the Raft log appends and
	// state machine applies of linearizable writes are not held back, only
	// the acknowledgement waits for the shared fsync. A QUORUM or
	// linearizable write costs an fsync share on several replicas, so on a
	// loaded node fewer fsyncs leave more CPU and disk for the writes
	// themselves (docs/bench/HISTORY.md). The wait never lasts longer than
	// the recent fsyncs took (their moving average): on a disk whose fsync
	// is fast, a long linger only adds latency. Default 4ms; negative:
	// sync at once.
	SyncLinger time.Duration
	// LingerBelow is how many writes the syncer holds from which it stops
	// lingering. Default 16.
	LingerBelow int
	// MinFreeBytes is the floor of the reserve: the free space (statfs of
	// Dir, bytes available to unprivileged users) below which the store
	// refuses admitted writes with ErrDiskFull (space.go). The reserve is
	// the larger of it and the size of Badger's tables plus three memtables,
	// what Badger may still write once the store stops admitting (flushes
	// and compactions): Badger writes through mmaps of sparse files, so
	// running out of space is a SIGBUS that kills the process. Default
	// DefaultMinFreeBytes(MemTableBytes): four memtables. Negative: no
	// guard (a full disk crashes the process).
	MinFreeBytes int64
	// DiskCheckInterval is how often the free space is checked while no
	// write comes (the committer also checks it before every batch of
	// admitted writes): it bounds how late a full store notices freed
	// space. Default 250ms.
	DiskCheckInterval time.Duration
	// Logger receives Info (lifecycle), Warn (corruption found) and Error
	// logs, and Badger's own logs. Nil discards.
	Logger *slog.Logger
	// Now returns the current time, for expiry decisions. Nil means time.Now.
	// Reserved for expiry and tombstone collection: Get and Scan return
	// expired records and leave Live to the caller.
	Now func() time.Time
}

// Defaults used for zero Config fields.
const (
	DefaultBlockCacheBytes     = 16 << 20
	DefaultIndexCacheBytes     = 8 << 20
	DefaultMemTableBytes       = 16 << 20
	DefaultVersionCacheEntries = 1 << 17
	DefaultMaxBatchEntries     = 1024
	DefaultSyncLinger          = 4 * time.Millisecond
	DefaultLingerBelow         = 16
	DefaultDiskCheckInterval   = 250 * time.Millisecond

	minMemTableBytes = 1 << 20
)

// Limits on what Merge accepts; larger entries return ErrInvalidEntry.
const (
	// MaxKeyBytes is the longest user key a Store holds.
	MaxKeyBytes = 60 << 10
	// MaxRecordBytes is the longest encoded record an on-disk Store holds.
	// An InMemory store holds values up to Badger's value threshold only
	// (1 MiB at the default MemTableBytes).
	MaxRecordBytes = 256 << 20
)

// DefaultMinFreeBytes returns the default Config.MinFreeBytes for
// memtables of memTableBytes: four of them.
func DefaultMinFreeBytes(memTableBytes int64) int64 { return 4 * memTableBytes }

// DefaultConfig returns a fresh Config with every default filled in. Dir is
// left empty: callers must set it (or InMemory).
func DefaultConfig() Config {
	return Config{
		BlockCacheBytes:     DefaultBlockCacheBytes,
		IndexCacheBytes:     DefaultIndexCacheBytes,
		MemTableBytes:       DefaultMemTableBytes,
		VersionCacheEntries: DefaultVersionCacheEntries,
		MaxBatchEntries:     DefaultMaxBatchEntries,
		SyncLinger:          DefaultSyncLinger,
		LingerBelow:         DefaultLingerBelow,
		MinFreeBytes:        DefaultMinFreeBytes(DefaultMemTableBytes),
		DiskCheckInterval:   DefaultDiskCheckInterval,
	}
}

// withDefaults returns c with zero fields filled.
func (c Config) withDefaults() Config {
	if c.BlockCacheBytes == 0 {
		c.BlockCacheBytes = DefaultBlockCacheBytes
	}
	if c.IndexCacheBytes == 0 {
		c.IndexCacheBytes = DefaultIndexCacheBytes
	}
	if c.MemTableBytes == 0 {
		c.MemTableBytes = DefaultMemTableBytes
	}
	if c.VersionCacheEntries == 0 {
		c.VersionCacheEntries = DefaultVersionCacheEntries
	}
	if c.MaxBatchEntries == 0 {
		c.MaxBatchEntries = DefaultMaxBatchEntries
	}
	if c.SyncLinger == 0 {
		c.SyncLinger = DefaultSyncLinger
	}
	if c.LingerBelow == 0 {
		c.LingerBelow = DefaultLingerBelow
	}
	if c.MinFreeBytes == 0 {
		c.MinFreeBytes = DefaultMinFreeBytes(c.MemTableBytes)
	}
	if c.DiskCheckInterval == 0 {
		c.DiskCheckInterval = DefaultDiskCheckInterval
	}
	if c.Logger == nil {
		c.Logger = slog.New(slog.DiscardHandler)
	}
	if c.Now == nil {
		c.Now = time.Now
	}
	return c
}

// Validate reports every problem with c, joined with errors.Join; nil if c
// is usable. Zero fields are valid (they mean the default).
func (c Config) Validate() error {
	var errs []error
	switch {
	case !c.InMemory && c.Dir == "":
		errs = append(errs, errors.New("replica: Dir is required unless InMemory"))
	case c.InMemory && c.Dir != "":
		errs = append(errs, errors.New("replica: Dir must be empty when InMemory"))
	}
	if c.BlockCacheBytes < 0 {
		errs = append(errs, fmt.Errorf("replica: BlockCacheBytes %d is negative", c.BlockCacheBytes))
	}
	if c.IndexCacheBytes < 0 {
		errs = append(errs, fmt.Errorf("replica: IndexCacheBytes %d is negative", c.IndexCacheBytes))
	}
	if c.MemTableBytes != 0 && c.MemTableBytes < minMemTableBytes {
		errs = append(errs, fmt.Errorf("replica: MemTableBytes %d is below the minimum %d", c.MemTableBytes, minMemTableBytes))
	}
	if c.VersionCacheEntries < 0 {
		errs = append(errs, fmt.Errorf("replica: VersionCacheEntries %d is negative", c.VersionCacheEntries))
	}
	if c.MaxBatchEntries < 0 {
		errs = append(errs, fmt.Errorf("replica: MaxBatchEntries %d is negative", c.MaxBatchEntries))
	}
	if c.LingerBelow < 0 {
		errs = append(errs, fmt.Errorf("replica: LingerBelow %d is negative", c.LingerBelow))
	}
	if c.DiskCheckInterval < 0 {
		errs = append(errs, fmt.Errorf("replica: DiskCheckInterval %v is negative", c.DiskCheckInterval))
	}
	if c.SyncLinger > time.Second {
		errs = append(errs, fmt.Errorf("replica: SyncLinger %v is over a second", c.SyncLinger))
	}
	return errors.Join(errs...)
}

// Deps are the Store's injected dependencies.
type Deps struct {
	// Registerer receives the store's metrics; nil keeps them in a private
	// registry. Close unregisters them.
	Registerer prometheus.Registerer
	// Observer, if set, is told about every committed record change (see
	// Observer for its duties). Nil: nobody is told.
	Observer Observer
	// SyncFault, if set, runs before every fsync of the store's files; an
	// error fails that fsync as a failed fsync would, and a call that
	// blocks stalls it. A test seam (node's --chaos-hooks); nil in
	// production.
	SyncFault func() error
	// BasePartitions, if set, is asked for the cluster's first P
	// (partitions.go) until it answers non-zero (0: not known yet); the
	// answer is then kept as by SetBasePartitions. Nil: only
	// SetBasePartitions sets it.
	BasePartitions func() int
}

// Entry is one record to merge under a partition and key.
type Entry struct {
	Partition uint32
	Key       []byte
	Record    Record
}

// Store is one node's replica storage: a Badger database holding one record
// per (partition, key). It is safe for concurrent use. See the package
// documentation for its goroutine and durability discipline.
type Store struct {
	cfg     Config
	log     *slog.Logger
	db      *badger.DB
	metrics *metrics
	// observer is Deps.Observer; called only on the committer goroutine.
	observer Observer
	// versions is owned by the committer goroutine (versions.go).
	versions *versionCache
	// corruptSeen counts corrupt records found by any reader; the
	// committer resets versions when it moves.
	corruptSeen atomic.Uint64
	// base is the cluster's first P (SetBasePartitions; partitions.go), 0
	// until set.
	base   atomic.Int64
	baseFn func() int // Deps.BasePartitions

	maxRecordBytes int
	// valueThreshold is Badger's: values this long or longer go to the
	// value log.
	valueThreshold int64
	// syncer makes committed writes durable; nil for an InMemory store.
	syncer *syncer
	// space refuses admitted writes when the disk is (nearly) full
	// (space.go); nil for an InMemory store or MinFreeBytes < 0.
	space *spaceGuard

	// reqs carries requests to the committer. Unbuffered: a request is either
	// received by the committer (and then always answered) or still with its
	// sender, who gives up with ErrClosed once closing is closed. Never closed.
	reqs chan *request
	// closing is closed by Close (once) to stop the committer and turn away senders.
	closing   chan struct{}
	closeOnce sync.Once
	committer sync.WaitGroup // the committer goroutine

	// life guards the Badger handle for readers: Get and Scan register in
	// readers while open; Close marks closed, then waits for readers before
	// closing Badger. No I/O happens while the mutex is held.
	life struct {
		sync.Mutex
		closed  bool
		readers sync.WaitGroup
	}

	// snaps are the open Snapshots (snapshot.go); Close releases them.
	snaps snapshots

	// txnsCommitted counts Badger transactions committed by the committer.
	txnsCommitted atomic.Int64
	// queued counts Merge calls waiting to hand their request to the committer.
	queued atomic.Int64

	// hooks are fault-injection and observation seams for tests; nil in production.
	hooks struct {
		// beforeBatch runs on the committer with each gathered batch's size
		// (in requests) before it is applied.
		beforeBatch func(requests int)
		// commitErr, if it returns an error, fails the commit of the
		// transaction in hand as if Badger had.
		commitErr func() error
	}
}

// baseLevelBytes is the target size of the LSM tree's base level (Badger's
// default is 10 MiB). Values up to the value threshold live in the tree,
// so every level a record passes through rewrites it: with 64 MiB a store
// of 1 GB has one level fewer between level 0 and the last, and installing
// a 1 GB raft snapshot took 14.9 s instead of 22.4 s (medians of three;
// docs/BENCHMARKS.md, "A raft snapshot of 1 GB"). It sizes no cache or
// buffer: memory is the same.
const baseLevelBytes = 64 << 20

// Open opens (creating if needed) the store described by cfg and starts its
// committer. The config is copied; zero fields take their defaults. It returns
// the joined Validate errors for a bad config, or the Badger or metrics
// registration error.
func Open(cfg Config, deps Deps) (*Store, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	cfg = cfg.withDefaults()

	// Values up to the threshold live in the LSM tree next to their keys;
	// larger ones go to the value log. Badger requires the threshold to fit
	// in one transaction (15% of a memtable).
	valueThreshold := min(int64(1<<20), cfg.MemTableBytes*15/100/2)
	var opts badger.Options
	if cfg.InMemory {
		opts = badger.DefaultOptions("").WithInMemory(true)
	} else {
		opts = badger.DefaultOptions(cfg.Dir)
	}
	opts = opts.
		WithSyncWrites(false). // the syncer fsyncs (sync.go), off the committer's path
		WithLogger(badgerLogger{cfg.Logger}).
		WithBlockCacheSize(cfg.BlockCacheBytes).
		WithIndexCacheSize(cfg.IndexCacheBytes).
		WithMemTableSize(cfg.MemTableBytes).
		WithNumMemtables(2).
		WithNumCompactors(2).
		WithValueThreshold(valueThreshold).
		WithBaseLevelSize(baseLevelBytes).
		WithDetectConflicts(false) // only the committer writes
	db, err := badger.Open(opts)
	if err != nil {
		if cfg.InMemory {
			return nil, fmt.Errorf("open in-memory badger: %w", err)
		}
		return nil, fmt.Errorf("open badger in %s: %w", cfg.Dir, err)
	}
	s := &Store{
		cfg:            cfg,
		log:            cfg.Logger,
		db:             db,
		maxRecordBytes: MaxRecordBytes,
		valueThreshold: valueThreshold,
		reqs:           make(chan *request),
		closing:        make(chan struct{}),
		observer:       deps.Observer,
		baseFn:         deps.BasePartitions,
		versions:       newVersionCache(cfg.VersionCacheEntries),
	}
	if cfg.InMemory {
		s.maxRecordBytes = int(valueThreshold)
	}
	s.metrics = newMetrics(func() float64 {
		lsm, vlog := db.Size()
		return float64(lsm + vlog)
	})
	if err := s.metrics.register(deps.Registerer); err != nil {
		return nil, errors.Join(err, db.Close())
	}
	if !cfg.InMemory {
		if s.syncer, err = newSyncer(cfg.Dir, s.log, s.metrics, cfg.SyncLinger, cfg.LingerBelow, deps.SyncFault); err != nil {
			s.metrics.unregister()
			return nil, errors.Join(err, db.Close())
		}
		if cfg.MinFreeBytes > 0 {
			s.space = newSpaceGuard(cfg.Dir, cfg.MinFreeBytes, cfg.MemTableBytes, s.tablesBytes, cfg.DiskCheckInterval, s.log, s.metrics)
		}
	}
	s.committer.Add(1)
	go s.runCommitter()
	s.log.Info("replica store opened", "dir", cfg.Dir, "in_memory", cfg.InMemory)
	return s, nil
}

// Close stops the committer, waits for in-flight reads (Get, Scan, GetRaw,
// ScanRaw, LastRaw) and closes Badger. Merge and WriteRaw calls being
// committed finish normally; those still waiting for the committer return
// ErrClosed.
// Close is idempotent: later calls return nil. It must not be called from a
// Scan callback.
func (s *Store) Close() error {
	var err error
	s.closeOnce.Do(func() {
		s.life.Lock()
		s.life.closed = true
		s.life.Unlock()

		close(s.closing)
		s.committer.Wait()
		if s.syncer != nil {
			s.syncer.close() // answers the committed requests it holds
		}
		if s.space != nil {
			s.space.close()
		}
		s.life.readers.Wait()
		s.closeSnapshots()

		s.metrics.unregister()
		if cerr := s.db.Close(); cerr != nil {
			err = fmt.Errorf("close badger: %w", cerr)
		}
		s.log.Info("replica store closed", "dir", s.cfg.Dir)
	})
	return err
}

// tablesBytes returns the on-disk size of Badger's tables (the LSM tree).
func (s *Store) tablesBytes() int64 {
	var n int64
	for _, t := range s.db.Tables() {
		n += int64(t.OnDiskSize)
	}
	return n
}

// acquire registers a reader; false means the store is closed.
func (s *Store) acquire() bool {
	s.life.Lock()
	defer s.life.Unlock()
	if s.life.closed {
		return false
	}
	s.life.readers.Add(1)
	return true
}

func (s *Store) release() { s.life.readers.Done() }

// Merge durably merges every entry: for each, the stored record becomes the
// greater (Compare) of itself and the entry's record. A stored record that
// fails its checksum counts as absent, so the entry repairs it.
//
// Merge returns nil only once all entries are committed and fsynced. Entries
// are merged independently, not atomically: after an error some may have
// been applied (merging again is harmless). Concurrent calls share Badger
// transactions (group commit).
//
// Errors: ErrInvalidEntry (wrapped) if an entry is too large (nothing is
// applied); ErrClosed if the store is closed before the committer took the
// entries; ctx.Err() if ctx is done first (if it ends after the hand-off the
// entries may still be applied); ErrSyncFailed (joined with the cause) once
// an fsync has failed; otherwise a Badger error.
//
// Merge does not retain entries or their slices after it returns.
func (s *Store) Merge(ctx context.Context, entries []Entry) error {
	return s.merge(ctx, entries, false)
}

// MergeUnsynced merges like Merge but returns once the entries are
// committed, visible to reads, before they are fsynced: a crash of the
// machine (not of the process alone) may lose them. It is for callers that
// hold the entries durably elsewhere and replay them after a restart: the
// Raft state machine, whose log is durable before an entry is applied.
// Later durable writes do not wait for it, and it does not wait for them.
// Errors as for Merge.
func (s *Store) MergeUnsynced(ctx context.Context, entries []Entry) error {
	return s.merge(ctx, entries, true)
}

// MergeAsync merges like Merge without waiting for the answer: done is
// called exactly once with what Merge would have returned, on one of the
// store's goroutines (the committer's or the syncer's), and must not block.
// MergeAsync blocks only while it hands the entries to the committer; ctx
// bounds that wait and nothing after it. If MergeAsync returns an error
// (as for Merge: nothing was handed over), done is not called. It lets a
// coordinator wait for several replicas without a goroutine for each.
func (s *Store) MergeAsync(ctx context.Context, entries []Entry, done func(error)) error {
	op, err := s.mergeOpFor(ctx, entries)
	if err != nil {
		return err
	}
	if op == nil {
		done(nil)
		return nil
	}
	return s.handOff(ctx, &request{op: op, answer: done})
}

func (s *Store) merge(ctx context.Context, entries []Entry, unsynced bool) error {
	op, err := s.mergeOpFor(ctx, entries)
	if err != nil || op == nil {
		return err
	}
	return s.submitRequest(ctx, &request{op: op, unsynced: unsynced, done: make(chan error, 1)})
}

// mergeOpFor checks ctx and the store, then encodes entries; a nil op
// means there is nothing to merge.
func (s *Store) mergeOpFor(ctx context.Context, entries []Entry) (*mergeOp, error) {
	if err := ctx.Err(); err != nil {
		return nil, err //nolint:wrapcheck // documented: Merge returns ctx.Err() itself
	}
	select {
	case <-s.closing:
		return nil, ErrClosed
	default:
	}
	if len(entries) == 0 {
		return nil, nil
	}
	return s.newMergeOp(entries)
}

// submit hands op to the committer and waits for its answer: nil once the
// op is committed and fsynced. It returns ErrClosed if the store closes
// before the committer takes op, and ctx.Err() if ctx ends first (after the
// hand-off, op may still be applied).
func (s *Store) submit(ctx context.Context, op op) error {
	return s.submitRequest(ctx, &request{op: op, done: make(chan error, 1)})
}

func (s *Store) submitRequest(ctx context.Context, r *request) error {
	if err := s.handOff(ctx, r); err != nil {
		return err
	}
	// The committer answers every request it received, even while closing.
	select {
	case err := <-r.done:
		return err
	case <-ctx.Done():
		return ctx.Err() //nolint:wrapcheck // documented: Merge and WriteRaw return ctx.Err() itself
	}
}

// handOff gives r to the committer, which then answers it whatever happens.
func (s *Store) handOff(ctx context.Context, r *request) error {
	s.queued.Add(1)
	defer s.queued.Add(-1)
	select {
	case s.reqs <- r:
		return nil
	case <-s.closing:
		return ErrClosed
	case <-ctx.Done():
		return ctx.Err() //nolint:wrapcheck // documented: Merge and WriteRaw return ctx.Err() itself
	}
}

// Get returns the record stored for key in partition, including tombstones
// and expired records (decide with Record.Live). The record is the caller's.
//
// Errors: ErrNotFound if there is none; a *CorruptError (matching ErrCorrupt)
// if the stored record fails verification; ErrClosed after Close; otherwise a
// Badger error. Safe for concurrent use.
func (s *Store) Get(partition uint32, key []byte) (Record, error) {
	if !s.acquire() {
		return Record{}, ErrClosed
	}
	defer s.release()
	span, err := s.locate(partition)
	if err != nil {
		return Record{}, err
	}
	var rec Record
	err = s.db.View(func(txn *badger.Txn) error {
		item, err := txn.Get(recordKey(nil, span.Storage, key))
		if err != nil {
			return fmt.Errorf("read: %w", err)
		}
		return item.Value(func(v []byte) error {
			var derr error
			rec, derr = DecodeRecord(v)
			return derr
		})
	})
	switch {
	case err == nil:
		return rec, nil
	case errors.Is(err, badger.ErrKeyNotFound):
		return Record{}, ErrNotFound
	case errors.Is(err, ErrCorrupt):
		s.corruptFound("get", partition, key, err)
		return Record{}, &CorruptError{Partition: partition, Key: bytes.Clone(key), cause: err}
	default:
		return Record{}, fmt.Errorf("get: %w", err)
	}
}

// Scan calls fn, in key order, with every record in partition whose key has
// prefix and is >= start (nil start means from the beginning of prefix),
// until fn returns false. Tombstones and expired records are included.
// Records failing verification are skipped, counted and logged. fn owns the
// key and record it is given. fn may call Get and Merge but not Close.
//
// Errors: ErrClosed after Close; otherwise a Badger error.
func (s *Store) Scan(partition uint32, prefix, start []byte, fn func(key []byte, rec Record) bool) error {
	if !s.acquire() {
		return ErrClosed
	}
	defer s.release()
	span, err := s.locate(partition)
	if err != nil {
		return err
	}
	seekPrefix := recordKey(nil, span.Storage, prefix)
	seek := seekPrefix
	if bytes.Compare(start, prefix) > 0 {
		seek = recordKey(nil, span.Storage, start)
	}
	err = s.db.View(func(txn *badger.Txn) error {
		return s.scanRecords(txn, "scan", partition, span, seekPrefix, seek, func(key []byte, rec Record, _ uint64) bool {
			return fn(key, rec)
		})
	})
	if err != nil {
		return fmt.Errorf("scan partition %d: %w", partition, err)
	}
	return nil
}

// scanRecords iterates txn's records of partition (located at span) under
// prefix from seek, in key order, calling fn with each record that
// belongs to the partition and decodes, and its Badger version, until fn
// returns false. Records failing verification are skipped and reported as
// found by where.
func (s *Store) scanRecords(txn *badger.Txn, where string, partition uint32, span partid.Span, prefix, seek []byte, fn func(key []byte, rec Record, version uint64) bool) error {
	opts := badger.DefaultIteratorOptions
	opts.Prefix = prefix
	opts.PrefetchValues = false // values are mostly inline in the LSM tree
	it := txn.NewIterator(opts)
	defer it.Close()
	for it.Seek(seek); it.ValidForPrefix(prefix); it.Next() {
		item := it.Item()
		if !holds(span, item.Key()[recordKeyPrefixLen:]) {
			continue
		}
		var rec Record
		err := item.Value(func(v []byte) error {
			var derr error
			rec, derr = DecodeRecord(v)
			return derr
		})
		userKey := item.KeyCopy(nil)[recordKeyPrefixLen:]
		if errors.Is(err, ErrCorrupt) {
			s.corruptFound(where, partition, userKey, err)
			continue
		}
		if err != nil {
			return fmt.Errorf("read value: %w", err)
		}
		if !fn(userKey, rec, item.Version()) {
			return nil
		}
	}
	return nil
}

func (s *Store) corruptFound(where string, partition uint32, key []byte, err error) {
	s.corruptSeen.Add(1) // the version cache may vouch for a record that is now bad
	s.metrics.corrupt.Inc()
	s.log.Warn("corrupt record", "op", where, "partition", partition, "key_hash", xxhash.Sum64(key), "err", err)
}

// On-disk keys: a namespace byte, then (for records) the partition as a
// big-endian uint32, then the user key. See doc.go.
const (
	nsRecord           = 'r'
	recordKeyPrefixLen = 1 + 4
)

// recordKey appends the Badger key of (partition, key) to dst.
func recordKey(dst []byte, partition uint32, key []byte) []byte {
	dst = append(dst, nsRecord)
	dst = binary.BigEndian.AppendUint32(dst, partition)
	return append(dst, key...)
}

// badgerLogger adapts slog to badger.Logger.
type badgerLogger struct{ l *slog.Logger }

func (b badgerLogger) logf(level slog.Level, format string, args ...any) {
	ctx := context.Background()
	if !b.l.Enabled(ctx, level) {
		return
	}
	msg := fmt.Sprintf(format, args...)
	b.l.Log(ctx, level, "badger", "detail", strings.TrimSpace(msg))
}

func (b badgerLogger) Errorf(f string, v ...any)   { b.logf(slog.LevelError, f, v...) }
func (b badgerLogger) Warningf(f string, v ...any) { b.logf(slog.LevelWarn, f, v...) }
func (b badgerLogger) Infof(f string, v ...any)    { b.logf(slog.LevelInfo, f, v...) }
func (b badgerLogger) Debugf(f string, v ...any)   { b.logf(slog.LevelDebug, f, v...) }
