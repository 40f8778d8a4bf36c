#!/bin/bash
# overload-10x.sh: issue 21's overload must-show on a 2-core machine
# (docs/BENCHMARKS.md, "Overload at 10x"). One core cannot generate ten
# times what three nodes on the other core serve, so `ringkv dev` runs on
# CPU 0 inside a cgroup-v1 CPU quota (QUOTA_PCT of one core, default 25),
# and the load generator and the probe run on CPU 1. Then: capacity
# (closed loop, 64 callers, 15 s), the p99 at about a quarter of it (open
# loop at UNLOADED_RATE, default 400/s), and scripts/overload.sh's 60 s
# open loop at RATE (default 10x the capacity measured). Needs root and
# /sys/fs/cgroup/cpu (cgroup v1). Extra arguments go to `ringkv dev`
# (e.g. --max-inflight 16). RINGKV is the binary; output in OUT.
set -u
RINGKV=${RINGKV:-ringkv}; OUT=${OUT:-/tmp/overload-10x}; QUOTA_PCT=${QUOTA_PCT:-25}
UNLOADED_RATE=${UNLOADED_RATE:-400}
CG=/sys/fs/cgroup/cpu/ringkv-overload
T=127.0.0.1:19001,127.0.0.1:19002,127.0.0.1:19003
mkdir -p "$OUT" "$CG" || { echo "no cgroup v1 cpu controller at /sys/fs/cgroup/cpu" >&2; exit 2; }
echo 20000 >"$CG/cpu.cfs_period_us"; echo $((200 * QUOTA_PCT)) >"$CG/cpu.cfs_quota_us"
rm -rf "$OUT/dev-data"
sh -c 'echo $$ >"$1/cgroup.procs"; shift; exec taskset -c 0 "$@"' sh "$CG" "$RINGKV" dev --data "$OUT/dev-data" \
  --http-port 18081 --rpc-port 19001 --gossip-port 17001 --resp-port 16381 "$@" >"$OUT/dev.log" 2>&1 &
DEV=$!
cleanup() { kill "$DEV" 2>/dev/null; while kill -0 "$DEV" 2>/dev/null; do sleep 0.2; done; rmdir "$CG" 2>/dev/null; }
trap cleanup EXIT
ready=0
for _ in $(seq 240); do
  n=0; for p in 18081 18082 18083; do curl -sf "localhost:$p/health" >/dev/null && n=$((n+1)); done
  [ $n = 3 ] && ready=1 && break; sleep 0.5
done
[ $ready = 1 ] || { echo "dev did not become healthy" >&2; exit 1; }
# every group led: a write at linearizable succeeds on each of a few keys
for i in $(seq 60); do
  curl -sf -XPOST localhost:18081/api/set -d '{"key":"warm","value":"v","consistency":"linearizable"}' >/dev/null && break; sleep 0.5
done
taskset -c 1 "$RINGKV" bench --target $T --workloads W --levels quorum --duration 15s --concurrency 64 --preload=false 2>/dev/null | tail -1 | tee "$OUT/capacity.txt"
cap=$(awk '{print $4}' "$OUT/capacity.txt")
taskset -c 1 "$RINGKV" bench --target $T --workloads W --levels quorum --duration 15s --concurrency 64 --rate "$UNLOADED_RATE" --preload=false 2>/dev/null | tail -1 | tee "$OUT/unloaded.txt"
RATE=${RATE:-$((cap * 10))}
echo "capacity ${cap}/s, offering ${RATE}/s"
GEN_CPUS=1 RATE=$RATE DEV_PID=$DEV RINGKV=$RINGKV bash "$(dirname "$0")/overload.sh" | tee "$OUT/overload.txt"
