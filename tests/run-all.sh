#!/usr/bin/env bash
# Runs every test of fastlane: formatting and lints, then the Rust unit, doc, conformance and
# end-to-end tests, the live ones against real servers on loopback (tests/services.sh), the
# Python package's tests (tests/python, the package installed with pip), the web UI's tests in
# headless Chromium (tests/browser) and a fuzz of the monitoring API (tests/fuzz). The
# end-to-end tests run the built `fastlane` binary and plugins, so the whole workspace is built
# first.
#
# What it builds and downloads is kept between runs in the test cache (tests/cache.sh:
# ~/.cache/fastlane-tests, or FASTLANE_TEST_CACHE): cargo's target folder (CARGO_TARGET_DIR
# unless set), pip's and npm's downloads, and the virtual environments of the servers, the
# Python tests and the fuzzer. A second run compiles only the workspace's own crates.
# `rm -rf ~/.cache/fastlane-tests` clears it.
#
# What runs side by side (two cores: compiling takes both, so only waits are overlapped):
#   format
#   build                      beside: the servers starting, Chromium (apt) and npm installs,
#                                      the Python and fuzz virtual environments (pip)
#   python-install             pip install . (reuses the build)
#   clippy, docs, tests        beside: python tests, browser, api fuzz
#   restart                    the tests that restart MariaDB, and those that build generated
#                              plugin projects, alone
#   python-projects            the Python tests that build generated plugin projects, and those
#                              writing into BriskDB, alone
# Each step's output is kept in target/test-logs/<step>.log; a step that runs beside others is
# printed when it ends.
# At the end: the timings next to the previous run's, the number of tests of each kind, and
# `tests: N passed, N failed`. FASTLANE_TEST_SERIAL=1 runs every step one after the other.
set -euo pipefail
cd "$(dirname "$0")/.."
root=$PWD
started=$SECONDS

. tests/cache.sh
export FASTLANE_TEST_CACHE=$fastlane_cache
export CARGO_TARGET_DIR=${CARGO_TARGET_DIR:-$fastlane_cache/target}
case $CARGO_TARGET_DIR in /*) ;; *) CARGO_TARGET_DIR=$root/$CARGO_TARGET_DIR ;; esac
export PIP_CACHE_DIR=${PIP_CACHE_DIR:-$fastlane_cache/pip}
export npm_config_cache=${npm_config_cache:-$fastlane_cache/npm}
export FASTLANE_BIN=$CARGO_TARGET_DIR/debug/fastlane
# Cargo never removes what it built before, and each checkout folder gets its own build of the
# workspace's crates. Past FASTLANE_TEST_CACHE_MAX_GB (default 30) the workspace's crates are
# cleaned (every folder's; the dependencies stay), and if that is not enough the whole target
# folder goes (a cold run).
target_kb() {
  if [ -d "$CARGO_TARGET_DIR" ]; then du -sk "$CARGO_TARGET_DIR" | cut -f1; else echo 0; fi
}
trim_target() {
  local max_kb=$((${FASTLANE_TEST_CACHE_MAX_GB:-30} * 1024 * 1024)) size packages
  size=$(target_kb)
  if [ "${size:-0}" -le "$max_kb" ]; then return 0; fi
  echo "the target folder holds $((size / 1024 / 1024)) GiB: cleaning the workspace's crates" >&2
  packages=$(cargo metadata --no-deps --format-version 1 |
    python3 -c 'import json, sys; print(" ".join("-p " + p["name"] for p in json.load(sys.stdin)["packages"]))')
  # shellcheck disable=SC2086
  cargo clean -q $packages || true
  rm -rf "$CARGO_TARGET_DIR"/*/incremental
  size=$(target_kb)
  if [ "${size:-0}" -gt "$max_kb" ]; then
    echo "still $((size / 1024 / 1024)) GiB: removing the target folder" >&2
    rm -rf "$CARGO_TARGET_DIR"
  fi
}
trim_target
if [ -n "$(ls -A "$CARGO_TARGET_DIR/debug/deps" 2>/dev/null)" ]; then run_kind=warm; else run_kind=cold; fi
serial=${FASTLANE_TEST_SERIAL:-}

logs=$root/target/test-logs
rm -rf "$logs"
mkdir -p "$logs"

# Runs started by the tests report into a store of their own, not the user's.
export FASTLANE_STORE="$root/target/test-monitor.db"
unset FASTLANE_MONITOR_URL pipeline_api_host

order=() # steps in the order they are reported
failed=()

