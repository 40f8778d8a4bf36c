// Command etcd is the etcd side of `ringkv bench --compare etcd=ADDRS`:
// it runs the bench harness's workloads against an etcd cluster through
// etcd's own Go client. It lives in its own module so that ringkv's main
// module never depends on etcd.
//
// It reads a job from standard input as JSON ({"endpoints": [...],
// "specs": [...], "preload": true}), runs each spec in turn (after
// preloading the first spec's key space when asked: the specs of one job
// share it), prints progress to standard
// error and writes the results, a JSON array of bench.Result, to standard
// output. `ringkv bench` starts it with `go run` in this directory, or
// runs the binary named by RINGKV_BENCH_ETCD.
//
// Levels: "serializable" reads from the member the client is connected
// to (etcd's serializable gets); any other level reads linearizably,
// etcd's default. Writes and compare-and-set (a transaction comparing
// the value, or the create revision for put-if-absent) always go
// through etcd's raft log. Workload T reads its keys in one transaction
// of range requests and commits one comparing each key's ModRevision.
package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"os/signal"
	"sync/atomic"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/ringkv/ringkv/bench"
)

// Job is what the harness sends on standard input.
type Job struct {
	Endpoints []string     `json:"endpoints"`
	Specs     []bench.Spec `json:"specs"`
	Preload   bool         `json:"preload"`
	// Conns is how many client connections the callers share; default 4.
	Conns int `json:"conns"`
}

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt)
	err := run(ctx, os.Stdin, os.Stdout, os.Stderr)
	stop()
	if err != nil {
		fmt.Fprintln(os.Stderr, "bench etcd:", err)
		os.Exit(1)
	}
}

func run(ctx context.Context, in io.Reader, out, progress io.Writer) error {
	var job Job
	if err := json.NewDecoder(in).Decode(&job); err != nil {
		return fmt.Errorf("read job: %w", err)
	}
	if len(job.Endpoints) == 0 {
		return errors.New("job has no endpoints")
	}
	d, err := newDriver(job.Endpoints, max(job.Conns, 1))
	if err != nil {
		return err
	}
	defer d.Close()
	var results []bench.Result
	if job.Preload && len(job.Specs) > 0 {
		if err := bench.Preload(ctx, d, job.Specs[0]); err != nil {
			return fmt.Errorf("preload: %w", err)
		}
	}
	for _, s := range job.Specs {
		res, err := bench.Run(ctx, d, s, func(p bench.Progress) {
			fmt.Fprintf(progress, "\retcd %-3s %-12s %6.1fs %10d ops %9.0f ops/s %6d errors", p.Spec.Label(), p.Spec.Level,
				p.Elapsed.Seconds(), p.Ops, p.Interval, p.Errors)
		})
		if err != nil {
			return fmt.Errorf("run %s: %w", s.Workload, err)
		}
		fmt.Fprintln(progress)
		results = append(results, res)
	}
	if err := json.NewEncoder(out).Encode(results); err != nil {
		return fmt.Errorf("write results: %w", err)
	}
	return nil
}

var _ bench.TxnDriver = (*driver)(nil)

// driver implements bench.Driver over etcd's client, spreading calls over
// several connections.
type driver struct {
	clients []*clientv3.Client
	next    atomic.Uint64
}

func newDriver(endpoints []string, conns int) (*driver, error) {
	d := &driver{}
	for range conns {
		c, err := clientv3.New(clientv3.Config{Endpoints: endpoints, DialTimeout: 5 * time.Second})
		if err != nil {
			d.Close()
			return nil, fmt.Errorf("connect to etcd %v: %w", endpoints, err)
		}
		d.clients = append(d.clients, c)
	}
	return d, nil
}

func (d *driver) Close() {
	for _, c := range d.clients {
		_ = c.Close() // the run is over; nothing to do about a close error
	}
}

func (d *driver) client() *clientv3.Client {
	return d.clients[d.next.Add(1)%uint64(len(d.clients))]
}

func (d *driver) Name() string { return "etcd" }

