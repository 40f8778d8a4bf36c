#!/bin/bash
# Linearizable writes (W, 32 callers, 10 s) on three serve processes of a
# cluster created with P partitions (raft groups), P interleaved per
# round: throughput and the serve processes' CPU per write.
cd /work/main
source scripts/serve3.sh
export RINGKV=${RINGKV:-/tmp/ringkv} DIR=/tmp/parts-serve
OUT=${OUT:-/tmp/parts}; mkdir -p "$OUT"
cpu() { local t=0; for i in 1 2 3; do p=$(cat $DIR/n$i.pid); s=$(awk '{print $14+$15}' /proc/$p/stat); t=$((t+s)); done; echo $t; }
for r in $(seq 1 "${ROUNDS:-3}"); do
  for p in ${PARTS:-64 16}; do
    EXTRA="--partitions $p" serve_start || exit 1
    $RINGKV bench --target $TARGET --preload-only >/dev/null 2>&1
    c0=$(cpu)
    $RINGKV bench --target $TARGET --duration 10s --workloads ${W:-W} --levels ${L:-linearizable} --preload=false --json > "$OUT/p$p-$r.json" 2>/dev/null
    c1=$(cpu)
    set -- $(python3 -c "import json;d=json.load(open('$OUT/p$p-$r.json'));print(d['results'][0]['ops'], round(d['results'][0]['ops_per_s']), d['results'][0]['latency']['p99_us'])")
    echo "P=$p round $r: $2 ops/s, p99 $(( $3/1000 )) ms, server CPU $(python3 -c "print(round(($c1-$c0)*10000/$1,1))") us/op, load $(cut -d' ' -f1 /proc/loadavg)" | tee -a "$OUT/log"
    serve_stop
  done
done
