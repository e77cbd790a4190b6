#!/usr/bin/env bash
# Processor benchmark: the store's raw write limit (insert_many of the very raw-event
# documents the processor wrote, copied after its run; of generated ones too) next to the
# processor end to end (Redis backlog -> raw events and rollups in the store), and
# the freshness of the rollups at a steady load, with the targets beside them. One
# throwaway Redis and FerretDB (SQLite backend), both on loopback.
#
#   make bench-processor            (or: bash tests/bench/processor.sh)
#
# Knobs (environment): BENCH_EVENTS (events preloaded through ingest and drained, default
# 100000), BENCH_RAW_DOCS (documents of the raw insert_many runs, default 100000),
# BENCH_STEADY_SECS (the steady run, default 20), BENCH_STEADY_BATCH (events per request of
# the steady run, default 100), BENCH_PROCESSOR_BATCH (processor.batchSize, default 2000),
# BENCH_PARTITIONS (stream partitions of the pipeline, default 8),
# BENCH_ROLLUP_DOCS (filler documents put in the rollups collection before the processor
# starts, default 0: on FerretDB every update scans its collection, so this shows the
# processor after the rollups have grown, e.g. 11520 for a day of minute periods at 8
# partitions; the filler is never read as rollups),
# BENCH_DRAIN_TIMEOUT (seconds to wait for the backlog to drain, default 150: past it the
# rate is events stored / time waited, and the buffer is emptied for the steady run),
# BENCH_INFLUX=1 (also run the InfluxDB sink into a throwaway influxd, flushing every second,
# and report its lag, pulse_processor_influx_lag_seconds, sampled through the steady run),
# BENCH_LOG_DIR (a directory to copy the logs into on exit; run with
# RUST_LOG=info,pulse_processor=debug for the processor's per-batch timings).
# Every process started here is stopped on exit or Ctrl-C.
set -euo pipefail
shopt -s inherit_errexit

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
cd "$ROOT"

EVENTS="${BENCH_EVENTS:-100000}"
RAW_DOCS="${BENCH_RAW_DOCS:-100000}"
STEADY_SECS="${BENCH_STEADY_SECS:-20}"
STEADY_BATCH="${BENCH_STEADY_BATCH:-100}"
PROCESSOR_BATCH="${BENCH_PROCESSOR_BATCH:-2000}"
DRAIN_TIMEOUT="${BENCH_DRAIN_TIMEOUT:-150}"
PARTITIONS="${BENCH_PARTITIONS:-8}"
INFLUX="${BENCH_INFLUX:-0}"
ROLLUP_DOCS="${BENCH_ROLLUP_DOCS:-0}"
CONNECTIONS=16
PRELOAD_BATCH=500
USERS=10000
RAW_BATCH=500
TENANT=bench
TARGET_RATIO=0.70
TARGET_P99_S=1
TARGET_DIR="${CARGO_TARGET_DIR:-target}"
CACHE="${PULSE_CACHE:-$HOME/.cache/pulse}"
FERRETDB="$CACHE/bin/ferretdb"

for knob in EVENTS RAW_DOCS STEADY_SECS STEADY_BATCH PROCESSOR_BATCH DRAIN_TIMEOUT PARTITIONS; do
  if [[ ! "${!knob}" =~ ^[1-9][0-9]*$ ]]; then
    echo "[bench] error: BENCH_$knob must be a positive integer, not '${!knob}'" >&2
    exit 2
  fi
done
if [[ ! "$ROLLUP_DOCS" =~ ^[0-9]+$ ]]; then
  echo "[bench] error: BENCH_ROLLUP_DOCS must be a whole number, not '$ROLLUP_DOCS'" >&2
  exit 2
fi

started=$SECONDS
log() { printf '[bench %3ds] %s\n' "$((SECONDS - started))" "$*"; }
die() {
  printf '[bench] error: %s\n' "$*" >&2
  exit 1
}

TMP="$(mktemp -d -t pulse-bench.XXXXXX)"
PIDS=()

# stop_process PID: SIGTERM, up to 5 s to exit, then SIGKILL.
stop_process() {
  local pid="$1"
  kill "$pid" 2>/dev/null || return 0
  for _ in $(seq 1 50); do
    kill -0 "$pid" 2>/dev/null || break
    sleep 0.1
  done
  kill -9 "$pid" 2>/dev/null || true
  wait "$pid" 2>/dev/null || true
}

