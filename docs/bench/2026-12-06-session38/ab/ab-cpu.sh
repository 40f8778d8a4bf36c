#!/bin/bash
# A/B: server CPU per operation (utime+stime of the three serve processes
# over the run) and throughput, workload $W at level $L, 10 s, 32 callers.
cd /work/main
source scripts/serve3.sh
OUT=${OUT:-/tmp/s38/ab-cpu}; mkdir -p $OUT
W=${W:-C}; L=${L:-one}; ROUNDS=${ROUNDS:-3}
cpu() { local t=0; for i in 1 2 3; do p=$(cat $DIR/n$i.pid); s=$(awk '{print $14+$15}' /proc/$p/stat); t=$((t+s)); done; echo $t; }
for r in $(seq 1 $ROUNDS); do
  for v in ${V:-A B}; do
    export RINGKV=/tmp/s38/ringkv-$v DIR=/tmp/s38/serve-ab
    serve_start || exit 1
    $RINGKV bench --target $TARGET --preload-only >/dev/null 2>&1
    c0=$(cpu)
    $RINGKV bench --target $TARGET --duration 10s --workloads $W --levels $L --preload=false --json > $OUT/$v-$r.json 2>/dev/null
    c1=$(cpu)
    ops=$(python3 -c "import json;d=json.load(open('$OUT/$v-$r.json'));print(d['results'][0]['ops'], round(d['results'][0]['ops_per_s']))")
    set -- $ops
    echo "$v round $r: $2 ops/s, server CPU $(( (c1-c0)*10 )) ms, $(python3 -c "print(round(($c1-$c0)*10000/$1,1))") us/op, load $(cut -d' ' -f1 /proc/loadavg)" | tee -a $OUT/log
    serve_stop
  done
done
