"""Parquet file → InfluxDB: fastlane's `influxdb` target against two Python peers writing the
same points to the same server: the `influxdb` package's DataFrameClient (what the original
fastlane used) and raw line protocol built with pyarrow and POSTed with requests.

Generates N rows of metrics (a microsecond timestamp, two tags, float, integer, string and
boolean fields) once (kept in tests/bench/out/influxdb/), starts an InfluxDB 1.x server of its
own on a free loopback port, then runs each tool several times, each in its own process and
into a fresh database; checks that every point arrived; reports the median rows/s and the
median peak RSS of each, measured in the same run, and writes them to
tests/bench/out/influxdb.json.

    bash tests/bench/influxdb.sh [--rows 1000000] [--repeat 3] [--only fastlane,dataframe,raw]
"""

import argparse
import json
import os
import shutil
import subprocess
import sys
import time
import urllib.parse
import urllib.request
from pathlib import Path

from benchlib import free_port, measure, record, record_error, report

ROOT = Path(__file__).resolve().parents[2]
OUT = ROOT / "tests" / "bench" / "out" / "influxdb"
BATCH = 5000

DATAFRAME_CHILD = """
import sys, pyarrow.parquet as pq
from influxdb import DataFrameClient
src, port, db, batch = sys.argv[1], int(sys.argv[2]), sys.argv[3], int(sys.argv[4])
client = DataFrameClient(host="127.0.0.1", port=port, database=db)
with pq.ParquetFile(src) as f:
    for i in range(f.num_row_groups):
        df = f.read_row_group(i).to_pandas().set_index("time")
        df.index = df.index.tz_localize("UTC")
        client.write_points(df, "metrics", tag_columns=["host", "region"],
                            field_columns=["cpu", "mem", "status", "ok"],
                            time_precision="u", batch_size=batch, protocol="line")
"""

RAW_CHILD = """
import sys, requests, pyarrow.parquet as pq
src, port, db, batch = sys.argv[1], int(sys.argv[2]), sys.argv[3], int(sys.argv[4])
url = f"http://127.0.0.1:{port}/write"
params = {"db": db, "precision": "u"}
session = requests.Session()

def esc(s):
    return s.replace(",", "\\\\,").replace("=", "\\\\=").replace(" ", "\\\\ ")

def quote(s):
    return '"' + s.replace("\\\\", "\\\\\\\\").replace('"', '\\\\"') + '"'

with pq.ParquetFile(src) as f:
    for i in range(f.num_row_groups):
        t = f.read_row_group(i)
        cols = {n: t.column(n).to_pylist() for n in ("host", "region", "cpu", "mem", "status", "ok")}
        times = t.column("time").cast("int64").to_pylist()
        lines = []
        for r in range(t.num_rows):
            fields = []
            if cols["cpu"][r] is not None:
                fields.append(f"cpu={cols['cpu'][r]!r}")
            fields.append(f"mem={cols['mem'][r]}i")
            if cols["status"][r] is not None:
                fields.append("status=" + quote(cols["status"][r]))
            fields.append("ok=" + ("true" if cols["ok"][r] else "false"))
            lines.append(f"metrics,host={esc(cols['host'][r])},region={esc(cols['region'][r])} "
                         + ",".join(fields) + f" {times[r]}")
            if len(lines) == batch:
                session.post(url, params=params, data="\\n".join(lines).encode()).raise_for_status()
                lines = []
        if lines:
            session.post(url, params=params, data="\\n".join(lines).encode()).raise_for_status()
"""


def generate(rows):
    import pyarrow as pa
    import pyarrow.compute as pc
    import pyarrow.parquet as pq

    path = OUT / "metrics.parquet"
    stamp = OUT / "rows.txt"
    if path.exists() and stamp.exists() and stamp.read_text() == str(rows):
        return path
    print(f"generating {rows:,} rows ...", flush=True)
    writer = None
    step = 100_000
    regions = ["eu-west", "eu-central", "us-east", "us-west", "ap-south"]
    for start in range(0, rows, step):
        n = min(step, rows - start)
        i = pa.array(range(start, start + n), pa.int64())
        table = pa.table({
            "time": pc.cast(pc.add(pc.multiply(i, 1_000), 1_700_000_000_000_000), pa.timestamp("us")),
            "host": pa.array([f"host-{k % 200:03d}" for k in range(start, start + n)]),
            "region": pa.array([regions[k % 5] for k in range(start, start + n)]),
            "cpu": pa.array([None if k % 17 == 0 else (k % 10_000) / 100.0
                             for k in range(start, start + n)], pa.float64()),
            "mem": pc.bit_wise_and(pc.multiply(i, 7919), 0xFFFFFF),
            "status": pa.array([None if k % 5 == 0 else f"ok, load \"{k % 7}\""
                                for k in range(start, start + n)]),
            "ok": pc.equal(pc.bit_wise_and(i, 3), 0),
        })
        if writer is None:
            writer = pq.ParquetWriter(path, table.schema, compression="snappy")
        writer.write_table(table, row_group_size=65_536)
    writer.close()
    stamp.write_text(str(rows))
    return path


