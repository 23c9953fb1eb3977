"""PostgreSQL→Parquet throughput and peak memory: fastlane (1 and 2 partitions) against
ConnectorX (1 and 2 partitions), ADBC's PostgreSQL driver, DuckDB's postgres extension, and
`psql \\copy … (format binary)` to /dev/null as the server's own limit, measured in the same run.

PostgreSQL→PostgreSQL (`--pg-to-pg`): fastlane (1 and 2 partitions, `postgres` target) against
the server's own `INSERT … SELECT` and a `psql \\copy … to stdout | psql \\copy … from stdin`
pipe (binary), each replacing the rows of the same table (`mixed_copy`, the definition of `mixed`
with its primary key) in one transaction.

Creates the table `mixed` (the shape of tests/bench/mysql_bench.py's) in the database
`fastlane_bench` with N rows generated server-side (kept between runs), then runs each tool on it
`--repeat` times in turn, each in its own process; prints the median seconds, rows/s and peak RSS
of each and writes them to tests/bench/out/postgres.json.

    bash tests/bench/postgres.sh [--rows 1000000] [--repeat 3] [--only fastlane-p1,connectorx-p1,...]
    bash tests/bench/postgres.sh --pg-to-pg [--rows 1000000] [--repeat 3]
"""

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import benchlib  # noqa: E402

ROOT = Path(__file__).resolve().parents[2]
DB = "fastlane_bench"
TABLE = "mixed"

COLUMNS = """
  id bigint PRIMARY KEY,
  qty integer NOT NULL,
  delta integer NULL,
  big numeric(20,0) NOT NULL,
  amount numeric(12,2) NOT NULL,
  ratio double precision NOT NULL,
  name varchar(64) NOT NULL,
  note varchar(255) NULL,
  created timestamp(6) NOT NULL,
  day date NOT NULL,
  flag boolean NOT NULL,
  doc jsonb NOT NULL"""

# The same values as the MySQL benchmark's rows: names of 12 to 51 characters, ~30% NULL notes,
# ~14% NULL deltas, 20-digit numbers.
SELECT_ROWS = """
SELECT g, g % 1000,
       CASE WHEN g % 7 = 0 THEN NULL ELSE (g % 20001) - 10000 END,
       18446744073709551615 - g * 1000003,
       (g % 10000000) / 100.0,
       sin(g) * 1000,
       'customer ' || (g % 100000) || ' ' || repeat(chr(97 + (g % 26)::int), (g % 37)::int),
       CASE WHEN g % 10 < 3 THEN NULL
            ELSE 'note #' || g || ': ' || repeat('lorem ipsum ', (g % 9)::int) END,
       timestamp '2020-01-01' + g * interval '1.234567 second',
       date '2000-01-01' + (g % 10000)::int,
       g % 3 = 0,
       jsonb_build_object('k', g % 100, 'tag', 't' || (g % 7), 'ok', g % 2 = 0)
FROM generate_series({lo}::int8, {hi}::int8) g"""

CONNECTORX_CHILD = """
import sys, connectorx as cx, pyarrow.parquet as pq
url, query, out, parts = sys.argv[1:5]
kw = {"partition_on": "id", "partition_num": int(parts)} if int(parts) > 1 else {}
pq.write_table(cx.read_sql(url, query, return_type="arrow", **kw), out)
"""

ADBC_CHILD = """
import sys, adbc_driver_postgresql.dbapi as pg, pyarrow.parquet as pq
url, query, out = sys.argv[1:4]
with pg.connect(url) as conn, conn.cursor() as cur:
    cur.execute(query)
    pq.write_table(cur.fetch_arrow_table(), out)
"""

DUCKDB_CHILD = """
import os, sys, sysconfig, duckdb
url, table, out = sys.argv[1:4]
# The extension as the duckdb-ext-postgres package ships it (see postgres.sh).
extensions = os.path.join(sysconfig.get_paths()["purelib"], "duckdb_ext", "extensions")
con = duckdb.connect(config={"extension_directory": extensions})
con.execute("LOAD postgres")
con.execute(f"ATTACH '{url}' AS pg (TYPE postgres, READ_ONLY)")
con.execute(f"COPY (SELECT * FROM pg.public.{table}) TO '{out}' (FORMAT parquet)")
"""


