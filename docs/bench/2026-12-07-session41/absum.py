# absum.py DIR: per target and workload, main's and exp's ops/s per round,
# the per-round ratio exp/main and its median (reports of ab.sh).
import glob, json, os, statistics, sys

rows = {}
for f in sorted(glob.glob(sys.argv[1] + '/*.json')):
    tgt, r, b, kind = os.path.basename(f)[:-5].split('-')
    try:
        res = json.load(open(f))['results'][0]
    except (ValueError, KeyError, IndexError):
        continue
    rows.setdefault((tgt, kind), {}).setdefault(int(r), {})[b] = (res['ops_per_s'], res['latency']['p99_us'], res['errors'])
for (tgt, kind), rounds in sorted(rows.items()):
    pairs = [(v['main'], v['exp']) for _, v in sorted(rounds.items()) if 'main' in v and 'exp' in v]
    ratios = [e[0] / m[0] for m, e in pairs]
    print(tgt, kind, 'main', [round(m[0]) for m, _ in pairs], 'exp', [round(e[0]) for _, e in pairs],
          'ratios', [round(x, 3) for x in ratios], 'median', round(statistics.median(ratios), 3) if ratios else '-',
          'medians', round(statistics.median(m[0] for m, _ in pairs)) if pairs else '-', round(statistics.median(e[0] for _, e in pairs)) if pairs else '-',
          'errors', sum(m[2] + e[2] for m, e in pairs))
