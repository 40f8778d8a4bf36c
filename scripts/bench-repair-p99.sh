#!/usr/bin/env bash
# Foreground p99 with anti-entropy repair running vs not (issue 6).
# Three `ringkv serve` processes on loopback; 100,000 keys; the same open-loop
# workload A at QUORUM (RATE ops/s offered, default 300) measured on a healthy cluster,
# then while a wiped node is being repaired by anti-entropy.
set -euo pipefail
# Usage: [RATE=300] [AE_ARGS="--ae-keys-per-sec 1000"] bash scripts/bench-repair-p99.sh
cd "$(dirname "$0")/.."
D=${D:-/tmp/ringkv-repair-p99}
rm -rf "$D"; mkdir -p "$D"
BIN=${BIN:-$D/ringkv}
[ -x "$BIN" ] || go build -o "$BIN" ./cmd/ringkv
start() {
  local i=$1; shift
  "$BIN" serve --id n$i --data "$D/n$i" --http 127.0.0.1:2808$i --rpc 127.0.0.1:2900$i --gossip 127.0.0.1:2700$i \
    --fast-gossip --ae-interval 5s ${AE_ARGS:-} --log-level warn "$@" >>"$D/n$i.log" 2>&1 &
  echo $! >"$D/n$i.pid"
}
start 1
sleep 1
start 2 --join 127.0.0.1:27001
start 3 --join 127.0.0.1:27001
for _ in $(seq 1 120); do
  ok=0; for i in 1 2 3; do curl -fs "127.0.0.1:2808$i/ready" >/dev/null && ok=$((ok+1)); done
  [ $ok -eq 3 ] && break; sleep 1
done
T=127.0.0.1:29001,127.0.0.1:29002,127.0.0.1:29003
COMMON="--target $T --workloads A --levels quorum --keys 100000 --duration 20s --rate ${RATE:-300} --concurrency 64"
"$BIN" bench --target $T --workloads W --levels quorum --keys 100000 --ops 1 --preload=true >/dev/null
echo "== healthy"
"$BIN" bench $COMMON --preload=false --json > "$D/healthy.json"
kill "$(cat $D/n3.pid)"; sleep 2; rm -rf "$D/n3"
start 3 --join 127.0.0.1:27001
for _ in $(seq 1 60); do curl -fs 127.0.0.1:28083/health >/dev/null && break; sleep 1; done
before=$(curl -s 127.0.0.1:28083/metrics | awk '/^ringkv_antientropy_keys_repaired_total/ {s+=$2} END {print s+0}')
echo "== repairing (n3 wiped; anti-entropy refills it)"
"$BIN" bench $COMMON --preload=false --json > "$D/repair.json"
after=$(curl -s 127.0.0.1:28083/metrics | awk '/^ringkv_antientropy_keys_repaired_total/ {s+=$2} END {print s+0}')
echo "keys repaired on n3 during the repairing run: $((after-before))"
for f in healthy repair; do python3 -c "
import json,sys
r=json.load(open('$D/$f.json'))['results'][0]
print('$f', round(r['ops_per_s']), r['latency'], 'errors', r['errors'])"; done
for i in 1 2 3; do kill "$(cat $D/n$i.pid)" 2>/dev/null || true; done
