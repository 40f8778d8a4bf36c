import json,glob,sys,statistics,os
d=sys.argv[1]
rows={}
for f in sorted(glob.glob(d+'/*.json')):
    name=os.path.basename(f)[:-5]
    tgt,r,kind=name.split('-')
    try: j=json.load(open(f))
    except Exception: continue
    rk=j['results'][0]; p=j['peer']
    pe=p[0] if isinstance(p,list) else p
    if isinstance(pe,dict) and 'results' in pe: pe=pe['results'][0]
    rows.setdefault((tgt,kind),[]).append((int(r),rk['ops_per_s'],pe['ops_per_s'],rk['latency']['p99_us'],pe['latency']['p99_us'],rk['errors']))
for k,v in sorted(rows.items()):
    v.sort(); ratios=[a/b for _,a,b,_,_,_ in v]
    print(k,'ringkv',[round(a) for _,a,_,_,_,_ in v],'etcd',[round(b) for _,_,b,_,_,_ in v],'ratios',[round(x,2) for x in ratios],'median',round(statistics.median(ratios),2),'errors',sum(e for *_,e in v))
