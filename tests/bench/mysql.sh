#!/usr/bin/env bash
# MySQL benchmark: builds fastlane with its file and mysql plugins in release mode (not when
# SKIP_BUILD is set), installs GNU time and the MariaDB ODBC driver when missing, creates a virtual
# environment with ConnectorX, pyarrow and arrow-odbc, and runs tests/bench/mysql_bench.py
# (arguments are passed through). Needs a MySQL/MariaDB server, by default root@127.0.0.1:3306.
set -euo pipefail
cd "$(dirname "$0")/../.."
if [ -z "${SKIP_BUILD:-}" ]; then
  cargo build --release -p fastlane-host -p fastlane-plugin-file -p fastlane-plugin-mysql
fi

# GNU time measures peak RSS; arrow-odbc reaches MariaDB through its ODBC driver (on unixODBC).
packages=()
[ -x /usr/bin/time ] || packages+=(time)
ls /usr/lib/*/odbc/libmaodbc.so >/dev/null 2>&1 || packages+=(odbc-mariadb)
ldconfig -p | grep -q 'libodbc\.so' || packages+=(unixodbc)
if [ ${#packages[@]} -gt 0 ]; then
  sudo=$([ "$(id -u)" -eq 0 ] || echo sudo)
  $sudo apt-get install -y -q "${packages[@]}" ||
    { $sudo apt-get update -q && $sudo apt-get install -y -q "${packages[@]}"; } ||
    echo "warning: could not install ${packages[*]}; arrow-odbc is skipped without its driver" >&2
fi

venv=tests/bench/out/.venv-mysql
if [ ! -x "$venv/bin/python" ]; then
  python3 -m venv "$venv"
fi
if ! "$venv/bin/python" -c 'import connectorx, pyarrow, arrow_odbc' 2>/dev/null; then
  "$venv/bin/pip" install -q connectorx pyarrow arrow-odbc
fi
exec "$venv/bin/python" tests/bench/mysql_bench.py "$@"
