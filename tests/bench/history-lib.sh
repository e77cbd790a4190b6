# Functions of tests/bench/history.sh (sourced): the servers, the processor, and the
# measurements, each as processor.sh does it. Logs go to stderr, so a function's result
# can be its stdout.

log() { printf '[bench %4ds] %s\n' "$((SECONDS - started))" "$*" >&2; }
die() {
  printf '[bench] error: %s\n' "$*" >&2
  exit 1
}

PHASES=()
# phase LABEL: records how long the phase begun at $phase_start took.
phase() {
  PHASES+=("$(printf '%-22s %5d s' "$1" "$((SECONDS - phase_start))")")
  log "[phase] $1 took $((SECONDS - phase_start)) s"
}

# Float arithmetic and formatting, without bc.
calc() { awk "BEGIN { printf \"%.${2:-0}f\", $1 }"; }
# ratio A B: A / B with two decimals (0 when B is not a positive number).
ratio() { awk -v a="$1" -v b="$2" 'BEGIN { if (b + 0 > 0) printf "%.2f", a / b; else print "n/a" }'; }
# json_field NAME JSON: a scalar field of a one-line JSON summary.
json_field() { sed -n "s/.*\"$1\":\([^,}]*\).*/\1/p" <<<"$2"; }
now_ms() { date +%s%3N; }

# stop_process PID: SIGTERM, up to 10 s to exit, then SIGKILL.
stop_process() {
  local pid="$1"
  kill "$pid" 2>/dev/null || return 0
  for _ in $(seq 1 100); do
    kill -0 "$pid" 2>/dev/null || break
    sleep 0.1
  done
  kill -9 "$pid" 2>/dev/null || true
  wait "$pid" 2>/dev/null || true
}

