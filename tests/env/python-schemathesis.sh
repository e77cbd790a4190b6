#!/usr/bin/env bash
# Creates (once) a Python venv with schemathesis, the schema-driven fuzzer that
# services/processor/tests/schemathesis.rs runs against the /openapi.json of ingest and
# query. Cached by version under $PULSE_CACHE (default ~/.cache/pulse): a second run only
# checks the venv and takes well under a second. The test finds the CLI at
# $PULSE_CACHE/venv-schemathesis/bin/st, a link to venv-schemathesis-<version> (or at
# $PULSE_SCHEMATHESIS, a path to `st`).
set -euo pipefail

SCHEMATHESIS_VERSION="4.32.5"
CACHE="${PULSE_CACHE:-$HOME/.cache/pulse}"
VENV="$CACHE/venv-schemathesis-$SCHEMATHESIS_VERSION"
PYTHON="${PYTHON:-python3}"

# The marker is written last, so an interrupted install is redone rather than trusted.
if [[ -f "$VENV/.complete" && -x "$VENV/bin/st" ]]; then
  ln -sfn "$VENV" "$CACHE/venv-schemathesis"
  echo "[schemathesis] cached: schemathesis $SCHEMATHESIS_VERSION"
  exit 0
fi

command -v "$PYTHON" >/dev/null || { echo "[schemathesis] $PYTHON (3.9+) with venv is required" >&2; exit 1; }
mkdir -p "$CACHE"
# Created in place, not moved: the `st` script's shebang holds the venv's path.
echo "[schemathesis] creating $VENV with schemathesis $SCHEMATHESIS_VERSION"
rm -rf "$VENV"
"$PYTHON" -m venv "$VENV"
"$VENV/bin/pip" install --quiet --disable-pip-version-check "schemathesis==$SCHEMATHESIS_VERSION"
"$VENV/bin/st" --version | sed 's/^/[schemathesis] /'
touch "$VENV/.complete"
ln -sfn "$VENV" "$CACHE/venv-schemathesis"
echo "[schemathesis] ready"
