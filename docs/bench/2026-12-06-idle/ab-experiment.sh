#!/usr/bin/env bash
# Recorded for docs/BENCHMARKS.md (2026-12-06): /tmp/ringkv-exp was an experiment build (not on main) whose node.DefaultConfig read RINGKV_EXP_CT into Consensus.CommitTimeout.
# A/B/C of idle CPU, interleaved: base, CommitTimeout 5s, CommitTimeout 5s + GOMAXPROCS=1.
cd /work/main
for r in 1 2 3; do
  echo "== round $r base $(date -u +%T)"; ETCD_DIR=/tmp/etcd-idle scripts/idle-cost.sh /tmp/ringkv 3
  echo "== round $r CT=5s $(date -u +%T)"; RINGKV_EXP_CT=5s ETCD_DIR=/tmp/etcd-idle scripts/idle-cost.sh /tmp/ringkv-exp 3
  echo "== round $r CT=5s GOMAXPROCS=1 $(date -u +%T)"; GOMAXPROCS=1 RINGKV_EXP_CT=5s ETCD_DIR=/tmp/etcd-idle scripts/idle-cost.sh /tmp/ringkv-exp 3
done
