#!/bin/bash
# Interleaved: insecure, secure, 5 rounds; W quorum and C one.
cd /tmp/secbench
for i in 1 2 3 4 5; do
  for mode in plain secure; do
    flag=""; [ $mode = secure ] && flag="--secure"
    for wl in "W quorum" "C one"; do
      set -- $wl
      /tmp/ringkv-new bench $flag --workloads $1 --levels $2 --duration 10s --json > r$i-$mode-$1.json 2> r$i-$mode-$1.err
    done
  done
done
echo done > finished
