#!/usr/bin/env bash
# p99-same-load.sh FIRST LAST: issue 22's "p99 at the same offered load at
# ONE and ALL": rounds of open-loop `ringkv bench --rate` beside etcd at
# the same rate, on three `ringkv serve` processes (fresh each round) and
# on the embedded cluster. Writes (W) at one and all at WRATE beside etcd's
# puts; reads (C) at one beside etcd's serializable gets, and at all
# beside its linearizable gets, at RRATE. Latency is taken from each
# operation's scheduled start (no coordinated omission). SET=quorum runs
# the other levels instead: W at quorum and linearizable at WRATE, CAS at
# CASRATE (default 400), C at quorum and linearizable at RRATE, each
# beside etcd's linearizable operation. SET=lin runs only W at
# linearizable at WRATE and CAS at CASRATE. Same variables
# as scripts/bench-compare.sh, plus WRATE (default 1500) and RRATE
# (default 2000). scripts/p99-summary.py OUT tabulates them (each
# report's JSON: latency.p99_us of results and peer).
set -u
: "${RINGKV:?}" "${RINGKV_BENCH_ETCD:?}" "${ETCD:?}"
OUT=${OUT:-/tmp/p99-same-load}; DIR=${DIR:-/tmp/p99-same-load-serve}; DURATION=${DURATION:-10s}
WRATE=${WRATE:-1500}; RRATE=${RRATE:-2000}; CASRATE=${CASRATE:-400}; SET=${SET:-oneall}
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
  if [ "$SET" = lin ]; then
    run "$p-wl" "$@" --workloads W --levels linearizable --rate "$WRATE"
    run "$p-cas" "$@" --workloads CAS --levels linearizable --rate "$CASRATE"
    return
  fi
  if [ "$SET" = quorum ]; then
    run "$p-wq" "$@" --workloads W --levels quorum,linearizable --rate "$WRATE"
    run "$p-cas" "$@" --workloads CAS --levels linearizable --rate "$CASRATE"
    run "$p-cq" "$@" --workloads C --levels quorum,linearizable --rate "$RRATE"
    return
  fi
  run "$p-w" "$@" --workloads W --levels one,all --rate "$WRATE"
  run "$p-c-one" "$@" --workloads C --levels one --rate "$RRATE" --etcd-level serializable
  run "$p-c-all" "$@" --workloads C --levels all --rate "$RRATE"
}

for r in $(seq "$1" "$2"); do
  serve_start || exit 1
  round "srv-$r" --target $TARGET
  serve_stop
  round "emb-$r"
done