def psql(args, sql, db=DB):
    cmd = ["psql", "-h", args.host, "-p", str(args.port), "-U", args.user, "-d", db,
           "-v", "ON_ERROR_STOP=1", "-q", "-A", "-t", "-c", sql]
    out = subprocess.run(cmd, capture_output=True, text=True)
    if out.returncode != 0:
        raise RuntimeError(f"{sql.strip()[:80]} …: {out.stderr.strip()}")
    return out.stdout.strip()


def setup(args):
    if psql(args, f"SELECT count(*) FROM pg_database WHERE datname = '{DB}'", db="postgres") == "0":
        psql(args, f"CREATE DATABASE {DB}", db="postgres")
    exists = psql(args, f"SELECT count(*) FROM pg_tables WHERE tablename = '{TABLE}'") == "1"
    if exists and int(psql(args, f"SELECT count(*) FROM {TABLE}")) == args.rows:
        print(f"reusing {DB}.{TABLE} ({args.rows:,} rows)", flush=True)
        return
    print(f"generating {args.rows:,} rows in {DB}.{TABLE} ...", flush=True)
    start = time.perf_counter()
    psql(args, f"DROP TABLE IF EXISTS {TABLE}; CREATE TABLE {TABLE} ({COLUMNS})")
    step = 1_000_000
    for lo in range(1, args.rows + 1, step):
        hi = min(lo + step - 1, args.rows)
        psql(args, f"INSERT INTO {TABLE} {SELECT_ROWS.format(lo=lo, hi=hi)}")
    psql(args, f"VACUUM ANALYZE {TABLE}")
    print(f"  done in {time.perf_counter() - start:.1f} s", flush=True)


