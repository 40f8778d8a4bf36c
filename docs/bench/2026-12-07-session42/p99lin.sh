#!/usr/bin/env bash
# p99lin.sh FIRST LAST: scripts/p99-same-load.sh's rounds for the levels
# the Raft WAL's linger touches only: linearizable writes at WRATE and
# CAS at CASRATE, each beside etcd's, open loop, on three serve processes
# (fresh each round) and on the embedded cluster.
set -u
: "${RINGKV:?}" "${RINGKV_BENCH_ETCD:?}" "${ETCD:?}"
OUT=${OUT:-/tmp/p99lin}; DIR=${DIR:-/tmp/p99lin-serve}; DURATION=${DURATION:-10s}
WRATE=${WRATE:-1500}; CASRATE=${CASRATE:-400}
export RINGKV_BENCH_ETCD
. /work/main/scripts/serve3.sh
mkdir -p "$OUT"
run() { local name=$1; shift
  echo "$(date -u +%H:%M:%S) $name start load: $(cut -d' ' -f1-3 /proc/loadavg)" >>"$OUT/log"
  "$RINGKV" bench --duration "$DURATION" --compare "etcd=$ETCD" --json "$@" >"$OUT/$name.json" 2>"$OUT/$name.err"
  echo "$(date -u +%H:%M:%S) $name end rc=$? load: $(cut -d' ' -f1-3 /proc/loadavg)" >>"$OUT/log"
}
round() { local p=$1; shift
  run "$p-wl" "$@" --workloads W --levels linearizable --rate "$WRATE"
  run "$p-cas" "$@" --workloads CAS --levels linearizable --rate "$CASRATE"
}
for r in $(seq "$1" "$2"); do
  serve_start || exit 1
  round "srv-$r" --target $TARGET
  serve_stop
  round "emb-$r"
done
