#!/bin/bash
# Overload (docs/BENCHMARKS.md, "Overload"): open loop at RATE writes/s
# for 60 s against a `ringkv dev` started with
#   ringkv dev --http-port 18081 --rpc-port 19001 --gossip-port 17001 --resp-port 16381
# DEV_PID is that process's pid (its RSS is sampled); RINGKV the binary.
# Prints raft terms before and after, peak RSS, refusals per node, an
# HTTP probe's statuses and latencies, and the time to normal service.
# GEN_CPUS (e.g. 1) pins the load generator and the probe to those CPUs
# with taskset; start `ringkv dev` with `taskset -c 0` so that the nodes
# and the generator do not share a core.
set -u
PIN=(); [ -n "${GEN_CPUS:-}" ] && PIN=(taskset -c "$GEN_CPUS")
T=127.0.0.1:19001,127.0.0.1:19002,127.0.0.1:19003
PID=${DEV_PID:?set DEV_PID to the ringkv dev process id}
RATE=${RATE:-37000}
RINGKV=${RINGKV:-ringkv}
terms() { s=0; for p in 18081 18082 18083; do v=$(curl -s localhost:$p/metrics | awk '/^ringkv_consensus_term\{/ {s+=$2} END {print s}'); s=$((s+${v%.*})); done; echo $s; }
metric() { curl -s localhost:$1/metrics | awk -v n="$2" 'index($0,n)==1 {s+=$NF} END {printf "%d\n", s}'; }
rm -f /tmp/adm-stop /tmp/adm-rss-peak /tmp/adm-probe.txt /tmp/adm-limit.txt
# the raft transport's counters, summed over the nodes: how many
# heartbeats travelled and how many liveness stood for
transport() { for p in 18081 18082 18083; do curl -s localhost:$p/metrics; done | awk '/^ringkv_consensus_(transport_(rpcs_sent_total|liveness_sent|heartbeats_(elided|injected))|leader_changes)/ {k=$1; sub(/\{.*/,"",k); if ($1 ~ /rpc="/) {r=$1; sub(/.*rpc="/,"",r); sub(/".*/,"",r); k=k"{"r"}"} s[k]+=$NF} END {for (k in s) printf "  %s %d\n", k, s[k]}' | sort; }
echo "transport before:"; transport
echo "uptime before: $(uptime)"
echo "terms before: $(terms)"
echo "rss before kB: $(ps -o rss= -p $PID)"
# RSS sampler
( peak=0; while kill -0 $PID 2>/dev/null && [ ! -f /tmp/adm-stop ]; do r=$(ps -o rss= -p $PID); [ "$r" -gt "$peak" ] && peak=$r; echo $peak > /tmp/adm-rss-peak; sleep 0.5; done ) &
SAMP=$!
# the client bound of node 18081 (it adapts: ARCHITECTURE "Admission control"), every 0.5 s
( while [ ! -f /tmp/adm-stop ]; do echo "$(date +%s.%N) $(metric 18081 ringkv_coordinator_admission_client_limit)"; sleep 0.5; done > /tmp/adm-limit.txt ) &
LIM=$!
# HTTP probe: one set every 50 ms, code and time
( i=0; while [ ! -f /tmp/adm-stop ]; do ${PIN[@]+"${PIN[@]}"} curl -s -o /dev/null -w '%{http_code} %{time_total}\n' -XPOST localhost:18081/api/set -d "{\"key\":\"probe:$i\",\"value\":\"v\"}"; i=$((i+1)); sleep 0.05; done > /tmp/adm-probe.txt ) &
PROBE=$!
START=$(date +%s.%N)
${PIN[@]+"${PIN[@]}"} "$RINGKV" bench --target $T --workloads W --levels quorum --duration 60s --concurrency 4096 --rate $RATE --attempts 1 --op-timeout 5s --preload=false > /tmp/adm-over.txt 2>/tmp/adm-over.err
END=$(date +%s.%N)
touch /tmp/adm-stop
wait $PROBE $LIM
# recovery: time until a write answers 200 and then 20 in a row do, each faster than 0.3 s
ok=0; first=""
while [ $ok -lt 20 ]; do
  out=$(curl -s -o /dev/null -w '%{http_code} %{time_total}' -XPOST localhost:18081/api/set -d '{"key":"after","value":"v"}')
  code=${out% *}; t=${out#* }
  if [ "$code" = 200 ] && awk -v t=$t 'BEGIN{exit !(t<0.3)}'; then ok=$((ok+1)); [ -z "$first" ] && first=$(date +%s.%N); else ok=0; first=""; fi
  sleep 0.05
done
echo "bench ran: $(echo "$END - $START" | bc) s"
echo "recovered (first of 20 consecutive fast 200s) after: $(echo "$first - $END" | bc) s"
wait $SAMP
echo "rss peak kB: $(cat /tmp/adm-rss-peak)"
echo "terms after: $(terms)"
echo "transport after:"; transport
for p in 18081 18082 18083; do echo "node $p refused: $(metric $p ringkv_coordinator_admission_refused_total) proposals refused: $(metric $p ringkv_consensus_proposals_refused_total)"; done
echo "client bound of 18081 during the run: min $(awk '{print $2}' /tmp/adm-limit.txt | sort -n | head -1), max $(awk '{print $2}' /tmp/adm-limit.txt | sort -n | tail -1), last $(tail -1 /tmp/adm-limit.txt | awk '{print $2}'); now $(metric 18081 ringkv_coordinator_admission_client_limit)"
echo "probe: $(wc -l < /tmp/adm-probe.txt) requests"; awk '{c[$1]++} END {for (k in c) print "  status", k, c[k]}' /tmp/adm-probe.txt
for code in 200 429; do awk -v c=$code '$1==c {print $2}' /tmp/adm-probe.txt | sort -n > /tmp/adm-lat-$code.txt; n=$(wc -l < /tmp/adm-lat-$code.txt); [ $n -gt 0 ] && echo "  $code latency s: p50 $(sed -n "$((n/2+1))p" /tmp/adm-lat-$code.txt) p99 $(sed -n "$(( (n*99+99)/100 ))p" /tmp/adm-lat-$code.txt) max $(tail -1 /tmp/adm-lat-$code.txt)"; done
echo "uptime after: $(uptime)"
tail -2 /tmp/adm-over.txt
