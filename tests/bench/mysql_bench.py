"""MySQL→Parquet and MySQL→MySQL throughput and peak memory: fastlane against the mariadb client,
ConnectorX, arrow-odbc and the server's own INSERT … SELECT.

Creates `fastlane_bench.mixed` with N rows of mixed types (generated server-side from MariaDB's
Sequence engine, kept between runs), then runs each tool on it several times, each in its own
process; reports the median rows/s and the median peak RSS of each, measured in the same run, and
writes them to tests/bench/out/mysql.json.

    bash tests/bench/mysql.sh [--rows 1000000] [--repeat 3] [--only raw,connectorx,fastlane,...]
                              [--buffer-pool-mib 512]

Groups for --only: raw, connectorx, fastlane, insert-select, fastlane-copy, arrow-odbc,
checkpoint; a single run is also accepted by its name (e.g. connectorx-p2).

The fastlane and fastlane-copy runs load without checkpoints or verification ("resume": "never",
"verify": "off"); the checkpoint group runs the same loads checkpointed (the default), then
checkpointed and verified by row counts (the default too), then by checksums, to measure what
each costs.
"""

import argparse
import glob
import importlib.util
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable
from urllib.parse import quote

ROOT = Path(__file__).resolve().parents[2]
DB = "fastlane_bench"
TABLE = "mixed"
BATCH = 65536
TIME = "/usr/bin/time"  # GNU time

COLUMNS = """
  id BIGINT PRIMARY KEY,
  qty INT NOT NULL,
  delta INT NULL,
  big BIGINT UNSIGNED NOT NULL,
  amount DECIMAL(12,2) NOT NULL,
  ratio DOUBLE NOT NULL,
  name VARCHAR(64) NOT NULL,
  note VARCHAR(255) NULL,
  created DATETIME(6) NOT NULL,
  day DATE NOT NULL,
  flag BOOL NOT NULL,
  doc JSON NOT NULL"""
COLUMN_NAMES = [line.split()[0] for line in COLUMNS.strip().splitlines()]

# One row per value of `seq`: names of 12 to 51 characters, ~30% NULL notes, ~14% NULL deltas,
# unsigned values above 2^63.
SELECT_ROWS = """
SELECT seq,
       seq % 1000,
       IF(seq % 7 = 0, NULL, CAST(seq % 20001 AS SIGNED) - 10000),
       18446744073709551615 - seq * 1000003,
       (seq % 10000000) / 100,
       SIN(seq) * 1000,
       CONCAT('customer ', seq % 100000, ' ', REPEAT(CHAR(97 + seq % 26), seq % 37)),
       IF(seq % 10 < 3, NULL, CONCAT('note #', seq, ': ', REPEAT('lorem ipsum ', seq % 9))),
       TIMESTAMP '2020-01-01 00:00:00' + INTERVAL (seq * 1234567) MICROSECOND,
       DATE '2000-01-01' + INTERVAL (seq % 10000) DAY,
       seq % 3 = 0,
       JSON_OBJECT('k', seq % 100, 'tag', CONCAT('t', seq % 7), 'ok', seq % 2 = 0)
FROM seq_{lo}_to_{hi}"""

# Child processes for the Python peers; arguments come through sys.argv.
CONNECTORX_CHILD = """
import sys, connectorx as cx, pyarrow.parquet as pq
url, query, out, parts = sys.argv[1:5]
kw = {"partition_on": "id", "partition_num": int(parts)} if int(parts) > 1 else {}
pq.write_table(cx.read_sql(url, query, return_type="arrow", **kw), out)
"""

