#!/usr/bin/env bash
# Compat ingest benchmark: pulse-loadgen drives one pulse-ingest flat out through the
# native /v1/batch, the Segment endpoint and the PostHog endpoint in turn (same events,
# same batches, each in its SDK's wire format), and prints the three side by side.
#
#   make bench-compat            (or: bash tests/bench/compat.sh)
#
# Knobs (environment): BENCH_DURATION (seconds per run, default 10), BENCH_CONNECTIONS
# (default 16), BENCH_BATCH_SIZE (default 500), BENCH_GZIP (1 = gzip bodies, default 0).
# Everything runs on loopback; every process started here is stopped on exit or Ctrl-C.
set -euo pipefail
shopt -s inherit_errexit

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
cd "$ROOT"
DURATION="${BENCH_DURATION:-10}"
CONNECTIONS="${BENCH_CONNECTIONS:-16}"
BATCH_SIZE="${BENCH_BATCH_SIZE:-500}"
GZIP_FLAG=()
[[ "${BENCH_GZIP:-0}" == 1 ]] && GZIP_FLAG=(--gzip)
TARGET_DIR="${CARGO_TARGET_DIR:-target}"

started=$SECONDS
log() { printf '[bench-compat %3ds] %s\n' "$((SECONDS - started))" "$*"; }
die() { printf '[bench-compat] error: %s\n' "$*" >&2; exit 1; }

TMP="$(mktemp -d -t pulse-bench-compat.XXXXXX)"
PIDS=()
cleanup() {
  local status=$? i
  trap - EXIT INT TERM
  for ((i = ${#PIDS[@]} - 1; i >= 0; i--)); do
    kill "${PIDS[i]}" 2>/dev/null || true
    wait "${PIDS[i]}" 2>/dev/null || true
  done
  rm -rf "$TMP"
  exit "$status"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

for tool in redis-server redis-cli curl; do
  command -v "$tool" >/dev/null || die "$tool is missing: run make env"
done
free_port() {
  local port
  for _ in $(seq 1 200); do
    port=$((20000 + RANDOM % 40000))
    [[ "$port" != "${1:-}" ]] || continue
    if ! (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null; then echo "$port"; return 0; fi
  done
  die "found no free loopback port"
}

REDIS_PORT="$(free_port)"
mkdir -p "$TMP/redis"
redis-server --port "$REDIS_PORT" --bind 127.0.0.1 --dir "$TMP/redis" \
  --appendonly yes --appendfsync everysec --save '' --auto-aof-rewrite-percentage 0 \
  --daemonize no --logfile "$TMP/redis.log" &
PIDS+=($!)
rcli() { redis-cli -h 127.0.0.1 -p "$REDIS_PORT" "$@"; }
deadline=$((SECONDS + 10))
until [[ "$(rcli ping 2>/dev/null)" == "PONG" ]]; do
  ((SECONDS < deadline)) || die "redis-server not answering after 10 s"
  sleep 0.1
done

log "building pulse-ingest and pulse-loadgen (release)"
cargo build --release --quiet -p pulse-ingest -p pulse-loadgen
INGEST="$TARGET_DIR/release/pulse-ingest"
LOADGEN="$TARGET_DIR/release/pulse-loadgen"

WRITE_KEY="$(head -c 24 /dev/urandom | od -An -tx1 | tr -d ' \n')"
printf 'redis://127.0.0.1:%s\n' "$REDIS_PORT" >"$TMP/redis-url"
printf 'mongodb://127.0.0.1:1/\n' >"$TMP/mongodb-uri"
printf '%s\n' "$WRITE_KEY" >"$TMP/write-key"
printf 'unused\n' >"$TMP/read-key"
cat >"$TMP/pipeline.yaml" <<YAML
version: 1
tenant: bench
buffer: { redisUrlFile: $TMP/redis-url, partitions: 8, durability: fast, highWaterMark: 1000000000 }
storage: { mongodbUriFile: $TMP/mongodb-uri, database: pulse_bench, retention: 365d }
keys: { writeKeyFile: $TMP/write-key, readKeyFile: $TMP/read-key }
YAML
INGEST_PORT="$(free_port "$REDIS_PORT")"
"$INGEST" --config "$TMP/pipeline.yaml" --listen "127.0.0.1:$INGEST_PORT" >"$TMP/ingest.log" 2>&1 &
PIDS+=($!)
INGEST_PID=$!
INGEST_URL="http://127.0.0.1:$INGEST_PORT"
deadline=$((SECONDS + 30))
until curl -fsS -o /dev/null --max-time 1 "$INGEST_URL/readyz" 2>/dev/null; do
  kill -0 "$INGEST_PID" 2>/dev/null || { tail -n 20 "$TMP/ingest.log" >&2; die "pulse-ingest exited"; }
  ((SECONDS < deadline)) || die "pulse-ingest not ready after 30 s"
  sleep 0.2
done

json_field() { sed -n "s/.*\"$1\":\([^,}]*\).*/\1/p" <<<"$2" | tr -d '"'; }
declare -A EPS P99 CORES
for format in native segment posthog; do
  rcli --scan --pattern 'pulse:*' | xargs -r -n 500 redis-cli -h 127.0.0.1 -p "$REDIS_PORT" DEL >/dev/null
  log "$format: flat out, $CONNECTIONS connections, $BATCH_SIZE-event batches, ${DURATION}s"
  if ! PULSE_WRITE_KEY="$WRITE_KEY" "$LOADGEN" --url "$INGEST_URL" --format "$format" "${GZIP_FLAG[@]}" \
    --connections "$CONNECTIONS" --batch-size "$BATCH_SIZE" --duration "$DURATION" --warmup 1 \
    --pid "$INGEST_PID" --json >"$TMP/$format.out"; then
    cat "$TMP/$format.out"
    die "pulse-loadgen ($format) had no successful request"
  fi
  sed '/^{/d' "$TMP/$format.out" | sed 's/^/    /'
  line="$(grep '^{' "$TMP/$format.out" | tail -n 1)"
  EPS[$format]="$(json_field events_per_s "$line")"
  P99[$format]="$(json_field p99_ms "$line")"
  CORES[$format]="$(json_field ingest_cores "$line")"
done

echo
echo "=== compat ingest ($(nproc) cores; ${DURATION}s flat out; $CONNECTIONS connections; $BATCH_SIZE-event batches; gzip ${BENCH_GZIP:-0})"
printf '  %-10s %16s %12s %14s %12s\n' endpoint events/s "vs native" "p99 latency" "ingest cores"
for format in native segment posthog; do
  ratio="$(awk "BEGIN { printf \"%.2f\", ${EPS[$format]} / ${EPS[native]} }")"
  printf '  %-10s %16.0f %12s %11s ms %12s\n' "$format" "${EPS[$format]}" "$ratio" "${P99[$format]}" "${CORES[$format]}"
done
log "done"
