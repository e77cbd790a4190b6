#!/usr/bin/env bash
# Ingest benchmark: the buffer's raw limit (redis-benchmark XADD) next to the ingest path
# (pulse-loadgen against pulse-ingest), on one throwaway Redis, with the targets beside them.
#
#   make bench-ingest            (or: bash tests/bench/ingest.sh)
#
# Knobs (environment): BENCH_DURATION (measured seconds per load run, default 10),
# BENCH_XADD_N (200-byte XADDs, default 2000000), BENCH_XADD_BATCH_N (batch-shaped XADDs,
# default 50000), BENCH_CONNECTIONS (default 16), BENCH_BATCH_SIZE (default 500),
# BENCH_DURABILITY (fast, the default: Redis appendfsync everysec; or strict: appendfsync
# always, and every write verifies the settings in its MULTI/EXEC).
# Everything runs on loopback; every process started here is stopped on exit or Ctrl-C.
set -euo pipefail
shopt -s inherit_errexit

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
cd "$ROOT"

DURATION="${BENCH_DURATION:-10}"
XADD_N="${BENCH_XADD_N:-2000000}"
XADD_BATCH_N="${BENCH_XADD_BATCH_N:-50000}"
CONNECTIONS="${BENCH_CONNECTIONS:-16}"
BATCH_SIZE="${BENCH_BATCH_SIZE:-500}"
DURABILITY="${BENCH_DURABILITY:-fast}"
case "$DURABILITY" in
  fast) APPENDFSYNC=everysec ;;
  strict) APPENDFSYNC=always ;;
  *)
    echo "BENCH_DURABILITY must be fast or strict, not $DURABILITY" >&2
    exit 2
    ;;
