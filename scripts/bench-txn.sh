#!/usr/bin/env bash
# bench-txn.sh FIRST LAST: rounds of workload T (transactions) beside etcd's Txn,
# each round on three `ringkv serve` processes (started fresh, then stopped) and
# then on `ringkv bench`'s embedded cluster, as in docs/BENCHMARKS.md
# "Transactions (workload T)". Run from the repository root.
#   RINGKV     the ringkv binary (go build -o /tmp/ringkv ./cmd/ringkv)
#   RINGKV_BENCH_ETCD  the etcd peer driver (cd bench/etcd && go build -o /tmp/ringkv-bench-etcd .)
#   ETCD       etcd's client endpoints (../shared/peers/etcd.sh start DIR prints them)
#   OUT        where the JSON reports and the log (load average per run) go
#   DIR        the serve processes' data (wiped each round)
#   KEYS       --txn-keys of every run (default 2,4)
# Serve ports: HTTP 1808i, drpc 1900i, gossip 1710i, pprof 1606i (i = 1..3).
set -u
: "${RINGKV:?}" "${RINGKV_BENCH_ETCD:?}" "${ETCD:?}"
OUT=${OUT:-/tmp/bench-txn}; DIR=${DIR:-/tmp/bench-txn-serve}; KEYS=${KEYS:-2,4}
export RINGKV_BENCH_ETCD
# shellcheck source=scripts/serve3.sh
. "$(dirname "$0")/serve3.sh"
mkdir -p "$OUT"

run() { # name, then bench's arguments
  local name=$1; shift
  echo "$(date -u +%H:%M:%S) $name start load: $(cut -d' ' -f1-3 /proc/loadavg)" >>"$OUT/log"
  "$RINGKV" bench --duration 10s --compare "etcd=$ETCD" --json "$@" >"$OUT/$name.json" 2>"$OUT/$name.err"
  echo "$(date -u +%H:%M:%S) $name end rc=$? load: $(cut -d' ' -f1-3 /proc/loadavg)" >>"$OUT/log"
}

for r in $(seq "$1" "$2"); do
  serve_start || exit 1
  run "srv-x-$r" --target $TARGET --workloads T --txn-keys "$KEYS"
  run "srv-1p-$r" --target $TARGET --workloads CAS,T --txn-keys "$KEYS" --txn-same-partition
  serve_stop
  run "emb-x-$r" --workloads T --txn-keys "$KEYS"
  run "emb-1p-$r" --workloads CAS,T --txn-keys "$KEYS" --txn-same-partition
done