ARROW_ODBC_CHILD = """
import sys, pyarrow as pa, arrow_odbc
conn, query, table, batch = sys.argv[1:5]

def unsigned_as_decimal(schema):
    # ODBC reports BIGINT UNSIGNED as a signed BIGINT and arrow-odbc cannot fetch UInt64:
    # read it as DECIMAL(20, 0) so values above 2^63 survive the round trip.
    i = schema.get_field_index("big")
    return schema.set(i, schema.field(i).with_type(pa.decimal128(20, 0)))

reader = arrow_odbc.read_arrow_batches_from_odbc(
    query, conn, batch_size=int(batch), max_text_size=1024, map_schema=unsigned_as_decimal)
arrow_odbc.insert_into_table(reader, chunk_size=int(batch), table=table, connection_string=conn)
"""


@dataclass
class Run:
    """One measured command, with what to do before it and how to count the rows it produced."""

    name: str
    group: str
    task: str
    cmd: list
    prepare: Callable[[], None] = lambda: None
    count: Callable[[], int] | None = None
    note: str = ""
    skipped: str = ""
    samples: list = field(default_factory=list)  # (seconds, peak RSS bytes) of good repetitions
    failures: list = field(default_factory=list)


class Server:
    """Runs SQL through the mariadb command-line client."""

    def __init__(self, args):
        self.base = ["mariadb", "-h", args.host, "-P", str(args.port), "-u", args.user]
        if args.password:
            self.base.append(f"-p{args.password}")

    def client(self, *extra, db=DB):
        return self.base + list(extra) + ([db] if db else [])

    def sql(self, query, db=DB):
        out = subprocess.run(self.client("-N", "-B", "-e", query, db=db), capture_output=True, text=True)
        if out.returncode != 0:
            raise RuntimeError(f"{query.strip()[:80]} …: {out.stderr.strip()}")
        return out.stdout.strip()

    def count(self, table):
        return int(self.sql(f"SELECT COUNT(*) FROM `{table}`"))


def setup(server, rows):
    """Creates fastlane_bench.mixed with `rows` rows unless it is already there."""
    server.sql(f"CREATE DATABASE IF NOT EXISTS {DB}", db=None)
    names = server.sql(
        f"SELECT GROUP_CONCAT(column_name ORDER BY ordinal_position) FROM information_schema.columns"
        f" WHERE table_schema = '{DB}' AND table_name = '{TABLE}'"
    )
    if names == ",".join(COLUMN_NAMES) and server.count(TABLE) == rows:
        print(f"reusing {DB}.{TABLE} ({rows:,} rows)", flush=True)
        return
    print(f"generating {rows:,} rows in {DB}.{TABLE} ...", flush=True)
    start = time.perf_counter()
    server.sql(f"DROP TABLE IF EXISTS {TABLE}; CREATE TABLE {TABLE} ({COLUMNS}) ENGINE=InnoDB")
    step = 1_000_000  # one transaction per million rows
    for lo in range(1, rows + 1, step):
        hi = min(lo + step - 1, rows)
        server.sql(f"INSERT INTO {TABLE} {SELECT_ROWS.format(lo=lo, hi=hi)}")
    server.sql(f"ANALYZE TABLE {TABLE}")
    print(f"  done in {time.perf_counter() - start:.1f} s", flush=True)


def measure(cmd, cwd):
    """Runs cmd; returns (seconds, peak RSS in bytes) of that process and its children alone.

    GNU time reports the peak RSS: a child forked from this Python process would count this
    process's own memory in its ru_maxrss (Linux keeps the pre-exec peak), time's is tiny.
    """
    with tempfile.NamedTemporaryFile() as rss, tempfile.TemporaryFile() as err:
        start = time.perf_counter()
        code = subprocess.call([TIME, "-f", "%M", "-o", rss.name, *cmd], cwd=cwd,
                               stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=err)
        elapsed = time.perf_counter() - start
        if code != 0:
            err.seek(0)
            tail = err.read().decode(errors="replace").strip().splitlines()[-5:]
            raise RuntimeError(f"exit {code}: " + " | ".join(tail))
        kib = int(Path(rss.name).read_text().split()[-1])
    return elapsed, kib * 1024


