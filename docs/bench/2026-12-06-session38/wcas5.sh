#!/bin/bash
# Interleaved rounds: linearizable writes (W) and CAS beside etcd's puts and
# CAS Txn, on three serve processes and on the embedded cluster.
cd /work/main
source scripts/serve3.sh
export RINGKV=${RINGKV:-/tmp/ringkv} RINGKV_BENCH_ETCD=/tmp/ringkv-bench-etcd DIR=${DIR:-/tmp/wcas5-serve}
E=127.0.0.1:12379,127.0.0.1:22379,127.0.0.1:32379
OUT=${OUT:-/tmp/wcas5}; mkdir -p $OUT
ROUNDS=${ROUNDS:-5}
run() { local name=$1; shift
  echo "$(date -u +%T) $name start load $(cut -d' ' -f1-3 /proc/loadavg)" >> $OUT/log
  $RINGKV bench --duration 10s --compare etcd=$E --json "$@" > $OUT/$name.json 2>$OUT/$name.err
  echo "$(date -u +%T) $name end rc=$? load $(cut -d' ' -f1-3 /proc/loadavg)" >> $OUT/log
}
for r in $(seq 1 $ROUNDS); do
  serve_start || exit 1
  run srv-$r-w --target $TARGET --workloads W --levels linearizable
  run srv-$r-cas --target $TARGET --workloads CAS --levels linearizable --preload=false
  serve_stop
  run emb-$r-w --workloads W --levels linearizable
  run emb-$r-cas --workloads CAS --levels linearizable
done
