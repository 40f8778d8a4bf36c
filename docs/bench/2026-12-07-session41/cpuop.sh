cd /work/main
source scripts/serve3.sh
export DIR=/tmp/cpuop41/serve RINGKV=/tmp/ringkv RINGKV_BENCH_ETCD=/tmp/ringkv-bench-etcd
E=127.0.0.1:12379,127.0.0.1:22379,127.0.0.1:32379
OUT=${OUT:-/tmp/cpuop41/out}; mkdir -p $OUT
ED=${ETCD_DIR:-/tmp/etcd41}; EP=$(cat $ED/n1.pid),$(cat $ED/n2.pid),$(cat $ED/n3.pid)
for r in $(seq 1 ${ROUNDS:-2}); do
serve_start || exit 1
RP=$(cat $DIR/n1.pid),$(cat $DIR/n2.pid),$(cat $DIR/n3.pid)
for w in "W linearizable" "W quorum" "CAS linearizable"; do
  set -- $w
  echo "== round $r $1 $2"
  pre=""; [ $1 = CAS ] && pre="--preload=false"
  python3 docs/bench/2026-12-07-session41/cpuop.py $OUT/srv-$r-$1-$2 $RP $EP -- $RINGKV bench --duration 10s --target $TARGET --compare etcd=$E --json --workloads $1 --levels $2 $pre
done
serve_stop
done
