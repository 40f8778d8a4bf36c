#!/usr/bin/env bash
# bench-txn-breakdown.sh BENCH-ARGS...: one 10 s `ringkv bench` run (e.g. --workloads T --txn-keys 4)
# against three serve processes on scripts/bench-txn.sh's ports, already preloaded (any bench run
# without --preload=false does it): per raft-group operation, the calls per transaction and their mean
# latency on the leaders (ringkv_consensus_op_duration_seconds), and the three nodes' CPU profiles
# over 8 s in $OUT/n1.cpu..n3.cpu. RINGKV names the ringkv binary. It does not check whose processes
# hold those ports: make sure they are yours (ss -ltnp), on a shared machine another engineer's may.
: "${RINGKV:?}"; OUT=${OUT:-/tmp/bench-txn}; export OUT; mkdir -p "$OUT"
scrape() { for i in 1 2 3; do curl -s http://127.0.0.1:1808$i/metrics; done | grep -E '^ringkv_consensus_op_duration_seconds_(count|sum)|^ringkv_coordinator_txn_duration_seconds_(count|sum)|^ringkv_consensus_read_index_rounds_total|^ringkv_coordinator_request_duration_seconds_(count|sum)' ; }
scrape > "$OUT"/m0
for i in 1 2 3; do curl -sS -m 30 -o "$OUT"/n$i.cpu "http://127.0.0.1:1606$i/debug/pprof/profile?seconds=8" & done
"$RINGKV" bench --target 127.0.0.1:19001,127.0.0.1:19002,127.0.0.1:19003 --duration 10s --preload=false --json "$@" > "$OUT"/bd.json 2>/dev/null
wait
scrape > "$OUT"/m1
python3 - <<'PY'
import os,re,collections
out=os.environ.get('OUT','/tmp/bench-txn')
def load(f):
    d=collections.defaultdict(float)
    for l in open(f):
        name,val=l.rsplit(' ',1)
        m=re.match(r'(\w+)\{(.*)\}',name)
        if m:
            labels=dict(re.findall(r'(\w+)="([^"]*)"',m.group(2)))
            key=(m.group(1),labels.get('op',labels.get('partitions','')))
        else: key=(name,'')
        d[key]+=float(val)
    return d
a,b=load(out+'/m0'),load(out+'/m1')
import json
r=json.load(open(out+'/bd.json'))['results'][0]
n=r['ops']+r.get('txn_conflicts',0)
print('run: %s %.0f ops/s, %d transactions'%(r['spec']['workload']+str(r['spec'].get('txn_keys','')),r['ops_per_s'],n))
ops=sorted({k[1] for k in b if k[0].endswith('_count')})
for name in ('ringkv_consensus_op_duration_seconds','ringkv_coordinator_txn_duration_seconds','ringkv_coordinator_request_duration_seconds'):
  for op in ops:
    c=b[(name+'_count',op)]-a[(name+'_count',op)]; s=b[(name+'_sum',op)]-a[(name+'_sum',op)]
    if c>0: print('%-45s %-14s %8d calls %6.2f per txn  mean %7.1f ms'%(name,op,c,c/max(n,1),1000*s/c))
k=('ringkv_consensus_read_index_rounds_total','')
print('read index rounds', b[k]-a[k], 'per txn %.2f'%((b[k]-a[k])/max(n,1)))
PY
