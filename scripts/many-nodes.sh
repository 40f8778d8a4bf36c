#!/usr/bin/env bash
# The ring at scale with real processes (docs/BENCHMARKS.md, "The ring at
# scale (issue 22)"). Not part of CI: it loads the machine for minutes.
#   scripts/many-nodes.sh BIN
# Starts NODES (25) `BIN serve` processes on 127.0.0.1 (HTTP BASE_PORT+i,
# drpc BASE_PORT+100+i, gossip BASE_PORT+200+i; data in a temporary
# directory; Redis protocol off; small Badger memtables), the first one
# founding a cluster of PARTITIONS (128) partitions and the others started
# at once with --join, then measures:
#   1. the time until every node sees every other alive (gossip), holds the
#      same ring with all of them joined, and every partition has a leader
#      whose voters are the partition's preference list (converged);
#   2. a preload of KEYS (20,000) keys of VALUE_SIZE (1,000) bytes with
#      `BIN bench --target` at QUORUM;
#   3. SIGKILL of the node (not the founder) leading the most groups: the
#      time until every other node sees it not alive, then dead, and until
#      every group it led has a new leader;
#   4. one more node started with --join: the time until it is alive
#      everywhere, in everyone's ring, every partition converged again, and
#      every partition's live replicas hold the same records (equal Merkle
#      roots: eventual writes move by anti-entropy), with the data it received (its data directory and the cluster's
#      snapshot and anti-entropy byte counters before and after);
#   5. peak RSS (VmHWM) of every process.
# With SPLIT=1, between 2 and 3: the partitions doubled online (POST
# /api/cluster/split) while `BIN bench` runs workload A at QUORUM and at
# the linearizable level for SPLIT_LOAD (60s): the time until every node
# holds the split ring, until every partition of it converged, until
# every partition's replicas are equal, and the bench's figures and errors.
# After step 1 it also takes the CPU the idle processes use over 20 s.
# Every phase gives up after PHASE_TIMEOUT (600) seconds, says so and goes
# on. EXTRA_FLAGS adds serve flags (e.g. a memory budget). Every process it
# starts is killed on exit; KEEP=1 keeps the data directory and logs.
set -euo pipefail
bin=$(realpath "${1:?usage: scripts/many-nodes.sh BIN}")
nodes=${NODES:-25}
parts=${PARTITIONS:-128}
keys=${KEYS:-20000}
vsize=${VALUE_SIZE:-1000}
base=${BASE_PORT:-31000}
memtable=${MEMTABLE_BYTES:-4194304}
phase_timeout=${PHASE_TIMEOUT:-600}
read -r -a extra <<<"${EXTRA_FLAGS:-}"
last=$((nodes + 1))

# Processes a killed earlier run left behind (their pids are listed in
# $leftovers) are killed first, each only if it still runs a node of ours.
leftovers=${TMPDIR:-/tmp}/ringkv-many-nodes.pids
if [ -f "$leftovers" ]; then
  while read -r p; do
    if tr '\0' ' ' <"/proc/$p/cmdline" 2>/dev/null | grep -q -- '--data /tmp/ringkv-many-nodes\.'; then
      echo "killing $p, left by an earlier run"; kill -KILL "$p" 2>/dev/null || true
    fi
  done <"$leftovers"
  rm -f "$leftovers"
fi
dir=$(mktemp -d /tmp/ringkv-many-nodes.XXXXXX)
pids=() # pids[i]: node i's process (index 0 unused)
cleanup() {
  local p
  for p in "${pids[@]}"; do [ -n "$p" ] && kill -KILL "$p" 2>/dev/null || true; done
  for p in "${pids[@]}"; do
    [ -n "$p" ] || continue
    for _ in $(seq 1 100); do kill -0 "$p" 2>/dev/null || break; sleep 0.1; done
  done
  rm -f "$leftovers"
  if [ "${KEEP:-0}" = 1 ]; then echo "kept $dir"; else rm -rf "$dir"; fi
}
trap cleanup EXIT
trap 'exit 130' INT TERM

http() { echo $((base + $1)); }
rpc() { echo $((base + 100 + $1)); }
gport() { echo $((base + 200 + $1)); }
id() { printf 'n%02d' "$1"; }
now() { date +%s.%N; }
since() { echo "scale=2; ($(now) - $1) / 1" | bc; }

for i in $(seq 1 "$last"); do
  for p in "$(http "$i")" "$(rpc "$i")" "$(gport "$i")"; do
    if (exec 3<>"/dev/tcp/127.0.0.1/$p") 2>/dev/null; then
      echo "port $p is taken (a leftover of an earlier run? BASE_PORT moves the ports)" >&2; exit 1
    fi
  done
