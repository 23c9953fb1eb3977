"""Parquet file → S3 Parquet: fastlane's `s3` target against pyarrow's S3 filesystem writing the
same Parquet, DuckDB's httpfs (when its extension can be loaded here), and boto3 uploading the
finished file (the transfer limit), all against one moto server on loopback.

Generates N rows of mixed types once (kept in tests/bench/out/s3/), then runs each tool several
times, each in its own process; reports the median rows/s and the median peak RSS of each,
measured in the same run, and writes them to tests/bench/out/s3.json.

    bash tests/bench/s3.sh [--rows 1000000] [--repeat 3] [--only fastlane,pyarrow,boto3,duckdb]
"""

import argparse
import json
import os
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

from benchlib import free_port, measure, record, record_error, report

ROOT = Path(__file__).resolve().parents[2]
OUT = ROOT / "tests" / "bench" / "out" / "s3"
BUCKET = "bench"

PYARROW_CHILD = """
import sys, pyarrow.parquet as pq, pyarrow.fs as fs
src, endpoint, key = sys.argv[1:4]
s3 = fs.S3FileSystem(endpoint_override=endpoint, scheme="http", access_key="test",
                     secret_key="test", region="us-east-1")
with pq.ParquetFile(src) as f, pq.ParquetWriter(key, f.schema_arrow, filesystem=s3,
                                                 compression="snappy") as w:
    for i in range(f.num_row_groups):
        w.write_table(f.read_row_group(i))
"""

BOTO3_CHILD = """
import sys, boto3
src, endpoint, key = sys.argv[1:4]
s3 = boto3.client("s3", endpoint_url=endpoint, aws_access_key_id="test",
                  aws_secret_access_key="test", region_name="us-east-1")
s3.upload_file(src, "bench", key)
"""

DUCKDB_CHILD = """
import sys, duckdb
src, endpoint, key = sys.argv[1:4]
con = duckdb.connect()
con.sql("LOAD httpfs")
host = endpoint.split("//", 1)[1]
con.sql(f"SET s3_endpoint='{host}'; SET s3_use_ssl=false; SET s3_url_style='path'; "
        "SET s3_access_key_id='test'; SET s3_secret_access_key='test'; SET s3_region='us-east-1'")
con.sql(f"COPY (SELECT * FROM read_parquet('{src}')) TO 's3://{key}' (FORMAT PARQUET)")
"""


def generate(rows):
    import pyarrow as pa
    import pyarrow.compute as pc
    import pyarrow.parquet as pq

    path = OUT / "mixed.parquet"
    stamp = OUT / "rows.txt"
    if path.exists() and stamp.exists() and stamp.read_text() == str(rows):
        return path
    print(f"generating {rows:,} rows ...", flush=True)
    writer = None
    step = 100_000
    for start in range(0, rows, step):
        n = min(step, rows - start)
        i = pa.array(range(start, start + n), pa.int64())
        table = pa.table({
            "id": i,
            "qty": pc.cast(pc.bit_wise_and(i, 1023), pa.int32()),
            "amount": pc.divide(pc.cast(pc.multiply(i, 37), pa.float64()), 100.0),
            "name": pa.array([f"customer {k % 100000} {'x' * (k % 37)}" for k in range(start, start + n)]),
            "note": pa.array([None if k % 10 < 3 else f"note #{k}: " + "lorem ipsum " * (k % 9)
                              for k in range(start, start + n)]),
            "created": pc.cast(pc.add(pc.multiply(i, 1_234_567), 1_577_836_800_000_000),
                               pa.timestamp("us")),
            "day": pc.cast(pc.cast(pc.add(pc.bit_wise_and(i, 8191), 10957), pa.int32()), pa.date32()),
            "flag": pc.equal(pc.bit_wise_and(i, 1), 0),
        })
        if writer is None:
            writer = pq.ParquetWriter(path, table.schema, compression="snappy")
        writer.write_table(table, row_group_size=122_880)
    writer.close()
    stamp.write_text(str(rows))
    return path


