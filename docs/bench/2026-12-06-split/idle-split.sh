#!/usr/bin/env bash
set -euo pipefail
cd "$(dirname "$0")/../../.."
DIR=/tmp/idlesplit RINGKV=/tmp/ringkv
export DIR RINGKV
source scripts/serve3.sh
serve_start
trap serve_stop EXIT
cpu() { local s=$1 t1=0 t2=0 p hz; shift; hz=$(getconf CLK_TCK)
  for p in "$@"; do t1=$((t1 + $(awk '{print $14+$15}' "/proc/$p/stat"))); done; sleep "$s"
  for p in "$@"; do t2=$((t2 + $(awk '{print $14+$15}' "/proc/$p/stat"))); done; echo "scale=1; ($t2-$t1)*100/$hz/$s" | bc; }
pids=$(cat $DIR/n1.pid $DIR/n2.pid $DIR/n3.pid)
sleep 20
echo "idle, 64 partitions: $(cpu 20 $pids)% $(cpu 20 $pids)% $(cpu 20 $pids)% of one core"
curl -fsS -X POST "http://127.0.0.1:18081/api/cluster/split?partitions=128"; echo
until curl -fsS -m 5 http://127.0.0.1:18082/api/cluster/status | jq -e '.partition_count == 128 and .converged' >/dev/null; do sleep 0.2; done
sleep 20
echo "idle, 128 partitions after the split (64 parents idle): $(cpu 20 $pids)% $(cpu 20 $pids)% $(cpu 20 $pids)% of one core"
