#!/usr/bin/env bash
# Starts the servers the tests talk to, on loopback, when they are not running already:
#   MariaDB on 127.0.0.1:3306 (user root, empty password), for the mysql plugin.
# `tests/services.sh start` prints `started=<names>` for the servers it started itself;
# `tests/services.sh stop <names>` stops exactly those.
set -euo pipefail

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

case "${1:-}" in
  start)
    started=()
    if start_mariadb; then started+=(mariadb); fi
    check_mariadb
    echo "started=${started[*]:-}"
    ;;
  stop)
    shift
    for name in "$@"; do
      case "$name" in
        mariadb) mariadb-admin -uroot -h127.0.0.1 shutdown >/dev/null 2>&1 || true ;;
      esac
    done
    ;;
  *)
    echo "usage: tests/services.sh start | stop <names>" >&2
    exit 2
    ;;
esac
