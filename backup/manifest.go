package backup

import (
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"time"

	"github.com/ringkv/ringkv/replica"
)

// ManifestName is the manifest's file name in a backup directory. It is
// written last: a directory without one holds no finished backup.
const ManifestName = "manifest.json"

// manifestFormat is the version of the manifest and file format.
const manifestFormat = 1

// Manifest describes one backup: what it holds and how to check it.
type Manifest struct {
	// Format is the version of the layout (1).
	Format int `json:"format"`
	// Timestamp is T: the backup holds, for every key, its newest record
	// with an HLC timestamp <= T (tombstones included).
	Timestamp uint64 `json:"timestamp"`
	// TimestampTime is T's wall-clock part, for people.
	TimestampTime string `json:"timestamp_time"`
	// Since is T0 of an incremental backup: only records with a timestamp
	// above it are held. 0 for a full backup.
	Since uint64 `json:"since,omitempty"`
	// Partitions is the source cluster's partition count; RingVersion its
	// ring's version.
	Partitions  int    `json:"partitions"`
	RingVersion uint64 `json:"ring_version"`
	// Nodes lists the members whose snapshots were read.
	Nodes []string `json:"nodes"`
	// Versions holds each node's snapshot version (its store's commit
	// version at the pin), for incremental backups on top of this one.
	Versions map[string]uint64 `json:"snapshot_versions"`
	// Started and Finished bound the backup's run.
	Started  time.Time `json:"started"`
	Finished time.Time `json:"finished"`
	// Records and Bytes total the files'.
	Records int64 `json:"records"`
	Bytes   int64 `json:"bytes"`
	// Files lists every file, in partition order.
	Files []FileInfo `json:"files"`
}

// FileInfo describes one file of a backup.
type FileInfo struct {
	// Name is the file's name in the backup directory.
	Name string `json:"name"`
	// Partition is the source partition the file holds.
	Partition int `json:"partition"`
	// Records is the number of records; Bytes the file's size.
	Records int64 `json:"records"`
	Bytes   int64 `json:"bytes"`
	// SHA256 is the hex SHA-256 of the whole file.
	SHA256 string `json:"sha256"`
}

// fileName returns the name of partition p's file.
func fileName(p int) string { return fmt.Sprintf("p%05d.rkb", p) }

// check reports what is inconsistent in m.
func (m *Manifest) check() error {
	var errs []error
	if m.Format != manifestFormat {
		errs = append(errs, fmt.Errorf("format %d, this ringkv reads %d", m.Format, manifestFormat))
	}
	if m.Timestamp == 0 {
		errs = append(errs, errors.New("no timestamp"))
	}
	if m.Since >= m.Timestamp && m.Since != 0 {
		errs = append(errs, fmt.Errorf("since %d is not before timestamp %d", m.Since, m.Timestamp))
	}
	var recs, size int64
	seen := map[string]bool{}
	for _, f := range m.Files {
		if f.Name == "" || filepath.Base(f.Name) != f.Name || f.Name == ManifestName {
			errs = append(errs, fmt.Errorf("bad file name %q", f.Name))
		}
		if seen[f.Name] {
			errs = append(errs, fmt.Errorf("file %q listed twice", f.Name))
		}
		seen[f.Name] = true
		recs += f.Records
		size += f.Bytes
	}
	if recs != m.Records || size != m.Bytes {
		errs = append(errs, fmt.Errorf("totals %d records, %d bytes; files add up to %d, %d", m.Records, m.Bytes, recs, size))
	}
	if len(errs) > 0 {
		return fmt.Errorf("%w: manifest: %w", ErrCorrupt, errors.Join(errs...))
	}
	return nil
}

// ReadManifest reads and checks the manifest of the backup in dir.
// Errors: ErrNoManifest, or a *FileError wrapping ErrCorrupt for a
// manifest that does not parse or add up.
func ReadManifest(dir string) (*Manifest, error) {
	path := filepath.Join(dir, ManifestName)
	b, err := os.ReadFile(path) //nolint:gosec // the operator names the directory
	if errors.Is(err, fs.ErrNotExist) {
		return nil, fmt.Errorf("%s: %w", dir, ErrNoManifest)
	}
	if err != nil {
		return nil, fmt.Errorf("read manifest: %w", err)
	}
	var m Manifest
	if err := json.Unmarshal(b, &m); err != nil {
		return nil, &FileError{Path: path, Err: fmt.Errorf("%w: %w", ErrCorrupt, err)}
	}
	if err := m.check(); err != nil {
		return nil, &FileError{Path: path, Err: err}
	}
	return &m, nil
}

// writeManifest writes m into dir atomically (a temporary file, fsynced,
// renamed) and fsyncs dir.
func writeManifest(dir string, m *Manifest) error {
	slices.SortFunc(m.Files, func(a, b FileInfo) int { return a.Partition - b.Partition })
	m.TimestampTime = replica.Timestamp(m.Timestamp).String()
	b, err := json.MarshalIndent(m, "", "  ")
	if err != nil {
		return fmt.Errorf("encode manifest: %w", err)
	}
	tmp := filepath.Join(dir, ManifestName+".tmp")
	if err := writeFileSync(tmp, append(b, '\n')); err != nil {
		return err
	}
	if err := os.Rename(tmp, filepath.Join(dir, ManifestName)); err != nil {
		return fmt.Errorf("install manifest: %w", err)
	}
	return syncDir(dir)
}

func writeFileSync(path string, b []byte) error {
	f, err := os.OpenFile(path, os.O_CREATE|os.O_TRUNC|os.O_WRONLY, 0o600) //nolint:gosec // inside the operator's directory
	if err != nil {
		return fmt.Errorf("create %s: %w", path, err)
	}
	if _, err := f.Write(b); err != nil {
		_ = f.Close()
		return fmt.Errorf("write %s: %w", path, err)
	}
	if err := f.Sync(); err != nil {
		_ = f.Close()
		return fmt.Errorf("sync %s: %w", path, err)
	}
	if err := f.Close(); err != nil {
		return fmt.Errorf("close %s: %w", path, err)
	}
	return nil
}

func syncDir(dir string) error {
	d, err := os.Open(dir) //nolint:gosec // the operator's directory
	if err != nil {
		return fmt.Errorf("open %s: %w", dir, err)
	}
	defer d.Close() //nolint:errcheck // read-only handle
	if err := d.Sync(); err != nil {
		return fmt.Errorf("sync %s: %w", dir, err)
	}
	return nil
}
