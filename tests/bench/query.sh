#!/usr/bin/env bash
# Query benchmark: loads BENCH_EVENTS events (default 1,000,000) into a throwaway FerretDB,
# starts pulse-query on it and prints HTTP latency percentiles of pre-aggregated trends, a
# declared funnel, a retention and a lifecycle, ad-hoc funnels, paths and a filtered
# lifecycle (cold, then cached), and a person's timeline, with chDB's time and answers for
# the same funnel, paths and lifecycle on the same events, and the targets beside them.
#
#   make bench-query            (or: bash tests/bench/query.sh)
#
# Knobs (environment): BENCH_EVENTS (default 1000000), BENCH_REQUESTS (timed requests per
# warm row, default 200), BENCH_COLD (cold ad-hoc queries of each kind, and
# persons whose timeline is asked, default 2). Every process started
# here is stopped on exit or Ctrl-C.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
cd "$ROOT"
EVENTS="${BENCH_EVENTS:-1000000}"
REQUESTS="${BENCH_REQUESTS:-200}"
COLD="${BENCH_COLD:-2}"
for knob in EVENTS REQUESTS COLD; do
  if [[ ! "${!knob}" =~ ^[1-9][0-9]*$ ]]; then
    echo "[bench] error: BENCH_$knob must be a positive integer, not '${!knob}'" >&2
    exit 2
  fi
done
CACHE="${PULSE_CACHE:-$HOME/.cache/pulse}"
TARGET_DIR="${CARGO_TARGET_DIR:-target}"

bash tests/env/python-chdb.sh
echo "[bench] building pulse-query and pulse-bench-query (release)"
cargo build --release --quiet -p pulse-query -p pulse-bench-query
exec "$TARGET_DIR/release/pulse-bench-query" --query-bin "$TARGET_DIR/release/pulse-query" \
  --events "$EVENTS" --requests "$REQUESTS" --cold "$COLD" \
  --chdb-python "${PULSE_CHDB_PYTHON:-$CACHE/venv-chdb-4.4.0/bin/python}"
