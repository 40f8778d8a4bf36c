#!/usr/bin/env bash
# The test command of the README: vet, then every package's tests with the
# race detector and statement coverage, then a check that every package
# with code stays above the coverage floor.
set -euo pipefail
cd "$(dirname "$0")/.."
FLOOR=${COVERAGE_FLOOR:-70}

go vet ./...
out=$(mktemp)
trap 'rm -f "$out"' EXIT
go test -race -cover -timeout 12m ./... 2>&1 | tee "$out"

# Packages without tests of their own are generated code (proto/kvpb),
# the command's main package and the proto doc package; everything else
# must meet the floor.
fail=0
while read -r line; do
  pkg=$(awk '{print $2}' <<<"$line")
  pct=$(grep -o 'coverage: [0-9.]*%' <<<"$line" | grep -o '[0-9.]*')
  [ -n "$pct" ] || continue
  case "$pkg" in
    */proto/kvpb|*/cmd/ringkv|*/internal/testcluster) continue ;;
  esac
  if awk -v p="$pct" -v f="$FLOOR" 'BEGIN{exit !(p < f)}'; then
    echo "coverage of $pkg is $pct%, below the $FLOOR% floor"; fail=1
  fi
done < <(grep -E '^ok ' "$out")
exit $fail
