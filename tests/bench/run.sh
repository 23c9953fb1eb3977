#!/usr/bin/env bash
# Benchmark: builds fastlane in release mode, installs DuckDB and polars into a virtual
# environment, and runs tests/bench/bench.py (arguments are passed through).
set -euo pipefail
cd "$(dirname "$0")/../.."
cargo build --release
venv=tests/bench/out/.venv
if [ ! -x "$venv/bin/python" ]; then
  python3 -m venv "$venv"
  "$venv/bin/pip" install -q duckdb polars
fi
exec "$venv/bin/python" tests/bench/bench.py "$@"
