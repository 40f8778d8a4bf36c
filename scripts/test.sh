#!/usr/bin/env bash
# The test command of the README: vet, then every package's tests with the
# race detector and statement coverage, then a check that every package
# with code stays above the coverage floor.
set -euo pipefail
cd "$(dirname "$0")/.."
FLOOR=${COVERAGE_FLOOR:-70}

go vet ./...
echo "-- [${SECONDS}s] vet done"
out=$(mktemp)
# Every package under the race detector but three: ring (below), the
# integration suite internal/testcluster (below) and the chaos harness,
# whose CI run (internal/chaos, about 3 minutes) goes alone afterwards,
# without -race, so that its fault schedule and operation count do not
# compete with the other suites for the two cores.
status=0
# ring is pure code (no goroutines, no I/O: internal/lint checks it), so
# the race detector has nothing to find there and only makes its property
# tests a hundred times slower (2 s plain, minutes under -race, which also
# cut the seeds). It runs alone first, without -race, at full strength.
go test -cover -timeout 5m ./ring/ 2>&1 | tee "$out" || status=1
# The integration suite (internal/testcluster, about 4.5 minutes) runs in
# the background, beside the race detector's packages: its servers are
# plain builds (RaceServers) and most of its time is waiting on real
# processes (failovers, TTLs, anti-entropy rounds), about one core in all,
# so it runs without -race in its own process (the client library it
# drives runs under the race detector in client's own tests).
tcout=$(mktemp)
trap 'rm -f "$out" "$tcout"' EXIT
echo "-- [${SECONDS}s] internal/testcluster (background, no -race)"
go test -cover -count=1 -timeout 12m ./internal/testcluster/ >"$tcout" 2>&1 &
tcpid=$!
# go test starts the packages in the order given, two at a time on two
# cores: the longest first, so that the short ones fill in behind them.
# cmd/ringkv's bench tests (TestBench*) start a three-node cluster in the
# test's own process and load it: under the race detector and beside the
# rest they took minutes and timed out; they run just after, without it.
first="cmd/ringkv node consensus client ring/gossip coordinator"
pkgs=$(for p in $first; do echo "github.com/ringkv/ringkv/$p"; done
  go list ./... | grep -v -e /internal/chaos -e /internal/testcluster -e '/ring$' $(for p in $first; do echo "-e /$p\$"; done))
echo "-- [${SECONDS}s] every other package, under the race detector"
go test -race -cover -timeout 12m -skip '^TestBench' $pkgs 2>&1 | tee -a "$out" || status=1
echo "-- [${SECONDS}s] cmd/ringkv's bench tests, no -race"
go test -count=1 -timeout 6m -run '^TestBench' ./cmd/ringkv/ 2>&1 | tee -a "$out" || status=1
echo "-- [${SECONDS}s] waiting for internal/testcluster"
wait "$tcpid" || status=1
cat "$tcout" | tee -a "$out"
echo "-- [${SECONDS}s] chaos CI mode"
go test -cover -count=1 -timeout 6m ./internal/chaos/ 2>&1 | tee -a "$out" || status=1
# The chaos CI mode once more against a secure cluster (TLS on every port
# and peer link through the proxies, encrypted gossip): about a minute.
# Its length is set by every fault kind running once (about 40 s), not
# by an operation count.
echo "-- [${SECONDS}s] chaos CI mode, secure cluster"
RINGKV_CHAOS_SECURE=1 RINGKV_CHAOS_OPS=8000 go test -count=1 -timeout 6m -run 'TestChaos$' ./internal/chaos/ 2>&1 | tee -a "$out" || status=1

# Opt-in: RINGKV_FUZZ_SECONDS=N runs every fuzz target for N seconds
# (scripts/fuzz.sh). .ci/run leaves it unset (21 targets at 20 s each do
# not fit CI's budget; their seed corpora run above as plain tests) and
# fuzzes one of them in rotation after this script.
if [ -n "${RINGKV_FUZZ_SECONDS:-}" ]; then
  bash scripts/fuzz.sh "$RINGKV_FUZZ_SECONDS" 2>&1 | tee -a "$out" || status=1
fi

# Every package with statements must meet the floor, except proto/kvpb,
# which is generated code, and examples/, runnable programs that need a
# running cluster (go vet compiles them).
fail=0
while read -r line; do
  pkg=$(grep -o 'github.com/ringkv/ringkv[^[:space:]]*' <<<"$line" | head -1)
  pct=$(grep -o 'coverage: [0-9.]*%' <<<"$line" | grep -o '[0-9.]*')
  [ -n "$pct" ] || continue
  case "$pkg" in
    */proto/kvpb|*/examples/*) continue ;;
  esac
  if awk -v p="$pct" -v f="$FLOOR" 'BEGIN{exit !(p < f)}'; then
    echo "coverage of $pkg is $pct%, below the $FLOOR% floor"; fail=1
  fi
done < <(grep -E 'coverage: [0-9.]+% of statements' "$out")
# A failing integration test dumps its nodes' logs (thousands of lines)
# after its own messages; CI shows the tail of the output, so the failures
# are repeated here, last: each "--- FAIL" and the test files' own lines
# (t.Errorf, t.Fatalf, t.Logf), not the nodes' logs.
if [ $status -ne 0 ]; then
  echo "== failures (repeated from above)"
  grep -E -e '^\s*--- FAIL' -e '^\s+[A-Za-z0-9_]+_test\.go:[0-9]+: ' -e '^panic: ' -e '^FAIL\s' "$out" | cut -c1-400 | tail -n 120 || true
  echo "tests failed"; exit 1
fi
exit $fail
