#!/usr/bin/env bash
# MongoDB benchmark: builds fastlane with its mongodb and file plugins in release mode (not when
# SKIP_BUILD is set), installs GNU time when missing, creates a virtual environment with
# pyarrow, pymongo and briskdb, and runs tests/bench/mongodb_bench.py (arguments are passed
# through) against a BriskDB MongoDB wire-protocol server of its own.
set -euo pipefail
cd "$(dirname "$0")/../.."
if [ -z "${SKIP_BUILD:-}" ]; then
  cargo build --release -p fastlane-host -p fastlane-plugin-file -p fastlane-plugin-mongodb
fi
if [ ! -x /usr/bin/time ]; then
  sudo=$([ "$(id -u)" -eq 0 ] || echo sudo)
  $sudo apt-get install -y -q time || { $sudo apt-get update -q && $sudo apt-get install -y -q time; }
fi
venv=tests/bench/out/.venv-mongodb
if [ ! -x "$venv/bin/python" ]; then
  python3 -m venv "$venv"
fi
if ! "$venv/bin/python" -c 'import pyarrow, briskdb, pymongo; assert pymongo.version == "4.17.0"' 2>/dev/null; then
  # pymongo 4.20 sends a handshake option BriskDB refuses (as the Rust driver 3.9 does); 4.17 works.
  "$venv/bin/pip" install -q pyarrow 'pymongo==4.17.0' 'briskdb==0.1.0b3'
fi
exec "$venv/bin/python" tests/bench/mongodb_bench.py "$@"
