#!/usr/bin/env bash
# BigQuery benchmark: builds fastlane with its bigquery and file plugins in release mode (not when
# SKIP_BUILD is set), installs GNU time when missing, creates a virtual environment with the
# bqemulator BigQuery emulator, google-cloud-bigquery, google-cloud-bigquery-storage and pyarrow,
# and runs tests/bench/bigquery_bench.py (arguments are passed through) against an emulator of
# its own.
set -euo pipefail
cd "$(dirname "$0")/../.."
if [ -z "${SKIP_BUILD:-}" ]; then
  cargo build --release -p fastlane-host -p fastlane-plugin-file -p fastlane-plugin-influxdb \
    -p fastlane-plugin-mongodb -p fastlane-plugin-bigquery
fi
if [ ! -x /usr/bin/time ]; then
  sudo=$([ "$(id -u)" -eq 0 ] || echo sudo)
  $sudo apt-get install -y -q time || { $sudo apt-get update -q && $sudo apt-get install -y -q time; }
fi
venv=tests/bench/out/.venv-bigquery
if [ ! -x "$venv/bin/python" ]; then
  python3 -m venv "$venv"
fi
if ! "$venv/bin/python" -c 'import pyarrow, bqemulator, google.cloud.bigquery, google.cloud.bigquery_storage_v1' 2>/dev/null; then
  "$venv/bin/pip" install -q 'bqemulator==1.4.0' 'duckdb==2.0.0' 'numpy==2.4.6' \
    'google-cloud-bigquery==3.47.0' 'google-cloud-bigquery-storage==2.43.0' 'pyarrow==26.0.1'
fi
exec "$venv/bin/python" tests/bench/bigquery_bench.py "$@"
