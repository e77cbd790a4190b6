#!/usr/bin/env bash
# History benchmark: the processor on a store that holds days of history. The loader
# (pulse-bench-history) builds the state after D days of R events a day through the
# processor's own batch function (store_entries: raw events, event blocks, rollups,
# profiles); at 1, 3 and D days, each in a database of its own that holds exactly that
# history (a stage's traffic does not pile onto the next stage's "today"), this measures,
# on a real processor:
#   - its drain rate of a Redis backlog sent through ingest, next to a plain insert_many of
#     as many raw-event documents shaped as the backlog's (pulse-bench-store, fresh
#     collection, no secondary index as the processor's on FerretDB, the better of two
#     batch shapes): the same work, as the drain fills today's collection from empty;
#   - rollup freshness p99 at a steady half of that rate, and at the 833 events/s peak;
#   - a backfill: events with timestamps spread over the whole history, default rollups;
#   - the store's size on disk.
# One throwaway Redis and FerretDB (SQLite, or PostgreSQL from Debian's package).
#
#   make bench-history            (or: bash tests/bench/history.sh)
#
# Knobs (environment): BENCH_DAYS (history to reach, default 10; 30 and 90 work),
# BENCH_EVENTS_PER_DAY (default 1000000), BENCH_USERS (user pool, default 100000),
# BENCH_STAGES (history lengths measured, default "1 3 BENCH_DAYS"),
# BENCH_BACKEND (sqlite or postgresql, default sqlite), BENCH_PARTITIONS (default 8),
# BENCH_PROCESSOR_BATCH (processor.batchSize, default 2000), BENCH_EVENTS (backlog drained
# at each stage, default 1000000: a day's events, about 30 s of draining, so the processor's
# ramp-up is a small part of it), BENCH_RAW_DOCS (documents of the insert_many, default
# BENCH_EVENTS), BENCH_STEADY_SECS (each steady run, default 20), BENCH_STEADY_WARMUP (seconds
# of traffic before each steady run that are sent but not counted, default 5),
# BENCH_STEADY_BATCH (events per request, default 100), BENCH_PEAK_RATE (default 833), BENCH_BACKFILL_EVENTS (default
# BENCH_EVENTS_PER_DAY), BENCH_DRAIN_TIMEOUT (seconds, default 150) and
# BENCH_BACKFILL_TIMEOUT (default 300): past them a rate is events stored / time waited and
# the buffer is emptied; BENCH_LOG_DIR (copy the logs there on exit).
# Every process started here is stopped on exit or Ctrl-C.
set -euo pipefail
shopt -s inherit_errexit

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
cd "$ROOT"
source tests/bench/history-lib.sh

DAYS="${BENCH_DAYS:-10}"
EVENTS_PER_DAY="${BENCH_EVENTS_PER_DAY:-1000000}"
USERS="${BENCH_USERS:-100000}"
BACKEND="${BENCH_BACKEND:-sqlite}"
PARTITIONS="${BENCH_PARTITIONS:-8}"
PROCESSOR_BATCH="${BENCH_PROCESSOR_BATCH:-2000}"
EVENTS="${BENCH_EVENTS:-1000000}"
RAW_DOCS="${BENCH_RAW_DOCS:-$EVENTS}"
STEADY_SECS="${BENCH_STEADY_SECS:-20}"
STEADY_WARMUP="${BENCH_STEADY_WARMUP:-5}"
STEADY_BATCH="${BENCH_STEADY_BATCH:-100}"
PEAK_RATE="${BENCH_PEAK_RATE:-833}"
BACKFILL_EVENTS="${BENCH_BACKFILL_EVENTS:-$EVENTS_PER_DAY}"
DRAIN_TIMEOUT="${BENCH_DRAIN_TIMEOUT:-150}"
BACKFILL_TIMEOUT="${BENCH_BACKFILL_TIMEOUT:-300}"
STAGES="${BENCH_STAGES:-1 3 $DAYS}"
CONNECTIONS=16
PRELOAD_BATCH=500
RAW_BATCH=500
# Batches the processor writes to the store at once (pulse_processor::STORE_TURNS).
STORE_TURNS=2
TENANT=bench
TARGET_RATIO=0.70
TARGET_P99_S=1
TARGET_BACKFILL=0.50
TARGET_DIR="${CARGO_TARGET_DIR:-target}"
CACHE="${PULSE_CACHE:-$HOME/.cache/pulse}"
FERRETDB="$CACHE/bin/ferretdb"

for knob in DAYS EVENTS_PER_DAY USERS PARTITIONS PROCESSOR_BATCH EVENTS RAW_DOCS STEADY_SECS STEADY_WARMUP STEADY_BATCH \
  PEAK_RATE BACKFILL_EVENTS DRAIN_TIMEOUT BACKFILL_TIMEOUT; do
  [[ "${!knob}" =~ ^[1-9][0-9]*$ ]] || { echo "[bench] error: BENCH_$knob must be a positive integer, not '${!knob}'" >&2; exit 2; }
