# shellcheck shell=bash
# Sourced by the test scripts: where what they build and download is kept between runs, so that a
# second run recompiles only the workspace's own crates and installs nothing again.
#
#   FASTLANE_TEST_CACHE  the folder (default: ${XDG_CACHE_HOME:-~/.cache}/fastlane-tests), holding
#                        target/       cargo's target folder (CARGO_TARGET_DIR, unless set)
#                        pip/ npm/     pip's and npm's download caches
#                        *-venv/       the virtual environments of the test servers, the Python
#                                      package's tests and the API fuzzer
#                        timings.tsv   the step timings of the last run of tests/run-all.sh
#
# `rm -rf ~/.cache/fastlane-tests` clears it; the next run is then a cold one.

fastlane_cache=${FASTLANE_TEST_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/fastlane-tests}
mkdir -p "$fastlane_cache"
fastlane_cache=$(cd "$fastlane_cache" && pwd)

# Virtual environments kept in the cache are made again when what they were made from changes:
#   venv_ready DIR FILE...  true when DIR was made (`stamp_venv`) from the same FILEs (requirement
#                           lists, pyproject.toml) with the same python3;
#   new_venv DIR            removes DIR and makes it an empty virtual environment with a current pip;
#   stamp_venv DIR FILE...  records the FILEs' digest in DIR once the installs into it succeeded.
venv_digest() {
  { python3 --version 2>&1; cat "$@"; } | sha256sum | cut -d' ' -f1
}

venv_ready() {
  local dir=$1
  shift
  [ -x "$dir/bin/python" ] && [ "$(cat "$dir/.fastlane-stamp" 2>/dev/null)" = "$(venv_digest "$@")" ]
}

new_venv() {
  rm -rf "$1"
  python3 -m venv "$1"
  "$1/bin/python" -m pip install -q --upgrade pip
}

stamp_venv() {
  local dir=$1
  shift
  venv_digest "$@" >"$dir/.fastlane-stamp"
}
