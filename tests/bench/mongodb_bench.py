"""MongoDB collection → Parquet: fastlane's `mongodb` source against the Python peer (pymongo
reading the same collection in `_id` order, 10,000 documents per batch, each batch turned into a
pyarrow table with `Table.from_pylist` and written with `pyarrow.parquet`), both reading from one
BriskDB MongoDB wire-protocol server on loopback.

Inserts N documents of mixed types (int, text, double, decimal, bool, date, an array of text and
an embedded document) once into a server of its own whose data is kept on tmpfs
(/dev/shm/fastlane-bench-mongodb) for later runs, then runs each tool several times, each in its
own process; checks the row count of each output; reports the median rows/s and the median peak
RSS of each, measured in the same run, and writes them to tests/bench/out/mongodb.json.

    bash tests/bench/mongodb.sh [--rows 1000000] [--repeat 3] [--only fastlane,pymongo]
"""

import argparse
import datetime
import json
import os
import subprocess
import sys
import time
from decimal import Decimal
from pathlib import Path

from benchlib import free_port, report, run_parquet_tools

ROOT = Path(__file__).resolve().parents[2]
OUT = ROOT / "tests" / "bench" / "out" / "mongodb"
DATA = Path("/dev/shm/fastlane-bench-mongodb")
BATCH = 10_000

SERVER = """
import signal, sys, threading, briskdb
stop = threading.Event()
signal.signal(signal.SIGTERM, lambda *a: stop.set())
with briskdb.open(sys.argv[1], shards=2, documents=True) as db:
    with db.serve(mongo=sys.argv[2], admin=None) as srv:
        print("ready", flush=True)
        stop.wait()
"""

PYMONGO_CHILD = """
import sys, pyarrow as pa, pyarrow.parquet as pq, pymongo
uri, out, batch = sys.argv[1], sys.argv[2], int(sys.argv[3])
coll = pymongo.MongoClient(uri)["bench"]["docs"]
writer = None
rows = []
def flush():
    global writer
    table = pa.Table.from_pylist(rows)
    # One decimal type for every batch (each batch alone infers the precision it needs).
    i = table.schema.get_field_index("amount")
    table = table.set_column(i, "amount", table.column(i).cast(pa.decimal128(38, 2)))
    if writer is None:
        writer = pq.ParquetWriter(out, table.schema, compression="snappy")
    writer.write_table(table.cast(writer.schema))
for doc in coll.find({}).sort("_id", 1).batch_size(batch):
    doc["_id"] = str(doc["_id"])
    doc["amount"] = doc["amount"].to_decimal()
    rows.append(doc)
    if len(rows) == batch:
        flush()
        rows = []
if rows:
    flush()
writer.close()
"""


def start_server():
    port = free_port()
    DATA.mkdir(parents=True, exist_ok=True)
    proc = subprocess.Popen([sys.executable, "-c", SERVER, str(DATA / "db"), f"127.0.0.1:{port}"],
                            stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
    if proc.stdout.readline().strip() != "ready":
        proc.kill()
        sys.exit("briskdb did not start")
    return proc, f"mongodb://127.0.0.1:{port}/?directConnection=true"


def generate(uri, rows):
    import pymongo
    from bson.decimal128 import Decimal128

    stamp = DATA / "rows.txt"
    coll = pymongo.MongoClient(uri)["bench"]["docs"]
    if stamp.exists() and stamp.read_text() == str(rows):
        return
    print(f"inserting {rows:,} documents (once; kept in {DATA}) ...", flush=True)
    coll.drop()
    base = datetime.datetime(2024, 1, 1, tzinfo=datetime.timezone.utc)
    started = time.perf_counter()
    for start in range(0, rows, BATCH):
        docs = []
        for i in range(start, min(rows, start + BATCH)):
            docs.append({
                "_id": i,
                "customer": f"customer {i % 100000} {'x' * (i % 37)}",
                "qty": i % 1000,
                "price": (i % 100000) / 7.0,
                "amount": Decimal128(Decimal(i % 1000000) / 100),
                "paid": i % 3 == 0,
                "created": base + datetime.timedelta(seconds=i),
                "tags": [f"t{i % 5}", f"g{i % 11}"][: 1 + i % 2],
                "address": {"city": f"city {i % 500}", "zip": f"{i % 10000:04d}"},
            })
        coll.insert_many(docs, ordered=True)
    stamp.write_text(str(rows))
    print(f"inserted in {time.perf_counter() - started:.0f} s", flush=True)


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--only", default="fastlane,pymongo")
    args = parser.parse_args()
    only = set(args.only.split(","))
    OUT.mkdir(parents=True, exist_ok=True)
    server, uri = start_server()
    try:
        generate(uri, args.rows)
        fastlane = ROOT / "target" / "release" / "fastlane"
        config = OUT / "pipeline.json"
        config.write_text(json.dumps({
            "replication_mode": "FULL_TABLE",
            "source": {"mongodb": {"uri": uri, "database": "bench", "collection": "docs",
                                   "batch_size": BATCH}},
            "transform": {"add_op_fields": False},
            "target": {"file": {"path": str(OUT / "fastlane"), "format": "parquet"}},
        }))
        env = dict(os.environ, FASTLANE_STORE=str(OUT / "monitor.db"))
        runs = {
            "fastlane": (OUT / "fastlane", [str(fastlane), "-q", "--source=mongodb",
                                            "--target=file", f"--config={config}"]),
            "pymongo": (OUT / "pymongo.parquet", [sys.executable, "-c", PYMONGO_CHILD, uri,
                                                  str(OUT / "pymongo.parquet"), str(BATCH)]),
        }
        results = run_parquet_tools(runs, only, args.repeat, args.rows, OUT, env)
    finally:
        server.terminate()
        server.wait()
    report(results, args.rows, args.repeat,
           f"{args.rows:,} documents, median of {args.repeat}, BriskDB on loopback, "
           f"{BATCH} documents per batch",
           ROOT / "tests" / "bench" / "out" / "mongodb.json")


if __name__ == "__main__":
    main()
