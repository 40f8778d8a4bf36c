#!/usr/bin/env bash
# Idle CPU of three `ringkv serve` processes on loopback beside etcd's three
# members, in the same sitting (docs/BENCHMARKS.md, "Idle cost").
#   scripts/idle-cost.sh BIN [WINDOWS]
# Starts a fresh 3-node cluster of BIN (ports 2808x/2900x/2710x, pprof on
# 2606x, data in a temporary directory), waits until every node is ready
# and 20 s more, then measures WINDOWS (default 3) windows of 20 s each:
# ringkv's processes, then etcd's members (if ETCD_DIR names a directory
# where ../shared/peers/etcd.sh started them), as % of one core
# (utime+stime from /proc/PID/stat), with the load average. Stops the cluster.
set -euo pipefail
bin=$1; windows=${2:-3}
dir=$(mktemp -d)
pids=()
cleanup() { for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done; for p in "${pids[@]}"; do while kill -0 "$p" 2>/dev/null; do sleep 0.1; done; done; rm -rf "$dir"; }
trap cleanup EXIT
for i in 1 2 3; do
  join=(); [ "$i" -gt 1 ] && join=(--join 127.0.0.1:27101)
  "$bin" serve --id "n$i" --data "$dir/n$i" --http "127.0.0.1:2808$i" --rpc "127.0.0.1:2900$i" \
    --gossip "127.0.0.1:2710$i" --resp "" --pprof "127.0.0.1:2606$i" "${join[@]}" >"$dir/n$i.log" 2>&1 &
  pids+=($!)
  [ "$i" -eq 1 ] && sleep 1
done
for _ in $(seq 1 300); do
  ok=0; for i in 1 2 3; do curl -fsS -m 1 -o /dev/null "http://127.0.0.1:2808$i/ready" 2>/dev/null && ok=$((ok+1)); done
  [ $ok -eq 3 ] && break; sleep 0.2
done
[ $ok -eq 3 ] || { echo "cluster not ready; logs in $dir" >&2; trap - EXIT; exit 1; }
sleep 20
hz=$(getconf CLK_TCK)
cpu() { # cpu SECONDS PID...: % of one core
  local s=$1; shift; local t1=0 t2=0 p
  for p in "$@"; do t1=$((t1 + $(awk '{print $14+$15}' "/proc/$p/stat"))); done
  sleep "$s"
  for p in "$@"; do t2=$((t2 + $(awk '{print $14+$15}' "/proc/$p/stat"))); done
  echo "scale=2; ($t2-$t1)*100/$hz/$s" | bc
}
etcd=()
if [ -n "${ETCD_DIR:-}" ]; then for i in 1 2 3; do etcd+=("$(cat "$ETCD_DIR/n$i.pid")"); done; fi
for w in $(seq 1 "$windows"); do
  line="window $w: ringkv $(cpu 20 "${pids[@]}")%"
  [ ${#etcd[@]} -gt 0 ] && line="$line  etcd $(cpu 20 "${etcd[@]}")%"
  echo "$line  | $(uptime)"
done