def pg_to_pg(args, url, work):
    """PostgreSQL→PostgreSQL: each tool replaces the rows of `mixed_copy` with `mixed`'s."""
    psql(args, f"DROP TABLE IF EXISTS {TABLE}_copy; CREATE TABLE {TABLE}_copy ({COLUMNS})")
    env = dict(os.environ, NO_COLOR="1")
    conn = f"psql -h {args.host} -p {args.port} -U {args.user} -d {DB} -q"
    runs = {}
    for parts in (1, 2):
        config = {
            "name": f"bench-pg-p{parts}", "replication_mode": "FULL_TABLE",
            "resume": "never", "verify": "off",
            "source": {"postgres": {"url": url, "table": TABLE, "partitions": parts}},
            "transform": {"add_op_fields": False},
            "target": {"postgres": {"url": url, "table": f"{TABLE}_copy"}},
        }
        path = work / f"pg-p{parts}.json"
        path.write_text(json.dumps(config))
        runs[f"fastlane-p{parts}"] = [
            args.bin, "--plugin-dir", str(Path(args.bin).parent), f"--config={path}",
            "--progress", "off", "--no-monitor", "-q"]
    runs["insert-select"] = [
        "sh", "-c", f"{conn} -c 'BEGIN; TRUNCATE {TABLE}_copy; "
        f"INSERT INTO {TABLE}_copy SELECT * FROM {TABLE}; COMMIT;'"]
    runs["copy-pipe"] = [
        "sh", "-c", f"{conn} -c 'TRUNCATE {TABLE}_copy' && "
        f"{conn} -c '\\copy (SELECT * FROM {TABLE}) to stdout (format binary)' | "
        f"{conn} -c '\\copy {TABLE}_copy from stdin (format binary)'"]
    only = set(args.only.split(",")) if args.only else set(runs)
    results = {}
    for _ in range(args.repeat):
        for name, cmd in runs.items():
            if name not in only:
                continue
            try:
                seconds, rss = benchlib.measure(cmd, work, env)
            except RuntimeError as e:
                benchlib.record_error(results, name, e)
                continue
            got = int(psql(args, f"SELECT count(*) FROM {TABLE}_copy"))
            if got != args.rows:
                sys.exit(f"{name} left {got} rows, not {args.rows}")
            benchlib.record(results, name, seconds, rss)
    out = ROOT / "tests/bench/out"
    out.mkdir(parents=True, exist_ok=True)
    benchlib.report(results, args.rows, args.repeat,
                    f"PostgreSQL → PostgreSQL, {args.rows:,} rows, medians of {args.repeat} "
                    "(peak RSS: of the client process)",
                    out / "postgres-to-postgres.json")


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--rows", type=int, default=1_000_000)
    p.add_argument("--repeat", type=int, default=3)
    p.add_argument("--only", default="")
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--port", type=int, default=5432)
    p.add_argument("--user", default="postgres")
    p.add_argument("--bin", default=str(ROOT / "target/release/fastlane"))
    p.add_argument("--pg-to-pg", action="store_true",
                   help="PostgreSQL→PostgreSQL instead of PostgreSQL→Parquet")
    args = p.parse_args()
    setup(args)
    url = f"postgres://{args.user}@{args.host}:{args.port}/{DB}"
    if args.pg_to_pg:
        pg_to_pg(args, url, Path(tempfile.mkdtemp(prefix="fastlane-pg-bench-")))
        return
    query = f"SELECT * FROM {TABLE}"
    # ConnectorX reads every numeric as decimal(38, 10) and stops on `big` (20-digit values
    # need 30 digits there): it reads that column as text, the same value, exactly.
    cx_query = (f"SELECT id, qty, delta, big::text AS big, amount, ratio, name, note, created, "
                f"day, flag, doc FROM {TABLE}")
    work = Path(tempfile.mkdtemp(prefix="fastlane-pg-bench-"))
    py = sys.executable
    runs = {}
    for parts in (1, 2):
        config = {
            "name": f"bench-p{parts}", "replication_mode": "FULL_TABLE",
            "resume": "never", "verify": "off",
            "source": {"postgres": {"url": url, "table": TABLE, "partitions": parts}},
            "target": {"file": {"path": f"fastlane-p{parts}", "format": "parquet"}},
        }
        path = work / f"p{parts}.json"
        path.write_text(json.dumps(config))
        runs[f"fastlane-p{parts}"] = (work / f"fastlane-p{parts}", [
            args.bin, "--plugin-dir", str(Path(args.bin).parent), f"--config={path}",
            "--progress", "off", "--no-monitor", "-q"])
        runs[f"connectorx-p{parts}"] = (work / f"connectorx-p{parts}.parquet", [
            py, "-c", CONNECTORX_CHILD, url, cx_query, str(work / f"connectorx-p{parts}.parquet"),
            str(parts)])
    runs["adbc"] = (work / "adbc.parquet", [py, "-c", ADBC_CHILD, url, query,
                                             str(work / "adbc.parquet")])
    runs["duckdb"] = (work / "duckdb.parquet", [py, "-c", DUCKDB_CHILD,
                                                 f"host={args.host} port={args.port} user={args.user} dbname={DB}",
                                                 TABLE, str(work / "duckdb.parquet")])
    only = set(args.only.split(",")) if args.only else set(runs) | {"psql-copy"}
    env = dict(os.environ, NO_COLOR="1")
    results = benchlib.run_parquet_tools(runs, only, args.repeat, args.rows, work, env)
    if "psql-copy" in only:
        copy = ["sh", "-c", f"psql -h {args.host} -p {args.port} -U {args.user} -d {DB} -q -c "
                f"\"\\copy ({query}) to stdout (format binary)\" > /dev/null"]
        for _ in range(args.repeat):
            try:
                seconds, rss = benchlib.measure(copy, work, env)
            except RuntimeError as e:
                benchlib.record_error(results, "psql-copy", e)
                break
            benchlib.record(results, "psql-copy", seconds, rss)
    out = ROOT / "tests/bench/out"
    out.mkdir(parents=True, exist_ok=True)
    benchlib.report(results, args.rows, args.repeat,
                    f"PostgreSQL → Parquet, {args.rows:,} rows, medians of {args.repeat}",
                    out / "postgres.json",
                    extra={"notes": {"connectorx": "reads `big` (numeric(20,0)) as text: its "
                                     "decimal(38,10) cannot hold the column's values"}})


if __name__ == "__main__":
    main()
