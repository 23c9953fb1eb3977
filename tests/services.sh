#!/usr/bin/env bash
# Starts the servers the tests talk to, on loopback, when they are not running already:
#   MariaDB on 127.0.0.1:3306 (user root, empty password), for the mysql plugin;
#   PostgreSQL on 127.0.0.1:5432 (user postgres, trust), for the monitoring store;
#   moto's server on 127.0.0.1:5000 (S3, Firehose, CloudWatch Logs, Secrets Manager), for the
#   aws plugin, installed from PyPI into the test cache's services-venv (tests/cache.sh);
#   InfluxDB 1.x on 127.0.0.1:8086 (authentication on, admin user fastlane / fastlane) and
#   VictoriaMetrics on 127.0.0.1:8428 (InfluxDB line protocol, v2 write API), for the influxdb
#   plugin, from Debian's packages, each with a fresh data folder under target/services.
#   BriskDB's MongoDB wire-protocol server on 127.0.0.1:27017, for the mongodb plugin, from
#   PyPI into the same virtual environment, with a fresh data folder on tmpfs (/dev/shm) when there is one.
#   The bqemulator BigQuery emulator on 127.0.0.1:9050 (REST) and 127.0.0.1:9060 (Storage Read
#   and Write gRPC), project test-project, in memory, from PyPI into the same virtual environment,
#   for the bigquery plugin.
# Logs, pid files and data folders go under target/services.
# `tests/services.sh start` prints `started=<names>` for the servers it started itself;
# `tests/services.sh stop <names>` stops exactly those.
set -euo pipefail
cd "$(dirname "$0")/.."
. tests/cache.sh

sudo_cmd=()
if [ "$(id -u)" != 0 ]; then sudo_cmd=(sudo); fi

