#!/usr/bin/env bash
# scripts/split3.sh (RINGKV=BIN, DIR=scratch): a split of 64 partitions into 128 on three `ringkv serve` processes under
# workload A at QUORUM and at the linearizable level (16 callers each, 30 s),
# the split 5 s in. Prints each bench's per-second rate and summary.
set -euo pipefail
cd "$(dirname "$0")/.."
DIR=${DIR:-/tmp/split3} RINGKV=${RINGKV:-/tmp/ringkv}
export DIR RINGKV
source scripts/serve3.sh
serve_start
trap serve_stop EXIT
"$RINGKV" bench --target "$TARGET" --workloads A --levels quorum --keys 20000 --preload-only >/dev/null 2>&1
pids=()
for level in quorum linearizable; do
  "$RINGKV" bench --target "$TARGET" --workloads A --levels "$level" --preload=false --keys 20000 --duration 30s --concurrency 16 >"$DIR/bench-$level.txt" 2>&1 &
  pids+=($!)
done
sleep 5
t=$(date +%s.%N)
curl -fsS -m 30 -X POST "http://127.0.0.1:18081/api/cluster/split?partitions=128"; echo
until curl -fsS -m 5 http://127.0.0.1:18082/api/cluster/status | jq -e '.partition_count == 128 and .converged' >/dev/null; do sleep 0.1; done
echo "n2 holds 128 converged partitions $(echo "$(date +%s.%N) - $t" | bc) s after the split was asked"
for p in "${pids[@]}"; do wait "$p"; done
for level in quorum linearizable; do
  echo "$level per second: $(tr '\r' '\n' <"$DIR/bench-$level.txt" | grep -E '^ringkv A +[a-z]+ +[0-9]+\.0s' | awk '{print $4":"$7}' | tr '\n' ' ')"
  tail -2 "$DIR/bench-$level.txt"
done
