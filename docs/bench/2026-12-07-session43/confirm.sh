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
RUN_ERR=/dev/null; source docs/bench/2026-12-07-session43/run.sh
for r in $(seq 1 "$ROUNDS"); do
  run "$RINGKV" "emb-$r-w" --workloads W --levels linearizable
  run "$MAIN" "embmain-$r-w" --workloads W --levels linearizable
  run "$RINGKV" "emb-$r-wq" --workloads W --levels quorum
done
