#!/bin/bash
# serve processes at GOMAXPROCS $G (bench client at its default); W at $L
cd /work/main
source scripts/serve3.sh
export DIR=/tmp/sgrid-serve RINGKV=${RINGKV:-/tmp/ringkv}
( [ -n "$G" ] && export GOMAXPROCS=$G; serve_start ) || exit 1
$RINGKV bench --target $TARGET --preload-only >/dev/null 2>&1
snap() { for i in 1 2 3; do p=$(cat $DIR/n$i.pid); awk '{printf "%s\n", $14+$15}' /proc/$p/stat; done; }
snap > /tmp/s43/sb
$RINGKV bench --target $TARGET --duration 10s --workloads W --levels "$L" --preload=false --json > /tmp/s43/sg.json 2>/dev/null
snap > /tmp/s43/sa
python3 - <<PY
import json
d=json.load(open('/tmp/s43/sg.json'))['results'][0]
ops=d['ops']
t=sum(int(a)-int(b) for a,b in zip(open('/tmp/s43/sa'),open('/tmp/s43/sb')))
print("P=$G $L", round(d['ops_per_s']), "p99", d['latency']['p99_us'], "cpu/op %.0f us, server cores %.2f"%(t*10000/ops, t/100/10))
PY
serve_stop
