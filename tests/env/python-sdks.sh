#!/usr/bin/env bash
# Installs (once) the official Python SDKs of Segment and PostHog that the compat ingest
# tests drive (services/ingest/tests/compat_sdks.rs), in a venv cached by their versions:
#   $PULSE_CACHE/venv-sdks-<segment>-<posthog>/bin/python
#   $PULSE_CACHE/venv-sdks -> that venv (what the tests use unless PULSE_SDK_PYTHON is set)
# A second run with the venv in place only checks the imports and takes well under 1 s.
set -euo pipefail

CACHE="${PULSE_CACHE:-$HOME/.cache/pulse}"
SEGMENT_VERSION="2.4.0"
POSTHOG_VERSION="7.91.1"
VENV="$CACHE/venv-sdks-$SEGMENT_VERSION-$POSTHOG_VERSION"
PYTHON="${PYTHON:-python3}"
mkdir -p "$CACHE"

check() { "$VENV/bin/python" -c 'import segment.analytics, posthog' 2>/dev/null; }

if [[ -x "$VENV/bin/python" ]] && check; then
  ln -sfn "$VENV" "$CACHE/venv-sdks"
  echo "[python-sdks] cached: segment-analytics-python $SEGMENT_VERSION, posthog $POSTHOG_VERSION"
  exit 0
fi

command -v "$PYTHON" >/dev/null || { echo "[python-sdks] $PYTHON (3.9+) is required" >&2; exit 1; }
echo "[python-sdks] creating $VENV"
tmp="$VENV.tmp.$$"
rm -rf "$tmp"
"$PYTHON" -m venv "$tmp"
"$tmp/bin/python" -m pip install -q --disable-pip-version-check \
  "segment-analytics-python==$SEGMENT_VERSION" "posthog==$POSTHOG_VERSION"
rm -rf "$VENV"
mv "$tmp" "$VENV"
# A venv's scripts hold its path; the python binary itself works from the new place.
check || { echo "[python-sdks] the SDKs do not import after install" >&2; exit 1; }
ln -sfn "$VENV" "$CACHE/venv-sdks"
echo "[python-sdks] installed segment-analytics-python $SEGMENT_VERSION, posthog $POSTHOG_VERSION"
