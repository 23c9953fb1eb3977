#!/usr/bin/env bash
# Fuzzes the monitoring API from its own OpenAPI document with schemathesis: positive and
# negative requests to every operation of `fastlane serve` (with a token: required for reads and
# writes; refused tokens not rate-limited, so that every request is answered), on a
# store seeded by a real pipeline run. Fails on any 5xx, a crash, an answer that breaks the
# documented status codes, content types or response schemas, a request the API should have
# rejected, or a request that succeeded without the token.
#
#   bash tests/fuzz/api.sh             # after cargo build --workspace
#   FASTLANE_FUZZ_EXAMPLES=500 FASTLANE_FUZZ_SEED=$RANDOM bash tests/fuzz/api.sh
#   FASTLANE_FUZZ_STORE=mariadb bash tests/fuzz/api.sh
#
# FASTLANE_FUZZ_STORE is the store the service serves: `sqlite` (the default, a file),
# `postgres` or `mariadb` (a fresh database on the local server, as tests/services.sh starts
# it, dropped afterwards), or a store URL.
#
# The seed is fixed by default so that a failure in CI can be reproduced; reports (JUnit and a
# pytest file reproducing each failure) go to target/fuzz/.
set -euo pipefail
cd "$(dirname "$0")/../.."
root=$PWD
. tests/cache.sh
bin=${FASTLANE_BIN:-${CARGO_TARGET_DIR:-$root/target}/debug/fastlane}

# schemathesis, in a virtual environment kept in the test cache (tests/cache.sh).
venv=$fastlane_cache/fuzz-venv
if ! venv_ready "$venv" tests/fuzz/requirements.txt; then
  new_venv "$venv"
  "$venv/bin/python" -m pip install -q -r tests/fuzz/requirements.txt
  stamp_venv "$venv" tests/fuzz/requirements.txt
fi
# FASTLANE_FUZZ_PREPARE_ONLY=1: only the virtual environment (tests/run-all.sh, during the build).
[ -z "${FASTLANE_FUZZ_PREPARE_ONLY:-}" ] || exit 0
[ -x "$bin" ] || { echo "error: $bin is missing: run cargo build --workspace first" >&2; exit 1; }

work=$(mktemp -d)
pid=
kind=${FASTLANE_FUZZ_STORE:-sqlite}
db=fastlane_fuzz_$$
drop_db() {
  case $kind in
    postgres) psql -h 127.0.0.1 -U postgres -d postgres -qc "DROP DATABASE IF EXISTS $db" ;;
    mariadb) mariadb -uroot -h127.0.0.1 -e "DROP DATABASE IF EXISTS $db" ;;
  esac
}
cleanup() {
  [ -n "$pid" ] && kill "$pid" 2>/dev/null && wait "$pid" 2>/dev/null
  drop_db || true
  rm -rf "$work"
}
trap cleanup EXIT
case $kind in
  sqlite) store=$work/monitor.db ;;
  postgres)
    drop_db
    psql -h 127.0.0.1 -U postgres -d postgres -qc "CREATE DATABASE $db"
    store=postgres://postgres@127.0.0.1:5432/$db ;;
  mariadb)
    drop_db
    mariadb -uroot -h127.0.0.1 -e "CREATE DATABASE $db"
    store=mysql://root@127.0.0.1:3306/$db ;;
  *) store=$kind; kind=url ;;
esac

# A store holding one finished run, so that reads of existing ids are exercised too.
printf 'id,name\n1,a\n2,b\n3,c\n' >"$work/in.csv"
cat >"$work/p.json" <<'EOF'
{"name": "fuzz-seed", "replication_mode": "FULL_TABLE",
 "source": {"file": {"path": "in.csv"}},
 "target": {"file": {"path": "out", "format": "parquet"}}}
EOF
(cd "$work" && FASTLANE_STORE="$store" FASTLANE_MONITOR_URL='' \
  "$bin" --config=p.json --progress off -q)

token=fuzz-token
echo "fuzz: the service over a $kind store"
"$bin" serve -q --bind 127.0.0.1:0 --store "$store" --token "$token" \
  --max-token-failures 0 >"$work/serve.out" &
pid=$!
for _ in $(seq 100); do
  grep -q '^listening on ' "$work/serve.out" && break
  sleep 0.1
done
base=$(sed -n 's/^listening on //p' "$work/serve.out")
[ -n "$base" ] || { echo "error: fastlane serve did not start" >&2; exit 1; }

mkdir -p "target/fuzz/$kind"
"$venv/bin/schemathesis" --config-file tests/fuzz/schemathesis.toml run "$base/api/openapi.json" \
  --header "Authorization: Bearer $token" \
  --checks all \
  --max-examples "${FASTLANE_FUZZ_EXAMPLES:-40}" \
  --seed "${FASTLANE_FUZZ_SEED:-20261124}" \
  --workers 1 \
  --request-timeout 10 \
  --report junit,pytest --report-dir "target/fuzz/$kind"

# The service is still up and answering after all of it.
curl -fsS "$base/healthz" >/dev/null
echo "fuzz: fastlane serve ($kind store) answered every request and is still healthy"
