#!/usr/bin/env bash
# bench-compare.sh FIRST LAST: rounds of `ringkv bench --compare` beside etcd
# for issue 22's ratios (docs/BENCHMARKS.md "Current figures"): each round
# on three `ringkv serve` processes (started fresh, then stopped) and then
# on `ringkv bench`'s embedded cluster. Per target: W (writes) at one,
# quorum and linearizable beside etcd's puts; C (reads) at linearizable
# beside etcd's linearizable gets; C at one and quorum beside etcd's
# serializable gets (--etcd-level serializable); CAS beside etcd's Txn.
# Then scripts/bench-summary.py OUT prints the medians of the per-round
# ratios. Run from the repository root.
#   RINGKV     the ringkv binary (go build -o /tmp/ringkv ./cmd/ringkv)
#   RINGKV_BENCH_ETCD  the etcd peer driver (cd bench/etcd && go build -o /tmp/ringkv-bench-etcd .)
#   ETCD       etcd's client endpoints (../shared/peers/etcd.sh start DIR prints them)
#   OUT        where the JSON reports and the log (load average per run) go
#   DIR        the serve processes' data (wiped each round)
#   DURATION   per workload and level (default 10s)
# Serve ports: HTTP 1808i, drpc 1900i, gossip 1710i, pprof 1606i (i = 1..3).
set -u
: "${RINGKV:?}" "${RINGKV_BENCH_ETCD:?}" "${ETCD:?}"
OUT=${OUT:-/tmp/bench-compare}; DIR=${DIR:-/tmp/bench-compare-serve}; DURATION=${DURATION:-10s}
export RINGKV_BENCH_ETCD
# shellcheck source=scripts/serve3.sh
. "$(dirname "$0")/serve3.sh"
mkdir -p "$OUT"

run() { # name, then bench's arguments
  local name=$1; shift
  echo "$(date -u +%H:%M:%S) $name start load: $(cut -d' ' -f1-3 /proc/loadavg)" >>"$OUT/log"
  "$RINGKV" bench --duration "$DURATION" --compare "etcd=$ETCD" --json "$@" >"$OUT/$name.json" 2>"$OUT/$name.err"
  echo "$(date -u +%H:%M:%S) $name end rc=$? load: $(cut -d' ' -f1-3 /proc/loadavg)" >>"$OUT/log"
}

round() { # prefix, then bench's target arguments
  local p=$1; shift
  run "$p-lin" "$@" --workloads W,CAS,C --levels one,quorum,linearizable
  run "$p-ser" "$@" --workloads C --levels one,quorum --etcd-level serializable
}

for r in $(seq "$1" "$2"); do
  serve_start || exit 1
  round "srv-$r" --target $TARGET
  serve_stop
  round "emb-$r"
done
