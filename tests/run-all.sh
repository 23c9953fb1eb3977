#!/usr/bin/env bash
# Runs every test of fastlane: formatting and lints, then the Rust unit, doc, conformance and
# end-to-end tests, the live ones against real servers on loopback (tests/services.sh). The
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

# Servers the live tests talk to; the ones started here are stopped on exit.
services=$(bash tests/services.sh start | sed -n 's/^started=//p')
trap 'bash tests/services.sh stop $services' EXIT

step "format" cargo fmt --all -- --check
step "build" cargo build --workspace --all-targets
step "clippy" cargo clippy --workspace --all-targets -- -D warnings
step "tests" cargo test --workspace --no-fail-fast
step "docs" env RUSTDOCFLAGS="-D warnings" cargo doc --no-deps --workspace

printf '\n== timings\n'
printf '%s\n' "${timings[@]}"
