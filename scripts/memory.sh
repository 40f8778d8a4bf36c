#!/usr/bin/env bash
# Memory of three `ringkv serve` processes holding KEYS keys of VALUE bytes
# (docs/BENCHMARKS.md, "Memory (issue 22)").
#   scripts/memory.sh BIN KEYS VALUE [SERVE FLAGS...]
# e.g. scripts/memory.sh /tmp/ringkv 1000000 100 --memory-budget 256MiB
# Starts a fresh 3-node cluster of BIN on 127.0.0.1 (ports 2818x/2910x/
# 2720x, data in a temporary directory under MEM_DIR, default /tmp), loads
# KEYS keys (`ringkv bench --preload-only`, batches of 256 at level
# LOAD_LEVEL, default quorum, every key its own value; at one, the writes
# to the other replicas can fall behind a fast load and time out; BATCH
# keys a batch, default 256; a load that fails, after retries, is
# reported with the keys it wrote and the script goes on), then reads random keys for READ_SECS (default
# 30) seconds (workload C at one). After start, after loading and after
# the read pass it prints, per node: VmRSS, VmHWM, RssAnon, RssFile (from
# /proc/PID/status), the Go heap in use and the runtime's total
# (go_memstats_heap_inuse_bytes, go_memstats_sys_bytes from /metrics) and
# the data directory's size; and the load average.
# With ETCD_DIR set to a directory where ../shared/peers/etcd.sh started
# etcd's three members, the read pass also runs on etcd (after preloading
# KEYS keys into it, `ringkv bench --compare`, RINGKV_BENCH_ETCD naming the
# bench/etcd driver binary), and the members' memory is printed after it.
# With HEAP_DIR set, each node serves pprof (127.0.0.1:2616x) and node
# n1's heap profile (in use, top 25) is written there after loading and
# after the read pass.
# Everything started here is stopped and the data removed on exit.
set -euo pipefail
bin=$1; keys=$2; value=$3; shift 3
read_secs=${READ_SECS:-30}
dir=$(mktemp -d "${MEM_DIR:-/tmp}/ringkv-mem.XXXXXX")
pids=()
cleanup() {
  for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
  for p in "${pids[@]}"; do while kill -0 "$p" 2>/dev/null; do sleep 0.1; done; done
  rm -rf "$dir"
}
trap cleanup EXIT
for i in 1 2 3; do
  join=(); [ "$i" -gt 1 ] && join=(--join 127.0.0.1:27201)
  [ -n "${HEAP_DIR:-}" ] && join+=(--pprof "127.0.0.1:2616$i")
  "$bin" serve --id "n$i" --data "$dir/n$i" --http "127.0.0.1:2818$i" --rpc "127.0.0.1:2910$i" \
    --gossip "127.0.0.1:2720$i" --resp "" --drain-timeout 0 "${join[@]}" "$@" >"$dir/n$i.log" 2>&1 &
  pids+=($!)
  [ "$i" -eq 1 ] && sleep 1
done
for _ in $(seq 1 600); do
  ok=0; for i in 1 2 3; do curl -fsS -m 1 -o /dev/null "http://127.0.0.1:2818$i/ready" 2>/dev/null && ok=$((ok+1)); done
  [ $ok -eq 3 ] && break; sleep 0.2
done
[ $ok -eq 3 ] || { echo "cluster not ready; logs in $dir" >&2; trap - EXIT; exit 1; }
targets=127.0.0.1:29101,127.0.0.1:29102,127.0.0.1:29103

mib() { echo $(( $1 / 1048576 )); }
status() { awk -v k="$2:" '$1 == k {print int($2/1024)}' "/proc/$1/status"; } # MiB
metric() { curl -fsS -m 5 "http://127.0.0.1:2818$1/metrics" | awk -v k="$2" '$1 == k {printf "%d", $2/1048576}'; }
report() { # report STAGE
  for i in 1 2 3; do
    p=${pids[$((i-1))]}
    echo "$1 n$i: VmRSS $(status "$p" VmRSS) MiB, VmHWM $(status "$p" VmHWM) MiB, RssAnon $(status "$p" RssAnon) MiB, RssFile $(status "$p" RssFile) MiB, heap_inuse $(metric "$i" go_memstats_heap_inuse_bytes) MiB, go_sys $(metric "$i" go_memstats_sys_bytes) MiB, data $(du -sm "$dir/n$i" | cut -f1) MiB"
  done
  echo "$1 load: $(cut -d' ' -f1-3 /proc/loadavg)"
  if [ -n "${HEAP_DIR:-}" ]; then
    go tool pprof -top -nodecount 25 -sample_index inuse_space "http://127.0.0.1:26161/debug/pprof/heap" \
      >"$HEAP_DIR/heap-$1-$keys-$value.txt" 2>/dev/null || true
  fi
}
echo "ringkv: $keys keys of $value B loaded at ${LOAD_LEVEL:-quorum}, serve flags: ${*:-(none)}; $(git -C "$(dirname "$0")" rev-parse --short HEAD 2>/dev/null || true)"
report started
start=$(date +%s)
"$bin" bench --target "$targets" --keys "$keys" --value-size "$value" --preload-batch "${BATCH:-256}" \
  --preload-level "${LOAD_LEVEL:-quorum}" --preload-only --concurrency 16 --op-timeout 60s >"$dir/load.log" 2>&1 || true
grep '^preloaded' "$dir/load.log" | tail -1 || true
# a failure, if any: the figures below are then those of a partial load
# (|| true: with nothing but the preloaded line, grep -v selects nothing)
{ grep -v '^preload' "$dir/load.log" || true; } | tail -1 | cut -c1-300
echo "loaded in $(( $(date +%s) - start )) s"
report loaded
cmp=(); if [ -n "${ETCD_DIR:-}" ]; then cmp=(--compare "etcd=127.0.0.1:12379,127.0.0.1:22379,127.0.0.1:32379" --etcd-level serializable); fi
"$bin" bench --target "$targets" --preload=false --keys "$keys" --value-size "$value" --workloads C --levels one \
  --duration "${read_secs}s" --concurrency 32 "${cmp[@]}" 2>&1 | tr "\r" "\n" | grep -E "^(ringkv|etcd) .*p99" || true
report read
if [ -n "${ETCD_DIR:-}" ]; then
  for i in 1 2 3; do
    p=$(cat "$ETCD_DIR/n$i.pid")
    echo "etcd n$i: VmRSS $(status "$p" VmRSS) MiB, VmHWM $(status "$p" VmHWM) MiB, RssAnon $(status "$p" RssAnon) MiB, RssFile $(status "$p" RssFile) MiB, data $(du -sm "$ETCD_DIR/n$i" | cut -f1) MiB"
  done
fi