cleanup() {
  local status=$?
  trap - EXIT INT TERM
  # Newest first: the processor and ingest before the servers they write to.
  local i
  for ((i = ${#PIDS[@]} - 1; i >= 0; i--)); do
    stop_process "${PIDS[i]}"
  done
  if [[ -n "${BENCH_LOG_DIR:-}" ]]; then
    mkdir -p "$BENCH_LOG_DIR" && cp "$TMP"/*.log "$BENCH_LOG_DIR"/ 2>/dev/null || true
  fi
  rm -rf "$TMP"
  exit "$status"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

# ---------------------------------------------------------------------------------------
# Tools

if ! command -v redis-server >/dev/null || ! command -v redis-cli >/dev/null; then
  log "redis-server missing: installing it with the stack script"
  bash tests/env/build-stack.sh redis
fi
if [[ ! -x "$FERRETDB" ]]; then
  log "ferretdb missing: building it with the stack script"
  bash tests/env/build-stack.sh ferretdb
fi
if ! command -v curl >/dev/null; then
  log "curl missing: installing it"
  sudo=""
  [[ $(id -u) == 0 ]] || sudo="sudo"
  DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -q curl >/dev/null 2>&1 || {
    $sudo apt-get update -q >/dev/null
    DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -q curl >/dev/null
  }
fi
for tool in redis-server redis-cli curl "$FERRETDB"; do
  command -v "$tool" >/dev/null || die "$tool is not installed"
done

# port_in_use PORT: any TCP socket on this local port (listening or not).
port_in_use() {
  if command -v ss >/dev/null; then
    [[ -n "$(ss -Htan "( sport = :$1 )" 2>/dev/null)" ]]
  else
    (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null
  fi
}

# free_port [EXCLUDED...]: a loopback port nothing uses.
free_port() {
  local port
  for _ in $(seq 1 200); do
    port=$((20000 + RANDOM % 40000))
    [[ " $* " != *" $port "* ]] || continue
    if ! port_in_use "$port"; then
      echo "$port"
      return 0
    fi
  done
  die "found no free loopback port"
}

# json_field NAME JSON: a scalar field of a one-line JSON summary.
json_field() {
  sed -n "s/.*\"$1\":\([^,}]*\).*/\1/p" <<<"$2"
}

# Float arithmetic and formatting, without bc.
calc() { awk "BEGIN { printf \"%.${2:-0}f\", $1 }"; }

# cpu_seconds PID: user + system CPU time the process has used so far.
CLK_TCK="$(getconf CLK_TCK)"
cpu_seconds() { awk -v hz="$CLK_TCK" '{ printf "%.2f", ($14 + $15) / hz }' "/proc/$1/stat" 2>/dev/null || echo 0; }

# wait_until SECONDS WHAT PID LOG COMMAND...: polls COMMAND every 100 ms while PID lives.
wait_until() {
  local timeout="$1" what="$2" pid="$3" logfile="$4"
  shift 4
  local deadline=$((SECONDS + timeout))
  until "$@" 2>/dev/null; do
    kill -0 "$pid" 2>/dev/null || { tail -n 30 "$logfile" >&2; die "$what exited"; }
    ((SECONDS < deadline)) || { tail -n 30 "$logfile" >&2; die "$what not ready after $timeout s"; }
    sleep 0.1
  done
}

REDIS_VERSION="$(redis-server --version | sed -n 's/.*v=\([0-9.]*\).*/\1/p')"
FERRETDB_VERSION="$("$FERRETDB" --version 2>/dev/null | sed -n 's/^version: *//p' | head -n 1)"
log "machine: $(nproc) cores, redis $REDIS_VERSION, ferretdb $FERRETDB_VERSION, temp dir $TMP"

log "building pulse-ingest, pulse-processor, pulse-loadgen and pulse-bench-store (release)"
cargo build --release --quiet -p pulse-ingest -p pulse-processor -p pulse-loadgen -p pulse-bench-store
INGEST="$TARGET_DIR/release/pulse-ingest"
PROCESSOR="$TARGET_DIR/release/pulse-processor"
LOADGEN="$TARGET_DIR/release/pulse-loadgen"
BENCH_STORE="$TARGET_DIR/release/pulse-bench-store"
for binary in "$INGEST" "$PROCESSOR" "$LOADGEN" "$BENCH_STORE"; do
  [[ -x "$binary" ]] || die "$binary is missing"
done

# ---------------------------------------------------------------------------------------
# 1. A throwaway Redis (persisted as ingest's fast durability expects) and FerretDB.

REDIS_PORT="$(free_port)"
mkdir -p "$TMP/redis"
# No RDB snapshots and no automatic AOF rewrite: a fork in one measurement and not another
# would make the figures incomparable. The AOF itself is on, fsynced every second.
redis-server --port "$REDIS_PORT" --bind 127.0.0.1 --dir "$TMP/redis" \
  --appendonly yes --appendfsync everysec --save '' --auto-aof-rewrite-percentage 0 \
  --daemonize no --logfile "$TMP/redis.log" &
PIDS+=($!)
REDIS_PID=$!
rcli() { redis-cli -h 127.0.0.1 -p "$REDIS_PORT" "$@"; }
redis_ready() { [[ "$(rcli ping)" == "PONG" ]]; }
wait_until 10 redis-server "$REDIS_PID" "$TMP/redis.log" redis_ready
log "redis-server on 127.0.0.1:$REDIS_PORT (appendonly yes, appendfsync everysec)"

FERRET_PORT="$(free_port "$REDIS_PORT")"
mkdir -p "$TMP/ferretdb/data" "$TMP/ferretdb/state"
# Thrown-away data: no fsync per write, as the test kit runs it.
"$FERRETDB" --listen-addr="127.0.0.1:$FERRET_PORT" --handler=sqlite \
  --sqlite-url="file:$TMP/ferretdb/data/?_pragma=synchronous(OFF)" --state-dir="$TMP/ferretdb/state" \
  --telemetry=disable --debug-addr=- --log-level=warn >"$TMP/ferretdb.log" 2>&1 &
PIDS+=($!)
FERRET_PID=$!
ferret_ready() { (exec 3<>"/dev/tcp/127.0.0.1/$FERRET_PORT"); }
wait_until 30 ferretdb "$FERRET_PID" "$TMP/ferretdb.log" ferret_ready
MONGODB_URI="mongodb://127.0.0.1:$FERRET_PORT/"
log "ferretdb (SQLite, synchronous OFF) on 127.0.0.1:$FERRET_PORT"

INFLUX_PORT=""
if [[ "$INFLUX" == 1 ]]; then
  command -v influxd >/dev/null || die "BENCH_INFLUX=1 needs influxd: run make env (tests/env/influxdb.sh)"
  INFLUX_PORT="$(free_port "$REDIS_PORT" "$FERRET_PORT")"
  INFLUX_RPC="$(free_port "$REDIS_PORT" "$FERRET_PORT" "$INFLUX_PORT")"
  mkdir -p "$TMP/influxdb"
  printf '%s\n' "reporting-disabled = true" "bind-address = \"127.0.0.1:$INFLUX_RPC\"" \
    "[meta]" "dir = \"$TMP/influxdb/meta\"" "[data]" "dir = \"$TMP/influxdb/data\"" \
    "wal-dir = \"$TMP/influxdb/wal\"" "query-log-enabled = false" "[http]" \
    "bind-address = \"127.0.0.1:$INFLUX_PORT\"" "log-enabled = false" "[monitor]" "store-enabled = false" \
    >"$TMP/influxdb/influxdb.conf"
  influxd run -config "$TMP/influxdb/influxdb.conf" >"$TMP/influxd.log" 2>&1 &
  PIDS+=($!)
  influx_ready() { curl -fsS -o /dev/null "http://127.0.0.1:$INFLUX_PORT/ping"; }
  wait_until 30 influxd "$!" "$TMP/influxd.log" influx_ready
  curl -fsS -o /dev/null -X POST "http://127.0.0.1:$INFLUX_PORT/query" --data-urlencode 'q=CREATE DATABASE "pulse_bench"'
  log "influxd $(influxd version | awk '{ print $2 }') on 127.0.0.1:$INFLUX_PORT (the InfluxDB sink is on)"
fi

# ---------------------------------------------------------------------------------------
# 2. The store's raw limit: insert_many of raw-event documents, one batch in flight (the
#    SQLite backend writes one transaction at a time; more in flight measured the same).

# raw_insert NAME [FLAGS...]: docs/s of pulse-bench-store into database bench_NAME (its output
# in $TMP/NAME.out).
raw_insert() {
  local name="$1"
  shift
  "$BENCH_STORE" --uri "$MONGODB_URI" --database "bench_$name" --docs "$RAW_DOCS" --batch "$RAW_BATCH" \
    --json "$@" >"$TMP/$name.out" || { cat "$TMP/$name.out"; die "pulse-bench-store ($name) failed"; }
  sed '/^{/d' "$TMP/$name.out" | sed 's/^/    /' >&2
  calc "$(json_field docs_per_s "$(grep '^{' "$TMP/$name.out" | tail -n 1)")"
}

log "raw insert_many: $RAW_DOCS documents in $RAW_BATCH-document unordered batches, fresh collection"
RAW_EPS="$(raw_insert raw)"
log "raw insert_many again, with the raw events collection's index on ts (as the processor writes on FerretDB)"
RAW_INDEXED_EPS="$(raw_insert raw_indexed --indexes)"

# ---------------------------------------------------------------------------------------
# 3. pulse-ingest, and a preload of EVENTS events into the buffer with no processor.

WRITE_KEY="$(head -c 24 /dev/urandom | od -An -tx1 | tr -d ' \n')"
printf 'redis://127.0.0.1:%s\n' "$REDIS_PORT" >"$TMP/redis-url"
printf '%s\n' "$MONGODB_URI" >"$TMP/mongodb-uri"
printf '%s\n' "$WRITE_KEY" >"$TMP/write-key"
head -c 24 /dev/urandom | od -An -tx1 | tr -d ' \n' >"$TMP/read-key"
chmod 600 "$TMP/redis-url" "$TMP/mongodb-uri" "$TMP/write-key" "$TMP/read-key"
cat >"$TMP/pipeline.yaml" <<EOF
version: 1
tenant: $TENANT
buffer:
  redisUrlFile: $TMP/redis-url
  partitions: $PARTITIONS
  durability: fast
  highWaterMark: 1000000000
storage:
  mongodbUriFile: $TMP/mongodb-uri
  database: pulse_bench
  retention: 365d
keys:
  writeKeyFile: $TMP/write-key
  readKeyFile: $TMP/read-key
processor:
  batchSize: $PROCESSOR_BATCH
rollups:
  intervals: [minute, hour, day]
  numericProperties: [revenue]
EOF
if [[ -n "$INFLUX_PORT" ]]; then
  printf '%s\n' "influx:" "  url: http://127.0.0.1:$INFLUX_PORT" "  database: pulse_bench" \
    "  flushInterval: 1s" >>"$TMP/pipeline.yaml"
fi

INGEST_PORT="$(free_port "$REDIS_PORT" "$FERRET_PORT")"
"$INGEST" --config "$TMP/pipeline.yaml" --listen "127.0.0.1:$INGEST_PORT" >"$TMP/ingest.log" 2>&1 &
PIDS+=($!)
INGEST_PID=$!
INGEST_URL="http://127.0.0.1:$INGEST_PORT"
ingest_ready() { curl -fsS -o /dev/null --max-time 1 "$INGEST_URL/readyz"; }
wait_until 30 pulse-ingest "$INGEST_PID" "$TMP/ingest.log" ingest_ready
log "pulse-ingest (pid $INGEST_PID) ready on $INGEST_URL"

BACKLOG_KEYS=()
for ((p = 0; p < PARTITIONS; p++)); do BACKLOG_KEYS+=("pulse:{$TENANT:$p}:backlog"); done
# backlog: unprocessed events over every partition.
backlog() { rcli MGET "${BACKLOG_KEYS[@]}" | awk '{ n += $1 } END { printf "%d", n }'; }

# loadgen NAME [FLAGS...]: runs pulse-loadgen against ingest; its JSON line in $TMP/NAME.json.
loadgen() {
  local name="$1"
  shift
  if ! PULSE_WRITE_KEY="$WRITE_KEY" "$LOADGEN" --url "$INGEST_URL" --connections "$CONNECTIONS" \
    --users "$USERS" --json "$@" >"$TMP/$name.out"; then
    sed '/^{/d' "$TMP/$name.out"
    tail -n 30 "$TMP/ingest.log" >&2
    die "pulse-loadgen ($name) had no successful request"
  fi
  grep '^{' "$TMP/$name.out" | tail -n 1 >"$TMP/$name.json"
}

# pulse-loadgen runs for a duration, not a count: a short flat-out round measures ingest's
# rate, flat-out rounds sized from it follow, and the last few thousand events go paced
# over half a second. The count buffered is what the processor is timed on.
log "preloading $EVENTS events through ingest, flat out ($CONNECTIONS connections, $PRELOAD_BATCH-event batches)"
preload_rate=0
BUFFERED=0
for round in $(seq 1 10); do
  remaining=$((EVENTS - BUFFERED))
  ((remaining * 100 > EVENTS * 2)) || break
  if ((round == 1)); then
    # Short enough not to overshoot much at 400k events/s: 0.25 s for 100k events.
    loadgen "preload$round" --batch-size "$PRELOAD_BATCH" --warmup 0 \
      --duration "$(calc "($EVENTS / 400000 < 0.05) ? 0.05 : ($EVENTS / 400000 > 0.25 ? 0.25 : $EVENTS / 400000)" 2)"
  elif awk "BEGIN { exit !($remaining / $preload_rate >= 0.5) }"; then
    loadgen "preload$round" --batch-size "$PRELOAD_BATCH" --warmup 0 \
      --duration "$(calc "$remaining / $preload_rate * 0.8" 2)"
  else
    loadgen "preload$round" --batch-size "$PRELOAD_BATCH" --warmup 0 --duration 0.5 --rate $((remaining * 2))
  fi
  rate="$(json_field events_per_s "$(cat "$TMP/preload$round.json")")"
  [[ "$rate" =~ ^[0-9.]+$ ]] || rate=0
  BUFFERED="$(backlog)"
  log "  round $round: $(calc "${rate:-0}") events/s, $BUFFERED events buffered"
  # A paced round's rate is its pace: keep the flat-out estimate.
  if ((round == 1)) || awk "BEGIN { exit !($rate > $preload_rate) }"; then preload_rate="${rate:-0}"; fi
  awk "BEGIN { exit !($preload_rate > 0) }" || die "ingest accepted no event while preloading"
done
((BUFFERED > 0)) || die "preloading: no event buffered"

# ---------------------------------------------------------------------------------------
# 4. The processor drains the preloaded backlog.

PROC_PORT="$(free_port "$REDIS_PORT" "$FERRET_PORT" "$INGEST_PORT")"
PROC_URL="http://127.0.0.1:$PROC_PORT"
metrics() { curl -fsS --max-time 2 "$PROC_URL/metrics" 2>/dev/null || true; }
# stored: events the processor has stored (0 before its /metrics answers).
stored() { metrics | awk '/^pulse_processor_events_stored_total/ { n = $NF } END { printf "%d", n }'; }
proc_log_tail() {
  echo "--- last lines of the pulse-processor log:" >&2
  tail -n 30 "$TMP/processor.log" >&2
}
now_ms() { date +%s%3N; }

# start_processor: starts pulse-processor (JSON logs appended to $TMP/processor.log).
start_processor() {
  "$PROCESSOR" --config "$TMP/pipeline.yaml" --listen "127.0.0.1:$PROC_PORT" >>"$TMP/processor.log" 2>&1 &
  PIDS+=($!)
  PROC_PID=$!
}

if ((ROLLUP_DOCS > 0)); then
  log "putting $ROLLUP_DOCS filler documents in pulse_bench.rollups (BENCH_ROLLUP_DOCS)"
  "$BENCH_STORE" --uri "$MONGODB_URI" --database pulse_bench --collection rollups --docs "$ROLLUP_DOCS" \
    --batch "$RAW_BATCH" --keep >"$TMP/rollup-filler.out" || { cat "$TMP/rollup-filler.out"; die "filling the rollups failed"; }
fi
log "starting pulse-processor (batchSize $PROCESSOR_BATCH): timing until the backlog of $BUFFERED events is 0"
drain_start="$(now_ms)"
start_processor
FERRET_CPU0="$(cpu_seconds "$FERRET_PID")"
DRAINED=yes
last_print="$drain_start"
last_stored=0
while :; do
  left="$(backlog)"
  ((left > 0)) || break
  kill -0 "$PROC_PID" 2>/dev/null || { proc_log_tail; die "pulse-processor exited while draining"; }
  now="$(now_ms)"
  if ((now - drain_start >= DRAIN_TIMEOUT * 1000)); then
    DRAINED=no
    log "  backlog still $left events after $DRAIN_TIMEOUT s (BENCH_DRAIN_TIMEOUT): giving up waiting"
    break
  fi
  if ((now - last_print >= 3000)); then
    n="$(stored)"
    rate="$(calc "($n - $last_stored) * 1000 / ($now - $last_print)")"
    log "  $n stored, backlog $left, $rate events/s over the last $(calc "($now - $last_print) / 1000" 1) s"
    last_print="$now"
    last_stored="$n"
  fi
  sleep 0.2
done
drain_ms=$(($(now_ms) - drain_start))
PROC_CPU="$(cpu_seconds "$PROC_PID")"
FERRET_CPU="$(calc "$(cpu_seconds "$FERRET_PID") - $FERRET_CPU0" 2)"
STORED="$(stored)"
DRAIN_S="$(calc "$drain_ms / 1000" 1)"
if [[ "$DRAINED" == yes ]]; then
  PROC_EPS="$(calc "$BUFFERED * 1000 / $drain_ms")"
  log "drained $BUFFERED events in $DRAIN_S s: $PROC_EPS events/s ($STORED stored per /metrics)"
else
  PROC_EPS="$(calc "$STORED * 1000 / $drain_ms")"
  log "not drained: $STORED of $BUFFERED events stored in $DRAIN_S s: $PROC_EPS events/s"
fi
PROC_CORES="$(calc "$PROC_CPU * 1000 / $drain_ms" 2)"
FERRET_CORES="$(calc "$FERRET_CPU * 1000 / $drain_ms" 2)"
log "cpu while draining: processor $PROC_CORES cores, ferretdb $FERRET_CORES cores"
PROC_ERRORS="$(metrics | awk '/^pulse_processor_errors_total/ && $NF > 0 {
  match($0, /kind="[^"]*"/); printf "%s%s=%d", sep, substr($0, RSTART + 6, RLENGTH - 7), $NF; sep = " " }')"
[[ -z "$PROC_ERRORS" ]] || log "processor errors (retried): $PROC_ERRORS"
warnings="$(grep -cE '"level":"(WARN|ERROR)"' "$TMP/processor.log" || true)"
if ((warnings > 0)); then
  log "processor log: $warnings warnings or errors, the last ones:"
  grep -E '"level":"(WARN|ERROR)"' "$TMP/processor.log" | tail -n 3 | cut -c 1-300 | sed 's/^/    /'
fi

if [[ "$DRAINED" != yes ]]; then
  # The steady run needs an empty buffer: stop the processor, drop the buffer's keys (the
  # streams, their consumer groups, the backlog counts, the leases), start it again.
  log "emptying the buffer for the steady run: stopping the processor, deleting the pulse:* keys, restarting it"
  PROC_HWM_DRAIN_MB="$(awk '/^VmHWM:/ { printf "%.1f", $2 / 1024 }' "/proc/$PROC_PID/status" 2>/dev/null || echo 0)"
  stop_process "$PROC_PID"
  rcli --scan --pattern 'pulse:*' | xargs -r -n 500 redis-cli -h 127.0.0.1 -p "$REDIS_PORT" DEL >/dev/null
  start_processor
fi
proc_ready() { curl -fsS -o /dev/null --max-time 1 "$PROC_URL/readyz"; }
wait_until 60 pulse-processor "$PROC_PID" "$TMP/processor.log" proc_ready

# ---------------------------------------------------------------------------------------
# 5. Freshness at a steady half of the processor's rate, from the histogram's delta.

# buckets FILE: the freshness histogram's cumulative buckets as "le count" lines.
buckets() {
  metrics | sed -n 's/^pulse_processor_freshness_seconds_bucket{.*le="\([^"]*\)".*} \([0-9.e+]*\)$/\1 \2/p' >"$1"
}

# quantile Q BEFORE AFTER: "interpolated upper_bound" of quantile Q of the events observed
# between the two snapshots, interpolated linearly inside its bucket (as Prometheus'
# histogram_quantile); "n/a n/a" with no event, ">LAST +Inf" past the last bound.
quantile() {
  awk -v q="$1" '
    FNR == NR { before[$1] = $2; next }
    { le[n] = $1; cum[n] = $2 - before[$1]; n++ }
    END {
      total = cum[n - 1]
      if (total <= 0) { print "n/a n/a"; exit }
      rank = q * total; lower = 0; below = 0
      for (i = 0; i < n; i++) {
        if (cum[i] >= rank) {
          if (le[i] == "+Inf") { printf ">%s +Inf\n", lower; exit }
          inside = cum[i] - below
          frac = inside > 0 ? (rank - below) / inside : 1
          printf "%.3f %s\n", lower + (le[i] - lower) * frac, le[i]
          exit
        }
        lower = le[i]; below = cum[i]
      }
    }' "$2" "$3"
}

STEADY_RATE=$((PROC_EPS / 2))
P50="n/a n/a"
P99="n/a n/a"
MAX_BACKLOG="n/a"
STEADY_EVENTS=0
STEADY_LEFT=0
if ((STEADY_RATE < 1)); then
  log "skipping the steady run: the processor's rate rounds to 0 events/s"
else
  ((STEADY_BATCH <= STEADY_RATE)) || STEADY_BATCH="$STEADY_RATE"
  buckets "$TMP/buckets-before"
  [[ -s "$TMP/buckets-before" ]] || die "no pulse_processor_freshness_seconds buckets on $PROC_URL/metrics"
  log "steady load: $STEADY_RATE events/s (half the processor's rate) for ${STEADY_SECS}s, $STEADY_BATCH-event batches"
  PULSE_WRITE_KEY="$WRITE_KEY" "$LOADGEN" --url "$INGEST_URL" --connections "$CONNECTIONS" --users "$USERS" \
    --batch-size "$STEADY_BATCH" --rate "$STEADY_RATE" --duration "$STEADY_SECS" --warmup 1 --json \
    >"$TMP/steady.out" &
  steady_pid=$!
  PIDS+=("$steady_pid")
  MAX_BACKLOG=0
  last_print="$(now_ms)"
  : >"$TMP/influx-lag"
  while kill -0 "$steady_pid" 2>/dev/null; do
    left="$(backlog)"
    ((left <= MAX_BACKLOG)) || MAX_BACKLOG="$left"
    [[ -z "$INFLUX_PORT" ]] || metrics | awk '/^pulse_processor_influx_lag_seconds/ { print $NF }' >>"$TMP/influx-lag"
    now="$(now_ms)"
    if ((now - last_print >= 5000)); then
      log "  backlog $left (max so far $MAX_BACKLOG), $(stored) stored"
      last_print="$now"
    fi
    sleep 0.2
  done
  wait "$steady_pid" || { sed '/^{/d' "$TMP/steady.out"; die "pulse-loadgen (steady) had no successful request"; }
  sed '/^{/d' "$TMP/steady.out" | sed 's/^/    /'
  # The snapshot after waits for every event of the run to be applied (or 30 s).
  deadline=$((SECONDS + 30))
  while (($(backlog) > 0 && SECONDS < deadline)); do sleep 0.2; done
  STEADY_LEFT="$(backlog)"
  ((STEADY_LEFT == 0)) ||
    log "  backlog still $STEADY_LEFT events 30 s after the steady run: the quantiles below leave them out"
  buckets "$TMP/buckets-after"
  P50="$(quantile 0.5 "$TMP/buckets-before" "$TMP/buckets-after")"
  P99="$(quantile 0.99 "$TMP/buckets-before" "$TMP/buckets-after")"
  STEADY_EVENTS="$(awk 'FNR == NR { b[$1] = $2; next } $1 == "+Inf" { printf "%d", $2 - b[$1] }' \
    "$TMP/buckets-before" "$TMP/buckets-after")"
  log "freshness of $STEADY_EVENTS events: p50 ${P50% *} s, p99 ${P99% *} s" \
    "(interpolated; buckets <= ${P50#* } s and <= ${P99#* } s)"
fi

PROC_HWM_MB="$(awk '/^VmHWM:/ { printf "%.1f", $2 / 1024 }' "/proc/$PROC_PID/status" 2>/dev/null || echo 0)"
# After a restart the peak is the larger of the two processes'.
PROC_HWM_MB="$(calc "(${PROC_HWM_DRAIN_MB:-0} > $PROC_HWM_MB) ? ${PROC_HWM_DRAIN_MB:-0} : $PROC_HWM_MB" 1)"

# ---------------------------------------------------------------------------------------
# 6. The store's raw limit for the processor's own documents: the first RAW_DOCS raw events
#    it wrote, copied with insert_many into a fresh collection with the same index (ts).

SAME_DOCS=$((RAW_DOCS < STORED ? RAW_DOCS : STORED))
RAW_SAME_EPS=0
if ((SAME_DOCS > 0)); then
  # Twice, and the faster run is the limit: one run on this machine varies by up to a
  # third, and the slower one would flatter the processor.
  log "raw insert_many of the processor's own documents: $SAME_DOCS of pulse_bench.events_*, copied, no secondary index as the processor keeps them on FerretDB (2 runs)"
  RAW_SAME_RUNS=()
  for run in 1 2; do
    RAW_SAME_RUNS+=("$(RAW_DOCS="$SAME_DOCS" raw_insert "raw_same$run" --copy-from "pulse_bench.events_*")")
  done
  RAW_SAME_EPS="$(calc "(${RAW_SAME_RUNS[0]} > ${RAW_SAME_RUNS[1]}) ? ${RAW_SAME_RUNS[0]} : ${RAW_SAME_RUNS[1]}")"
  log "  runs: ${RAW_SAME_RUNS[0]} and ${RAW_SAME_RUNS[1]} docs/s; the limit is the faster, $RAW_SAME_EPS docs/s"
fi

# ---------------------------------------------------------------------------------------
# 7. Side by side.

verdict() { if awk "BEGIN { exit !($1) }"; then echo "ok"; else echo "MISSED"; fi; }
RATIO="$(calc "$PROC_EPS / $RAW_EPS" 2)"
RATIO_INDEXED="$(calc "$PROC_EPS / $RAW_INDEXED_EPS" 2)"
RATIO_SAME="$(awk "BEGIN { if ($RAW_SAME_EPS > 0) printf \"%.2f\", $PROC_EPS / $RAW_SAME_EPS; else print 0 }")"
P50_S="${P50% *}"
P99_S="${P99% *}"
if [[ "$P99_S" =~ ^[0-9.]+$ ]] && ((STEADY_LEFT == 0)); then
  P99_OK="$(verdict "$P99_S <= $TARGET_P99_S")"
else
  P99_OK="MISSED"
fi
if [[ "$DRAINED" == yes ]]; then
  DRAIN_ROW="processor, draining $BUFFERED events in $DRAIN_S s"
else
  DRAIN_ROW="processor, $STORED of $BUFFERED stored in $DRAIN_S s"
fi

echo
echo "=== processor benchmark ($(nproc) cores; FerretDB $FERRETDB_VERSION, SQLite; $PARTITIONS partitions;" \
  "batchSize $PROCESSOR_BATCH; rollups minute/hour/day + revenue; $USERS users$( ((ROLLUP_DOCS == 0)) || echo "; $ROLLUP_DOCS filler rollup documents"))"
row() { printf '  %-52s %20s   %-22s %s\n' "$@"; }
row "measure" "value" "target" ""
row "raw insert_many of the processor's documents" "$RAW_SAME_EPS docs/s" "" ""
row "  ($SAME_DOCS copied, $RAW_BATCH-doc batches, no ts index, best of 2)" "" "" ""
row "raw insert_many of generated documents" "$RAW_EPS docs/s" "" ""
row "  same, with the events' index on ts" "$RAW_INDEXED_EPS docs/s" "" ""
row "$DRAIN_ROW" "$PROC_EPS events/s" "" ""
row "processor / raw insert_many of its documents" "$RATIO_SAME" ">= $TARGET_RATIO" "$(verdict "$RATIO_SAME >= $TARGET_RATIO")"
row "  processor / raw insert_many, generated" "$RATIO" "" ""
row "  processor / same, with the index on ts" "$RATIO_INDEXED" "" ""
row "cpu draining: processor / ferretdb (cores)" "$PROC_CORES / $FERRET_CORES" "" ""
row "freshness p50 at $STEADY_RATE events/s" "$P50_S s" "" ""
row "freshness p99 at $STEADY_RATE events/s" "$P99_S s" "p99 <= $TARGET_P99_S s" "$P99_OK"
row "  (interpolated in bucket; p99 bucket <=)" "${P99#* } s" "" ""
row "  events measured / max backlog in the run" "$STEADY_EVENTS / $MAX_BACKLOG" "" ""
row "processor peak RSS (VmHWM)" "$PROC_HWM_MB MB" "" ""
if [[ -n "$INFLUX_PORT" ]]; then
  LAG="$(sort -n "$TMP/influx-lag" 2>/dev/null | awk '{ v[NR] = $1; s += $1 } END {
    i = int(NR * 0.99 + 0.5); if (i < 1) i = 1
    if (NR) printf "%.2f / %.2f / %.2f s (%d samples)", s / NR, v[i], v[NR], NR; else print "n/a" }')"
  row "influx sink lag in the steady run: mean / p99 / max" "$LAG" "" ""
  row "  points written / failed flushes" "$(metrics | awk '/^pulse_processor_influx_points_written_total/ { p = $NF }
    /^pulse_processor_influx_errors_total/ { e += $NF } END { printf "%d / %d", p, e }')" "" ""
fi
echo
log "done"
