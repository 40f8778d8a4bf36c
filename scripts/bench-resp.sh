#!/usr/bin/env bash
# The Redis protocol beside the Go client (docs/BENCHMARKS.md, issue 19):
# interleaved rounds of `ringkv bench` (workloads C and W at quorum, 48
# callers over the three nodes) and redis-benchmark (one process of 16
# connections per node, summed) against a running `ringkv dev` started as
#   ringkv dev --data /tmp/resp-devdata --http-port 18081 --rpc-port 19001 \
#       --gossip-port 17001 --resp-port 16381
# Usage: scripts/bench-resp.sh [ROUNDS]   (RINGKV: the binary, default ringkv)
set -euo pipefail
RINGKV=${RINGKV:-ringkv}
ROUNDS=${1:-5}
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
# The Go bench's key space, and redis-benchmark's (key:000000000000..).
"$RINGKV" bench --target 127.0.0.1:19001,127.0.0.1:19002,127.0.0.1:19003 --workloads C \
  --levels quorum --keys 10000 --duration 1s >/dev/null
redis-benchmark -p 16381 -t set -c 16 -n 20000 -r 10000 -d 100 -P 16 --csv >/dev/null 2>&1
for round in $(seq 1 "$ROUNDS"); do
  for w in C W; do
    r=$("$RINGKV" bench --target 127.0.0.1:19001,127.0.0.1:19002,127.0.0.1:19003 --workloads "$w" \
      --levels quorum --concurrency 48 --keys 10000 --duration 8s --preload=false 2>/dev/null |
      awk -v w="$w" '$1=="ringkv" && $2==w && $3=="quorum" && NF>8 {print $4}')
    echo "round $round go $w $r"
  done
  for P in 1 16; do
    for t in get set; do
      for port in 16381 16382 16383; do
        redis-benchmark -p "$port" -t "$t" -c 16 -n 30000 -r 10000 -d 100 -P "$P" --csv 2>/dev/null >"$tmp/$t.$port" &
      done
      wait
      s=$(cat "$tmp"/"$t".* | awk -F, '$1!="\"test\"" {gsub(/"/,"",$2); s+=$2} END {printf "%.0f", s}')
      echo "round $round resp P$P $t $s"
    done
  done
  echo "load $(cut -d' ' -f1-3 /proc/loadavg)"
done
