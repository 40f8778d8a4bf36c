#!/usr/bin/env bash
# W quorum/linearizable on serve: new with idle procs on / off, base; prints commits injected.
cd /work/main
source scripts/serve3.sh
for r in 1 2 3; do
  for v in base new; do
    bin=/tmp/ringkv; EXTRA=""; [ $v != base ] && bin=/tmp/ringkv-new; [ $v = new-noidle ] && EXTRA="--idle-procs-after 0"
    RINGKV=$bin DIR=/tmp/tput-$v EXTRA="$EXTRA" serve_start || exit 1
    echo "== round $r $v $(date -u +%T) load $(cut -d' ' -f1 /proc/loadavg)"
    $bin bench --target $TARGET --workloads W --levels quorum,linearizable --duration 10s --concurrency 32 2>&1 | tr '\r' '\n' | sed -n '/^  target  workload/,$p'
    for i in 1 2 3; do curl -s http://127.0.0.1:1808$i/metrics | grep -E '^ringkv_consensus_transport_commits_injected_total|^ringkv_node_idle_one_proc' | tr '\n' ' '; echo; done
    RINGKV=$bin DIR=/tmp/tput-$v serve_stop
  done
done
