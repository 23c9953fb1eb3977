#!/usr/bin/env bash
# PostgreSQL benchmark: builds fastlane with its file and postgres plugins in release mode (not
# when SKIP_BUILD is set), installs GNU time when missing, creates a virtual environment with
# ConnectorX, ADBC's PostgreSQL driver, DuckDB and pyarrow, and runs tests/bench/postgres_bench.py
# (arguments are passed through). Needs a PostgreSQL server, by default postgres@127.0.0.1:5432.
set -euo pipefail
cd "$(dirname "$0")/../.."
if [ -z "${SKIP_BUILD:-}" ]; then
  cargo build --release -p fastlane-host -p fastlane-plugin-file -p fastlane-plugin-postgres
fi
if [ ! -x /usr/bin/time ]; then
  sudo=$([ "$(id -u)" -eq 0 ] || echo sudo)
  $sudo apt-get install -y -q time || { $sudo apt-get update -q && $sudo apt-get install -y -q time; }
fi
venv=tests/bench/out/.venv-postgres
if [ ! -x "$venv/bin/python" ]; then
  python3 -m venv "$venv"
fi
# DuckDB downloads its postgres extension from its own site, which this machine may not reach:
# the extension comes from PyPI instead (duckdb-ext-postgres, built for DuckDB 1.4.4).
if ! "$venv/bin/python" -c 'import connectorx, adbc_driver_postgresql, duckdb_ext, pyarrow' 2>/dev/null; then
  "$venv/bin/pip" install -q connectorx adbc-driver-postgresql pyarrow \
    'duckdb==1.4.4' 'duckdb-ext-postgres==1.4.4.20260205'
fi
exec "$venv/bin/python" tests/bench/postgres_bench.py "$@"
