#!/usr/bin/env python3
"""bench-summary.py OUT: the per-round ratios and their medians of the JSON
reports scripts/bench-compare.sh wrote to OUT (ringkv's ops/s over etcd's for
the same workload in the same report; p99 beside etcd's)."""
import collections
import json
import os
import statistics
import sys

out = sys.argv[1]
rows = collections.defaultdict(list)  # (target, run kind, workload, level) -> [(round, ratio, ops, etcd ops, p99 ms, etcd p99 ms)]
for name in sorted(os.listdir(out)):
    if not name.endswith(".json"):
        continue
    target, rnd, kind = name[:-5].split("-")  # srv-3-lin
    try:
        rep = json.load(open(os.path.join(out, name)))
    except (OSError, ValueError) as e:
        print(f"{name}: unreadable ({e})")
        continue
    peers = {}
    for p in rep.get("peer") or []:
        peers[(p["spec"]["workload"], p["spec"].get("txn_keys"))] = p
    for r in rep["results"]:
        w, lvl = r["spec"]["workload"], r["spec"]["level"]
        p = peers.get((w, r["spec"].get("txn_keys")))
        if p is None or not p["ops_per_s"]:
            continue
        rows[(target, kind, w, lvl)].append((int(rnd), r["ops_per_s"] / p["ops_per_s"], r["ops_per_s"], p["ops_per_s"],
                                             r["latency"]["p99_us"] / 1000, p["latency"]["p99_us"] / 1000, r.get("errors", 0)))

print("| target | etcd reads | workload | level | ringkv ops/s (median) | etcd ops/s (median) | ratio per round | median ratio | p99 ringkv / etcd (median, ms) | errors |")
print("| --- | --- | --- | --- | ---: | ---: | --- | ---: | --- | ---: |")
for (target, kind, w, lvl), v in sorted(rows.items()):
    v.sort()
    ratios = [x[1] for x in v]
    print(f"| {'serve' if target == 'srv' else 'embedded'} | {'serializable' if kind == 'ser' else 'linearizable'} | {w} | {lvl} "
          f"| {statistics.median(x[2] for x in v):.0f} | {statistics.median(x[3] for x in v):.0f} "
          f"| {' / '.join(f'{r:.2f}x' for r in ratios)} | **{statistics.median(ratios):.2f}x** "
          f"| {statistics.median(x[4] for x in v):.1f} / {statistics.median(x[5] for x in v):.1f} | {sum(x[6] for x in v)} |")
