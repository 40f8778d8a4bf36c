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

# Every package with statements must meet the floor, except proto/kvpb,
# which is generated code.
fail=0
while read -r line; do
  pkg=$(grep -o 'github.com/ringkv/ringkv[^[:space:]]*' <<<"$line" | head -1)
  pct=$(grep -o 'coverage: [0-9.]*%' <<<"$line" | grep -o '[0-9.]*')
  [ -n "$pct" ] || continue
  case "$pkg" in
    */proto/kvpb) continue ;;
  esac
  if awk -v p="$pct" -v f="$FLOOR" 'BEGIN{exit !(p < f)}'; then
    echo "coverage of $pkg is $pct%, below the $FLOOR% floor"; fail=1
  fi
done < <(grep -E 'coverage: [0-9.]+% of statements' "$out")
exit $fail