answers() { (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }

wait_for() { # port seconds
  for _ in $(seq 1 $(($2 * 10))); do
    if answers "$1"; then return 0; fi
    sleep 0.1
  done
  return 1
}

start_mariadb() {
  if answers 3306; then return 1; fi
  if [ ! -x /usr/sbin/mariadbd ]; then
    echo "installing mariadb-server" >&2
    "${sudo_cmd[@]}" apt-get update -qq >&2
    "${sudo_cmd[@]}" env DEBIAN_FRONTEND=noninteractive apt-get install -y -q mariadb-server mariadb-client >&2
  fi
  "${sudo_cmd[@]}" mkdir -p /run/mysqld
  "${sudo_cmd[@]}" chown mysql:mysql /run/mysqld 2>/dev/null || true
  "${sudo_cmd[@]}" start-stop-daemon --start --oknodo --background --exec /usr/sbin/mariadbd
  if ! wait_for 3306 60; then
    echo "MariaDB did not start on 127.0.0.1:3306 within 60 s" >&2
    exit 1
  fi
  return 0
}

check_mariadb() {
  if ! mariadb -uroot -h127.0.0.1 -e 'SELECT 1' >/dev/null 2>&1; then
    echo "MariaDB on 127.0.0.1:3306 refuses user root with an empty password; the tests need it" >&2
    exit 1
  fi
}

start_postgres() {
  if answers 5432; then return 1; fi
  if ! ls /etc/postgresql/*/main >/dev/null 2>&1; then
    echo "installing postgresql" >&2
    "${sudo_cmd[@]}" apt-get update -qq >&2
    "${sudo_cmd[@]}" env DEBIAN_FRONTEND=noninteractive apt-get install -y -q postgresql >&2
  fi
  local version
  version=$(ls /etc/postgresql | sort -V | tail -1)
  local hba="/etc/postgresql/$version/main/pg_hba.conf"
  if ! "${sudo_cmd[@]}" grep -q '^host all all 127.0.0.1/32 trust' "$hba"; then
    # Loopback connections without a password, for the tests (first match wins).
    "${sudo_cmd[@]}" sed -i '1i host all all 127.0.0.1/32 trust' "$hba"
  fi
  "${sudo_cmd[@]}" pg_ctlcluster --skip-systemctl-redirect "$version" main start >&2
  if ! wait_for 5432 60; then
    echo "PostgreSQL did not start on 127.0.0.1:5432 within 60 s" >&2
    exit 1
  fi
  return 0
}

check_postgres() {
  if ! psql -h 127.0.0.1 -U postgres -d postgres -Atc 'SELECT 1' >/dev/null 2>&1; then
    echo "PostgreSQL on 127.0.0.1:5432 refuses user postgres without a password; the tests need it" >&2
    exit 1
  fi
}

state=target/services
venv=$fastlane_cache/services-venv
moto_port=5000

# moto, BriskDB and bqemulator, from PyPI, into one virtual environment kept in the test cache.
install_python_servers() {
  if venv_ready "$venv" tests/services-requirements.txt; then return 0; fi
  echo "installing the Python test servers into $venv" >&2
  new_venv "$venv" >&2
  "$venv/bin/python" -m pip install -q -r tests/services-requirements.txt >&2
  stamp_venv "$venv" tests/services-requirements.txt
}

start_moto() {
  if answers "$moto_port"; then
    if curl -sf "http://127.0.0.1:$moto_port/moto-api/" >/dev/null; then return 1; fi
    echo "something that is not moto listens on 127.0.0.1:$moto_port" >&2
    exit 1
  fi
  mkdir -p "$state"
  install_python_servers
  nohup "$venv/bin/moto_server" -H 127.0.0.1 -p "$moto_port" >"$state/moto.log" 2>&1 &
  echo $! >"$state/moto.pid"
  for _ in $(seq 1 600); do
    if curl -sf "http://127.0.0.1:$moto_port/moto-api/" >/dev/null; then return 0; fi
    if ! kill -0 "$(cat "$state/moto.pid")" 2>/dev/null; then break; fi
    sleep 0.1
  done
  echo "moto did not start on 127.0.0.1:$moto_port; its log:" >&2
  tail -20 "$state/moto.log" >&2
  exit 1
}

install_influx_servers() {
  if [ -x /usr/bin/influxd ] && [ -x /usr/bin/victoria-metrics ]; then return 0; fi
  echo "installing influxdb and victoria-metrics" >&2
  "${sudo_cmd[@]}" apt-get update -qq >&2
  "${sudo_cmd[@]}" env DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends \
    influxdb victoria-metrics >&2
}

influx_user=fastlane
influx_password=fastlane

influx_answers() {
  curl -s -o /dev/null -w '%{http_code}' http://127.0.0.1:8086/ping 2>/dev/null | grep -q 204
}

start_influxdb() {
  if answers 8086; then
    if influx_answers; then return 1; fi
    echo "something that is not InfluxDB listens on 127.0.0.1:8086" >&2
    exit 1
  fi
  install_influx_servers
  local dir="$PWD/$state/influxdb"
  rm -rf "$dir"
  mkdir -p "$dir"
  cat >"$dir/influxdb.conf" <<CONF
reporting-disabled = true
bind-address = "127.0.0.1:8088"
[meta]
  dir = "$dir/meta"
[data]
  dir = "$dir/data"
  wal-dir = "$dir/wal"
  query-log-enabled = false
[http]
  bind-address = "127.0.0.1:8086"
  auth-enabled = true
  log-enabled = false
[monitor]
  store-enabled = false
CONF
  nohup influxd -config "$dir/influxdb.conf" >"$state/influxdb.log" 2>&1 &
  echo $! >"$state/influxdb.pid"
  for _ in $(seq 1 300); do
    if influx_answers; then
      # With authentication on, the first admin user may be created without credentials.
      curl -sf -XPOST http://127.0.0.1:8086/query --data-urlencode \
        "q=CREATE USER $influx_user WITH PASSWORD '$influx_password' WITH ALL PRIVILEGES" >/dev/null
      return 0
    fi
    sleep 0.1
  done
  echo "InfluxDB did not start on 127.0.0.1:8086; its log:" >&2
  tail -20 "$state/influxdb.log" >&2
  exit 1
}

check_influxdb() {
  if ! curl -sf -u "$influx_user:$influx_password" 'http://127.0.0.1:8086/query?q=SHOW%20DATABASES' >/dev/null; then
    echo "InfluxDB on 127.0.0.1:8086 refuses the admin user $influx_user / $influx_password; the tests need it" >&2
    exit 1
  fi
  local code
  code=$(curl -s -o /dev/null -w '%{http_code}' -u "$influx_user:wrong" 'http://127.0.0.1:8086/query?q=SHOW%20DATABASES')
  if [ "$code" != 401 ]; then
    echo "InfluxDB on 127.0.0.1:8086 does not check credentials (auth-enabled is off); the tests need it on" >&2
    exit 1
  fi
}

start_victoria_metrics() {
  if answers 8428; then
    if curl -sf http://127.0.0.1:8428/health >/dev/null; then return 1; fi
    echo "something that is not VictoriaMetrics listens on 127.0.0.1:8428" >&2
    exit 1
  fi
  install_influx_servers
  rm -rf "$state/victoria-metrics"
  mkdir -p "$state/victoria-metrics"
  nohup victoria-metrics -httpListenAddr=127.0.0.1:8428 -storageDataPath="$state/victoria-metrics" \
    -retentionPeriod=100y >"$state/victoria-metrics.log" 2>&1 &
  echo $! >"$state/victoria-metrics.pid"
  for _ in $(seq 1 300); do
    if curl -sf http://127.0.0.1:8428/health >/dev/null; then return 0; fi
    sleep 0.1
  done
  echo "VictoriaMetrics did not start on 127.0.0.1:8428; its log:" >&2
  tail -20 "$state/victoria-metrics.log" >&2
  exit 1
}

start_briskdb() {
  if answers 27017; then return 1; fi
  install_python_servers
  local base=/dev/shm
  [ -d "$base" ] && [ -w "$base" ] || base="$PWD/$state"
  local dir="$base/fastlane-briskdb-$$"
  rm -rf "$base"/fastlane-briskdb-*
  mkdir -p "$dir"
  echo "$dir" >"$state/briskdb.dir"
  nohup "$venv/bin/python" tests/mongodb/briskdb_server.py "$dir" 127.0.0.1:27017 \
    >"$state/briskdb.log" 2>&1 &
  echo $! >"$state/briskdb.pid"
  if ! wait_for 27017 60; then
    echo "BriskDB did not start on 127.0.0.1:27017; its log:" >&2
    tail -20 "$state/briskdb.log" >&2
    exit 1
  fi
  return 0
}

bq_rest_port=9050
bq_grpc_port=9060

bqemulator_answers() {
  curl -sf "http://127.0.0.1:$bq_rest_port/bigquery/v2/projects/test-project/datasets" >/dev/null 2>&1
}

start_bqemulator() {
  if answers "$bq_rest_port"; then
    if bqemulator_answers; then return 1; fi
    echo "something that is not a BigQuery emulator listens on 127.0.0.1:$bq_rest_port" >&2
    exit 1
  fi
  install_python_servers
  # Offline: skip the extension downloads (see tests/bigquery/bqemu_server.py).
  BQEMU_ENABLE_FORMAT_EXTENSIONS=false nohup "$venv/bin/python" tests/bigquery/bqemu_server.py start \
    --rest-host 127.0.0.1 --rest-port "$bq_rest_port" --grpc-host 127.0.0.1 --grpc-port "$bq_grpc_port" \
    --project test-project --log-level warning >"$state/bqemulator.log" 2>&1 &
  echo $! >"$state/bqemulator.pid"
  for _ in $(seq 1 600); do
    if bqemulator_answers && answers "$bq_grpc_port"; then return 0; fi
    if ! kill -0 "$(cat "$state/bqemulator.pid")" 2>/dev/null; then break; fi
    sleep 0.1
  done
  echo "bqemulator did not start on 127.0.0.1:$bq_rest_port/$bq_grpc_port; its log:" >&2
  tail -20 "$state/bqemulator.log" >&2
  exit 1
}

stop_pid() { # pid file
  local pid
  pid=$(cat "$1" 2>/dev/null) || return 0
  kill -TERM "$pid" 2>/dev/null || true
  for _ in $(seq 1 50); do
    local stat
    stat=$(ps -o stat= -p "$pid" 2>/dev/null || true)
    if [ -z "$stat" ] || [[ "$stat" == Z* ]]; then break; fi
    sleep 0.1
  done
  kill -KILL "$pid" 2>/dev/null || true
  rm -f "$1"
}

case "${1:-}" in
  start)
    started=()
    if start_mariadb; then started+=(mariadb); fi
    check_mariadb
    if start_postgres; then started+=(postgres); fi
    check_postgres
    if start_moto; then started+=(moto); fi
    mkdir -p "$state"
    if start_influxdb; then started+=(influxdb); fi
    check_influxdb
    if start_victoria_metrics; then started+=(victoria-metrics); fi
    if start_briskdb; then started+=(briskdb); fi
    if start_bqemulator; then started+=(bqemulator); fi
    echo "started=${started[*]:-}"
    ;;
  stop)
    shift
    for name in "$@"; do
      case "$name" in
        mariadb) mariadb-admin -uroot -h127.0.0.1 shutdown >/dev/null 2>&1 || true ;;
        postgres)
          "${sudo_cmd[@]}" pg_ctlcluster --skip-systemctl-redirect "$(ls /etc/postgresql | sort -V | tail -1)" main stop >/dev/null 2>&1 || true ;;
        moto) stop_pid "$state/moto.pid" ;;
        influxdb) stop_pid "$state/influxdb.pid" ;;
        victoria-metrics) stop_pid "$state/victoria-metrics.pid" ;;
        bqemulator) stop_pid "$state/bqemulator.pid" ;;
        briskdb)
          stop_pid "$state/briskdb.pid"
          rm -rf "$(cat "$state/briskdb.dir" 2>/dev/null || echo /nonexistent)" "$state/briskdb.dir" ;;
      esac
    done
    ;;
  *)
    echo "usage: tests/services.sh start | stop <names>" >&2
    exit 2
    ;;
esac
