#!/bin/bash
# lingerab.sh OUT ROUNDS VARIANT...: VARIANT = name:binary:extra-serve-args ; interleaved
set -u
OUT=$1; R=$2; shift 2; mkdir -p $OUT
DIR=/tmp/s33/lab-serve
export RINGKV_BENCH_ETCD=/tmp/s33/etcd-driver
ETCD=127.0.0.1:12379,127.0.0.1:22379,127.0.0.1:32379
. scripts/serve3.sh   # run from the repository root
for r in $(seq 1 $R); do
 for var in "$@"; do
  IFS=: read -r v RINGKV EXTRA <<< "$var"
  serve_start || exit 1
  echo "$(date -u +%T) r$r $v open load $(cut -d' ' -f1-3 /proc/loadavg)" >> $OUT/log
  $RINGKV bench --target $TARGET --duration 10s --compare etcd=$ETCD --json --workloads W --levels quorum,linearizable --rate 1500 > $OUT/r$r-$v-open.json 2>/dev/null
  echo "$(date -u +%T) r$r $v closed load $(cut -d' ' -f1-3 /proc/loadavg)" >> $OUT/log
  $RINGKV bench --target $TARGET --duration 10s --compare etcd=$ETCD --json --workloads W,CAS --levels linearizable > $OUT/r$r-$v-closed.json 2>/dev/null
  serve_stop
 done
done
echo "$(date -u +%T) done" >> $OUT/log
