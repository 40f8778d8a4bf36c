#!/bin/bash
# Five interleaved rounds: reads (workload C) beside etcd, on three serve
# processes and on the embedded cluster: ONE beside etcd's serializable
# gets, linearizable beside its linearizable gets.
cd /work/main
source scripts/serve3.sh
export RINGKV=${RINGKV:-/tmp/ringkv} RINGKV_BENCH_ETCD=/tmp/ringkv-bench-etcd DIR=${DIR:-/tmp/reads5-serve}
E=127.0.0.1:12379,127.0.0.1:22379,127.0.0.1:32379
OUT=${OUT:-/tmp/reads5}; mkdir -p $OUT
run() { local name=$1; shift
  echo "$(date -u +%T) $name start load $(cut -d' ' -f1-3 /proc/loadavg)" >> $OUT/log
  $RINGKV bench --duration 10s --compare etcd=$E --json "$@" > $OUT/$name.json 2>$OUT/$name.err
  echo "$(date -u +%T) $name end rc=$? load $(cut -d' ' -f1-3 /proc/loadavg)" >> $OUT/log
}
for r in 1 2 3 4 5; do
  serve_start || exit 1
  run srv-$r-one --target $TARGET --workloads C --levels one --etcd-level serializable
  run srv-$r-lin --target $TARGET --workloads C --levels linearizable --preload=false
  serve_stop
  run emb-$r-one --workloads C --levels one --etcd-level serializable
  run emb-$r-lin --workloads C --levels linearizable
done
