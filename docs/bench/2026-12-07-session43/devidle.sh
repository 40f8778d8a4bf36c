#!/bin/bash
# idle CPU of `ringkv dev` (three nodes, one process) over a 20 s window after 25 s of settling; $BIN
BIN=${BIN:-/tmp/ringkv}
D=/tmp/devidle; rm -rf $D; mkdir -p $D
$BIN dev --data $D/data --http-port 28081 --rpc-port 29001 --gossip-port 27001 --resp-port -1 > $D/out 2>&1 &
pid=$!
for i in $(seq 1 150); do grep -q "nodes ready" $D/out && break; sleep 0.2; done
sleep 25
a=$(awk '{print $14+$15}' /proc/$pid/stat); sleep 20; b=$(awk '{print $14+$15}' /proc/$pid/stat)
echo "$(basename $BIN) idle: $(python3 -c "print(round(($b-$a)/20,2))")% of one core (ticks $((b-a)) in 20 s)"
kill $pid; wait $pid 2>/dev/null
