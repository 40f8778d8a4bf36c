#!/bin/bash
# A/B of a serve flag: variant A default, B with $BFLAGS; workload $W at $L.
cd /work/main
source scripts/serve3.sh
OUT=${OUT:-/tmp/s38/ab-flag}; mkdir -p $OUT
W=${W:-W}; L=${L:-linearizable}; ROUNDS=${ROUNDS:-3}
export RINGKV=/tmp/ringkv DIR=/tmp/s38/serve-abf
cpu() { local t=0; for i in 1 2 3; do p=$(cat $DIR/n$i.pid); s=$(awk '{print $14+$15}' /proc/$p/stat); t=$((t+s)); done; echo $t; }
for r in $(seq 1 $ROUNDS); do
  for v in A B; do
    if [ $v = B ]; then export EXTRA="$BFLAGS"; else unset EXTRA; fi
    serve_start || exit 1
    $RINGKV bench --target $TARGET --preload-only >/dev/null 2>&1
    c0=$(cpu)
    $RINGKV bench --target $TARGET --duration 10s --workloads $W --levels $L --preload=false --json > $OUT/$v-$r.json 2>/dev/null
    c1=$(cpu)
    read ops ops_s p99 < <(python3 -c "import json;d=json.load(open('$OUT/$v-$r.json'));r=d['results'][0];print(r['ops'], round(r['ops_per_s']), round(r['latency']['p99_us']/1000,1))")
    echo "$v round $r: $ops_s ops/s, p99 $p99 ms, server CPU $(( (c1-c0)*10 )) ms, $(python3 -c "print(round(($c1-$c0)*10000/$ops,1))") us/op, load $(cut -d' ' -f1 /proc/loadavg)" | tee -a $OUT/log
    serve_stop
  done
done
