#!/usr/bin/env bash
# Creates (once) a Python venv with chDB, the embedded ClickHouse that the analytics tests
# compare Pulse's funnels and retention against. Cached by version under $PULSE_CACHE
# (default ~/.cache/pulse): a second run only checks the venv and takes well under a second.
# Tests find the interpreter at
# $PULSE_CACHE/venv-chdb-<version>/bin/python (or $PULSE_CHDB_PYTHON).
set -euo pipefail

CHDB_VERSION="4.4.0"
CACHE="${PULSE_CACHE:-$HOME/.cache/pulse}"
VENV="$CACHE/venv-chdb-$CHDB_VERSION"
PYTHON="${PYTHON:-python3}"

# The marker is written last, so an interrupted install is redone rather than trusted.
if [[ -f "$VENV/.complete" && -x "$VENV/bin/python" ]]; then
  echo "[chdb] cached: chdb $CHDB_VERSION"
  exit 0
fi

command -v "$PYTHON" >/dev/null || { echo "[chdb] $PYTHON (3.8+) with venv is required" >&2; exit 1; }
echo "[chdb] creating $VENV with chdb $CHDB_VERSION"
rm -rf "$VENV"
"$PYTHON" -m venv "$VENV"
"$VENV/bin/pip" install --quiet --disable-pip-version-check "chdb==$CHDB_VERSION"
"$VENV/bin/python" -c 'import chdb; print("[chdb] chdb", chdb.__version__, "ready")'
touch "$VENV/.complete"
