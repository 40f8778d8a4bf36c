#!/bin/bash
# usage: L=linearizable|quorum [EXTRA="--partitions 8"] bash clientcpu.sh
# CPU of the bench client and of the three serve processes under W at level $L
cd /work/main; mkdir -p /tmp/s44
source scripts/serve3.sh
export DIR=/tmp/cc-serve RINGKV=${RINGKV:-/tmp/ringkv}
L=${L:-quorum}
serve_start || exit 1
$RINGKV bench --target $TARGET --preload-only >/dev/null 2>&1
cpu() { t=0; for i in 1 2 3; do p=$(cat $DIR/n$i.pid); t=$((t+$(awk '{print $14+$15}' /proc/$p/stat))); done; echo $t; }
b=$(cpu); s0=$(awk '/^cpu /{print $2+$3+$4+$6+$7+$8, $5}' /proc/stat)
/usr/bin/time -f "client %U user %S sys %e wall" $RINGKV bench --target $TARGET --duration 10s --workloads W --levels "$L" --preload=false --json 2>/tmp/s44/cc-time > /tmp/s44/cc-$L.json
a=$(cpu); s1=$(awk '/^cpu /{print $2+$3+$4+$6+$7+$8, $5}' /proc/stat)
tail -1 /tmp/s44/cc-time
python3 -c "
import json;d=json.load(open('/tmp/s44/cc-$L.json'))['results'][0];ops=d['ops']
print('$L ops/s',round(d['ops_per_s']),'server cpu/op us',round(($a-$b)*10000/ops))
s0='$s0'.split();s1='$s1'.split();print('machine busy',int(s1[0])-int(s0[0]),'idle',int(s1[1])-int(s0[1]),'ticks')"
serve_stop