def start_influxd(state):
    port = free_port()
    shutil.rmtree(state, ignore_errors=True)
    state.mkdir(parents=True)
    (state / "influxdb.conf").write_text(f"""reporting-disabled = true
bind-address = "127.0.0.1:{free_port()}"
[meta]
  dir = "{state}/meta"
[data]
  dir = "{state}/data"
  wal-dir = "{state}/wal"
  query-log-enabled = false
[http]
  bind-address = "127.0.0.1:{port}"
  log-enabled = false
  max-body-size = 0
[monitor]
  store-enabled = false
""")
    log = open(state / "influxd.log", "w")
    proc = subprocess.Popen(["influxd", "-config", str(state / "influxdb.conf")],
                            stdout=log, stderr=subprocess.STDOUT)
    for _ in range(300):
        try:
            urllib.request.urlopen(f"http://127.0.0.1:{port}/ping", timeout=1)
            return proc, port
        except OSError:
            time.sleep(0.1)
    proc.kill()
    sys.exit("influxd did not start; see " + str(state / "influxd.log"))


def influxql(port, q, db=None):
    params = {"q": q}
    if db:
        params["db"] = db
    data = urllib.parse.urlencode(params).encode()
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/query", data=data, timeout=600) as r:
        return json.loads(r.read())["results"][0]


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--only", default="fastlane,dataframe,raw")
    args = parser.parse_args()
    only = set(args.only.split(","))
    OUT.mkdir(parents=True, exist_ok=True)
    src = generate(args.rows)
    server, port = start_influxd(OUT / "server")
    try:
        fastlane = ROOT / "target" / "release" / "fastlane"
        config = OUT / "pipeline.json"
        config.write_text(json.dumps({
            "replication_mode": "FULL_TABLE",
            "source": {"file": {"path": str(src)}},
            "transform": {"add_op_fields": False},
            "target": {"influxdb": {"url": f"http://127.0.0.1:{port}", "database": "fastlane",
                                    "measurement": "metrics", "tag_columns": ["host", "region"],
                                    "time_column": "time", "precision": "us",
                                    "batch_size": BATCH}},
        }))
        env = dict(os.environ, FASTLANE_STORE=str(OUT / "monitor.db"))
        runs = {
            "fastlane": ("fastlane", [str(fastlane), "-q", "--source=file",
                                      "--target=influxdb", f"--config={config}"]),
            "dataframe": ("dataframe", [sys.executable, "-c", DATAFRAME_CHILD, str(src),
                                        str(port), "dataframe", str(BATCH)]),
            "raw": ("raw", [sys.executable, "-c", RAW_CHILD, str(src), str(port), "raw",
                            str(BATCH)]),
        }
        results = {}
        for _ in range(args.repeat):
            for name, (db, cmd) in runs.items():
                if name not in only:
                    continue
                influxql(port, f'DROP DATABASE "{db}"')
                influxql(port, f'CREATE DATABASE "{db}"')
                try:
                    seconds, rss = measure(cmd, OUT, env)
                except RuntimeError as e:
                    record_error(results, name, e)
                    continue
                count = influxql(port, "SELECT COUNT(mem) FROM metrics", db)
                got = count["series"][0]["values"][0][1] if "series" in count else 0
                if got != args.rows:
                    sys.exit(f"{name} wrote {got} points, not {args.rows}")
                record(results, name, seconds, rss)
                influxql(port, f'DROP DATABASE "{db}"')
    finally:
        server.terminate()
        server.wait()
    report(results, args.rows, args.repeat,
           f"{args.rows:,} rows (points), median of {args.repeat}, InfluxDB 1.x on loopback, "
           f"{BATCH} points per request",
           ROOT / "tests" / "bench" / "out" / "influxdb.json")


if __name__ == "__main__":
    main()
