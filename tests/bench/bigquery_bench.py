"""BigQuery table → Parquet: fastlane's `bigquery` source (Storage Read API, and REST paging)
against the Python peer, google-cloud-bigquery's `list_rows(…).to_arrow()` with a
`BigQueryReadClient` (the Storage Read API in Arrow format; and without it, over REST), written
with `pyarrow.parquet`. All read one table from one bqemulator BigQuery emulator on loopback.

Creates a table of N rows (INT64, STRING, INT64, FLOAT64, NUMERIC, BOOL, TIMESTAMP, DATE) in an
emulator of its own, runs each tool several times, each in its own process; checks the row count
of each output; reports the median rows/s and the median peak RSS of each, measured in the same
run, and writes them to tests/bench/out/bigquery.json.

    bash tests/bench/bigquery.sh [--rows 1000000] [--repeat 3] [--only fastlane,python,...]
"""

import argparse
import json
import os
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

from benchlib import free_port, report, run_parquet_tools

ROOT = Path(__file__).resolve().parents[2]
OUT = ROOT / "tests" / "bench" / "out" / "bigquery"
PROJECT = "test-project"

PYTHON_CHILD = """
import sys, grpc, pyarrow.parquet as pq
from google.api_core.client_options import ClientOptions
from google.auth.credentials import AnonymousCredentials
from google.cloud import bigquery
from google.cloud.bigquery_storage_v1 import BigQueryReadClient
from google.cloud.bigquery_storage_v1.services.big_query_read.transports import BigQueryReadGrpcTransport
rest, grpc_addr, out, storage = sys.argv[1], sys.argv[2], sys.argv[3], sys.argv[4] == "1"
client = bigquery.Client(project="test-project", credentials=AnonymousCredentials(),
                         client_options=ClientOptions(api_endpoint=rest))
rows = client.list_rows("test-project.bench.rows", page_size=20000)
if storage:
    read = BigQueryReadClient(transport=BigQueryReadGrpcTransport(
        channel=grpc.insecure_channel(grpc_addr, options=[("grpc.max_receive_message_length", -1)])))
    table = rows.to_arrow(bqstorage_client=read)
else:
    table = rows.to_arrow(create_bqstorage_client=False)
pq.write_table(table, out, compression="snappy")
"""

TABLE = """CREATE TABLE bench.rows AS SELECT x AS id,
  CONCAT('customer ', CAST(MOD(x, 100000) AS STRING)) AS customer, MOD(x, 1000) AS qty,
  x / 7 AS price, CAST(CAST(MOD(x, 1000000) AS NUMERIC) / 100 AS NUMERIC) AS amount,
  MOD(x, 3) = 0 AS paid, TIMESTAMP_ADD(TIMESTAMP '2024-01-01 00:00:00+00', INTERVAL x SECOND) AS created,
  DATE_ADD(DATE '2024-01-01', INTERVAL MOD(x, 365) DAY) AS day
FROM UNNEST(GENERATE_ARRAY(1, {rows})) AS x"""


def post(rest, path, body):
    request = urllib.request.Request(f"{rest}/bigquery/v2/projects/{PROJECT}{path}",
                                     data=json.dumps(body).encode(), method="POST",
                                     headers={"Content-Type": "application/json"})
    with urllib.request.urlopen(request) as response:
        answer = json.loads(response.read())
    if answer.get("errors"):
        sys.exit(f"{path}: {answer['errors']}")
    return answer


def start_emulator():
    rest_port, grpc_port = free_port(), free_port()
    env = dict(os.environ, BQEMU_ENABLE_FORMAT_EXTENSIONS="false")
    log = open(OUT / "emulator.log", "w")
    proc = subprocess.Popen(
        [sys.executable, str(ROOT / "tests" / "bigquery" / "bqemu_server.py"), "start",
         "--rest-host", "127.0.0.1", "--rest-port", str(rest_port), "--grpc-host", "127.0.0.1",
         "--grpc-port", str(grpc_port), "--project", PROJECT, "--log-level", "warning"],
        stdout=log, stderr=subprocess.STDOUT, env=env)
    rest = f"http://127.0.0.1:{rest_port}"
    for _ in range(600):
        try:
            urllib.request.urlopen(f"{rest}/bigquery/v2/projects/{PROJECT}/datasets").read()
            return proc, rest, f"127.0.0.1:{grpc_port}"
        except OSError:
            if proc.poll() is not None:
                break
            time.sleep(0.1)
    proc.kill()
    sys.exit(f"bqemulator did not start; see {OUT / 'emulator.log'}")


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--only", default="fastlane,fl-rest,python,py-rest")
    args = parser.parse_args()
    only = set(args.only.split(","))
    OUT.mkdir(parents=True, exist_ok=True)
    server, rest, grpc_addr = start_emulator()
    try:
        post(rest, "/datasets", {"datasetReference": {"projectId": PROJECT, "datasetId": "bench"}})
        started = time.perf_counter()
        post(rest, "/queries", {"query": TABLE.format(rows=args.rows), "useLegacySql": False})
        print(f"created {args.rows:,} rows in {time.perf_counter() - started:.1f} s", flush=True)
        fastlane = ROOT / "target" / "release" / "fastlane"
        env = dict(os.environ, FASTLANE_STORE=str(OUT / "monitor.db"))
        runs = {}
        for name, api in (("fastlane", "storage"), ("fl-rest", "rest")):
            config = OUT / f"{name}.json"
            config.write_text(json.dumps({
                "replication_mode": "FULL_TABLE",
                "source": {"bigquery": {"gcp_project": PROJECT, "dataset_id": "bench",
                                        "table_id": "rows", "auth": "none", "endpoint": rest,
                                        "storage_endpoint": f"http://{grpc_addr}",
                                        "read_api": api,
                                        # The emulator serves one REST request at a time
                                        # correctly; streams it serves from memory.
                                        **({"max_streams": 1} if api == "rest" else {})}},
                "transform": {"add_op_fields": False},
                "target": {"file": {"path": str(OUT / name), "format": "parquet"}},
            }))
            runs[name] = (OUT / name, [str(fastlane), "-q", "--source=bigquery", "--target=file",
                                       f"--config={config}"])
        for name, storage in (("python", "1"), ("py-rest", "0")):
            out = OUT / f"{name}.parquet"
            runs[name] = (out, [sys.executable, "-c", PYTHON_CHILD, rest, grpc_addr, str(out),
                                storage])
        results = run_parquet_tools(runs, only, args.repeat, args.rows, OUT, env)
    finally:
        server.terminate()
        server.wait()
    report(results, args.rows, args.repeat,
           f"{args.rows:,} rows, median of {args.repeat}, bqemulator on loopback "
           "(fastlane/python: Storage Read API; fl-rest/py-rest: REST paging)",
           ROOT / "tests" / "bench" / "out" / "bigquery.json")


if __name__ == "__main__":
    main()