cleanup() {
  local status=$?
  trap - EXIT INT TERM
  local i
  for ((i = ${#PIDS[@]} - 1; i >= 0; i--)); do
    stop_process "${PIDS[i]}"
  done
  if [[ -n "${BENCH_LOG_DIR:-}" ]]; then
    mkdir -p "$BENCH_LOG_DIR" && cp "$TMP"/*.log "$BENCH_LOG_DIR"/ 2>/dev/null || true
  fi
  rm -rf "$TMP"
  [[ -z "$PGDIR" ]] || rm -rf "$PGDIR"
  exit "$status"
}

port_in_use() {
  if command -v ss >/dev/null; then
    [[ -n "$(ss -Htan "( sport = :$1 )" 2>/dev/null)" ]]
  else
    (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null
  fi
}

# free_port: a loopback port nothing uses (nor any port handed out before).
USED_PORTS=()
free_port() {
  local port
  for _ in $(seq 1 200); do
    port=$((20000 + RANDOM % 40000))
    [[ " ${USED_PORTS[*]} " != *" $port "* ]] || continue
    if ! port_in_use "$port"; then
      USED_PORTS+=("$port")
      echo "$port"
      return 0
    fi
  done
  die "found no free loopback port"
}

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

start_redis() {
  REDIS_PORT="$(free_port)"
  mkdir -p "$TMP/redis"
  # As processor.sh: AOF fsynced every second, no snapshot or rewrite forks.
  redis-server --port "$REDIS_PORT" --bind 127.0.0.1 --dir "$TMP/redis" \
    --appendonly yes --appendfsync everysec --save '' --auto-aof-rewrite-percentage 0 \
    --daemonize no --logfile "$TMP/redis.log" &
  PIDS+=($!)
  wait_until 10 redis-server "$!" "$TMP/redis.log" redis_ready
  log "redis-server on 127.0.0.1:$REDIS_PORT"
}
rcli() { redis-cli -h 127.0.0.1 -p "$REDIS_PORT" "$@"; }
redis_ready() { [[ "$(rcli ping)" == "PONG" ]]; }

# start_store: FerretDB on SQLite (synchronous off) or on a throwaway PostgreSQL (fsync
# off, run as nobody: PostgreSQL refuses root), as the test kit runs them.
start_store() {
  FERRET_PORT="$(free_port)"
  local handler
  if [[ "$BACKEND" == postgresql ]]; then
    PGDIR="$(mktemp -d -t pulse-bench-pg.XXXXXX)"
    chown nobody:nogroup "$PGDIR"
    local as_nobody=(setpriv --reuid=nobody --regid=nogroup --clear-groups --)
    (cd / && "${as_nobody[@]}" "$PGBIN/initdb" -D "$PGDIR/data" -U postgres -A trust --no-sync) >"$TMP/initdb.log" 2>&1 ||
      { cat "$TMP/initdb.log" >&2; die "initdb failed"; }
    PG_PORT="$(free_port)"
    (cd / && exec "${as_nobody[@]}" "$PGBIN/postgres" -D "$PGDIR/data" -p "$PG_PORT" -k "$PGDIR" \
      -c listen_addresses=127.0.0.1 -c fsync=off -c synchronous_commit=off -c full_page_writes=off) \
      >"$TMP/postgres.log" 2>&1 &
    PIDS+=($!)
    pg_ready() { "$PGBIN/pg_isready" -q -h 127.0.0.1 -p "$PG_PORT"; }
    wait_until 30 postgres "$!" "$TMP/postgres.log" pg_ready
    "$PGBIN/createdb" -h 127.0.0.1 -p "$PG_PORT" -U postgres ferretdb
    handler=(--handler=postgresql "--postgresql-url=postgres://postgres@127.0.0.1:$PG_PORT/ferretdb")
    log "postgres $("$PGBIN/postgres" --version | awk '{ print $3 }') on 127.0.0.1:$PG_PORT (fsync off)"
  else
    mkdir -p "$TMP/ferretdb/data"
    handler=(--handler=sqlite "--sqlite-url=file:$TMP/ferretdb/data/?_pragma=synchronous(OFF)")
  fi
  mkdir -p "$TMP/ferretdb/state"
  "$FERRETDB" --listen-addr="127.0.0.1:$FERRET_PORT" "${handler[@]}" --state-dir="$TMP/ferretdb/state" \
    --telemetry=disable --debug-addr=- --log-level=warn >"$TMP/ferretdb.log" 2>&1 &
  PIDS+=($!)
  ferret_ready() { (exec 3<>"/dev/tcp/127.0.0.1/$FERRET_PORT"); }
  wait_until 30 ferretdb "$!" "$TMP/ferretdb.log" ferret_ready
  MONGODB_URI="mongodb://127.0.0.1:$FERRET_PORT/"
  log "ferretdb ($BACKEND) on 127.0.0.1:$FERRET_PORT"
}

# store_size: the store's size on disk (SQLite: FerretDB's data directory; PostgreSQL: the
# database's size).
store_size() {
  local bytes
  if [[ "$BACKEND" == postgresql ]]; then
    bytes="$("$PGBIN/psql" -h 127.0.0.1 -p "$PG_PORT" -U postgres -At -c "SELECT pg_database_size('ferretdb')")"
  else
    bytes="$(du -sb "$TMP/ferretdb/data" | awk '{ print $1 }')"
  fi
  calc "$bytes / 1048576"
  echo " MB"
}

# write_pipeline: the pipeline config for database $DATABASE (keys made on the first call;
# ingest, started once, reads nothing of the store's part of it).
write_pipeline() {
  if [[ -z "${WRITE_KEY:-}" ]]; then
    WRITE_KEY="$(head -c 24 /dev/urandom | od -An -tx1 | tr -d ' \n')"
    printf 'redis://127.0.0.1:%s\n' "$REDIS_PORT" >"$TMP/redis-url"
    printf '%s\n' "$MONGODB_URI" >"$TMP/mongodb-uri"
    printf '%s\n' "$WRITE_KEY" >"$TMP/write-key"
    head -c 24 /dev/urandom | od -An -tx1 | tr -d ' \n' >"$TMP/read-key"
    chmod 600 "$TMP/redis-url" "$TMP/mongodb-uri" "$TMP/write-key" "$TMP/read-key"
  fi
  # A year's retention: nothing of a 90-day history expires during the run.
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
  database: $DATABASE
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
}

start_ingest() {
  INGEST_PORT="$(free_port)"
  "$INGEST" --config "$TMP/pipeline.yaml" --listen "127.0.0.1:$INGEST_PORT" >"$TMP/ingest.log" 2>&1 &
  PIDS+=($!)
  INGEST_URL="http://127.0.0.1:$INGEST_PORT"
  ingest_ready() { curl -fsS -o /dev/null --max-time 1 "$INGEST_URL/readyz"; }
  wait_until 30 pulse-ingest "$!" "$TMP/ingest.log" ingest_ready
  log "pulse-ingest ready on $INGEST_URL"
  PROC_PORT="$(free_port)"
  PROC_URL="http://127.0.0.1:$PROC_PORT"
  PROC_PID=""
}

backlog() {
  local keys=() p
  for ((p = 0; p < PARTITIONS; p++)); do keys+=("pulse:{$TENANT:$p}:backlog"); done
  rcli MGET "${keys[@]}" | awk '{ n += $1 } END { printf "%d", n }'
}

# empty_buffer: deletes the streams (with their consumer groups) and backlog counts, not
# the lease counters: fencing tokens must keep growing, the store holds the last ones.
empty_buffer() {
  local p
  for ((p = 0; p < PARTITIONS; p++)); do
    rcli DEL "pulse:{$TENANT:$p}:events" "pulse:{$TENANT:$p}:backlog" >/dev/null
  done
}

# loadgen NAME [FLAGS...]: pulse-loadgen against ingest; its JSON line in $TMP/NAME.json.
loadgen() {
  local name="$1"
  shift
  if ! PULSE_WRITE_KEY="$WRITE_KEY" "$LOADGEN" --url "$INGEST_URL" --connections "$CONNECTIONS" \
    --users "$USERS" --json "$@" >"$TMP/$name.out"; then
    sed '/^{/d' "$TMP/$name.out" >&2
    die "pulse-loadgen ($name) had no successful request"
  fi
  grep '^{' "$TMP/$name.out" | tail -n 1 >"$TMP/$name.json"
}

# preload NAME COUNT [LOADGEN FLAGS...]: about COUNT events into the buffer, no processor
# running; sets BUFFERED. Paced rounds, each offering what is missing (a flat-out round
# overshoots small counts many times over), up to 150,000 events a second.
preload() {
  local name="$1" count="$2" round remaining secs
  shift 2
  BUFFERED="$(backlog)"
  local base="$BUFFERED"
  log "$name: buffering $count events through ingest ($PRELOAD_BATCH-event batches) $*"
  for round in $(seq 1 12); do
    remaining=$((count - (BUFFERED - base)))
    ((remaining * 100 > count * 2)) || break
    secs="$(calc "($remaining / 150000 < 0.5) ? 0.5 : ($remaining / 150000 > 30 ? 30 : $remaining / 150000)" 2)"
    loadgen "$name-$round" --batch-size "$PRELOAD_BATCH" --warmup 0 --duration "$secs" \
      --rate "$(calc "$remaining / $secs")" "$@"
    BUFFERED="$(backlog)"
  done
  ((BUFFERED > base)) || die "$name: ingest buffered no event"
  BUFFERED=$((BUFFERED - base))
  log "$name: $BUFFERED events buffered"
}

metrics() { curl -fsS --max-time 2 "$PROC_URL/metrics" 2>/dev/null || true; }
stored() { metrics | awk '/^pulse_processor_events_stored_total/ { n = $NF } END { printf "%d", n }'; }

start_processor() {
  "$PROCESSOR" --config "$TMP/pipeline.yaml" --listen "127.0.0.1:$PROC_PORT" >>"$TMP/processor.log" 2>&1 &
  PIDS+=($!)
  PROC_PID=$!
}
stop_processor() {
  [[ -n "$PROC_PID" ]] || return 0
  stop_process "$PROC_PID"
  # Forgotten, so the cleanup never signals a pid the system may have reused.
  local kept=() pid
  for pid in "${PIDS[@]}"; do [[ "$pid" == "$PROC_PID" ]] || kept+=("$pid"); done
  PIDS=("${kept[@]}")
  PROC_PID=""
}
proc_ready() { curl -fsS -o /dev/null --max-time 1 "$PROC_URL/readyz"; }

# restart_empty: stops the processor, empties the buffer, starts it again (ready).
restart_empty() {
  stop_processor
  empty_buffer
  start_processor
  wait_until 60 pulse-processor "$PROC_PID" "$TMP/processor.log" proc_ready
}

# drain NAME TIMEOUT: starts the processor and times it until the backlog is 0 (at most
# TIMEOUT s); sets DRAINED_EPS (and DRAINED_NOTE "*" when it gave up: events stored / time
# waited, and the buffer is emptied). The rate is timed from the first batch stored: the
# processor's start (leases, the first read of the rollup log) is a fixed cost, printed
# apart, that a short backlog would otherwise count as a slower rate. The processor keeps
# running, ready.
drain() {
  local name="$1" timeout="$2" start now left last_print n first_ms="" first_n=0
  log "$name: starting pulse-processor, timing until the backlog of $BUFFERED events is 0"
  start="$(now_ms)"
  start_processor
  DRAINED_NOTE=""
  last_print="$start"
  while :; do
    left="$(backlog)"
    if [[ -z "$first_ms" ]]; then
      n="$(stored)"
      if ((n > 0)); then
        first_ms="$(now_ms)"
        first_n="$n"
        log "$name: first batch stored $(calc "($first_ms - $start) / 1000" 1) s after the start ($n events)"
      fi
    fi
    ((left > 0)) || break
    kill -0 "$PROC_PID" 2>/dev/null || { tail -n 30 "$TMP/processor.log" >&2; die "pulse-processor exited"; }
    now="$(now_ms)"
    if ((now - start >= timeout * 1000)); then
      DRAINED_NOTE="*"
      break
    fi
    if ((now - last_print >= 10000)); then
      log "  $(stored) stored, backlog $left"
      last_print="$now"
    fi
    sleep 0.2
  done
  local end ms
  end="$(now_ms)"
  ms=$((end - start))
  n="$(stored)"
  if [[ -z "$DRAINED_NOTE" ]]; then
    if [[ -n "$first_ms" ]] && ((end > first_ms && BUFFERED > first_n)); then
      DRAINED_EPS="$(calc "($BUFFERED - $first_n) * 1000 / ($end - $first_ms)")"
    else
      DRAINED_EPS="$(calc "$BUFFERED * 1000 / $ms")"
    fi
    log "$name: drained $BUFFERED events in $(calc "$ms / 1000" 1) s from the start: $DRAINED_EPS events/s from the first batch stored"
  else
    DRAINED_EPS="$(calc "$n * 1000 / $ms")"
    log "$name: NOT drained: $n of $BUFFERED stored in $(calc "$ms / 1000" 1) s: $DRAINED_EPS events/s"
  fi
  local errors
  errors="$(metrics | awk '/^pulse_processor_errors_total/ && $NF > 0 {
    match($0, /kind="[^"]*"/); printf "%s%s=%d", sep, substr($0, RSTART + 6, RLENGTH - 7), $NF; sep = " " }')"
  [[ -z "$errors" ]] || log "$name: processor errors (retried): $errors"
  if [[ -n "$DRAINED_NOTE" ]]; then
    log "$name: emptying the buffer"
    restart_empty
  fi
  wait_until 60 pulse-processor "$PROC_PID" "$TMP/processor.log" proc_ready
}

# buckets FILE: the freshness histogram's cumulative buckets as "le count" lines.
buckets() {
  metrics | sed -n 's/^pulse_processor_freshness_seconds_bucket{.*le="\([^"]*\)".*} \([0-9.e+]*\)$/\1 \2/p' >"$1"
}

# quantile Q BEFORE AFTER: quantile Q of the events observed between two snapshots,
# interpolated in its bucket as processor.sh does (">LAST" past the last bound).
quantile() {
  awk -v q="$1" '
    FNR == NR { before[$1] = $2; next }
    { le[n] = $1; cum[n] = $2 - before[$1]; n++ }
    END {
      total = cum[n - 1]
      if (total <= 0) { print "n/a"; exit }
      rank = q * total; lower = 0; below = 0
      for (i = 0; i < n; i++) {
        if (cum[i] >= rank) {
          if (le[i] == "+Inf") { printf ">%s\n", lower; exit }
          inside = cum[i] - below
          frac = inside > 0 ? (rank - below) / inside : 1
          printf "%.2f\n", lower + (le[i] - lower) * frac
          exit
        }
        lower = le[i]; below = cum[i]
      }
    }' "$2" "$3"
}

# steady NAME RATE: RATE events/s for STEADY_WARMUP + STEADY_SECS through ingest, the
# processor running, counting the last STEADY_SECS;
# sets STEADY_P99, the freshness p99 of the events applied (a backlog left 30 s after the
# run is left out, logged, and emptied). Not in a subshell: it may restart the processor.
steady() {
  local name="$1" rate="$2" batch="$STEADY_BATCH" left p99
  if ((rate < 1)); then
    log "$name: skipped, a rate of 0 events/s"
    STEADY_P99="n/a"
    return 0
  fi
  ((batch <= rate)) || batch="$rate"
  log "$name: $rate events/s for ${STEADY_SECS}s ($batch-event requests), after ${STEADY_WARMUP}s of warm-up"
  # Steady state only: the warm-up's events (the store still settling after the drain
  # before, the writers' batches finding their size) are sent but not counted, as loadgen
  # leaves them out of its own figures.
  loadgen "$name" --batch-size "$batch" --rate "$rate" --duration "$STEADY_SECS" --warmup "$STEADY_WARMUP" &
  local sender=$!
  sleep "$STEADY_WARMUP"
  buckets "$TMP/$name-before"
  wait "$sender" || die "$name: pulse-loadgen failed"
  local deadline=$((SECONDS + 30))
  while (($(backlog) > 0 && SECONDS < deadline)); do sleep 0.2; done
  left="$(backlog)"
  buckets "$TMP/$name-after"
  p99="$(quantile 0.99 "$TMP/$name-before" "$TMP/$name-after")"
  log "$name: freshness p99 $p99 s"
  if ((left > 0)); then
    log "$name: backlog still $left events 30 s after the run (left out of the p99): emptying the buffer"
    restart_empty
  fi
  STEADY_P99="$p99"
}

# raw_insert NAME: docs/s of pulse-bench-store's insert_many into a fresh collection of
# database bench_NAME (dropped after), with no secondary index, as the processor keeps its
# raw events on FerretDB (a server without TTL indexes): the better of
# RAW_BATCH-document calls one at a time and the processor's batch size with as many calls
# in flight as it writes batches at once (STORE_TURNS), so the limit is the store's best.
raw_insert() {
  local name="$1" best=0 rate shape
  for shape in "$RAW_BATCH 1" "$PROCESSOR_BATCH $STORE_TURNS"; do
    set -- $shape
    "$BENCH_STORE" --uri "$MONGODB_URI" --database "bench_$name" --docs "$RAW_DOCS" --batch "$1" \
      --concurrency "$2" --json >"$TMP/$name.out" ||
      { cat "$TMP/$name.out" >&2; die "pulse-bench-store ($name) failed"; }
    rate="$(calc "$(json_field docs_per_s "$(grep '^{' "$TMP/$name.out" | tail -n 1)")")"
    log "plain insert_many of $1 documents, $2 at once: $rate docs/s"
    ((rate > best)) && best=$rate
  done
  echo "$best"
}
