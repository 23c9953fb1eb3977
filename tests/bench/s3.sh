#!/usr/bin/env bash
# S3 benchmark: builds fastlane with its file and aws plugins in release mode (not when
# SKIP_BUILD is set), installs GNU time when missing, creates a virtual environment with pyarrow,
# boto3 and duckdb, and runs tests/bench/s3_bench.py (arguments are passed through) against a
# moto server of its own (from the test cache's services-venv, tests/cache.sh: tests/services.sh
# start installs it).
set -euo pipefail
cd "$(dirname "$0")/../.."
. tests/cache.sh
moto=$fastlane_cache/services-venv/bin/moto_server
if [ -z "${SKIP_BUILD:-}" ]; then
  cargo build --release -p fastlane-host -p fastlane-plugin-file -p fastlane-plugin-aws
fi
if [ ! -x /usr/bin/time ]; then
  sudo=$([ "$(id -u)" -eq 0 ] || echo sudo)
  $sudo apt-get install -y -q time || { $sudo apt-get update -q && $sudo apt-get install -y -q time; }
fi
if [ ! -x "$moto" ]; then
  bash tests/services.sh start >/dev/null
fi
venv=tests/bench/out/.venv-s3
if [ ! -x "$venv/bin/python" ]; then
  python3 -m venv "$venv"
fi
if ! "$venv/bin/python" -c 'import pyarrow, boto3, duckdb' 2>/dev/null; then
  "$venv/bin/pip" install -q pyarrow boto3 duckdb
fi
exec "$venv/bin/python" tests/bench/s3_bench.py --moto "$moto" "$@"
