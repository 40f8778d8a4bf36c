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
TARGET=127.0.0.1:19001,127.0.0.1:19002,127.0.0.1:19003
mkdir -p "$OUT"

serve_start() {
  # Refuse ports someone else holds: the readiness check below would
  # otherwise find their node ready and the rounds would measure it.
  for port in 18081 18082 18083 19001 19002 19003 17101 17102 17103 16061 16062 16063; do
    if (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null; then
      echo "port $port is in use: not starting the serve processes" >&2; return 1
    fi
  done
  rm -rf "$DIR"; mkdir -p "$DIR"
  for i in 1 2 3; do
    join=""; [ "$i" -gt 1 ] && join="--join 127.0.0.1:17101"
    # shellcheck disable=SC2086 # join is empty or two words
    "$RINGKV" serve --id "n$i" --data "$DIR/n$i" --http "127.0.0.1:1808$i" --rpc "127.0.0.1:1900$i" \
      --gossip "127.0.0.1:1710$i" --resp "" $join --pprof "127.0.0.1:1606$i" >"$DIR/n$i.log" 2>&1 &
    echo $! >"$DIR/n$i.pid"
    [ "$i" -eq 1 ] && sleep 1
  done
  for _ in $(seq 1 300); do
    ok=0
    for i in 1 2 3; do kill -0 "$(cat "$DIR/n$i.pid")" 2>/dev/null || { echo "serve n$i exited; log in $DIR/n$i.log" >&2; return 1; }; done
    for i in 1 2 3; do curl -fsS -m 1 -o /dev/null "http://127.0.0.1:1808$i/ready" 2>/dev/null && ok=$((ok+1)); done
    [ $ok -eq 3 ] && return 0
    sleep 0.2
  done
  echo "serve processes not ready; logs in $DIR" >&2; return 1
}

serve_stop() {
  for i in 1 2 3; do
    p=$(cat "$DIR/n$i.pid"); kill "$p" 2>/dev/null || true
    for _ in $(seq 1 100); do kill -0 "$p" 2>/dev/null || break; sleep 0.2; done
    kill -9 "$p" 2>/dev/null || true
  done
}

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
