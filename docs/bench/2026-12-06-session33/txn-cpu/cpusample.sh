#!/bin/bash
# cpusample.sh OUTFILE PIDS_A -- PIDS_B : every second, cumulative utime+stime ticks of group A and B
out=$1; shift; a=(); b=(); g=a
for p in "$@"; do if [ "$p" = "--" ]; then g=b; continue; fi; if [ $g = a ]; then a+=($p); else b+=($p); fi; done
while true; do
  ta=0; for p in "${a[@]}"; do ta=$((ta + $(awk '{print $14+$15}' /proc/$p/stat 2>/dev/null || echo 0))); done
  tb=0; for p in "${b[@]}"; do tb=$((tb + $(awk '{print $14+$15}' /proc/$p/stat 2>/dev/null || echo 0))); done
  echo "$(date +%s.%N) $ta $tb" >> $out; sleep 1
done
