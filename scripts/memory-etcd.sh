#!/usr/bin/env bash
# Memory of etcd's three members holding KEYS keys of VALUE bytes, the peer
# of scripts/memory.sh (docs/BENCHMARKS.md, "Memory (issue 22)").
#   scripts/memory-etcd.sh KEYS VALUE
# Starts etcd with ../shared/peers/etcd.sh in a temporary directory (its
# fixed ports 12379/22379/32379: nothing else may use them meanwhile),
# preloads KEYS keys through the bench/etcd driver (64 callers, one put a
# key, every key the same value) and reads random keys for READ_SECS
# (default 30) seconds at serializable (workload C), then prints each
# member's VmRSS, VmHWM, RssAnon, RssFile and data size, and the load
# average. RINGKV_BENCH_ETCD names the driver's binary (cd bench/etcd &&
# go build); unset, it is run with `go run` from bench/etcd. Stops etcd and
# removes its data on exit.
set -euo pipefail
keys=$1; value=$2
root=$(cd "$(dirname "$0")/.." && pwd)
peers=${ETCD_SH:-$root/../shared/peers/etcd.sh}
dir=$(mktemp -d "${MEM_DIR:-/tmp}/etcd-mem.XXXXXX")
cleanup() { "$peers" stop "$dir" >/dev/null 2>&1 || true; rm -rf "$dir"; }
trap cleanup EXIT
"$peers" start "$dir" >/dev/null
status() { awk -v k="$2:" '$1 == k {print int($2/1024)}' "/proc/$1/status"; } # MiB
report() {
  for i in 1 2 3; do
    p=$(cat "$dir/n$i.pid")
    echo "$1 etcd n$i: VmRSS $(status "$p" VmRSS) MiB, VmHWM $(status "$p" VmHWM) MiB, RssAnon $(status "$p" RssAnon) MiB, RssFile $(status "$p" RssFile) MiB, data $(du -sm "$dir/n$i" | cut -f1) MiB"
  done
  echo "$1 load: $(cut -d' ' -f1-3 /proc/loadavg)"
}
echo "etcd $(etcd --version | head -1): $keys keys of $value B"
report started
job=$(printf '{"endpoints":["127.0.0.1:12379","127.0.0.1:22379","127.0.0.1:32379"],"preload":true,"conns":4,"specs":[{"workload":"C","level":"serializable","keys":%d,"hot_keys":16,"value_size":%d,"distribution":"uniform","concurrency":64,"duration":%d,"ops":0,"rate":0,"list_limit":100,"op_timeout":30000000000,"seed":1}]}' \
  "$keys" "$value" "$(( ${READ_SECS:-30} * 1000000000 ))")
start=$(date +%s)
if [ -n "${RINGKV_BENCH_ETCD:-}" ]; then out=$(echo "$job" | "$RINGKV_BENCH_ETCD" 2>"$dir/driver.log") || { tail -3 "$dir/driver.log"; exit 1; }; else out=$(cd "$root/bench/etcd" && echo "$job" | go run . 2>"$dir/driver.log") || { tail -3 "$dir/driver.log"; exit 1; }; fi
echo "preloaded and read in $(( $(date +%s) - start )) s: $(echo "$out" | grep -o '"ops_per_s":[0-9.]*' | head -1)"
report read