done

start_node() { # start_node I [--join ADDR]
  local i=$1; shift
  "$bin" serve --id "$(id "$i")" --data "$dir/$(id "$i")" --http "127.0.0.1:$(http "$i")" \
    --rpc "127.0.0.1:$(rpc "$i")" --gossip "127.0.0.1:$(gport "$i")" --resp "" \
    --partitions "$parts" --memtable-bytes "$memtable" --drain-timeout 0 --log-level warn \
    "${extra[@]}" "$@" >"$dir/$(id "$i").log" 2>&1 &
  pids[i]=$!
  disown "$!" # the cleanup kills it; no job notices, and wait never waits for it
  echo "$!" >>"$leftovers"
}

# fetch I...: every listed node's /api/cluster/status, as one JSON array
# of the views that answered (eight requests at a time).
fetch() {
  local d
  d=$(mktemp -d "$dir/views.XXXXXX") # its own: two waits may poll at once
  printf '%s\n' "$@" | xargs -P 8 -I{} sh -c \
    "curl -fsS -m 5 -o '$d/{}.json' http://127.0.0.1:\$(( $base + {} ))/api/cluster/status 2>/dev/null || rm -f '$d/{}.json'"
  if compgen -G "$d/*.json" >/dev/null; then jq -s '.' "$d"/*.json; else echo '[]'; fi
  rm -rf "$d"
}

# Checks over the views of fetch: jq programs taking $n (views expected)
# and $joined (ring members expected joined).
gossip_ok='length == $n and all(.[]; ([.members[] | select(.liveness == "alive")] | length) == $n)'
ring_ok='length == $n and ([.[].ring_version] | unique | length) == 1
  and all(.[]; ([.members[] | select(.status == "joined")] | length) == $joined)'
conv_ok='. as $views | (map(.ring_version) | max) as $v | length == $n
  and all(.[]; .converged)
  and all(range(0; .[0].partition_count); . as $q |
      any($views[]; .ring_version == $v and .partitions[$q].hosted and .partitions[$q].converged
        and .partitions[$q].leader == .node_id))'
data_ok='. as $views | length == $n and all(range(0; .[0].partition_count); . as $q |
  [$views[] | .node_id as $me | .partitions[$q] | select(any(.preference[]; . == $me)) | .merkle_root // ""] as $roots
  | ($roots | length) > 0 and all($roots[]; . != "") and ($roots | unique | length) == 1)'
conv_count='. as $views | (map(.ring_version) | max) as $v | [range(0; .[0].partition_count) as $q |
  select(any($views[]; .ring_version == $v and .partitions[$q].hosted and .partitions[$q].converged
    and .partitions[$q].leader == .node_id))] | length'

# wait_for NAME T0 JQ N JOINED I...: polls the views of nodes I... until JQ
# holds; prints the seconds since T0 at the start of the poll round that saw
# it, and that round's length (the figure's resolution), or "NOT within
# PHASE_TIMEOUT".
wait_for() {
  local name=$1 t0=$2 prog=$3 n=$4 joined=$5; shift 5
  local views tr at ok
  while :; do
    tr=$(now)
    at=$(since "$t0")
    views=$(fetch "$@")
    ok=0
    jq -e --argjson n "$n" --argjson joined "$joined" "$prog" <<<"$views" >/dev/null || ok=$?
    [ "$ok" -le 1 ] || { echo "wait_for $name: jq failed ($ok)" >&2; exit 1; }
    if [ "$ok" = 0 ]; then
      printf '  %-58s %7.2f s (poll round %.2f s)\n' "$name" "$at" "$(since "$tr")"
      return 0
    fi
    if [ "$(echo "$at > $phase_timeout" | bc)" = 1 ]; then
      printf '  %-58s NOT within %s s (%s views, %s of %s partitions converged)\n' "$name" "$phase_timeout" \
        "$(jq length <<<"$views")" "$(jq "$conv_count" <<<"$views" 2>/dev/null || echo '?')" "$parts"
      return 1
    fi
    sleep 0.1
  done
}

# cpu SECONDS PID...: the processes' CPU (utime+stime) over SECONDS, as %
# of one core.
cpu() {
  local s=$1 t1=0 t2=0 p hz; shift
  hz=$(getconf CLK_TCK)
  for p in "$@"; do t1=$((t1 + $(awk '{print $14+$15}' "/proc/$p/stat"))); done
  sleep "$s"
  for p in "$@"; do t2=$((t2 + $(awk '{print $14+$15}' "/proc/$p/stat"))); done
  echo "scale=1; ($t2-$t1)*100/$hz/$s" | bc
}

# metric NAME I...: the sum of a metric's samples over nodes I.
metric() {
  local name=$1 s=0 v i; shift
  for i in "$@"; do
    v=$(curl -fsS -m 5 "http://127.0.0.1:$(http "$i")/metrics" 2>/dev/null |
      awk -v n="$name" '$1 == n || index($1, n "{") == 1 {s += $NF} END {printf "%.0f", s}')
    s=$((s + ${v:-0}))
  done
  echo "$s"
}

alive=($(seq 1 "$nodes"))
echo "ringkv many nodes: $nodes serve processes, P=$parts, memtable $memtable B, extra flags: ${EXTRA_FLAGS:-none}"
echo "binary: $("$bin" version | head -1)"
echo "data: $dir; uptime before: $(uptime)"

echo "1. start $nodes nodes (n01 founds, the others --join it at once)"
t0=$(now)
start_node 1
for _ in $(seq 1 300); do curl -fsS -m 1 -o /dev/null "http://127.0.0.1:$(http 1)/ready" 2>/dev/null && break; sleep 0.1; done
for i in $(seq 2 "$nodes"); do start_node "$i" --join "127.0.0.1:$(gport 1)"; done
wait_for "membership converged (every node sees $nodes alive)" "$t0" "$gossip_ok" "$nodes" 0 "${alive[@]}" || true
wait_for "ring converged (one version, $nodes joined, on every node)" "$t0" "$ring_ok" "$nodes" "$nodes" "${alive[@]}" || true
wait_for "every partition converged, every group led" "$t0" "$conv_ok" "$nodes" "$nodes" "${alive[@]}" || true
echo "  uptime: $(uptime)"
live_pids=$(for i in "${alive[@]}"; do echo "${pids[i]}"; done)
echo "  CPU of the $nodes idle processes over 20 s: $(cpu 20 $live_pids)% of one core; uptime: $(uptime)"

echo "2. preload $keys keys of $vsize B at QUORUM"
targets=$(for i in "${alive[@]}"; do printf '127.0.0.1:%s,' "$(rpc "$i")"; done)
t=$(now)
"$bin" bench --target "${targets%,}" --workloads W --levels quorum --ops 1 --duration 0 \
  --keys "$keys" --value-size "$vsize" --concurrency 32 >"$dir/bench.txt" 2>&1 || { echo "  bench failed:"; tail -5 "$dir/bench.txt"; }
echo "  preload took $(since "$t") s; disk used by all data directories: $(du -s --block-size=1 "$dir" | cut -f1) B"

if [ "${SPLIT:-0}" = 1 ]; then
  echo "2b. split $parts partitions into $((2 * parts)) under load (workload A, QUORUM and linearizable, ${SPLIT_LOAD:-60s})"
  benchpids=()
  for level in quorum linearizable; do # at once, 16 callers each
    "$bin" bench --target "${targets%,}" --workloads A --levels "$level" --preload=false \
      --keys "$keys" --value-size "$vsize" --duration "${SPLIT_LOAD:-60s}" --concurrency 16 >"$dir/bench-split-$level.txt" 2>&1 &
    benchpids+=($!)
  done
  sleep 5 # the bench under way before the split
  ts=$(now)
  curl -fsS -m 30 -X POST "http://127.0.0.1:$(http 1)/api/cluster/split?partitions=$((2 * parts))" || echo "  split refused"
  echo
  echo "  split decided after $(since "$ts") s"
  parts=$((2 * parts))
  split_ok='length == $n and all(.[]; .partition_count == '"$parts"')'
  wait_for "every node holds the ring of $parts partitions" "$ts" "$split_ok" "${#alive[@]}" 0 "${alive[@]}" || true
  wait_for "every partition of $parts converged, every group led" "$ts" "$conv_ok" "${#alive[@]}" "$nodes" "${alive[@]}" || true
  for b in "${benchpids[@]}"; do wait "$b" || echo "  a bench exited $?"; done
  for level in quorum linearizable; do
    echo "  bench at $level during the split:"; tail -8 "$dir/bench-split-$level.txt"
  done
  wait_for "every partition's replicas equal (Merkle roots)" "$ts" "$data_ok" "${#alive[@]}" "$nodes" "${alive[@]}" || true
fi

echo "3. SIGKILL the node leading the most groups"
views=$(fetch "${alive[@]}")
victim=$(jq -r '[.[] | select(.node_id != "n01") | .node_id as $me
  | {id: $me, led: ([.partitions[] | select(.hosted and .leader == $me)] | length)}] | max_by(.led) | .id' <<<"$views")
vi=$((10#${victim#n}))
led=$(jq -c --arg v "$victim" '[.[] | select(.node_id == $v) | .partitions[] | select(.hosted and .leader == $v) | .partition]' <<<"$views")
hwm_victim=$(awk '/VmHWM/ {print $2}' "/proc/${pids[vi]}/status")
echo "  $victim leads $(jq length <<<"$led") groups"
alive=($(for i in "${alive[@]}"; do if [ "$i" != "$vi" ]; then echo "$i"; fi; done))
n_alive=${#alive[@]}
kill -KILL "${pids[vi]}"
tk=$(now)
pids[vi]=""
notalive='length == $n and all(.[]; [.members[] | select(.id == "'"$victim"'" and .liveness == "alive")] | length == 0)'
dead='length == $n and all(.[]; [.members[] | select(.id == "'"$victim"'" and .liveness != "dead")] | length == 0)'
# led holds partition ids (an index until a split, P+index after): find
# each by its id, not by its place in the list.
failed_over='. as $views | length == $n and all('"$led"'[]; . as $id |
  any($views[]; .node_id as $me | any(.partitions[]; .partition == $id and .hosted and .leader == $me)))'
# The three are polled together: none waits for another.
(wait_for "every other node sees $victim not alive" "$tk" "$notalive" "$n_alive" 0 "${alive[@]}" >"$dir/k1" || true) &
w1=$!
(wait_for "every group $victim led has a new leader" "$tk" "$failed_over" "$n_alive" 0 "${alive[@]}" >"$dir/k2" || true) &
wait "$w1" "$!"
wait_for "every other node sees $victim dead" "$tk" "$dead" "$n_alive" 0 "${alive[@]}" >"$dir/k3" || true
cat "$dir/k1" "$dir/k2" "$dir/k3"

echo "4. start $(id "$last") and join it"
before_snap=$(metric ringkv_consensus_snapshot_size_bytes_sum "${alive[@]}")
before_inst=$(metric ringkv_consensus_transport_snapshots_installed_total "${alive[@]}")
before_ae=$(metric ringkv_antientropy_exchange_bytes_total "${alive[@]}")
before_rep=$(metric ringkv_antientropy_keys_repaired_total "${alive[@]}")
tj=$(now)
start_node "$last" --join "127.0.0.1:$(gport 1)"
alive+=("$last")
n_alive=${#alive[@]}
wait_for "$(id "$last") alive on every node" "$tj" "$gossip_ok" "$n_alive" 0 "${alive[@]}" || true
wait_for "ring converged ($last joined, on every live node)" "$tj" "$ring_ok" "$n_alive" "$last" "${alive[@]}" || true
wait_for "every partition converged again, every group led" "$tj" "$conv_ok" "$n_alive" "$last" "${alive[@]}" || true
# Eventual writes reach a new replica by anti-entropy (every --ae-interval,
# default 1m), not through raft: the data has moved once every partition's
# live replicas have equal Merkle roots.
wait_for "every partition's live replicas equal (Merkle roots)" "$tj" "$data_ok" "$n_alive" "$last" "${alive[@]}" || true
views=$(fetch "$last")
echo "  $(id "$last") holds $(jq '[.[0].partitions[] | select(.preference | index("'"$(id "$last")"'"))] | length' <<<"$views") replica slots"
echo "  disk its data directory uses: $(du -s --block-size=1 "$dir/$(id "$last")" | cut -f1) B; its ringkv_replica_disk_bytes: $(metric ringkv_replica_disk_bytes "$last")"
echo "  snapshots installed: $(($(metric ringkv_consensus_transport_snapshots_installed_total "${alive[@]}") - before_inst)), snapshot bytes written: $(($(metric ringkv_consensus_snapshot_size_bytes_sum "${alive[@]}") - before_snap))"
echo "  anti-entropy: $(($(metric ringkv_antientropy_exchange_bytes_total "${alive[@]}") - before_ae)) B exchanged, $(($(metric ringkv_antientropy_keys_repaired_total "${alive[@]}") - before_rep)) keys repaired"

echo "5. peak RSS (VmHWM)"
hwm=$(for i in "${alive[@]}"; do awk '/VmHWM/ {print $2}' "/proc/${pids[i]}/status"; done | sort -n)
echo "  over the $n_alive live processes: min $(head -1 <<<"$hwm") kB, median $(sed -n "$(( (n_alive + 1) / 2 ))p" <<<"$hwm") kB, max $(tail -1 <<<"$hwm") kB; $victim before its kill $hwm_victim kB; $(id "$last") $(awk '/VmHWM/ {print $2}' "/proc/${pids[last]}/status") kB"
echo "  sum of RSS now: $(for i in "${alive[@]}"; do awk '/VmRSS/ {print $2}' "/proc/${pids[i]}/status"; done | awk '{s+=$1} END {print s}') kB"
echo "uptime after: $(uptime)"
