#!/bin/bash
# Five interleaved rounds: QUORUM writes (W) beside etcd's puts, on three
# serve processes and on the embedded cluster (32 callers, 10 s each).
cd /work/main
source scripts/serve3.sh
export RINGKV=${RINGKV:-/tmp/ringkv} RINGKV_BENCH_ETCD=/tmp/ringkv-bench-etcd DIR=${DIR:-/tmp/q5-serve}
E=127.0.0.1:12379,127.0.0.1:22379,127.0.0.1:32379
OUT=${OUT:-/tmp/q5}; mkdir -p "$OUT"
ROUNDS=${ROUNDS:-5}
run() { local name=$1; shift
  echo "$(date -u +%T) $name start load $(cut -d' ' -f1-3 /proc/loadavg)" >> "$OUT/log"
  $RINGKV bench --duration 10s --compare etcd=$E --json "$@" > "$OUT/$name.json" 2>"$OUT/$name.err"
  echo "$(date -u +%T) $name end rc=$? load $(cut -d' ' -f1-3 /proc/loadavg)" >> "$OUT/log"
}
for r in $(seq 1 "$ROUNDS"); do
  serve_start || exit 1
  run "srv-$r-wq" --target $TARGET --workloads W --levels quorum
  serve_stop
  run "emb-$r-wq" --workloads W --levels quorum
done
