// Package bench is the load harness behind `ringkv bench`: it runs
// YCSB-style workloads against any store behind a Driver and measures
// them the same way, so ringkv and a peer (etcd, through the driver in
// the separate module under bench/etcd) are compared in one run.
//
// Workloads: A (50% read, 50% update), B (95/5), C (read only), W (write
// only), CAS (read-modify-write increments on a hot set of keys), L
// (prefix lists) and T (transactions: read K keys in one snapshot, then
// one transaction that writes all K if no key's version changed since,
// else reads them; a failed compare is a conflict, counted apart from
// commits and errors). T's keys fall in K different partitions of the
// ring, or with Spec.TxnSamePartition all in one; the driver must be a
// TxnDriver. Keys are chosen uniformly or from a zipfian distribution. Run drives a workload closed-loop (N callers, each
// issuing its next operation when the last one returns) or open-loop (a
// target rate: operations are scheduled at fixed intervals and each
// one's latency is measured from its scheduled start, so a stall that
// delays later operations shows in their latency rather than hiding as
// coordinated omission).
//
// Latencies go into HDR histograms (HdrHistogram/hdrhistogram-go,
// microsecond resolution, 3 significant digits); a Result carries
// throughput, p50/p90/p99/p99.9/max and errors by kind. Reports render
// as a text table, JSON, or one self-contained HTML page with charts.
//
// Guarantees: Run stops by itself (at the op count or the duration, and
// when its context ends), every operation has a deadline (Spec.OpTimeout),
// and a failed operation is counted under its kind rather than aborting
// the run.
package bench
