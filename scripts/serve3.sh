# serve3.sh: sourced by the bench scripts. serve_start starts three fresh
# `ringkv serve` processes of $RINGKV with data under $DIR (HTTP 1808i, drpc
# 1900i, gossip 1710i, pprof 1606i) and waits until all are ready;
# serve_stop stops them. TARGET is their drpc addresses; EXTRA, if set, more
# flags for every serve process (e.g. --sync-linger -1).
TARGET=127.0.0.1:19001,127.0.0.1:19002,127.0.0.1:19003

serve_start() {
  # Refuse ports someone else holds: the readiness check below would
  # otherwise find their node ready and the rounds would measure it.
  for port in 18081 18082 18083 19001 19002 19003 17101 17102 17103 16061 16062 16063; do
    if (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null; then
      echo "port $port is in use: not starting the serve processes" >&2; return 1
    fi
  done
  rm -rf "$DIR"; mkdir -p "$DIR"
  for i in 1 2 3; do
    join=""; [ "$i" -gt 1 ] && join="--join 127.0.0.1:17101"
    # shellcheck disable=SC2086 # join is empty or two words; EXTRA, serve's further flags
    "$RINGKV" serve --id "n$i" --data "$DIR/n$i" --http "127.0.0.1:1808$i" --rpc "127.0.0.1:1900$i" \
      --gossip "127.0.0.1:1710$i" --resp "" $join ${EXTRA:-} --pprof "127.0.0.1:1606$i" >"$DIR/n$i.log" 2>&1 &
    echo $! >"$DIR/n$i.pid"
    [ "$i" -eq 1 ] && sleep 1
  done
  for _ in $(seq 1 300); do
    ok=0
    for i in 1 2 3; do kill -0 "$(cat "$DIR/n$i.pid")" 2>/dev/null || { echo "serve n$i exited; log in $DIR/n$i.log" >&2; return 1; }; done
    for i in 1 2 3; do curl -fsS -m 1 -o /dev/null "http://127.0.0.1:1808$i/ready" 2>/dev/null && ok=$((ok+1)); done
    [ $ok -eq 3 ] && return 0
    sleep 0.2
  done
  echo "serve processes not ready; logs in $DIR" >&2; return 1
}

serve_stop() {
  for i in 1 2 3; do
    p=$(cat "$DIR/n$i.pid"); kill "$p" 2>/dev/null || true
    for _ in $(seq 1 100); do kill -0 "$p" 2>/dev/null || break; sleep 0.2; done
    kill -9 "$p" 2>/dev/null || true
  done
}
