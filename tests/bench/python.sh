#!/usr/bin/env bash
# Benchmark of the Python package: builds a release wheel, installs it into
# tests/bench/out/.venv-python, and runs tests/bench/python_bench.py (options pass through).
#   bash tests/bench/python.sh --rows 1000000 --repeat 3
# SKIP_BUILD=1 reuses the installed package.
set -euo pipefail
cd "$(dirname "$0")/../.."
venv=tests/bench/out/.venv-python
mkdir -p tests/bench/out
if [ ! -x "$venv/bin/python" ]; then
  python3 -m venv "$venv"
  "$venv/bin/python" -m pip install -q --upgrade pip
fi
if [ "${SKIP_BUILD:-0}" != 1 ]; then
  "$venv/bin/python" -m pip install -q ".[polars]"
fi
"$venv/bin/python" tests/bench/python_bench.py --json tests/bench/out/python.json "$@"
