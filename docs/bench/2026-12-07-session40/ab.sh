#!/bin/bash
# A/B: main vs the experiment (raft log out of Badger), W linearizable.
cd /work/main
source scripts/serve3.sh
export DIR=/tmp/walab/serve
OUT=/tmp/walab/out; mkdir -p $OUT
ROUNDS=${ROUNDS:-3}
run() { local name=$1; shift
  echo "$(date -u +%T) $name start load $(cut -d' ' -f1-3 /proc/loadavg)" >> $OUT/log
  $RINGKV bench --duration 10s --json "$@" > $OUT/$name.json 2>$OUT/$name.err
  echo "$(date -u +%T) $name end rc=$? load $(cut -d' ' -f1-3 /proc/loadavg)" >> $OUT/log
}
for r in $(seq 1 $ROUNDS); do
  for b in main exp; do
    export RINGKV=/tmp/ringkv-$b
    if [ $b = exp ]; then export RINGKV_EXP_WAL=1; else unset RINGKV_EXP_WAL; fi
    serve_start || exit 1
    run srv-$r-$b-w --target $TARGET --workloads W --levels ${LEVELS:-linearizable}
    serve_stop
    run emb-$r-$b-w --workloads W --levels ${LEVELS:-linearizable}
  done
done
