#!/bin/bash
# ab.sh: session 41's ab-cpu.sh with a setting per side: MAIN_SET and
# EXP_SET are shell commands run before each side's serve processes
# start (e.g. EXP_SET='export EXTRA="--memtable-bytes 4194304"' or
# EXP_SET='export RINGKV_EXP_WAL_LINGER=4ms'); each side starts from the
# same environment. Binaries /tmp/ringkv-main and /tmp/ringkv-exp;
# workload $W at level $L, 10 s, 32 callers, interleaved, the order
# alternating from round to round; server CPU per operation.
cd /work/main
source scripts/serve3.sh
export DIR=/tmp/abcpu-serve
OUT=${OUT:-/tmp/abcpu}; mkdir -p "$OUT"
W=${W:-W}; L=${L:-linearizable}
cpu() { local t=0; for i in 1 2 3; do p=$(cat $DIR/n$i.pid); s=$(awk '{print $14+$15}' /proc/$p/stat); t=$((t+s)); done; echo $t; }
for r in $(seq 1 "${ROUNDS:-3}"); do
  order="main exp"; [ $((r % 2)) -eq 0 ] && order="exp main"
  for v in $order; do
    (
    export RINGKV=/tmp/ringkv-$v
    if [ $v = exp ]; then eval "${EXP_SET:-}"; else eval "${MAIN_SET:-}"; fi
    serve_start || exit 1
    $RINGKV bench --target $TARGET --preload-only >/dev/null 2>&1
    c0=$(cpu)
    $RINGKV bench --target $TARGET --duration 10s --workloads "$W" --levels "$L" --preload=false --json > "$OUT/$v-$r.json" 2>/dev/null
    c1=$(cpu)
    set -- $(python3 -c "import json;d=json.load(open('$OUT/$v-$r.json'))['results'][0];print(d['ops'], round(d['ops_per_s']), d['latency']['p50_us'], d['latency']['p99_us'])")
    echo "$v round $r: $2 ops/s, p50 $(( $3/100 ))e-1 ms, p99 $(( $4/1000 )) ms, server CPU $(python3 -c "print(round(($c1-$c0)*10000/$1,1))") us/op, load $(cut -d' ' -f1 /proc/loadavg)" | tee -a "$OUT/log"
    serve_stop
    ) || exit 1
  done
done
