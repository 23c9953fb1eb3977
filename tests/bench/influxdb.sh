#!/usr/bin/env bash
# InfluxDB benchmark: builds fastlane with its file and influxdb plugins in release mode (not
# when SKIP_BUILD is set), installs GNU time and Debian's influxdb when missing, creates a
# virtual environment with pyarrow, pandas and the `influxdb` client (the original fastlane's),
# and runs tests/bench/influxdb_bench.py (arguments are passed through) against an InfluxDB
# 1.x server of its own.
set -euo pipefail
cd "$(dirname "$0")/../.."
if [ -z "${SKIP_BUILD:-}" ]; then
  cargo build --release -p fastlane-host -p fastlane-plugin-file -p fastlane-plugin-influxdb
fi
sudo=$([ "$(id -u)" -eq 0 ] || echo sudo)
if [ ! -x /usr/bin/time ] || [ ! -x /usr/bin/influxd ]; then
  $sudo apt-get update -q
  $sudo env DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends time influxdb
fi
venv=tests/bench/out/.venv-influxdb
if [ ! -x "$venv/bin/python" ]; then
  python3 -m venv "$venv"
fi
if ! "$venv/bin/python" -c 'import pyarrow, pandas, influxdb, requests' 2>/dev/null; then
  "$venv/bin/pip" install -q pyarrow pandas influxdb requests
fi
exec "$venv/bin/python" tests/bench/influxdb_bench.py "$@"
