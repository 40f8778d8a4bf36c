package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"os"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/ringkv/ringkv/backup"
	"github.com/ringkv/ringkv/client"
	"github.com/ringkv/ringkv/replica"
)

// backupCommand runs `ringkv backup --to DIR [--since T0|DIR]` and
// `ringkv backup verify DIR`.
func backupCommand(ctx context.Context, args []string, stdout, stderr io.Writer) (err error) {
	if len(args) > 0 && args[0] == "verify" {
		return verifyCommand(args[1:], stdout, stderr)
	}
	defer func() { err = authHint(err) }()
	fs := flag.NewFlagSet("backup", flag.ContinueOnError)
	fs.SetOutput(stderr)
	addr := fs.String("addr", envDefault("RINGKV_ADDR", "127.0.0.1:9001"), "drpc address of any node; a comma-separated list is tried in turn (env RINGKV_ADDR)")
	secure := addSecureFlags(fs)
	to := fs.String("to", "", "directory to write the backup into (created; must not hold a backup)")
	since := fs.String("since", "", "incremental: on top of the backup in this directory (or, less safely, only records newer than this HLC timestamp)")
	parallel := fs.Int("parallel", 4, "partitions read at once")
	quiet := fs.Bool("quiet", false, "no progress line")
	pos, err := parseInterleaved(fs, args)
	if err != nil {
		return err
	}
	if len(pos) > 0 || *to == "" {
		return fmt.Errorf("%w: backup takes --to DIR (and no arguments), or: backup verify DIR", errUsage)
	}
	base, t0, err := parseSince(*since)
	if err != nil {
		return err
	}
	cl, err := dialCluster(*addr, secure)
	if err != nil {
		return fmt.Errorf("backup: %w", err)
	}
	defer func() { _ = cl.Close() }()
	var prog backup.Progress
	stop := startProgress(stderr, "backup", &prog, *quiet)
	start := time.Now()
	m, err := backup.Run(ctx, cl, backup.Config{
		Dir: *to, Base: base, Since: t0, Parallelism: *parallel, Progress: &prog,
		Logger: slog.New(slog.NewTextHandler(stderr, &slog.HandlerOptions{Level: slog.LevelWarn})),
	})
	stop()
	if err != nil {
		return err //nolint:wrapcheck // backup's errors name the step
	}
	took := time.Since(start)
	kind := "full"
	if m.Since != 0 {
		kind = fmt.Sprintf("incremental since %d (%s)", m.Since, replica.Timestamp(m.Since))
	}
	fmt.Fprintf(stdout, "backup %s: timestamp %d (%s), %s\n", *to, m.Timestamp, replica.Timestamp(m.Timestamp), kind)
	fmt.Fprintf(stdout, "%d partitions from %d node(s) (%s), %d records, %s in %s (%s)\n",
		m.Partitions, len(m.Nodes), strings.Join(m.Nodes, ", "), m.Records, mb(m.Bytes), took.Round(time.Millisecond), rates(m.Records, m.Bytes, took))
	return nil
}

// restoreCommand runs `ringkv restore --from DIR [--from DIR ...]`.
func restoreCommand(ctx context.Context, args []string, stdout, stderr io.Writer) (err error) {
	defer func() { err = authHint(err) }()
	fs := flag.NewFlagSet("restore", flag.ContinueOnError)
	fs.SetOutput(stderr)
	addr := fs.String("addr", envDefault("RINGKV_ADDR", "127.0.0.1:9001"), "drpc address of any node; a comma-separated list is tried in turn (env RINGKV_ADDR)")
	secure := addSecureFlags(fs)
	var from stringList
	fs.Var(&from, "from", "a backup directory; repeat for a full backup and its incrementals (any order)")
	parallel := fs.Int("parallel", 4, "files restored at once")
	quiet := fs.Bool("quiet", false, "no progress line")
	pos, err := parseInterleaved(fs, args)
	if err != nil {
		return err
	}
	if len(pos) > 0 || len(from) == 0 {
		return fmt.Errorf("%w: restore takes --from DIR [--from DIR ...] and no arguments", errUsage)
	}
	cl, err := dialCluster(*addr, secure)
	if err != nil {
		return fmt.Errorf("restore: %w", err)
	}
	defer func() { _ = cl.Close() }()
	var prog backup.Progress
	stop := startProgress(stderr, "restore", &prog, *quiet)
	start := time.Now()
	sum, err := backup.Restore(ctx, cl, backup.RestoreConfig{
		Dirs: from, Parallelism: *parallel, Progress: &prog,
		Logger: slog.New(slog.NewTextHandler(stderr, &slog.HandlerOptions{Level: slog.LevelWarn})),
	})
	stop()
	if err != nil {
		return err //nolint:wrapcheck // backup's errors name the file
	}
	took := time.Since(start)
	fmt.Fprintf(stdout, "restored %d backups (%d files): %d records, %s in %s (%s)\n",
		sum.Backups, sum.Files, sum.Records, mb(sum.Bytes), took.Round(time.Millisecond), rates(sum.Records, sum.Bytes, took))
	return nil
}

