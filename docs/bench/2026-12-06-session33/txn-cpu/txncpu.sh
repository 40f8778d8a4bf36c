#!/bin/bash
# serve cluster, T4 with --compare etcd, CPU of serve pids and etcd pids sampled each second
set -u
RINGKV=/tmp/s33/ringkv2; DIR=/tmp/s33/tcpu-serve; OUT=/tmp/s33/tcpu; mkdir -p $OUT; rm -f $OUT/cpu
export RINGKV_BENCH_ETCD=/tmp/s33/etcd-driver
ETCD=127.0.0.1:12379,127.0.0.1:22379,127.0.0.1:32379
. /work/main/scripts/serve3.sh
serve_start || exit 1
$RINGKV bench --target $TARGET --duration 2s --workloads T --txn-keys 4 > /dev/null 2>&1  # preload
sp=$(cat $DIR/n1.pid $DIR/n2.pid $DIR/n3.pid); ep=$(cat /tmp/s33/etcd/n1.pid /tmp/s33/etcd/n2.pid /tmp/s33/etcd/n3.pid)
/tmp/s33/cpusample.sh $OUT/cpu $sp -- $ep & smp=$!
$RINGKV bench --target $TARGET --duration 10s --preload=false --compare etcd=$ETCD --json --workloads T --txn-keys 4 > $OUT/t4.json 2>$OUT/t4.err
kill $smp; serve_stop
