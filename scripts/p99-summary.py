#!/usr/bin/env python3
"""p99-summary.py OUT: the figures of scripts/p99-same-load.sh's reports.

Per target (srv, emb), workload and level: every round's achieved rate and
p99 for ringkv and etcd beside it, and the median of the per-round ratios
of ringkv's p99 over etcd's (below 1: ringkv's tail is shorter)."""
import glob, json, os, re, statistics, sys
from collections import defaultdict

out = sys.argv[1]
rows = defaultdict(list)  # (target, workload, level, etcd level) -> [(rate, p99, etcd rate, etcd p99, errors)]
for path in sorted(glob.glob(os.path.join(out, "*.json"))):
    m = re.match(r"(srv|emb)-(\d+)-(.*)\.json", os.path.basename(path))
    if not m:
        continue
    try:
        rep = json.load(open(path))
    except (OSError, ValueError) as e:
        print(f"{path}: {e}", file=sys.stderr)
        continue
    for r in rep.get("results", []):
        w = r["spec"]["workload"]
        peer = [p for p in rep.get("peer", []) if p["spec"]["workload"] == w]
        if not peer:
            continue
        p = peer[0]
        rows[(m.group(1), w, r["spec"]["level"], p["spec"]["level"])].append(
            (r["ops_per_s"], r["latency"]["p99_us"] / 1000, p["ops_per_s"], p["latency"]["p99_us"] / 1000, r["errors"] + p["errors"]))
print("| target | workload | ringkv level | etcd level | ringkv ops/s | ringkv p99 ms | etcd ops/s | etcd p99 ms | errors | median p99 ratio |")
print("| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |")
for k in sorted(rows):
    v = rows[k]
    ratio = statistics.median(a[1] / a[3] for a in v if a[3] > 0)
    f = lambda i, d=0: ", ".join(f"{a[i]:.{d}f}" for a in v)
    print(f"| {k[0]} | {k[1]} | {k[2]} | {k[3]} | {f(0)} | {f(1, 1)} | {f(2)} | {f(3, 1)} | {sum(a[4] for a in v)} | {ratio:.2f}x |")