esac
PARTITIONS=8
EVENT_BYTES=200
# One request of BATCH_SIZE events spreads over PARTITIONS streams: one entry per partition
# holding about BATCH_SIZE/PARTITIONS events (62 for 500 over 8).
EVENTS_PER_ENTRY=$((BATCH_SIZE / PARTITIONS))
TARGET_EVENTS_PER_S=250000
TARGET_P99_MS=25
TARGET_RSS_MB=150
TARGET_DIR="${CARGO_TARGET_DIR:-target}"

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
  # Newest first: ingest before the Redis it writes to.
  local i
  for ((i = ${#PIDS[@]} - 1; i >= 0; i--)); do
    stop_process "${PIDS[i]}"
  done
  rm -rf "$TMP"
  exit "$status"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

# ---------------------------------------------------------------------------------------
# Tools

apt_install() {
  local sudo=""
  [[ $(id -u) == 0 ]] || sudo="sudo"
  export DEBIAN_FRONTEND=noninteractive
  $sudo apt-get install -y -q "$@" >/dev/null 2>&1 || {
    $sudo apt-get update -q >/dev/null
    $sudo apt-get install -y -q "$@" >/dev/null
  }
}

if ! command -v redis-server >/dev/null || ! command -v redis-cli >/dev/null; then
  log "redis-server missing: installing it with the stack script"
  bash tests/env/build-stack.sh redis
fi
if ! command -v redis-benchmark >/dev/null; then
  log "redis-benchmark missing: installing redis-tools"
  apt_install redis-tools
fi
if ! command -v curl >/dev/null; then
  log "curl missing: installing it"
  apt_install curl
fi
for tool in redis-server redis-cli redis-benchmark curl; do
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

# free_port [EXCLUDED]: a loopback port nothing uses.
free_port() {
  local port
  for _ in $(seq 1 200); do
    port=$((20000 + RANDOM % 40000))
    [[ "$port" != "${1:-}" ]] || continue
    if ! port_in_use "$port"; then
      echo "$port"
      return 0
    fi
  done
  die "found no free loopback port"
}

# json_field NAME JSON: a scalar field of pulse-loadgen's one-line JSON summary.
json_field() {
  sed -n "s/.*\"$1\":\([^,}]*\).*/\1/p" <<<"$2"
}

# Float arithmetic and formatting, without bc.
calc() { awk "BEGIN { printf \"%.${2:-0}f\", $1 }"; }

log "machine: $(nproc) cores, redis $(redis-server --version | sed -n 's/.*v=\([0-9.]*\).*/\1/p'), temp dir $TMP"

# ---------------------------------------------------------------------------------------
# 1. A throwaway Redis, persisted as the durability mode expects.

REDIS_PORT="$(free_port)"
mkdir -p "$TMP/redis"
# No RDB snapshots and no automatic AOF rewrite: a fork landing in one measurement and not
# another would make the figures incomparable. The AOF itself is on, fsynced every second
# (fast) or on every write (strict).
redis-server --port "$REDIS_PORT" --bind 127.0.0.1 --dir "$TMP/redis" \
  --appendonly yes --appendfsync "$APPENDFSYNC" --save '' --auto-aof-rewrite-percentage 0 \
  --daemonize no --logfile "$TMP/redis.log" &
PIDS+=($!)
REDIS_PID=$!
rcli() { redis-cli -h 127.0.0.1 -p "$REDIS_PORT" "$@"; }
deadline=$((SECONDS + 10))
until [[ "$(rcli ping 2>/dev/null)" == "PONG" ]]; do
  kill -0 "$REDIS_PID" 2>/dev/null || { tail -n 20 "$TMP/redis.log" >&2; die "redis-server exited"; }
  ((SECONDS < deadline)) || { tail -n 20 "$TMP/redis.log" >&2; die "redis-server not answering after 10 s"; }
  sleep 0.1
done
log "redis-server on 127.0.0.1:$REDIS_PORT (appendonly yes, appendfsync $APPENDFSYNC)"

# Deletes every Pulse key (streams and backlog counters): ingest never trims its streams.
clear_pulse_keys() {
  rcli --scan --pattern 'pulse:*' | xargs -r -n 500 redis-cli -h 127.0.0.1 -p "$REDIS_PORT" DEL >/dev/null
}

# ---------------------------------------------------------------------------------------
# 2. The buffer's raw limit: XADD, 16 clients, pipelined 64 deep.

# xadd_rate ENTRIES VALUE_BYTES: entries/s of XADD with one field of VALUE_BYTES.
xadd_rate() {
  local value rps
  value="$(head -c "$2" /dev/zero | tr '\0' x)"
  rps="$(redis-benchmark -h 127.0.0.1 -p "$REDIS_PORT" -n "$1" -c 16 -P 64 --csv \
    XADD bench:xadd '*' events "$value" 2>>"$TMP/redis-benchmark.log" | awk -F'","' 'END { print $2 }')"
  rcli DEL bench:xadd >/dev/null
  [[ "$rps" =~ ^[0-9.]+$ ]] || die "redis-benchmark printed no rate (see above)"
  printf '%.0f' "$rps"
}

log "XADD, $EVENT_BYTES B entries: $XADD_N entries, 16 clients, pipeline 64"
XADD_SMALL="$(xadd_rate "$XADD_N" "$EVENT_BYTES")"
log "  $XADD_SMALL entries/s"
BATCH_ENTRY_BYTES=$((EVENT_BYTES * EVENTS_PER_ENTRY))
log "XADD, $BATCH_ENTRY_BYTES B entries ($EVENTS_PER_ENTRY events each, as ingest writes a $BATCH_SIZE-event batch over $PARTITIONS partitions): $XADD_BATCH_N entries"
XADD_BATCH="$(xadd_rate "$XADD_BATCH_N" "$BATCH_ENTRY_BYTES")"
XADD_BATCH_EVENTS="$((XADD_BATCH * EVENTS_PER_ENTRY))"
log "  $XADD_BATCH entries/s = $XADD_BATCH_EVENTS events/s"

# ---------------------------------------------------------------------------------------
# 3. pulse-ingest on that Redis.

log "building pulse-ingest and pulse-loadgen (release)"
cargo build --release --quiet -p pulse-ingest -p pulse-loadgen
INGEST="$TARGET_DIR/release/pulse-ingest"
LOADGEN="$TARGET_DIR/release/pulse-loadgen"
[[ -x "$INGEST" && -x "$LOADGEN" ]] || die "release binaries missing under $TARGET_DIR/release"

WRITE_KEY="$(head -c 24 /dev/urandom | od -An -tx1 | tr -d ' \n')"
printf 'redis://127.0.0.1:%s\n' "$REDIS_PORT" >"$TMP/redis-url"
printf 'mongodb://127.0.0.1:1/\n' >"$TMP/mongodb-uri"
printf '%s\n' "$WRITE_KEY" >"$TMP/write-key"
head -c 24 /dev/urandom | od -An -tx1 | tr -d ' \n' >"$TMP/read-key"
chmod 600 "$TMP/redis-url" "$TMP/mongodb-uri" "$TMP/write-key" "$TMP/read-key"
cat >"$TMP/pipeline.yaml" <<EOF
version: 1
tenant: bench
buffer:
  redisUrlFile: $TMP/redis-url
  partitions: $PARTITIONS
  durability: $DURABILITY
  highWaterMark: 1000000000
storage:
  mongodbUriFile: $TMP/mongodb-uri
  database: pulse_bench
  retention: 365d
keys:
  writeKeyFile: $TMP/write-key
  readKeyFile: $TMP/read-key
EOF

INGEST_PORT="$(free_port "$REDIS_PORT")"
"$INGEST" --config "$TMP/pipeline.yaml" --listen "127.0.0.1:$INGEST_PORT" >"$TMP/ingest.log" 2>&1 &
PIDS+=($!)
INGEST_PID=$!
INGEST_URL="http://127.0.0.1:$INGEST_PORT"
ingest_log_tail() {
  echo "--- last lines of the pulse-ingest log:" >&2
  tail -n 30 "$TMP/ingest.log" >&2
}
log "pulse-ingest (pid $INGEST_PID) on $INGEST_URL: waiting for /readyz"
deadline=$((SECONDS + 30))
until curl -fsS -o /dev/null --max-time 1 "$INGEST_URL/readyz" 2>/dev/null; do
  kill -0 "$INGEST_PID" 2>/dev/null || { ingest_log_tail; die "pulse-ingest exited before it was ready"; }
  ((SECONDS < deadline)) || { ingest_log_tail; die "pulse-ingest not ready after 30 s"; }
  sleep 0.2
done
log "pulse-ingest ready"

# ---------------------------------------------------------------------------------------
# 4. Load: flat out, then at half the throughput measured flat out.

# load NAME [FLAGS...]: runs pulse-loadgen, prints its summary, leaves the JSON line in
# $TMP/NAME.json.
load() {
  local name="$1"
  shift
  clear_pulse_keys
  if ! PULSE_WRITE_KEY="$WRITE_KEY" "$LOADGEN" --url "$INGEST_URL" --connections "$CONNECTIONS" \
    --batch-size "$BATCH_SIZE" --duration "$DURATION" --warmup 1 --pid "$INGEST_PID" --json "$@" \
    >"$TMP/$name.out"; then
    sed '/^{/d' "$TMP/$name.out"
    ingest_log_tail
    die "pulse-loadgen ($name) had no successful request"
  fi
  sed '/^{/d' "$TMP/$name.out" | sed 's/^/    /'
  grep '^{' "$TMP/$name.out" | tail -n 1 >"$TMP/$name.json"
}

log "pulse-loadgen flat out: $CONNECTIONS connections, $BATCH_SIZE-event batches, ${DURATION}s"
load flat
FLAT_JSON="$(cat "$TMP/flat.json")"
FLAT_EPS="$(json_field events_per_s "$FLAT_JSON")"
[[ "$FLAT_EPS" =~ ^[0-9.]+$ ]] || die "no events_per_s in the pulse-loadgen summary: $FLAT_JSON"
FLAT_EPS="$(calc "$FLAT_EPS")"
HALF_RATE=$((FLAT_EPS / 2))
((HALF_RATE > 0)) || die "flat-out throughput is 0 events/s"

log "pulse-loadgen at half that: $HALF_RATE events/s, ${DURATION}s"
load half --rate "$HALF_RATE"
HALF_JSON="$(cat "$TMP/half.json")"
HALF_P99="$(json_field p99_ms "$HALF_JSON")"
clear_pulse_keys

rss_max() {
  local a b
  a="$(json_field "$1" "$FLAT_JSON")"
  b="$(json_field "$1" "$HALF_JSON")"
  [[ "$a" != null ]] || a=0
  [[ "$b" != null ]] || b=0
  calc "($a > $b) ? $a : $b" 1
}
RSS_PEAK="$(rss_max rss_peak_mb)"
RSS_HWM="$(rss_max vm_hwm_mb)"

# ---------------------------------------------------------------------------------------
# 5. Side by side.

verdict() { if awk "BEGIN { exit !($1) }"; then echo "ok"; else echo "MISSED"; fi; }
RATIO="$(calc "$FLAT_EPS / $XADD_BATCH_EVENTS" 2)"
if [[ "$HALF_P99" == null ]]; then HALF_P99_OK="MISSED"; else HALF_P99_OK="$(verdict "$HALF_P99 <= $TARGET_P99_MS")"; fi

echo
echo "=== ingest benchmark ($DURABILITY durability; $(nproc) cores; ${DURATION}s runs; $CONNECTIONS connections; $BATCH_SIZE-event batches of ~$EVENT_BYTES B events)"
row() { printf '  %-44s %18s   %-28s %s\n' "$@"; }
row "measure" "value" "target" ""
row "raw XADD, $EVENT_BYTES B entries" "$XADD_SMALL entries/s" "" ""
row "raw XADD, $BATCH_ENTRY_BYTES B entries (x$EVENTS_PER_ENTRY events)" "$XADD_BATCH_EVENTS events/s" "" ""
row "ingest, flat out" "$FLAT_EPS events/s" ">= $TARGET_EVENTS_PER_S events/s" \
  "$(verdict "$FLAT_EPS >= $TARGET_EVENTS_PER_S")"
row "ingest / raw batched XADD" "$RATIO" "" ""
row "p99 at half load ($HALF_RATE events/s)" "$HALF_P99 ms" "p99 <= $TARGET_P99_MS ms at half load" "$HALF_P99_OK"
row "cpu flat out: loadgen / ingest (cores)" "$(json_field loadgen_cores "$FLAT_JSON") / $(json_field ingest_cores "$FLAT_JSON")" "" ""
row "ingest peak RSS (VmHWM $RSS_HWM MB)" "$RSS_PEAK MB" "RSS <= $TARGET_RSS_MB MB" \
  "$(verdict "$RSS_PEAK <= $TARGET_RSS_MB")"
echo
log "done"
