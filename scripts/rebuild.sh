#!/usr/bin/env bash
# A replica rebuilt from scratch (docs/BENCHMARKS.md, "A replica rebuilt
# from scratch (issue 22)").
#   scripts/rebuild.sh BIN KEYS VALUE TIER [SERVE FLAGS...]
# e.g. scripts/rebuild.sh /tmp/ringkv 1000000 1024 ae
# Starts a fresh 3-node cluster of BIN on 127.0.0.1 (ports 2828x/2920x/
# 2730x, data in a temporary directory under REBUILD_DIR, default /tmp),
# loads KEYS keys of VALUE bytes (`ringkv bench --preload-only`, batches
# of BATCH keys, default 256, LOAD_CONC callers, default 16; a load
# refused as overloaded stops short, and the keys written are printed:
# for 1 KiB values BATCH=64 LOAD_CONC=8 wrote 984,256 of 1,000,000), stops n3, removes its data directory and
# starts it again with --join, as OPERATIONS.md says for a node that lost
# its disk; then polls, every POLL seconds (default 1), until n3 holds
# the data again, and prints the time from the restart.
#
# The load is at LOAD_LEVEL (default quorum, the Dynamo tier: the records
# reach the replicas as merges and no raft log holds them).
# TIER ae: only anti-entropy can refill n3 (every 10 s, --ae-interval
#   10s, at the default budget of 20,000 records and 16 MiB a second
#   unless SERVE FLAGS say otherwise). Done when the records moved to n3
#   (pulled by n3 plus pushed by n1 and n2:
#   ringkv_antientropy_keys_repaired_total) stop growing, at KEYS or
#   more (concurrent exchanges can move a record twice), and a full round
#   of n3's exchanges with both peers since then found every partition
#   equal; the time is that of the last record moved.
# TIER raft: scheduled anti-entropy is off on every node (--ae-interval
#   -1s) and the groups snapshot often (--snapshot-threshold 64
#   --trailing-logs 16 --snapshot-interval 2s); after the load RAFT_KEYS
#   of the keys (default 20,000) are written again at linearizable, so
#   that every group logs enough entries to snapshot, and the script
#   waits until every group holds a snapshot on n1 and on n2 (either may
#   lead once n3 stops). A raft snapshot is
#   the partition's every record (FSM Persist scans the store), whatever
#   tier wrote it: n3's groups, finding their leaders' logs compacted,
#   install those snapshots and replay the log after them, and that is
#   all that refills n3. Done when every group on n3 has applied the
#   commit index the group had when n3 stopped.
# In both, n3's data directory size and the load average are printed as
# it fills, and n1's size beside it at the end. Everything started here
# is stopped and the data removed on exit.
set -euo pipefail
bin=$1; keys=$2; value=$3; tier=$4; shift 4
poll=${POLL:-1}
level=${LOAD_LEVEL:-quorum}
case $tier in
  ae) ae=(--ae-interval 10s) ;;
  raft) ae=(--ae-interval -1s --snapshot-threshold 64 --trailing-logs 16 --snapshot-interval 2s) ;;
  *) echo "TIER must be ae or raft" >&2; exit 2 ;;
esac
dir=$(mktemp -d "${REBUILD_DIR:-/tmp}/ringkv-rebuild.XXXXXX")
pids=(0 0 0)
cleanup() {
  for p in "${pids[@]}"; do [ "$p" -gt 0 ] && kill "$p" 2>/dev/null || true; done
  for p in "${pids[@]}"; do while [ "$p" -gt 0 ] && kill -0 "$p" 2>/dev/null; do sleep 0.1; done; done
  rm -rf "$dir"
}
trap cleanup EXIT
start() { # start I [FLAGS]: node nI in the background
  local i=$1; shift
  "$bin" serve --id "n$i" --data "$dir/n$i" --http "127.0.0.1:2828$i" --rpc "127.0.0.1:2920$i" \
    --gossip "127.0.0.1:2730$i" --resp "" --drain-timeout 0 "${ae[@]}" "$@" >>"$dir/n$i.log" 2>&1 &
  pids[$((i-1))]=$!
}
ready() { curl -fsS -m 1 -o /dev/null "http://127.0.0.1:2828$1/ready" 2>/dev/null; }
start 1 "$@"
sleep 1
start 2 --join 127.0.0.1:27301 "$@"
start 3 --join 127.0.0.1:27301 "$@"
for _ in $(seq 1 600); do
  ok=0; for i in 1 2 3; do ready "$i" && ok=$((ok+1)); done
  [ $ok -eq 3 ] && break; sleep 0.2
done
[ $ok -eq 3 ] || { echo "cluster not ready; logs in $dir" >&2; trap - EXIT; exit 1; }
targets=127.0.0.1:29201,127.0.0.1:29202,127.0.0.1:29203

echo "ringkv: $keys keys of $value B loaded at $level, tier $tier, serve flags: ${ae[*]} ${*:-}; $(git -C "$(dirname "$0")" rev-parse --short HEAD 2>/dev/null || true)"
t0=$(date +%s)
"$bin" bench --target "$targets" --keys "$keys" --value-size "$value" --preload-batch "${BATCH:-256}" \
  --preload-level "$level" --preload-only --concurrency "${LOAD_CONC:-16}" --op-timeout 60s >"$dir/load.log" 2>&1 || true
grep '^preloaded' "$dir/load.log" | tail -1 || true
{ grep -v '^preload' "$dir/load.log" || true; } | tail -1 | cut -c1-300
echo "loaded in $(( $(date +%s) - t0 )) s; data: n1 $(du -sm "$dir/n1" | cut -f1) MiB, n3 $(du -sm "$dir/n3" | cut -f1) MiB"

