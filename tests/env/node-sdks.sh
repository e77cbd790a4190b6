#!/usr/bin/env bash
# Installs (once) the official Node SDKs of Segment and PostHog that the compat ingest tests
# drive (services/ingest/tests/compat_sdks.rs), into a directory cached by their versions:
#   $PULSE_CACHE/node-sdks-<segment>-<posthog>/node_modules
#   $PULSE_CACHE/node-sdks -> that directory (what the tests use unless PULSE_SDK_NODE_MODULES is set)
# Never into the repository. A second run with the directory in place only checks that the
# packages load and takes well under 1 s. Needs node 20.20+ and npm.
set -euo pipefail

CACHE="${PULSE_CACHE:-$HOME/.cache/pulse}"
SEGMENT_VERSION="3.1.0"
POSTHOG_VERSION="5.74.0"
DIR="$CACHE/node-sdks-$SEGMENT_VERSION-$POSTHOG_VERSION"
mkdir -p "$CACHE"

check() {
  (cd "$1" && node -e 'require("@segment/analytics-node"); require("posthog-node")') 2>/dev/null
}

if [[ -d "$DIR/node_modules" ]] && check "$DIR"; then
  ln -sfn "$DIR" "$CACHE/node-sdks"
  echo "[node-sdks] cached: @segment/analytics-node $SEGMENT_VERSION, posthog-node $POSTHOG_VERSION"
  exit 0
fi

for tool in node npm; do
  command -v "$tool" >/dev/null || { echo "[node-sdks] $tool (node 20.20+) is required" >&2; exit 1; }
done
echo "[node-sdks] installing into $DIR"
tmp="$DIR.tmp.$$"
rm -rf "$tmp"
mkdir -p "$tmp"
(
  cd "$tmp"
  echo '{"name": "pulse-node-sdks", "private": true}' > package.json
  npm install --silent --no-audit --no-fund --save-exact \
    "@segment/analytics-node@$SEGMENT_VERSION" "posthog-node@$POSTHOG_VERSION"
)
check "$tmp" || { echo "[node-sdks] the SDKs do not load after install" >&2; exit 1; }
rm -rf "$DIR"
mv "$tmp" "$DIR"
ln -sfn "$DIR" "$CACHE/node-sdks"
echo "[node-sdks] installed @segment/analytics-node $SEGMENT_VERSION, posthog-node $POSTHOG_VERSION"
