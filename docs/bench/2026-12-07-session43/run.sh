# run.sh: sourced by rounds.sh and confirm.sh. run BIN NAME ARGS... runs
# `BIN bench --duration 10s --compare etcd=$E --json ARGS` into
# $OUT/NAME.json (stderr to $OUT/NAME.err, or to $RUN_ERR if set), logging
# start, end and load average to $OUT/log.
run() { local bin=$1 name=$2; shift 2
  echo "$(date -u +%T) $name start load $(cut -d' ' -f1-3 /proc/loadavg)" >> "$OUT/log"
  $bin bench --duration 10s --compare etcd=$E --json "$@" > "$OUT/$name.json" 2>"${RUN_ERR:-$OUT/$name.err}"
  echo "$(date -u +%T) $name end rc=$? load $(cut -d' ' -f1-3 /proc/loadavg)" >> "$OUT/log"
}