# logged NAME COMMAND...: runs COMMAND with its output in NAME's log; writes NAME's exit status
# and seconds. The command runs in a background subshell so that `set -e` holds inside it.
logged() {
  local name=$1 start=$SECONDS rc=0
  shift
  ("$@") >"$logs/$name.log" 2>&1 </dev/null &
  wait $! || rc=$?
  echo "$rc $((SECONDS - start))" >"$logs/$name.status"
  local outcome="FAILED (exit $rc)"
  if [ "$rc" = 0 ]; then outcome=finished; fi
  printf '   %-16s %s after %d s\n' "$name" "$outcome" $((SECONDS - start))
  return "$rc"
}

# step NAME COMMAND...: runs COMMAND in the foreground, its output shown as it comes (and kept in
# NAME's log).
step() {
  local name=$1 start=$SECONDS rc=0
  shift
  order+=("$name")
  printf '\n== %s\n' "$name"
  ( ("$@") 2>&1 </dev/null | tee "$logs/$name.log") &
  wait $! || rc=$?
  echo "$rc $((SECONDS - start))" >"$logs/$name.status"
  if [ "$rc" != 0 ]; then failed+=("$name"); fi
  return "$rc"
}

# report NAME...: prints the logs of steps that ran beside others, and notes their failures.
report() {
  local name rc secs
  for name; do
    order+=("$name")
    read -r rc secs <"$logs/$name.status" || { rc=1; secs=0; }
    printf '\n== %s (%d s, beside other steps)\n' "$name" "$secs"
    cat "$logs/$name.log"
    if [ "$rc" != 0 ]; then
      echo "$name failed (exit $rc)"
      failed+=("$name")
    fi
  done
}

# lane NAME...: runs the steps NAME (functions of the same name, dashes for spaces) one after
# the other, each logged; a failure does not stop the ones after it.
lane() {
  local name rc=0
  for name; do
    logged "$name" "step_${name//-/_}" || rc=1
  done
  return "$rc"
}

# The servers the live tests talk to start while the workspace builds; those started here are
# stopped on exit (tests/services.sh), after every background step has ended.
stop_services() {
  wait
  if [ -f "$logs/services.log" ]; then
    # shellcheck disable=SC2046
    bash tests/services.sh stop $(sed -n 's/^started=//p' "$logs/services.log") || true
  fi
}
trap stop_services EXIT

# Everything that waits on the network rather than the processor: servers, apt, npm, pip.
step_services() {
  bash tests/services.sh start
  # Headless Chromium (Debian's package) and playwright-core from the committed lockfile, for
  # the browser step; after the servers, since both may use apt.
  if [ ! -x /usr/bin/chromium ]; then
    local sudo_cmd=()
    if [ "$(id -u)" != 0 ]; then sudo_cmd=(sudo); fi
    "${sudo_cmd[@]}" apt-get update -qq
    "${sudo_cmd[@]}" env DEBIAN_FRONTEND=noninteractive apt-get install -y -q chromium
  fi
  (cd tests/browser && npm ci --no-audit --no-fund --loglevel=error)
}

# The Python package's tests run in a virtual environment kept in the cache, holding the
# package's and its tests' dependencies (from pyproject.toml); the package itself is installed
# again by every run, the way a user installs it (pip install .).
pyvenv=$fastlane_cache/python-venv
step_venvs() {
  if ! venv_ready "$pyvenv" pyproject.toml; then
    new_venv "$pyvenv"
    "$pyvenv/bin/python" - >"$logs/python-requirements.txt" <<'PY'
import tomllib
project = tomllib.load(open("pyproject.toml", "rb"))["project"]
print("\n".join(project["dependencies"] + project["optional-dependencies"]["test"]))
PY
    "$pyvenv/bin/python" -m pip install -q -r "$logs/python-requirements.txt"
    stamp_venv "$pyvenv" pyproject.toml
  fi
  FASTLANE_FUZZ_PREPARE_ONLY=1 bash tests/fuzz/api.sh
}

step_python_install() {
  # The dev profile, so that pip's build reuses the workspace build.
  FASTLANE_BUILD_PROFILE=dev "$pyvenv/bin/python" -m pip install -q ".[test]"
}
step_build() {
  cargo build --workspace --all-targets
  # The plugin built against plugin ABI 1 as first released: a workspace of its own, beside.
  cargo build --locked --manifest-path tests/plugins/abi1/Cargo.toml
  # The test executables (for the restart step); compiles nothing more.
  cargo test --workspace --no-run --message-format=json >"$logs/test-executables.json"
}
step_clippy() { cargo clippy --workspace --all-targets -- -D warnings; }
step_docs() {
  RUSTDOCFLAGS="-D warnings" cargo doc --no-deps --workspace
  # The plugin API stands alone: it packages (and builds from the package), and its docs build
  # as docs.rs builds them.
  cargo package -p fastlane-plugin-api --allow-dirty --quiet
  RUSTDOCFLAGS="--cfg docsrs -D warnings" cargo doc --no-deps -p fastlane-plugin-api \
    --target-dir "$CARGO_TARGET_DIR/docsrs"
}
# The tests that restart a shared server run alone, after everything else (step "restart"),
# from the executable the workspace build made: `cargo test -p` would resolve other dependency
# features and compile them again.
alone=(a_server_restart_mid_run_loses_and_repeats_nothing
       a_run_that_lost_its_source_server_resumes_once_the_server_is_back)