done
[[ "$BACKEND" == sqlite || "$BACKEND" == postgresql ]] ||
  { echo "[bench] error: BENCH_BACKEND must be sqlite or postgresql, not '$BACKEND'" >&2; exit 2; }
# The stages: distinct, increasing, at most DAYS, and DAYS last.
STAGES="$(tr ' ' '\n' <<<"$STAGES $DAYS" | awk -v d="$DAYS" '/^[1-9][0-9]*$/ && $1 <= d' | sort -n | uniq | tr '\n' ' ')"

started=$SECONDS
TMP="$(mktemp -d -t pulse-bench-history.XXXXXX)"
PGDIR=""
PIDS=()
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

# ---------------------------------------------------------------------------------------
# Tools

command -v redis-server >/dev/null || bash tests/env/build-stack.sh redis
[[ -x "$FERRETDB" ]] || bash tests/env/build-stack.sh ferretdb
for tool in redis-server redis-cli curl "$FERRETDB"; do
  command -v "$tool" >/dev/null || die "$tool is not installed"
done
PGBIN=""
if [[ "$BACKEND" == postgresql ]]; then
  PGBIN="$(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -n 1)"
  [[ -x "$PGBIN/postgres" ]] || die "BENCH_BACKEND=postgresql needs Debian's postgresql package (apt-get install postgresql)"
fi

log "machine: $(nproc) cores, redis $(redis-server --version | sed -n 's/.*v=\([0-9.]*\).*/\1/p')," \
  "ferretdb $("$FERRETDB" --version 2>/dev/null | sed -n 's/^version: *//p' | head -n 1) ($BACKEND), temp dir $TMP"
log "history: $DAYS days of $EVENTS_PER_DAY events ($USERS users), measured at: $STAGES"
phase_start=$SECONDS
log "building pulse-ingest, pulse-processor, pulse-loadgen, pulse-bench-store and pulse-bench-history (release)"
cargo build --release --quiet -p pulse-ingest -p pulse-processor -p pulse-loadgen -p pulse-bench-store -p pulse-bench-history
INGEST="$TARGET_DIR/release/pulse-ingest"
PROCESSOR="$TARGET_DIR/release/pulse-processor"
LOADGEN="$TARGET_DIR/release/pulse-loadgen"
BENCH_STORE="$TARGET_DIR/release/pulse-bench-store"
LOADER="$TARGET_DIR/release/pulse-bench-history"
for binary in "$INGEST" "$PROCESSOR" "$LOADGEN" "$BENCH_STORE" "$LOADER"; do
  [[ -x "$binary" ]] || die "$binary is missing"
done
phase build

# ---------------------------------------------------------------------------------------
# 1. Servers, ingest and the pipeline config.

start_redis
start_store
DATABASE=pulse_bench
write_pipeline
start_ingest

# The history ends at today's UTC midnight; every loader run and the backfill use it.
END_MS=$(($(date +%s) / 86400 * 86400 * 1000))
declare -A LOAD_EPS DRAIN_EPS DRAIN_NOTE INSERT_EPS P99_HALF HALF_RATE P99_PEAK BACKFILL_EPS BACKFILL_NOTE STORE_SIZE

