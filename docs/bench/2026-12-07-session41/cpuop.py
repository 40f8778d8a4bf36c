# cpuop.py OUT PIDS_RINGKV PIDS_ETCD -- BENCH ARGS...: runs `ringkv bench
# --compare ... --json` (ringkv's run, then etcd's), sampling every 0.25 s
# the CPU time (utime+stime) of the three ringkv serve processes, of the
# three etcd members and of the bench process with its children; prints,
# for each side, its servers' cores and CPU per operation over the 10 s
# in which that side was loaded (the window in which its servers were
# busiest), and the bench client's.
import json, os, subprocess, sys, time

out, rk, et = sys.argv[1], sys.argv[2].split(','), sys.argv[3].split(',')
args = sys.argv[sys.argv.index('--') + 1:]
hz = os.sysconf('SC_CLK_TCK')

def cpu(pid):
    try:
        f = open(f'/proc/{pid}/stat').read().rsplit(')', 1)[1].split()
        return (int(f[11]) + int(f[12]) + int(f[13]) + int(f[14])) / hz
    except (OSError, IndexError):
        return 0.0

p = subprocess.Popen(args, stdout=open(out + '.json', 'w'), stderr=open(out + '.err', 'w'))
samples = []
while p.poll() is None:
    kids = subprocess.run(['pgrep', '-P', str(p.pid)], capture_output=True, text=True).stdout.split()
    samples.append((time.time(), sum(cpu(x) for x in rk), sum(cpu(x) for x in et), cpu(p.pid) + sum(cpu(k) for k in kids)))
    time.sleep(0.25)
rep = json.load(open(out + '.json'))
res, peer = rep['results'][0], rep['peer']
peer = peer[0] if isinstance(peer, list) else peer
if isinstance(peer, dict) and 'results' in peer:
    peer = peer['results'][0]

def window(col, secs=10.0):
    best = None
    for i in range(len(samples)):
        for j in range(i, len(samples)):
            if samples[j][0] - samples[i][0] >= secs:
                d = (samples[j][col] - samples[i][col]) / (samples[j][0] - samples[i][0])
                if best is None or d > best[0]:
                    best = (d, i, j)
                break
    return best

for name, col, ops in (('ringkv', 1, res['ops_per_s']), ('etcd', 2, peer['ops_per_s'])):
    cores, i, j = window(col)
    cl = (samples[j][3] - samples[i][3]) / (samples[j][0] - samples[i][0])
    print(f'{name}: {ops:.0f} ops/s, servers {cores:.2f} cores = {cores / ops * 1e6:.0f} us per op; bench client {cl:.2f} cores')