# The Rust tests under cargo nextest where it is installed (each test in its own process, test
# binaries side by side, the emulator-bound ones one at a time: .config/nextest.toml), then the
# doctests; otherwise cargo test.
step_tests() {
  if ! cargo nextest --version >/dev/null 2>&1; then
    cargo test --workspace --no-fail-fast -- "${alone[@]/#/--skip=}"
    return
  fi
  local rc=0
  cargo nextest run --workspace --no-fail-fast || rc=$?
  cargo test --workspace --doc || rc=$?
  return "$rc"
}
step_restart() {
  local exes restart new
  exes=$(python3 - "$logs/test-executables.json" <<'PY'
import json, sys
found = {}
for line in open(sys.argv[1]):
    m = json.loads(line)
    if m.get("reason") != "compiler-artifact" or not m.get("executable"):
        continue
    name, package = m["target"]["name"], m["package_id"]
    if name == "restart" and "plugins/mysql" in package:
        found["restart"] = m["executable"]
    if name == "plugins_new" and "/tests#" in package:
        found["new"] = m["executable"]
print(found.get("restart", ""), found.get("new", ""))
PY
  )
  read -r restart new <<<"$exes"
  [ -n "$restart" ] || { echo "the mysql restart test was not built" >&2; return 1; }
  [ -n "$new" ] || { echo "the plugins_new test was not built" >&2; return 1; }
  local rc=0
  "$restart" --exact --test-threads=1 "${alone[@]}" || rc=$?
  "$new" --test-threads=1 || rc=$?
  return "$rc"
}
step_python() {
  "$pyvenv/bin/python" -m pytest -q -p no:cacheprovider tests/python -k "not plugins_new and not mongodb"
}
# The Python tests that compile generated plugin projects, alone after the others (as the Rust
# ones in "restart"), and those writing into BriskDB, which takes one writer at a time (the Rust
# MongoDB tests run beside the other Python tests).
step_python_projects() {
  "$pyvenv/bin/python" -m pytest -q -p no:cacheprovider tests/python -k "plugins_new or mongodb"
}
# The monitoring service's stores: the browser and fuzz suites run over each.
stores=(sqlite postgres mariadb)
# The web UI in real headless Chromium, driven by playwright-core; screenshots go to
# target/browser/.
step_browser() {
  local kind rc=0
  for kind in "${stores[@]}"; do
    echo "-- the web UI over a $kind store"
    (cd tests/browser && FASTLANE_BROWSER_STORE=$kind npm test) || rc=1
  done
  return "$rc"
}
# The monitoring API fuzzed from its OpenAPI document (schemathesis).
step_api_fuzz() {
  local kind rc=0
  for kind in "${stores[@]}"; do
    FASTLANE_FUZZ_STORE=$kind bash tests/fuzz/api.sh || rc=1
  done
  return "$rc"
}

printf 'fastlane tests: a %s run; cache %s, target folder %s\n' "$run_kind" "$fastlane_cache" "$CARGO_TARGET_DIR"

step "format" cargo fmt --all -- --check || true

if [ -n "$serial" ]; then
  step "services" step_services
  step "venvs" step_venvs
  step "build" step_build
  step "python-install" step_python_install || true
  for name in clippy docs tests python browser api-fuzz restart python-projects; do
    step "$name" "step_${name//-/_}" || true
  done
else
  printf '\n== services, venvs: in the background during the build\n'
  lane services &
  services_pid=$!
  lane venvs &
  venvs_pid=$!
  build_rc=0
  step "build" step_build || build_rc=$?
  wait "$services_pid" || true
  wait "$venvs_pid" || true
  report services venvs
  if [ "$build_rc" != 0 ]; then
    echo "the build failed: no test can run" >&2
    exit 1
  fi
  if [ "$(cut -d' ' -f1 "$logs/venvs.status")" = 0 ]; then
    step "python-install" step_python_install || true
  fi
  printf '\n== clippy, docs, tests beside python, browser, api fuzz\n'
  lane clippy docs tests &
  rust_pid=$!
  lane python browser api-fuzz &
  other_pid=$!
  wait "$rust_pid" || true
  wait "$other_pid" || true
  report clippy docs tests python browser api-fuzz
  step "restart" step_restart || true
  step "python-projects" step_python_projects || true
fi

