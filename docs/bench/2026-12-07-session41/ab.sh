#!/bin/bash
# A/B, interleaved: /tmp/ringkv-main against /tmp/ringkv-exp (run with
# EXPENV=NAME=VALUE set, if the experiment is switched by the environment),
# linearizable W and CAS, on three serve processes and on the embedded
# cluster. Reports in $OUT.
cd /work/main
source scripts/serve3.sh
export DIR=/tmp/ab41/serve
OUT=${OUT:-/tmp/ab41/out}; mkdir -p "$OUT"
ROUNDS=${ROUNDS:-3}
run() { local name=$1; shift
  echo "$(date -u +%T) $name start load $(cut -d' ' -f1-3 /proc/loadavg)" >> "$OUT/log"
  $RINGKV bench --duration 10s --json "$@" > "$OUT/$name.json" 2>"$OUT/$name.err"
  echo "$(date -u +%T) $name end rc=$? load $(cut -d' ' -f1-3 /proc/loadavg)" >> "$OUT/log"
}
for r in $(seq 1 "$ROUNDS"); do
  for b in main exp; do
    export RINGKV=/tmp/ringkv-$b
    if [ $b = exp ] && [ -n "${EXPENV:-}" ]; then export "${EXPENV?}"; else unset "${EXPENV%%=*}" 2>/dev/null; fi
    serve_start || exit 1
    run "srv-$r-$b-w" --target $TARGET --workloads W --levels linearizable
    run "srv-$r-$b-cas" --target $TARGET --workloads CAS --levels linearizable --preload=false
    serve_stop
    run "emb-$r-$b-w" --workloads W --levels linearizable
    run "emb-$r-$b-cas" --workloads CAS --levels linearizable
  done
done