def parquet_rows(path):
    """Rows in a Parquet file, or in all Parquet files under a folder."""
    import pyarrow.parquet as pq

    files = [path] if path.is_file() else sorted(path.rglob("*.parquet"))
    return sum(pq.ParquetFile(f).metadata.num_rows for f in files)


def shown(path):
    """A path relative to the repository when it is inside it."""
    path = path.absolute()
    return str(path.relative_to(ROOT) if path.is_relative_to(ROOT) else path)


def remove(path):
    if path.is_dir():
        shutil.rmtree(path)
    elif path.exists():
        path.unlink()


def odbc_driver(explicit):
    """The MariaDB ODBC driver library, or None."""
    if explicit:
        return explicit if Path(explicit).exists() else None
    found = glob.glob("/usr/lib/*/odbc/libmaodbc.so") + glob.glob("/usr/lib*/libmaodbc.so")
    return found[0] if found else None


def fastlane_config(work, name, args, partitions, target, checkpoint=False, verify=None):
    """Writes a fastlane pipeline reading fastlane_bench.mixed into `target`, checkpointed and
    verified as asked; returns its path."""
    source = {
        "host": args.host, "port": args.port, "username": args.user, "password": args.password,
        "db": DB, "table": TABLE, "key": "id", "batch_size": args.batch_size, "partitions": partitions,
    }  # fmt: skip
    config = {
        "name": "bench",
        "replication_mode": "FULL_TABLE",
        "source": {"mysql": source},
        "transform": {"add_op_fields": False},  # the same columns as the other tools
        "target": target,
        "resume": "auto" if checkpoint else "never",
        "verify": verify or "off",
    }
    path = work / f"mysql-{name}.json"
    path.write_text(json.dumps(config, indent=2))
    return path


