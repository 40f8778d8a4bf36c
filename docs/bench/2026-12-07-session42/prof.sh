#!/bin/bash
# CPU profiles of the three serve nodes under workload $W level $L; out $OUT
cd /work/main
source scripts/serve3.sh
export DIR=/tmp/prof-serve RINGKV=${RINGKV:-/tmp/ringkv}
W=${W:-W}; L=${L:-quorum}; OUT=${OUT:-/tmp/prof}; mkdir -p $OUT
serve_start || exit 1
$RINGKV bench --target $TARGET --preload-only >/dev/null 2>&1
$RINGKV bench --target $TARGET --duration 16s --workloads "$W" --levels "$L" --preload=false --json > $OUT/bench.json 2>/dev/null &
b=$!
sleep 3
for i in 1 2 3; do curl -s -o $OUT/n$i.pb.gz "http://127.0.0.1:1606$i/debug/pprof/profile?seconds=10" & done
while kill -0 $b 2>/dev/null; do sleep 0.5; done
sleep 1
python3 -c "import json;d=json.load(open('$OUT/bench.json'))['results'][0];print(d['ops'], round(d['ops_per_s']), d['latency']['p50_us'], d['latency']['p99_us'])"
serve_stop
