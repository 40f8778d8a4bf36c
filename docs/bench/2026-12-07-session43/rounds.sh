#!/bin/bash
# Interleaved rounds beside etcd (32 callers, 10 s each): linearizable
# writes (w), CAS (cas), QUORUM writes (wq) and linearizable reads (cl) on
# three serve processes (srv) and on the embedded cluster of $RINGKV
# (emb), and the embedded cluster of $RINGKV_MAIN (embmain, the build
# before the change) beside it.
cd /work/main
source scripts/serve3.sh
export RINGKV=${RINGKV:-/tmp/ringkv} RINGKV_BENCH_ETCD=/tmp/ringkv-bench-etcd DIR=${DIR:-/tmp/r43-serve}
MAIN=${RINGKV_MAIN:-/tmp/ringkv-main}
E=127.0.0.1:12379,127.0.0.1:22379,127.0.0.1:32379
OUT=${OUT:-/tmp/r43}; mkdir -p "$OUT"
ROUNDS=${ROUNDS:-5}
source docs/bench/2026-12-07-session43/run.sh
for r in $(seq 1 "$ROUNDS"); do
  serve_start || exit 1
  run "$RINGKV" "srv-$r-w" --target $TARGET --workloads W --levels linearizable
  run "$RINGKV" "srv-$r-cas" --target $TARGET --workloads CAS --levels linearizable --preload=false
  run "$RINGKV" "srv-$r-wq" --target $TARGET --workloads W --levels quorum --preload=false
  serve_stop
  run "$RINGKV" "emb-$r-w" --workloads W --levels linearizable
  run "$MAIN" "embmain-$r-w" --workloads W --levels linearizable
  run "$RINGKV" "emb-$r-cas" --workloads CAS --levels linearizable
  run "$MAIN" "embmain-$r-wq" --workloads W --levels quorum
  run "$RINGKV" "emb-$r-wq" --workloads W --levels quorum
  run "$RINGKV" "emb-$r-cl" --workloads C --levels linearizable
  run "$MAIN" "embmain-$r-cl" --workloads C --levels linearizable
done