stats() { curl -fsS -m 5 "http://127.0.0.1:2828$1/api/stats" 2>/dev/null; }
if [ "$tier" = raft ]; then
  "$bin" bench --target "$targets" --keys "${RAFT_KEYS:-20000}" --value-size "$value" --preload-batch 64 \
    --preload-level linearizable --preload-only --concurrency 16 --op-timeout 60s 2>&1 | grep '^preloaded' || true
  for _ in $(seq 1 300); do
    missing=$(for i in 1 2; do stats "$i"; echo; done | python3 -c '
import json, sys
snap = {}
for line in sys.stdin:
    if line.strip():
        for g in json.loads(line)["groups"]:
            snap[g["partition"]] = snap.get(g["partition"], True) and g["last_snapshot_index"] > 0
print(sum(1 for v in snap.values() if not v))' || echo 64)
    [ "$missing" -eq 0 ] && break
    sleep 1
  done
  echo "groups without a snapshot on n1 or n2: $missing"
fi

metric_sum() { # metric_sum I PATTERN: the sum of node nI's samples whose line matches PATTERN
  curl -fsS -m 5 "http://127.0.0.1:2828$1/metrics" 2>/dev/null | awk -v re="$2" '$0 ~ re {s += $NF} END {printf "%d", s}'
}
# Each group's commit index before n3 stops, the highest n1 or n2 knows.
want=$(for i in 1 2; do stats "$i"; echo; done | python3 -c '
import json, sys
want = {}
for line in sys.stdin:
    if line.strip():
        for g in json.loads(line)["groups"]:
            want[g["partition"]] = max(want.get(g["partition"], 0), g["commit_index"])
print(json.dumps(want))')
moved_before=$(( $(metric_sum 1 '^ringkv_antientropy_keys_repaired_total.*pushed') + $(metric_sum 2 '^ringkv_antientropy_keys_repaired_total.*pushed') ))

kill "${pids[2]}"; while kill -0 "${pids[2]}" 2>/dev/null; do sleep 0.1; done
rm -rf "$dir/n3"
t0=$(date +%s.%N)
start 3 --join 127.0.0.1:27301 "$@"
elapsed() { python3 -c "import time; print(f'{time.time() - $t0:.1f}')"; }
last_report=0
while :; do
  sleep "$poll"
  now=$(elapsed)
  if [ "$tier" = ae ]; then
    moved=$(( $(metric_sum 3 '^ringkv_antientropy_keys_repaired_total.*pulled') + $(metric_sum 1 '^ringkv_antientropy_keys_repaired_total.*pushed') + $(metric_sum 2 '^ringkv_antientropy_keys_repaired_total.*pushed') - moved_before ))
    equal=$(metric_sum 3 '^ringkv_antientropy_exchanges_total.*result="equal"')
    progress="records moved to n3 $moved (of $keys keys), n3's exchanges found equal $equal"
    # The refill ends with the last record moved; it is known to have
    # ended once, with every key moved at least once, n3's exchanges have
    # found a full round (its partitions x 2 peers) equal since then.
    if [ "$moved" != "${prev_moved:-}" ]; then
      prev_moved=$moved; moved_at=$now; equal_at_move=$equal
    elif [ "$moved" -ge "$keys" ]; then
      parts=$(stats 3 | python3 -c 'import json,sys; print(len(json.load(sys.stdin)["partitions"]))' 2>/dev/null || echo 64)
      [ "$equal" -ge $(( equal_at_move + 2 * parts )) ] && done=1
    fi
  else
    progress=$(stats 3 | python3 -c '
import json, sys
want = {int(k): v for k, v in json.loads(sys.argv[1]).items()}
try:
    groups = {g["partition"]: g for g in json.load(sys.stdin)["groups"]}
except ValueError:
    print("n3 not serving yet"); sys.exit()
behind = [p for p, c in want.items() if p not in groups or groups[p]["applied_index"] < c]
snap = sum(1 for g in groups.values() if g["last_snapshot_index"] > 0)
print(f"groups on n3 behind their commit index at the stop: {len(behind)} of {len(want)}, groups holding a snapshot {snap}")' "$want" 2>/dev/null || echo "n3 not serving yet")
    case $progress in *"stop: 0 of"*) done=1 ;; esac
  fi
  secs=${now%.*}
  if [ -n "${done:-}" ] || [ $(( secs - last_report )) -ge 10 ]; then
    last_report=$secs
    echo "[$now s] $progress; n3 data $(du -sm "$dir/n3" 2>/dev/null | cut -f1) MiB; load $(cut -d' ' -f1 /proc/loadavg)"
  fi
  if [ -n "${done:-}" ]; then
    if [ "$tier" = ae ]; then
      echo "rebuilt: the last record reached n3 $moved_at s after its restart (within $poll s), a round of equal exchanges confirmed it at $now s (tier ae); data: n1 $(du -sm "$dir/n1" | cut -f1) MiB, n3 $(du -sm "$dir/n3" | cut -f1) MiB"
    else
      echo "rebuilt: n3 holds the data again after $now s (tier raft); data: n1 $(du -sm "$dir/n1" | cut -f1) MiB, n3 $(du -sm "$dir/n3" | cut -f1) MiB"
    fi
    installed=$(metric_sum 3 '^ringkv_consensus_transport_snapshots_installed_total')
    echo "n3: raft snapshots installed $installed, answered without installing $(metric_sum 3 '^ringkv_consensus_transport_snapshots_skipped_total'), anti-entropy records pulled $(metric_sum 3 '^ringkv_antientropy_keys_repaired_total.*pulled')"
    break
  fi
  if [ "$secs" -ge "${TIMEOUT:-1800}" ]; then echo "not rebuilt within ${TIMEOUT:-1800} s: $progress" >&2; exit 1; fi
done