def start_moto(moto):
    port = free_port()
    proc = subprocess.Popen([moto, "-H", "127.0.0.1", "-p", str(port)],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    endpoint = f"http://127.0.0.1:{port}"
    for _ in range(600):
        try:
            urllib.request.urlopen(f"{endpoint}/moto-api/", timeout=1)
            return proc, endpoint
        except OSError:
            time.sleep(0.1)
    proc.kill()
    sys.exit("moto did not start")


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--only", default="fastlane,pyarrow,boto3,duckdb")
    cache = Path(os.environ.get("FASTLANE_TEST_CACHE") or Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "fastlane-tests")
    parser.add_argument("--moto", default=str(cache / "services-venv/bin/moto_server"))
    args = parser.parse_args()
    only = set(args.only.split(","))
    OUT.mkdir(parents=True, exist_ok=True)
    src = generate(args.rows)
    size = src.stat().st_size
    moto, endpoint = start_moto(args.moto)
    try:
        import boto3

        s3 = boto3.client("s3", endpoint_url=endpoint, aws_access_key_id="test",
                          aws_secret_access_key="test", region_name="us-east-1")
        s3.create_bucket(Bucket=BUCKET)
        fastlane = ROOT / "target" / "release" / "fastlane"
        config = OUT / "pipeline.json"
        config.write_text(json.dumps({
            "replication_mode": "FULL_TABLE",
            "source": {"file": {"path": str(src)}},
            "target": {"s3": {"bucket": BUCKET, "table": "fastlane", "endpoint_url": endpoint,
                              "access_key_id": "test", "secret_access_key": "test",
                              "region": "us-east-1"}},
        }))
        env = dict(os.environ, FASTLANE_STORE=str(OUT / "monitor.db"))
        runs = {
            "fastlane": [str(fastlane), "-q", "--source=file", "--target=s3",
                         f"--config={config}"],
            "pyarrow": [sys.executable, "-c", PYARROW_CHILD, str(src), endpoint,
                        f"{BUCKET}/pyarrow/mixed.parquet"],
            "duckdb": [sys.executable, "-c", DUCKDB_CHILD, str(src), endpoint,
                       f"{BUCKET}/duckdb/mixed.parquet"],
            "boto3": [sys.executable, "-c", BOTO3_CHILD, str(src), endpoint, "boto3/mixed.parquet"],
        }
        results = {}
        for _ in range(args.repeat):
            for name, cmd in runs.items():
                if name not in only:
                    continue
                try:
                    seconds, rss = measure(cmd, OUT, env)
                except RuntimeError as e:
                    record_error(results, name, e)
                    continue
                record(results, name, seconds, rss)
                if name == "fastlane":
                    # The run must have published every row.
                    listed = s3.list_objects_v2(Bucket=BUCKET, Prefix="fastlane/_fastlane/manifests/")
                    key = listed["Contents"][-1]["Key"]
                    manifest = json.loads(s3.get_object(Bucket=BUCKET, Key=key)["Body"].read())
                    if manifest["rows"] != args.rows:
                        sys.exit(f"fastlane published {manifest['rows']} rows, not {args.rows}")
                # moto keeps every object in memory: empty the bucket between runs.
                for page in s3.get_paginator("list_objects_v2").paginate(Bucket=BUCKET):
                    for o in page.get("Contents", []):
                        s3.delete_object(Bucket=BUCKET, Key=o["Key"])
    finally:
        moto.kill()
        moto.wait()
    report(results, args.rows, args.repeat,
           f"{args.rows:,} rows, source Parquet {size / 2**20:.1f} MiB, "
           f"median of {args.repeat}, moto on loopback",
           ROOT / "tests" / "bench" / "out" / "s3.json", extra={"source_bytes": size}, failed="skipped")


if __name__ == "__main__":
    main()