// verifyCommand runs `ringkv backup verify DIR`.
func verifyCommand(args []string, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("backup verify", flag.ContinueOnError)
	fs.SetOutput(stderr)
	pos, err := parseInterleaved(fs, args)
	if err != nil {
		return err
	}
	if len(pos) != 1 {
		return fmt.Errorf("%w: backup verify takes one directory", errUsage)
	}
	m, err := backup.Verify(pos[0])
	if err != nil {
		return fmt.Errorf("backup verify %s: FAILED: %w", pos[0], err)
	}
	fmt.Fprintf(stdout, "backup %s: OK: %d files, %d records, %s, timestamp %d (%s)\n",
		pos[0], len(m.Files), m.Records, mb(m.Bytes), m.Timestamp, replica.Timestamp(m.Timestamp))
	return nil
}

// parseSince reads --since: empty (a full backup), the directory of an
// earlier backup (the base of an incremental), or an HLC timestamp.
func parseSince(s string) (*backup.Manifest, uint64, error) {
	if s == "" {
		return nil, 0, nil
	}
	m, err := backup.ReadManifest(s)
	if err == nil {
		return m, 0, nil
	}
	if t, perr := strconv.ParseUint(s, 10, 64); perr == nil {
		return nil, t, nil
	}
	return nil, 0, fmt.Errorf("%w: --since %q is neither a finished backup nor an HLC timestamp: %w", errUsage, s, err)
}

// dialCluster connects the client library to the cluster at addr.
func dialCluster(addr string, secure secureFlags) (*client.Client, error) {
	opts, err := secure.clientOptions()
	if err != nil {
		return nil, err
	}
	cl, err := client.New(strings.Split(addr, ","), opts...)
	if err != nil {
		return nil, err //nolint:wrapcheck // the caller names the command
	}
	return cl, nil
}

// startProgress prints a progress line for prog on w every second (on a
// terminal, rewritten in place; otherwise every 5 s, one per line) until
// the returned stop is called, which prints the last one.
func startProgress(w io.Writer, what string, prog *backup.Progress, quiet bool) (stop func()) {
	if quiet {
		return func() {}
	}
	tty := false
	if f, ok := w.(*os.File); ok {
		if st, err := f.Stat(); err == nil && st.Mode()&os.ModeCharDevice != 0 {
			tty = true
		}
	}
	every := 5 * time.Second
	if tty {
		every = time.Second
	}
	start := time.Now()
	line := func() string {
		took := time.Since(start)
		return fmt.Sprintf("%s: %d/%d files, %d records, %s, %s", what, prog.FilesDone.Load(), prog.Files.Load(),
			prog.Records.Load(), mb(prog.Bytes.Load()), rates(prog.Records.Load(), prog.Bytes.Load(), took))
	}
	done := make(chan struct{}) // closed by stop
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		t := time.NewTicker(every)
		defer t.Stop()
		for {
			select {
			case <-done:
				if tty {
					fmt.Fprintf(w, "\r\033[K%s\n", line())
				}
				return
			case <-t.C:
				if tty {
					fmt.Fprintf(w, "\r\033[K%s", line())
				} else {
					fmt.Fprintln(w, line())
				}
			}
		}
	}()
	var once sync.Once
	return func() {
		once.Do(func() {
			close(done)
			wg.Wait()
		})
	}
}

func mb(b int64) string { return fmt.Sprintf("%.1f MB", float64(b)/1e6) }

func rates(records, bytes int64, took time.Duration) string {
	s := took.Seconds()
	if s <= 0 {
		return "-"
	}
	return fmt.Sprintf("%.0f records/s, %.1f MB/s", float64(records)/s, float64(bytes)/1e6/s)
}

// stringList is a repeatable string flag.
type stringList []string

func (l *stringList) String() string { return strings.Join(*l, ",") }

func (l *stringList) Set(s string) error {
	if s == "" {
		return errors.New("empty value")
	}
	*l = append(*l, s)
	return nil
}
