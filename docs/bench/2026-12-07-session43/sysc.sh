#!/bin/bash
# per-write syscalls (read/write from /proc/PID/io) and CPU of the three serve nodes under W at level $L
cd /work/main
source scripts/serve3.sh
export DIR=/tmp/sysc-serve RINGKV=${RINGKV:-/tmp/ringkv}
L=${L:-quorum}
serve_start || exit 1
$RINGKV bench --target $TARGET --preload-only >/dev/null 2>&1
snap() { for i in 1 2 3; do p=$(cat $DIR/n$i.pid); awk '/syscr|syscw/{printf "%s ", $2}' /proc/$p/io; awk '{printf "%s\n", $14+$15}' /proc/$p/stat; done; }
snap > /tmp/s43/before
$RINGKV bench --target $TARGET --duration 10s --workloads W --levels "$L" --preload=false --json > /tmp/s43/bench-$L.json 2>/dev/null
snap > /tmp/s43/after
python3 - <<PY
import json
d=json.load(open('/tmp/s43/bench-$L.json'))['results'][0]
ops=d['ops']
b=[list(map(int,l.split())) for l in open('/tmp/s43/before')]
a=[list(map(int,l.split())) for l in open('/tmp/s43/after')]
r=sum(x[0]-y[0] for x,y in zip(a,b)); w=sum(x[1]-y[1] for x,y in zip(a,b)); t=sum(x[2]-y[2] for x,y in zip(a,b))
print("$L ops", ops, "ops/s", round(d['ops_per_s']), "reads/op %.2f writes/op %.2f cpu/op %.0f us"%(r/ops, w/ops, t*10000/ops))
PY
serve_stop