def build_runs(args, server, work):
    """Every run of the benchmark, those that cannot run marked as skipped."""
    py = sys.executable
    query = f"SELECT * FROM {TABLE}"
    runs = []

    def parquet_check(out):
        return lambda: parquet_rows(out)

    def fresh_table(table, create):
        def prepare():
            server.sql(f"DROP TABLE IF EXISTS `{table}`" + (f"; CREATE TABLE `{table}` LIKE {TABLE}" if create else ""))

        return prepare

    # Reading into Parquet.
    runs.append(Run("raw", "raw", "mysql→parquet",
                    server.client("--quick", "-B", "-e", query), note="mariadb client to /dev/null"))
    cx_url = f"mysql://{quote(args.user)}" + (f":{quote(args.password)}" if args.password else "")
    cx_url += f"@{args.host}:{args.port}/{DB}"
    for p in (1, 2):
        out = work / f"mysql-connectorx-p{p}.parquet"
        runs.append(Run(f"connectorx-p{p}", "connectorx", "mysql→parquet",
                        [py, "-c", CONNECTORX_CHILD, cx_url, query, str(out), str(p)],
                        prepare=lambda out=out: remove(out), count=parquet_check(out)))
    fastlane = args.fastlane
    plugin_dir = fastlane.parent
    missing = [p for p in (fastlane, plugin_dir / "libfastlane_plugin_mysql.so") if not p.exists()]
    fl_skip = f"{shown(missing[0])} does not exist" if missing else ""
    file_plugin = plugin_dir / "libfastlane_plugin_file.so"
    for p in (1, 2):
        out = work / f"mysql-fastlane-p{p}"
        cfg = fastlane_config(work, f"fastlane-p{p}", args, p, {"file": {"path": str(out), "format": "parquet"}})
        skip = fl_skip or ("" if file_plugin.exists() else f"{shown(file_plugin)} does not exist")
        runs.append(Run(f"fastlane-p{p}", "fastlane", "mysql→parquet",
                        [str(fastlane), "-q", "--progress=off", "--source=mysql", "--target=file", f"--config={cfg}"],
                        prepare=lambda out=out: remove(out), count=parquet_check(out), skipped=skip))

    # The same loads, checkpointed, then checkpointed and verified.
    for p in (1, 2):
        for label, verify in (("ckpt", None), ("ckpt-verify", "count"), ("ckpt-checksum", "checksum")):
            name = f"fastlane-{label}-p{p}"
            out = work / f"mysql-{name}"
            cfg = fastlane_config(work, name, args, p, {"file": {"path": str(out), "format": "parquet"}},
                                  checkpoint=True, verify=verify)
            skip = fl_skip or ("" if file_plugin.exists() else f"{shown(file_plugin)} does not exist")
            runs.append(Run(name, "checkpoint", "mysql→parquet",
                            [str(fastlane), "-q", "--progress=off", "--source=mysql", "--target=file", f"--config={cfg}"],
                            prepare=lambda out=out: remove(out), count=parquet_check(out), skipped=skip))

    # Copying into another table of the same server.
    runs.append(Run("insert-select", "insert-select", "mysql→mysql",
                    server.client("-e", f"INSERT INTO copy {query}"),
                    prepare=fresh_table("copy", create=True), count=lambda: server.count("copy"),
                    note="server-side; RSS is the client's"))
    table = "copy_fastlane"
    # The default load method (MariaDB's bulk execution on MariaDB), then LOAD DATA LOCAL INFILE.
    for p, method in ((1, None), (2, None), (2, "load_data")):
        target = {"mysql": {"host": args.host, "port": args.port, "username": args.user,
                            "password": args.password, "db": DB, "table": table, "key": "id",
                            "concurrency": args.target_workers}}
        name = f"fastlane-copy-p{p}"
        if method:
            target["mysql"]["load_method"] = method
            name = f"fastlane-copy-{method.replace('_', '-')}-p{p}"
        cfg = fastlane_config(work, name, args, p, target)
        runs.append(Run(name, "fastlane-copy", "mysql→mysql",
                        [str(fastlane), "-q", "--progress=off", "--source=mysql", "--target=mysql", f"--config={cfg}"],
                        prepare=fresh_table(table, create=False), count=lambda: server.count(table),
                        note=f"load_method {method}" if method else "", skipped=fl_skip))
    for p in (1, 2):
        for label, verify in (("ckpt", None), ("ckpt-verify", "count"), ("ckpt-checksum", "checksum")):
            target = {"mysql": {"host": args.host, "port": args.port, "username": args.user,
                                "password": args.password, "db": DB, "table": table, "key": "id",
                                "concurrency": args.target_workers}}
            name = f"fastlane-copy-{label}-p{p}"
            cfg = fastlane_config(work, name, args, p, target, checkpoint=True, verify=verify)
            runs.append(Run(name, "checkpoint", "mysql→mysql",
                            [str(fastlane), "-q", "--progress=off", "--source=mysql", "--target=mysql", f"--config={cfg}"],
                            prepare=fresh_table(table, create=False), count=lambda: server.count(table),
                            skipped=fl_skip))
    driver = odbc_driver(args.odbc_driver)
    odbc_skip = ("" if driver else "MariaDB ODBC driver (libmaodbc.so) not found") or (
        "" if importlib.util.find_spec("arrow_odbc") else "python package arrow-odbc is not installed")
    conn = f"Driver={driver};Server={args.host};Port={args.port};Database={DB};Uid={args.user};Pwd={args.password};"
    runs.append(Run("arrow-odbc", "arrow-odbc", "mysql→mysql",
                    [py, "-c", ARROW_ODBC_CHILD, conn, query, "copy_odbc", str(BATCH)],
                    prepare=fresh_table("copy_odbc", create=True), count=lambda: server.count("copy_odbc"),
                    note="RSS grows with the row count", skipped=odbc_skip))
    if not importlib.util.find_spec("connectorx"):
        for run in runs:
            if run.group == "connectorx":
                run.skipped = "python package connectorx is not installed"
    return runs


