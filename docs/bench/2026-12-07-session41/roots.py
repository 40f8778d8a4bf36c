# roots.py PROFILE...: CPU samples of pprof profiles grouped by the
# function each sampled stack starts in (the goroutine's entry point).
#   python3 roots.py prof/n1.pb.gz prof/n2.pb.gz prof/n3.pb.gz
import collections, re, subprocess, sys

txt = subprocess.run(['go', 'tool', 'pprof', '-traces'] + sys.argv[1:], capture_output=True, text=True).stdout
roots, total = collections.Counter(), 0.0
for block in txt.split('-----------+-------------------------------------------------------'):
    lines = [l for l in block.strip('\n').split('\n') if l.strip()]
    if not lines:
        continue
    m = re.match(r'\s*([\d.]+)(ms|s)\s+(\S+)', lines[0])
    if not m:
        continue
    v = float(m.group(1)) * (1 if m.group(2) == 'ms' else 1000)
    root = lines[-1].strip() if len(lines) > 1 else m.group(3)
    roots[root] += v
    total += v
for r, v in roots.most_common(40):
    print(f'{v / total * 100:5.1f}%  {r}')
