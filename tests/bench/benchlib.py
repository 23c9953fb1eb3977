"""What the service benchmarks share (``s3_bench.py``, ``influxdb_bench.py``,
``mongodb_bench.py``, ``bigquery_bench.py``): timing one process with its peak RSS (GNU time), a free loopback port,
collecting each tool's runs, and the table and JSON report of medians."""

import json
import shutil
import socket
import sys
import statistics
import subprocess
import tempfile
import time
from pathlib import Path

TIME = "/usr/bin/time"  # GNU time


def measure(cmd, cwd, env=None):
    """Runs cmd; returns (seconds, peak RSS in bytes) of that process alone (GNU time)."""
    with tempfile.NamedTemporaryFile() as rss, tempfile.TemporaryFile() as err:
        start = time.perf_counter()
        code = subprocess.call([TIME, "-f", "%M", "-o", rss.name, *cmd], cwd=cwd, env=env,
                               stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=err)
        elapsed = time.perf_counter() - start
        if code != 0:
            err.seek(0)
            tail = err.read().decode(errors="replace").strip().splitlines()[-5:]
            raise RuntimeError(f"exit {code}: " + " | ".join(tail))
        kib = int(Path(rss.name).read_text().split()[-1])
    return elapsed, kib * 1024


def free_port():
    """A TCP port on 127.0.0.1 that nothing listens on."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def record_error(results, name, error):
    """Keeps the first error of a tool; its later runs are not counted."""
    results.setdefault(name, {"error": str(error)})


def record(results, name, seconds, rss):
    """Adds one run of a tool (unless it already failed)."""
    r = results.setdefault(name, {"seconds": [], "rss": []})
    if "seconds" in r:
        r["seconds"].append(seconds)
        r["rss"].append(rss)


def report(results, rows, repeat, heading, path, extra=None, failed="failed"):
    """Prints the median seconds, rows/s and peak RSS of each tool under `heading`, and writes
    them (with `extra`) as JSON to `path`."""
    print(f"\n{heading}")
    print(f"{'tool':<10} {'seconds':>8} {'rows/s':>12} {'peak RSS':>10}")
    out = {"rows": rows, "repeat": repeat, **(extra or {}), "tools": {}}
    for name, r in results.items():
        if "error" in r:
            print(f"{name:<10} {failed}: {r['error'][:150]}")
            out["tools"][name] = r
            continue
        secs = statistics.median(r["seconds"])
        rss = statistics.median(r["rss"])
        print(f"{name:<10} {secs:8.2f} {rows / secs:12,.0f} {rss / 2**20:8.0f} MiB")
        out["tools"][name] = {"seconds": secs, "rows_per_s": rows / secs,
                              "peak_rss": rss, "all_seconds": r["seconds"]}
    Path(path).write_text(json.dumps(out, indent=2))


def parquet_rows(path):
    """Rows in a Parquet file, or in all Parquet files under a folder."""
    import pyarrow.parquet as pq

    files = [path] if path.is_file() else sorted(path.rglob("*.parquet"))
    return sum(pq.ParquetFile(f).metadata.num_rows for f in files)


def run_parquet_tools(runs, only, repeat, rows, cwd, env):
    """Runs each tool of `runs` ({name: (output path, command)}) named in `only`, `repeat`
    times in turn, each from an empty output; exits unless each wrote `rows` Parquet rows.
    Returns the results for `report`."""
    results = {}
    for _ in range(repeat):
        for name, (out, cmd) in runs.items():
            if name not in only:
                continue
            shutil.rmtree(out, ignore_errors=True) if out.is_dir() else out.unlink(missing_ok=True)
            try:
                seconds, rss = measure(cmd, cwd, env)
            except RuntimeError as e:
                record_error(results, name, e)
                continue
            got = parquet_rows(out)
            if got != rows:
                sys.exit(f"{name} wrote {got} rows, not {rows}")
            record(results, name, seconds, rss)
    return results