def median(values):
    return statistics.median(values) if values else None


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--rows", type=int, default=1_000_000)
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--only", default="", help="comma-separated groups or run names (default: all)")
    ap.add_argument("--batch-size", type=int, default=BATCH, help="fastlane's mysql batch_size (rows)")
    ap.add_argument("--target-workers", type=int, default=2, help="fastlane's mysql target concurrency")
    ap.add_argument("--host", default="127.0.0.1")
    ap.add_argument("--port", type=int, default=3306)
    ap.add_argument("--user", default="root")
    ap.add_argument("--password", default="")
    ap.add_argument("--odbc-driver", default="", help="path of libmaodbc.so (default: searched)")
    ap.add_argument("--buffer-pool-mib", type=int, default=0,
                    help="sets the server's InnoDB buffer pool for the run, restored after (default: as it is)")
    ap.add_argument("--work", type=Path, default=ROOT / "tests/bench/out")
    ap.add_argument("--fastlane", type=Path, default=ROOT / "target/release/fastlane")
    args = ap.parse_args()
    if not Path(TIME).exists():
        sys.exit(f"{TIME} (GNU time, Debian package `time`) is needed to measure peak RSS")
    args.work.mkdir(parents=True, exist_ok=True)
    work = args.work
    server = Server(args)
    pool_before = None
    if args.buffer_pool_mib:
        # MariaDB's default pool (128 MiB) is smaller than the 1M-row table (about 190 MiB): every
        # pass over the table then reads it back from the page cache.
        pool_before = server.sql("SELECT @@innodb_buffer_pool_size")
        server.sql(f"SET GLOBAL innodb_buffer_pool_size = {args.buffer_pool_mib * 2**20}", db=None)
        for _ in range(300):  # the server resizes in the background
            status = server.sql("SHOW STATUS LIKE 'Innodb_buffer_pool_resize_status'", db=None)
            if not status.split("\t")[1:] or "ompleted" in status or status.endswith("\t"):
                break
            time.sleep(0.1)
    try:
        measure_all(args, server, work)
    finally:
        if pool_before is not None:
            server.sql(f"SET GLOBAL innodb_buffer_pool_size = {pool_before}", db=None)


def measure_all(args, server, work):
    """Runs every selected command `--repeat` times and reports them."""
    setup(server, args.rows)

    runs = build_runs(args, server, work)
    only = {s.strip() for s in args.only.split(",") if s.strip()}
    unknown = only - {r.name for r in runs} - {r.group for r in runs}
    if unknown:
        sys.exit(f"--only: unknown {', '.join(sorted(unknown))}")
    runs = [r for r in runs if not only or r.name in only or r.group in only]
    for run in runs:
        if run.skipped:
            print(f"  {run.name:17} skipped: {run.skipped}", flush=True)

    for round_ in range(args.repeat):
        for run in (r for r in runs if not r.skipped):
            try:
                run.prepare()
                secs, rss = measure(run.cmd, work)
                got = run.count() if run.count else args.rows
                if got != args.rows:
                    raise RuntimeError(f"wrong row count: {got:,} instead of {args.rows:,}")
                run.samples.append((secs, rss))
                print(f"  round {round_ + 1} {run.task:14} {run.name:17} {secs:7.2f} s {rss / 2**20:8.0f} MiB", flush=True)
            except (RuntimeError, OSError, ValueError) as e:
                run.failures.append(str(e))
                print(f"  round {round_ + 1} {run.task:14} {run.name:17} FAILED: {e}", flush=True)
    # The copies are only needed for their row counts.
    for table in ("copy", "copy_odbc", "copy_fastlane"):
        server.sql(f"DROP TABLE IF EXISTS `{table}`")

    report(args, server, runs)
    sys.exit(1 if any(r.failures for r in runs) else 0)


