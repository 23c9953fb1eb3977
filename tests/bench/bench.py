"""CSV→Parquet and Parquet→Parquet throughput and peak memory: fastlane against DuckDB and polars.

Generates N rows of mixed types (int, text, float, bool, date, timestamp) with DuckDB, then runs
each tool on the same files, several times, each in its own process; reports the median rows/s
and the median peak RSS of each, measured in the same run.

    bash tests/bench/run.sh [--rows 10000000] [--repeat 3]
"""

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def measure(cmd, cwd):
    """Runs cmd; returns (seconds, peak RSS in bytes) of that process alone."""
    start = time.perf_counter()
    proc = subprocess.Popen(cmd, cwd=cwd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    _, status, usage = os.wait4(proc.pid, 0)
    elapsed = time.perf_counter() - start
    stderr = proc.stderr.read().decode(errors="replace")
    proc.returncode = os.waitstatus_to_exitcode(status)
    if proc.returncode != 0:
        sys.exit(f"{' '.join(map(str, cmd))} failed ({proc.returncode}):\n{stderr}")
    return elapsed, usage.ru_maxrss * 1024


def generate(work, rows):
    import duckdb

    csv, parquet = work / "input.csv", work / "input.parquet"
    if csv.exists() and parquet.exists() and (work / "rows.txt").read_text() == str(rows):
        return csv, parquet
    print(f"generating {rows:,} rows ...", flush=True)
    select = f"""
        SELECT i AS id,
               'customer ' || (i % 100000) AS customer,
               ['NL', 'DE', 'FR', 'US', 'JP'][(i % 5) + 1] AS country,
               round((i % 100000) / 7.0, 2) AS amount,
               (i % 13)::INTEGER AS quantity,
               i % 3 = 0 AS flag,
               DATE '2020-01-01' + (i % 2000)::INTEGER AS day,
               TIMESTAMP '2020-01-01' + to_seconds(i) AS moment
        FROM range({rows}) t(i)"""
    con = duckdb.connect()
    con.sql(f"COPY ({select}) TO '{csv}' (HEADER)")
    con.sql(f"COPY ({select}) TO '{parquet}' (FORMAT PARQUET, ROW_GROUP_SIZE 122880)")
    (work / "rows.txt").write_text(str(rows))
    return csv, parquet


def fastlane_config(work, source, name, workers):
    out = work / f"fastlane-{name}"
    config = {
        "replication_mode": "FULL_TABLE",
        "max_buffered_batches": 16,
        "source": {"file": {"path": str(source), "batch_size": 65536}},
        "transform": {"add_op_fields": False},
        "target": {"file": {"path": str(out), "format": "parquet", "concurrency": workers}},
    }
    path = work / f"fastlane-{name}.json"
    path.write_text(json.dumps(config))
    return path, out


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--rows", type=int, default=10_000_000)
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--work", type=Path, default=ROOT / "tests/bench/out")
    ap.add_argument("--fastlane", type=Path, default=ROOT / "target/release/fastlane")
    args = ap.parse_args()
    if not args.fastlane.exists():
        sys.exit(f"{args.fastlane} is missing: run `cargo build --release` first")
    args.work.mkdir(parents=True, exist_ok=True)
    work = args.work
    csv, parquet = generate(work, args.rows)
    cpus = os.cpu_count() or 1
    py = sys.executable

    runs = []
    for task, source in [("csv→parquet", csv), ("parquet→parquet", parquet)]:
        reader = "read_csv" if source == csv else "read_parquet"
        scan = "scan_csv" if source == csv else "scan_parquet"
        cfg, out = fastlane_config(work, source, task.split("→")[0], max(1, cpus))
        runs += [
            (task, "fastlane", [str(args.fastlane), "-q", "--progress=off", f"--config={cfg}"], out),
            (task, "duckdb", [py, "-c", f"import duckdb; duckdb.sql(\"COPY (SELECT * FROM {reader}('{source}')) TO '{work}/duckdb.parquet' (FORMAT PARQUET)\")"], work / "duckdb.parquet"),
            (task, "polars", [py, "-c", f"import polars as pl; pl.{scan}('{source}').sink_parquet('{work}/polars.parquet')"], work / "polars.parquet"),
        ]

    results = {}
    for round_ in range(args.repeat):
        for task, tool, cmd, out in runs:
            if out.is_dir():
                shutil.rmtree(out)
            elif out.exists():
                out.unlink()
            secs, rss = measure(cmd, work)
            results.setdefault((task, tool), []).append((secs, rss))
            print(f"  round {round_ + 1} {task:16} {tool:9} {secs:7.2f} s {rss / 2**20:8.0f} MiB", flush=True)

    print()
    print(f"{args.rows:,} rows, {cpus} CPUs, median of {args.repeat} runs")
    print(f"| task | tool | rows/s | peak RSS | time vs DuckDB | memory vs DuckDB |")
    print(f"|---|---|---|---|---|---|")
    for task in ["csv→parquet", "parquet→parquet"]:
        base_t = statistics.median(s for s, _ in results[(task, "duckdb")])
        base_m = statistics.median(m for _, m in results[(task, "duckdb")])
        for tool in ["fastlane", "duckdb", "polars"]:
            t = statistics.median(s for s, _ in results[(task, tool)])
            m = statistics.median(m for _, m in results[(task, tool)])
            print(f"| {task} | {tool} | {args.rows / t / 1e6:.2f} M | {m / 2**20:.0f} MiB | {t / base_t:.2f}x | {m / base_m:.2f}x |")


if __name__ == "__main__":
    main()