# How many tests each kind ran.
sum_rust() { # passed failed ignored, over cargo test's `test result:` lines and nextest's summary
  {
    sed -n 's/^test result: [a-zA-Z]*\. \([0-9]*\) passed; \([0-9]*\) failed; \([0-9]*\) ignored.*/\1 \2 \3/p' "$@"
    grep -hE '^ *Summary \[.*\] [0-9]+ tests? run:' "$@" | sed -E 's/.* run: //' |
      awk '{p = 0; f = 0; for (i = 1; i < NF; i++) {
              if ($(i + 1) ~ /^passed/) p = $i
              if ($(i + 1) ~ /^failed/) f = $i
            }
            print p, f, 0}'
  } | awk '{p += $1; f += $2; i += $3} END {printf "%d %d %d\n", p, f, i}'
}
count_in() { # PATTERN FILE: the number before PATTERN on the last line holding it, or 0
  local n
  n=$(grep -oE "[0-9]+ $1" "$2" 2>/dev/null | tail -1 | cut -d' ' -f1)
  echo "${n:-0}"
}
log_of() { # a step's log, or /dev/null for a step that did not run
  if [ -f "$logs/$1.log" ]; then echo "$logs/$1.log"; else echo /dev/null; fi
}
read -r rust_passed rust_failed rust_ignored < <(sum_rust "$(log_of tests)" "$(log_of restart)")
py_log=$(log_of python)
py_alone=$(log_of python-projects)
py_passed=$(($(count_in passed "$py_log") + $(count_in passed "$py_alone")))
py_failed=$(($(count_in failed "$py_log") + $(count_in error "$py_log") + $(count_in failed "$py_alone") + $(count_in error "$py_alone")))
py_skipped=$(count_in skipped "$py_log")
browser_log=$(log_of browser)
# One summary per store: summed.
browser_passed=$(sed -n 's/^\(# \|ℹ \)pass \([0-9]*\)$/\2/p' "$browser_log" | awk '{n += $1} END {print n + 0}')
browser_failed=$(sed -n 's/^\(# \|ℹ \)fail \([0-9]*\)$/\2/p' "$browser_log" | awk '{n += $1} END {print n + 0}')
fuzz_cases=$(grep -oE "[0-9]+ generated" "$(log_of api-fuzz)" 2>/dev/null | awk '{n += $1} END {print n + 0}')

timings=$fastlane_cache/timings.tsv
previous=()
previous_head=""
if [ -f "$timings" ]; then
  previous_head=$(sed -n '1s/^# //p' "$timings")
  mapfile -t previous < <(sed 1d "$timings")
fi
prev_secs() {
  local line
  for line in "${previous[@]}"; do
    if [ "${line%%	*}" = "$1" ]; then echo "${line#*	} s"; return; fi
  done
  echo "-"
}

total=$((SECONDS - started))
printf '\n== timings (this: a %s run; previous: %s)\n' "$run_kind" "${previous_head:-none in the cache}"
printf '%-16s %9s %9s\n' step this previous
new_timings="# $run_kind run of $(date -u +%Y-%m-%dT%H:%MZ), $total s"
for name in "${order[@]}"; do
  read -r _ secs <"$logs/$name.status" || secs=0
  printf '%-16s %7d s %9s\n' "$name" "$secs" "$(prev_secs "$name")"
  new_timings+=$'\n'"$name	$secs"
done
printf '%-16s %7d s %9s\n' total "$total" "$(prev_secs total)"
new_timings+=$'\n'"total	$total"
echo "$new_timings" >"$timings"

budget=$([ "$run_kind" = cold ] && echo 2700 || echo 900)
if [ "$total" -gt "$budget" ]; then
  printf '\nwarning: this %s run took %d min %02d s, over the %d minutes a %s run may take (CI stops at 90)\n' \
    "$run_kind" $((total / 60)) $((total % 60)) $((budget / 60)) "$run_kind" >&2
fi

printf '\n== counts\n'
printf 'rust:    %d passed, %d failed, %d ignored\n' "$rust_passed" "$rust_failed" "$rust_ignored"
printf 'python:  %d passed, %d failed, %d skipped\n' "$py_passed" "$py_failed" "$py_skipped"
printf 'browser: %d passed, %d failed\n' "${browser_passed:-0}" "${browser_failed:-0}"
printf 'fuzz:    %d test cases generated\n' "$fuzz_cases"
if [ ${#failed[@]} -gt 0 ]; then
  printf '\nfailed steps: %s\n' "${failed[*]}"
fi
printf 'tests: %d passed, %d failed\n' $((rust_passed + py_passed + ${browser_passed:-0})) \
  $((rust_failed + py_failed + ${browser_failed:-0}))
[ ${#failed[@]} -eq 0 ]