def report(args, server, runs):
    """Prints the results and ratios as Markdown tables and writes them to mysql.json."""
    stats = {}
    for r in runs:
        t = median([s for s, _ in r.samples])
        m = median([m for _, m in r.samples])
        stats[r.name] = (args.rows / t if t else None, m / 2**20 if m else None)

    version, pool = server.sql("SELECT @@version, @@innodb_buffer_pool_size").split("\t")
    cpus = os.cpu_count() or 1
    print()
    print(f"{args.rows:,} rows, {cpus} CPUs, MariaDB {version} (buffer pool {int(pool) // 2**20} MiB), "
          f"median of {args.repeat} runs; fastlane batch_size {args.batch_size}, "
          f"{args.target_workers} mysql target worker(s)")
    print("| task | tool | rows/s | peak RSS | note |")
    print("|---|---|---|---|---|")
    results = []
    for r in runs:
        rate, mem = stats[r.name]
        status = "skipped" if r.skipped else "failed" if r.failures else "ok"
        if r.skipped:
            rate_s, mem_s, note = "–", "–", f"skipped: {r.skipped}"
        else:
            rate_s = f"{rate / 1e6:.2f} M" if rate else "–"
            mem_s = f"{mem:.0f} MiB" if mem else "–"
            note = "; ".join(filter(None, [r.note, f"{len(r.failures)} of {args.repeat} failed: {r.failures[0]}" if r.failures else ""]))
        print(f"| {r.task} | {r.name} | {rate_s} | {mem_s} | {note} |")
        results.append({
            "task": r.task, "tool": r.name, "group": r.group, "status": status,
            "rows_per_s": rate, "peak_rss_mib": mem,
            "seconds": [s for s, _ in r.samples], "rss_mib": [m / 2**20 for _, m in r.samples],
            "failures": r.failures, "skipped": r.skipped or None, "note": r.note or None,
        })  # fmt: skip

    # fastlane against each peer: rows/s ratio (above 1: fastlane faster) and RSS ratio.
    pairs = [(f"fastlane-p{p}", f"connectorx-p{p}") for p in (1, 2)]
    pairs += [(f"fastlane-p{p}", "raw") for p in (1, 2)]
    copies = ("fastlane-copy-p1", "fastlane-copy-p2", "fastlane-copy-load-data-p2")
    pairs += [(ours, peer) for peer in ("insert-select", "arrow-odbc") for ours in copies]
    # What checkpoints cost, and verification on top of them.
    for kind in ("", "copy-"):
        for p in (1, 2):
            pairs.append((f"fastlane-{kind}ckpt-p{p}", f"fastlane-{kind}p{p}"))
            pairs.append((f"fastlane-{kind}ckpt-verify-p{p}", f"fastlane-{kind}ckpt-p{p}"))
            pairs.append((f"fastlane-{kind}ckpt-checksum-p{p}", f"fastlane-{kind}ckpt-p{p}"))
    ratios = []
    for ours, peer in pairs:
        if ours in stats and peer in stats and stats[ours][0] and stats[peer][0]:
            speed = stats[ours][0] / stats[peer][0]
            # The INSERT … SELECT client does no work: its RSS is no basis for a ratio.
            mem = None if peer == "insert-select" else stats[ours][1] / stats[peer][1]
            ratios.append({"fastlane": ours, "peer": peer, "rows_per_s": speed, "peak_rss": mem})
    if ratios:
        print()
        print("| fastlane / peer | rows/s | peak RSS |")
        print("|---|---|---|")
        for x in ratios:
            mem = f"{x['peak_rss']:.2f}x" if x["peak_rss"] is not None else "–"
            print(f"| {x['fastlane']} / {x['peer']} | {x['rows_per_s']:.2f}x | {mem} |")

    out = args.work / "mysql.json"
    out.write_text(json.dumps({
        "rows": args.rows, "repeat": args.repeat, "cpus": cpus,
        "server": {"version": version, "innodb_buffer_pool_bytes": int(pool)},
        "results": results, "ratios": ratios,
    }, indent=2, ensure_ascii=False) + "\n")  # fmt: skip
    print(f"\nwritten to {shown(out)}")


if __name__ == "__main__":
    main()
