#!/bin/bash
# A second sitting on the embedded cluster: linearizable writes (w) of the
# head ($RINGKV, emb) and of main before the change ($RINGKV_MAIN,
# embmain), and QUORUM writes (wq) of the head, beside etcd, interleaved.
cd /work/main
export RINGKV=${RINGKV:-/tmp/ringkv} RINGKV_BENCH_ETCD=/tmp/ringkv-bench-etcd
MAIN=${RINGKV_MAIN:-/tmp/ringkv-main}
E=127.0.0.1:12379,127.0.0.1:22379,127.0.0.1:32379
OUT=${OUT:-/tmp/confirm43}; mkdir -p "$OUT"
ROUNDS=${ROUNDS:-5}
run() { local bin=$1 name=$2; shift 2
  echo "$(date -u +%T) $name start load $(cut -d' ' -f1-3 /proc/loadavg)" >> "$OUT/log"
  $bin bench --duration 10s --compare etcd=$E --json "$@" > "$OUT/$name.json" 2>/dev/null
  echo "$(date -u +%T) $name end rc=$? load $(cut -d' ' -f1-3 /proc/loadavg)" >> "$OUT/log"
}
for r in $(seq 1 "$ROUNDS"); do
  run "$RINGKV" "emb-$r-w" --workloads W --levels linearizable
  run "$MAIN" "embmain-$r-w" --workloads W --levels linearizable
  run "$RINGKV" "emb-$r-wq" --workloads W --levels quorum
done
