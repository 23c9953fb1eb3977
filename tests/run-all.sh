#!/usr/bin/env bash
# Runs every test of fastlane: formatting and lints, then the Rust unit, doc, conformance and
# end-to-end tests, the live ones against real servers on loopback (tests/services.sh), the
# Python package's tests (tests/python, in a fresh virtual environment), the web UI's tests in
# headless Chromium (tests/browser) and a fuzz of the monitoring API (tests/fuzz). The
# end-to-end tests run the built `fastlane` binary and plugins, so the whole workspace is built
# first. Prints how long each step took.
set -euo pipefail
cd "$(dirname "$0")/.."

timings=()
step() {
  local name=$1
  shift
  printf '\n== %s\n' "$name"
  local start=$SECONDS
  "$@"
  timings+=("$(printf '%-28s %5d s' "$name" $((SECONDS - start)))")
}

# Runs started by the tests report into a store of their own, not the user's.
export FASTLANE_STORE="$PWD/target/test-monitor.db"
unset FASTLANE_MONITOR_URL pipeline_api_host

# Servers the live tests talk to; the ones started here are stopped on exit.
services=$(bash tests/services.sh start | sed -n 's/^started=//p')
trap 'bash tests/services.sh stop $services' EXIT

step "format" cargo fmt --all -- --check
step "build" cargo build --workspace --all-targets
step "clippy" cargo clippy --workspace --all-targets -- -D warnings
step "tests" cargo test --workspace --no-fail-fast
step "docs" env RUSTDOCFLAGS="-D warnings" cargo doc --no-deps --workspace

# The Python package, installed the way a user installs it (pip install .) into a fresh virtual
# environment, with the dev profile so that it reuses the build above; then pytest.
python_tests() {
  local venv=target/python-venv
  rm -rf "$venv"
  python3 -m venv "$venv"
  "$venv/bin/python" -m pip install -q --upgrade pip
  FASTLANE_BUILD_PROFILE=dev "$venv/bin/python" -m pip install -q ".[test]"
  "$venv/bin/python" -m pytest -q -p no:cacheprovider tests/python
}
step "python" python_tests

# The web UI in real headless Chromium (Debian's package; installed here when missing), driven
# by playwright-core from the committed lockfile; screenshots go to target/browser/.
browser_tests() {
  if [ ! -x /usr/bin/chromium ]; then
    local sudo_cmd=()
    if [ "$(id -u)" != 0 ]; then sudo_cmd=(sudo); fi
    "${sudo_cmd[@]}" apt-get update -qq
    "${sudo_cmd[@]}" env DEBIAN_FRONTEND=noninteractive apt-get install -y -q chromium
  fi
  (cd tests/browser && npm ci --no-audit --no-fund --loglevel=error && npm test)
}
step "browser" browser_tests

# The monitoring API fuzzed from its OpenAPI document (schemathesis).
step "api fuzz" bash tests/fuzz/api.sh

printf '\n== timings\n'
printf '%s\n' "${timings[@]}"
