#!/usr/bin/env bash
# Recorded for docs/BENCHMARKS.md (2026-12-06): /tmp/ringkv was main at 38aab67, /tmp/ringkv-new a535ee4.
# A/B of idle CPU, interleaved: main at 38aab67 vs the change (commit indexes by liveness, CommitTimeout 2s, one P when idle).
cd /work/main
for r in 1 2 3; do
  echo "== round $r base $(date -u +%T)"; ETCD_DIR=/tmp/etcd-idle scripts/idle-cost.sh /tmp/ringkv 4
  echo "== round $r new $(date -u +%T)"
  ( sleep 45; echo "idle_one_proc: $(for i in 1 2 3; do curl -s http://127.0.0.1:2808$i/metrics | awk '$1=="ringkv_node_idle_one_proc"{printf "%s ", $2}'; done)" ) &
  ETCD_DIR=/tmp/etcd-idle scripts/idle-cost.sh /tmp/ringkv-new 4
  wait
done
