#!/usr/bin/env bash
# InfluxDB 1.x for the processor's InfluxDB sink tests: influxd from the OS packages
# (Debian 12 ships 1.6.7), installed with apt when missing. The tests start their own
# influxd on free loopback ports; a system instance the package may start is not used.
set -euo pipefail

if command -v influxd >/dev/null; then
  echo "influxd: $(influxd version 2>/dev/null | head -1) (installed)"
  exit 0
fi
echo "influxd: installing influxdb from the OS packages"
sudo=""
[[ $(id -u) == 0 ]] || sudo="sudo"
export DEBIAN_FRONTEND=noninteractive
$sudo apt-get install -y -q --no-install-recommends influxdb >/dev/null 2>&1 || {
  $sudo apt-get update -q >/dev/null
  $sudo apt-get install -y -q --no-install-recommends influxdb >/dev/null
}
command -v influxd >/dev/null || { echo "influxd did not install (package influxdb)" >&2; exit 1; }
echo "influxd: $(influxd version | head -1)"
