#!/usr/bin/env bash
# Runs every Go fuzz target of the module for SECONDS each (default 600)
# and prints a line per target with its executions. JOBS targets run at
# once (default 1), each with as many fuzz workers as GOMAXPROCS/JOBS
# (at least 1). A crasher fails the run: go test writes it under the
# package's testdata/fuzz/<Target>/, where plain `go test` replays it
# from then on. See docs/RELIABILITY.md, "Fuzzing".
# PICK=K runs only K of the targets: those from index ROTATE*K (modulo
# the number of targets) on, in the sorted list, so that runs with
# ROTATE = 0, 1, 2, ... take every target in turn (CI passes the
# commit count: see .ci/run).
#   bash scripts/fuzz.sh [SECONDS]           one target after another
#   JOBS=3 bash scripts/fuzz.sh 600          three at a time
#   PICK=3 ROTATE=7 bash scripts/fuzz.sh 20  targets 21-23 (mod n), 20 s each
set -euo pipefail
cd "$(dirname "$0")/.."
secs=${1:-600}
jobs=${JOBS:-1}
workers=$(( $(nproc) / jobs )); [ "$workers" -ge 1 ] || workers=1
logs=$(mktemp -d)
trap 'rm -rf "$logs"' EXIT
list=()
for dir in $(grep -rl --include='*_test.go' '^func Fuzz' . | xargs -n1 dirname | sort -u); do
  for target in $(grep -ho '^func Fuzz[A-Za-z0-9_]*' "$dir"/*_test.go | sed 's/^func //' | sort -u); do
    list+=("$dir $target")
  done
done
if [ -n "${PICK:-}" ]; then
  n=${#list[@]}; k=$PICK; [ "$k" -le "$n" ] || k=$n
  start=$(( (${ROTATE:-0} * k) % n ))
  picked=()
  for ((i = 0; i < k; i++)); do picked+=("${list[$(( (start + i) % n ))]}"); done
  echo "fuzz: $k of $n targets, from index $start (ROTATE=${ROTATE:-0})"
  list=("${picked[@]}")
fi
# fuzz DIR TARGET: one target; its log and result go under $logs.
fuzz() {
  local dir=$1 target=$2 name log
  name=$(echo "$dir-$target" | tr '/.' '__'); log="$logs/$name.log"
  if go test "$dir" -run '^$' -fuzz "^$target\$" -fuzztime "${secs}s" -parallel "$workers" >"$log" 2>&1; then
    execs=$(grep -o 'execs: [0-9]*' "$log" | tail -1 | grep -o '[0-9]*' || echo 0)
    printf 'fuzz: %-22s %-28s %12d execs  (%s UTC)\n' "$dir" "$target" "$execs" "$(date -u +%H:%M:%S)" | tee "$logs/$name.ok"
  else
    cat "$log"
    echo "fuzz: $dir $target FAILED (crasher under $dir/testdata/fuzz/$target)" | tee "$logs/$name.failed"
  fi
}
running=0
for entry in "${list[@]}"; do
  # shellcheck disable=SC2086 # entry is "DIR TARGET"
  fuzz $entry &
  running=$((running + 1))
  if [ "$running" -ge "$jobs" ]; then wait -n || true; running=$((running - 1)); fi
done
wait
total=0
for f in "$logs"/*.ok; do [ -e "$f" ] && total=$((total + $(awk '{print $4}' "$f"))); done
failed=$(find "$logs" -name '*.failed' | wc -l)
echo "fuzz: ${#list[@]} targets, ${secs}s each, $jobs at a time with $workers worker(s) each, $total execs, $failed crashers"
[ "$failed" -eq 0 ]