func (d *driver) Get(ctx context.Context, key, level string) ([]byte, bool, error) {
	var opts []clientv3.OpOption
	if level == "serializable" {
		opts = append(opts, clientv3.WithSerializable())
	}
	resp, err := d.client().Get(ctx, key, opts...)
	if err != nil {
		return nil, false, fmt.Errorf("etcd get: %w", err)
	}
	if len(resp.Kvs) == 0 {
		return nil, false, nil
	}
	return resp.Kvs[0].Value, true, nil
}

func (d *driver) Put(ctx context.Context, key string, value []byte, _ string) error {
	if _, err := d.client().Put(ctx, key, string(value)); err != nil {
		return fmt.Errorf("etcd put: %w", err)
	}
	return nil
}

func (d *driver) CompareAndSet(ctx context.Context, key string, expected, value []byte, _ string) (bool, error) {
	cmp := clientv3.Compare(clientv3.CreateRevision(key), "=", 0)
	if expected != nil {
		cmp = clientv3.Compare(clientv3.Value(key), "=", string(expected))
	}
	resp, err := d.client().Txn(ctx).If(cmp).Then(clientv3.OpPut(key, string(value))).Commit()
	if err != nil {
		return false, fmt.Errorf("etcd txn: %w", err)
	}
	return resp.Succeeded, nil
}

// ReadVersions reads keys in one etcd transaction of K range requests (a
// snapshot at one revision) and returns each key's ModRevision (0:
// absent). etcd serves a read-only transaction linearizably.
func (d *driver) ReadVersions(ctx context.Context, keys []string, _ string) ([]uint64, error) {
	ops := make([]clientv3.Op, len(keys))
	for i, k := range keys {
		ops[i] = clientv3.OpGet(k)
	}
	resp, err := d.client().Txn(ctx).Then(ops...).Commit()
	if err != nil {
		return nil, fmt.Errorf("etcd txn read: %w", err)
	}
	versions := make([]uint64, len(keys))
	for i, r := range resp.Responses {
		if kvs := r.GetResponseRange().GetKvs(); len(kvs) > 0 {
			versions[i] = uint64(kvs[0].ModRevision) //nolint:gosec // revisions are positive
		}
	}
	return versions, nil
}

// CommitIfVersions is one etcd transaction: if every key's ModRevision
// equals what was read, put value in each, else get them.
func (d *driver) CommitIfVersions(ctx context.Context, keys []string, versions []uint64, value []byte) (bool, error) {
	cmps := make([]clientv3.Cmp, len(keys))
	puts := make([]clientv3.Op, len(keys))
	gets := make([]clientv3.Op, len(keys))
	for i, k := range keys {
		cmps[i] = clientv3.Compare(clientv3.ModRevision(k), "=", int64(versions[i])) //nolint:gosec // read from etcd's int64
		puts[i] = clientv3.OpPut(k, string(value))
		gets[i] = clientv3.OpGet(k)
	}
	resp, err := d.client().Txn(ctx).If(cmps...).Then(puts...).Else(gets...).Commit()
	if err != nil {
		return false, fmt.Errorf("etcd txn: %w", err)
	}
	return resp.Succeeded, nil
}

func (d *driver) List(ctx context.Context, prefix string, limit int, level string) (int, error) {
	opts := []clientv3.OpOption{clientv3.WithPrefix(), clientv3.WithLimit(int64(limit))}
	if level == "serializable" {
		opts = append(opts, clientv3.WithSerializable())
	}
	resp, err := d.client().Get(ctx, prefix, opts...)
	if err != nil {
		return 0, fmt.Errorf("etcd list: %w", err)
	}
	return len(resp.Kvs), nil
}

func (d *driver) ErrorKind(err error) string {
	if s, ok := status.FromError(errors.Unwrap(err)); ok {
		switch s.Code() {
		case codes.DeadlineExceeded:
			return "timeout"
		case codes.Unavailable:
			return "unavailable"
		}
	}
	return bench.ErrorKindOf(err)
}