previous=""
for stage in $STAGES; do
  # -------------------------------------------------------------------------------------
  # 2. Load `stage` days of history into a database of its own (the processor is
  #    stopped: the loader holds the partitions' leases). The previous stage's database
  #    goes first, so the store's size is this stage's.
  [[ -z "$previous" ]] || "$BENCH_STORE" --uri "$MONGODB_URI" --database "$previous" --drop-database ||
    die "dropping $previous failed"
  DATABASE="pulse_bench_${stage}d"
  previous="$DATABASE"
  write_pipeline
  log "=== $stage d of history: loading $stage days back from $(date -u -d "@$((END_MS / 1000))" +%F) into $DATABASE"
  phase_start=$SECONDS
  "$LOADER" --config "$TMP/pipeline.yaml" --days-from 0 --days-to "$stage" \
    --events-per-day "$EVENTS_PER_DAY" --users "$USERS" --end-ms "$END_MS" --json \
    >"$TMP/load$stage.out" 2> >(sed -u 's/^/    /' >&2) || { cat "$TMP/load$stage.out"; die "pulse-bench-history failed"; }
  grep -v '^{' "$TMP/load$stage.out" | sed 's/^/    /'
  LOAD_EPS[$stage]="$(calc "$(json_field events_per_s "$(grep '^{' "$TMP/load$stage.out" | tail -n 1)")")"
  phase "load to $stage d"
  STORE_SIZE[$stage]="$(store_size)"
  log "store size: ${STORE_SIZE[$stage]}"

  # 3. The store's plain insert limit, in a fresh collection (inserts do not slow with
  #    history: the figure the processor is held against).
  phase_start=$SECONDS
  INSERT_EPS[$stage]="$(raw_insert "raw$stage")"
  log "plain insert_many: ${INSERT_EPS[$stage]} docs/s (the better of the two; $RAW_DOCS documents, no secondary index)"
  phase "insert_many"

  # 4. Drain: a backlog of EVENTS events through ingest, then the processor drains it.
  phase_start=$SECONDS
  preload "drain$stage" "$EVENTS"
  drain "drain$stage" "$DRAIN_TIMEOUT"
  DRAIN_EPS[$stage]="$DRAINED_EPS"
  DRAIN_NOTE[$stage]="$DRAINED_NOTE"
  phase "drain"

  # 5. Freshness at half the drain rate, then at the peak rate.
  phase_start=$SECONDS
  HALF_RATE[$stage]=$((DRAIN_EPS[$stage] / 2))
  steady "half$stage" "${HALF_RATE[$stage]}"
  P99_HALF[$stage]="$STEADY_P99"
  steady "peak$stage" "$PEAK_RATE"
  P99_PEAK[$stage]="$STEADY_P99"
  phase "steady runs"
  stop_processor

  # 6. Backfill: events spread over the whole history, drained by a fresh processor.
  phase_start=$SECONDS
  preload "backfill$stage" "$BACKFILL_EVENTS" --spread-ms $((stage * 86400000)) --spread-end-ms "$END_MS"
  drain "backfill$stage" "$BACKFILL_TIMEOUT"
  BACKFILL_EPS[$stage]="$DRAINED_EPS"
  BACKFILL_NOTE[$stage]="$DRAINED_NOTE"
  stop_processor
  phase "backfill"

  echo "history $stage d: drain ${DRAIN_EPS[$stage]} ev/s, insert ${INSERT_EPS[$stage]} docs/s," \
    "ratio $(ratio "${DRAIN_EPS[$stage]}" "${INSERT_EPS[$stage]}"), p99 ${P99_HALF[$stage]} s"
done

# ---------------------------------------------------------------------------------------
# 7. Side by side.

echo
echo "=== history benchmark ($(nproc) cores; FerretDB, $BACKEND; $PARTITIONS partitions; batchSize $PROCESSOR_BATCH;" \
  "rollups minute/hour/day + revenue; $EVENTS_PER_DAY events a day, $USERS users)"
printf '  %5s %12s %10s %11s %12s %7s %17s %12s %13s %9s\n' "days" "store size" "load ev/s" "drain ev/s" \
  "insert docs/s" "ratio" "p99 at half rate" "p99 at $PEAK_RATE" "backfill ev/s" "of drain"
for stage in $STAGES; do
  printf '  %5s %12s %10s %11s %12s %7s %17s %12s %13s %9s\n' "$stage" "${STORE_SIZE[$stage]}" "${LOAD_EPS[$stage]}" \
    "${DRAIN_EPS[$stage]}${DRAIN_NOTE[$stage]}" "${INSERT_EPS[$stage]}" \
    "$(ratio "${DRAIN_EPS[$stage]}" "${INSERT_EPS[$stage]}")" "${P99_HALF[$stage]} s (${HALF_RATE[$stage]}/s)" \
    "${P99_PEAK[$stage]} s" "${BACKFILL_EPS[$stage]}${BACKFILL_NOTE[$stage]}" "$(ratio "${BACKFILL_EPS[$stage]}" "${DRAIN_EPS[$stage]}")"
done
echo "  (* not drained within the timeout: events stored / time waited)"
echo "  targets: ratio >= $TARGET_RATIO, p99 at half rate <= $TARGET_P99_S s, backfill >= $TARGET_BACKFILL of the drain," \
  "$DAYS-day figures within 15% of the 1-day ones"
echo
for stage in $STAGES; do
  echo "history $stage d: drain ${DRAIN_EPS[$stage]} ev/s, insert ${INSERT_EPS[$stage]} docs/s," \
    "ratio $(ratio "${DRAIN_EPS[$stage]}" "${INSERT_EPS[$stage]}"), p99 ${P99_HALF[$stage]} s"
done
echo "backfill: ${BACKFILL_EPS[$DAYS]} ev/s, $(ratio "${BACKFILL_EPS[$DAYS]}" "${DRAIN_EPS[$DAYS]}") of steady"
echo
log "phase timings:"
printf '%s\n' "${PHASES[@]}" | sed 's/^/    /'
log "done"
