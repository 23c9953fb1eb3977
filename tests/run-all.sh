#!/usr/bin/env bash
# Runs every test of fastlane: formatting and lints, then the Rust unit, doc, conformance and
# end-to-end tests. The end-to-end tests run the built `fastlane` binary and plugins, so the
# whole workspace is built first.
set -euo pipefail
cd "$(dirname "$0")/.."

step() { printf '\n== %s\n' "$*"; }

step "cargo fmt --check"
cargo fmt --all -- --check

step "build (binary, plugins, test plugins)"
cargo build --workspace --all-targets

step "clippy"
cargo clippy --workspace --all-targets -- -D warnings

step "tests"
cargo test --workspace --no-fail-fast
