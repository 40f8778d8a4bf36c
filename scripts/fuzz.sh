#!/usr/bin/env bash
# Runs every Go fuzz target of the module for SECONDS each (default 600),
# one after another, and prints a line per target with its executions.
# A crasher stops the run: go test writes it under the package's
# testdata/fuzz/<Target>/, where plain `go test` replays it from then on.
# See docs/RELIABILITY.md, "Fuzzing".
set -euo pipefail
cd "$(dirname "$0")/.."
secs=${1:-600}
log=$(mktemp)
trap 'rm -f "$log"' EXIT
total=0
targets=0
for dir in $(grep -rl --include='*_test.go' '^func Fuzz' . | xargs -n1 dirname | sort -u); do
  for target in $(grep -ho '^func Fuzz[A-Za-z0-9_]*' "$dir"/*_test.go | sed 's/^func //' | sort -u); do
    targets=$((targets + 1))
    if ! go test "$dir" -run '^$' -fuzz "^$target\$" -fuzztime "${secs}s" >"$log" 2>&1; then
      cat "$log"
      echo "fuzz: $dir $target FAILED (crasher under $dir/testdata/fuzz/$target)"
      exit 1
    fi
    execs=$(grep -o 'execs: [0-9]*' "$log" | tail -1 | grep -o '[0-9]*' || echo 0)
    total=$((total + execs))
    printf 'fuzz: %-22s %-28s %12d execs\n' "$dir" "$target" "$execs"
  done
done
echo "fuzz: $targets targets, ${secs}s each, $total execs, 0 crashers"
