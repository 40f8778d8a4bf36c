#!/bin/bash
# counts fdatasyncs per write: raft WAL and replica syncer, on serve trio, workload $W level $L
cd /work/main
source scripts/serve3.sh
export DIR=/tmp/syncs-serve RINGKV=${RINGKV:-/tmp/ringkv}
W=${W:-W}; L=${L:-linearizable}
snap() { for i in 1 2 3; do curl -s http://127.0.0.1:1808$i/metrics | grep -E '^ringkv_(raftwal_sync_(batch_appends|duration_seconds)|replica_sync_duration_seconds)_(count|sum)'; done | awk '{a[$1]+=$2} END {for (k in a) print k, a[k]}' | sort; }
serve_start || exit 1
$RINGKV bench --target $TARGET --preload-only >/dev/null 2>&1
snap > /tmp/syncs.0
$RINGKV bench --target $TARGET --duration 10s --workloads "$W" --levels "$L" --preload=false --json > /tmp/syncs.json 2>/dev/null
snap > /tmp/syncs.1
python3 - <<'PY'
import json
d=json.load(open('/tmp/syncs.json'))['results'][0]
a=dict(l.split() for l in open('/tmp/syncs.0')); b=dict(l.split() for l in open('/tmp/syncs.1'))
ops=d['ops']; print('ops', ops, 'ops/s', round(d['ops_per_s']))
for k in sorted(b):
    print(k, round(float(b[k])-float(a.get(k,0)),3), 'per op', round((float(b[k])-float(a.get(k,0)))/ops,4))
PY
serve_stop
