#!/usr/bin/env bash
# Starts the servers the tests talk to, on loopback, when they are not running already:
#   MariaDB on 127.0.0.1:3306 (user root, empty password), for the mysql plugin;
#   PostgreSQL on 127.0.0.1:5432 (user postgres, trust), for the monitoring store;
#   moto's server on 127.0.0.1:5000 (S3, Firehose, CloudWatch Logs, Secrets Manager), for the
#   aws plugin, installed from PyPI into target/services/venv.
# `tests/services.sh start` prints `started=<names>` for the servers it started itself;
# `tests/services.sh stop <names>` stops exactly those.
set -euo pipefail
cd "$(dirname "$0")/.."

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
moto_port=5000

start_moto() {
  if answers "$moto_port"; then
    if curl -sf "http://127.0.0.1:$moto_port/moto-api/" >/dev/null; then return 1; fi
    echo "something that is not moto listens on 127.0.0.1:$moto_port" >&2
    exit 1
  fi
  mkdir -p "$state"
  if [ ! -x "$state/venv/bin/moto_server" ]; then
    echo "installing moto[server] into $state/venv" >&2
    python3 -m venv "$state/venv" >&2
    "$state/venv/bin/python" -m pip install -q --upgrade pip >&2
    "$state/venv/bin/python" -m pip install -q -r tests/services-requirements.txt >&2
  fi
  nohup "$state/venv/bin/moto_server" -H 127.0.0.1 -p "$moto_port" >"$state/moto.log" 2>&1 &
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
      esac
    done
    ;;
  *)
    echo "usage: tests/services.sh start | stop <names>" >&2
    exit 2
    ;;
esac
