"""Python components in the fastlane engine against the original fastlane's approach.

Runs each case in its own process (so peak RSS is the case's own) and prints rows/s and peak
RSS, median of --repeat runs:

- source:    a Python Source returning 1M rows as lists of dicts (10k per call) → Parquet
             (file plugin), against list of dicts → pandas.DataFrame → to_parquet per batch.
- transform: the same rows through a pandas Transform (two derived columns and a filter)
             → Parquet, against the same pandas code on DataFrame(records) → to_parquet.

The batches are built once, before timing, in both cases, so the figures measure what each
approach does with lists of dicts, not how fast Python makes them; modules are imported
before timing too.

    python tests/bench/python_bench.py --rows 1000000 --repeat 3
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import time

BATCH = 10_000


def make_batch(start: int) -> list[dict]:
    import datetime as dt

    epoch = dt.datetime(2024, 1, 1)
    return [
        {
            "id": start + i,
            "customer": f"customer-{(start + i) % 997}",
            "amount": (i % 1000) * 0.25,
            "quantity": i % 7,
            "paid": i % 3 == 0,
            "placed": epoch + dt.timedelta(seconds=i),
        }
        for i in range(BATCH)
    ]


def pandas_transform(df):
    df["total"] = df["amount"] * df["quantity"]
    df["big"] = df["total"] > 100
    return df[df["quantity"] > 0]


def case_fastlane(rows: int, out: str, transform: bool) -> dict:
    # Imported before timing, as the plain path imports pandas (and with it pyarrow) first.
    import pandas  # noqa: F401
    import pyarrow  # noqa: F401

    from fastlane import Pipeline, Source, Transform

    batches = [make_batch(k * BATCH) for k in range(rows // BATCH)]

    class Pregenerated(Source):
        source_type = "pregenerated"
        schema = {
            "id": "int64", "customer": "string", "amount": "float64",
            "quantity": "int64", "paid": "bool", "placed": "timestamp[us]",
        }

        def __init__(self, configuration):
            super().__init__(configuration)
            self.i = 0

        def extract(self):
            if self.i == len(batches):
                return []
            self.i += 1
            return batches[self.i - 1]

    class PandasWork(Transform):
        transform_type = "pandas_work"

        def transform(self, df):
            return pandas_transform(df)

    started = time.perf_counter()
    summary = Pipeline(
        source=Pregenerated,
        transform=PandasWork if transform else None,
        target="file",
        configuration={
            "replication_mode": "FULL_TABLE",
            "source": {"pregenerated": {}},
            "transform": {"add_op_fields": False},
            "target": {"file": {"path": out, "format": "parquet"}},
        },
        progress="off",
    ).run()
    wall = time.perf_counter() - started
    source = next(s for s in summary["stages"] if s["stage"] == "source")
    return {
        "wall": wall,
        "rows": rows,
        "source_busy": source.get("busy"),
    }


def case_plain(rows: int, out: str, transform: bool) -> dict:
    import pandas as pd

    batches = [make_batch(k * BATCH) for k in range(rows // BATCH)]
    os.makedirs(out, exist_ok=True)
    started = time.perf_counter()
    for n, records in enumerate(batches):
        df = pd.DataFrame(records)
        if transform:
            df = pandas_transform(df)
        df.to_parquet(os.path.join(out, f"part-{n:05}.parquet"), index=False)
    return {"wall": time.perf_counter() - started, "rows": rows}


def child(name: str, rows: int) -> None:
    out = tempfile.mkdtemp(prefix="fl-bench-")
    try:
        impl, mode = name.split(":")
        fn = case_fastlane if impl == "fastlane" else case_plain
        result = fn(rows, out, mode == "transform")
        result["max_rss"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
        print(json.dumps(result))
    finally:
        shutil.rmtree(out, ignore_errors=True)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--rows", type=int, default=1_000_000)
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--child")
    ap.add_argument("--json", help="write the results here")
    args = ap.parse_args()
    if args.child:
        child(args.child, args.rows)
        return
    cases = ["fastlane:source", "plain:source", "fastlane:transform", "plain:transform"]
    results: dict[str, list[dict]] = {c: [] for c in cases}
    for _ in range(args.repeat):
        for c in cases:
            out = subprocess.run(
                [sys.executable, __file__, "--child", c, "--rows", str(args.rows)],
                capture_output=True, text=True, check=True,
            )
            results[c].append(json.loads(out.stdout.strip().splitlines()[-1]))
    print(f"{args.rows} rows, {BATCH} per batch, median of {args.repeat}")
    print(f"{'case':22} {'rows/s':>12} {'peak RSS':>10} {'engine intake rows/s':>22}")
    table = {}
    for c in cases:
        rs = results[c]
        rate = statistics.median(r["rows"] / r["wall"] for r in rs)
        rss = statistics.median(r["max_rss"] for r in rs) / 2**20
        intake = ""
        busy = [r["source_busy"] for r in rs if r.get("source_busy")]
        if busy:
            intake = f"{args.rows / statistics.median(busy):,.0f}"
        table[c] = {"rows_per_sec": rate, "peak_rss_mib": rss, "intake": intake}
        print(f"{c:22} {rate:>12,.0f} {rss:>8.0f} MiB {intake:>22}")
    for mode in ("source", "transform"):
        ratio = table[f"fastlane:{mode}"]["rows_per_sec"] / table[f"plain:{mode}"]["rows_per_sec"]
        print(f"{mode}: fastlane is {ratio:.2f}x the plain-Python path")
    if args.json:
        with open(args.json, "w") as f:
            json.dump({"rows": args.rows, "repeat": args.repeat, "results": results, "table": table}, f, indent=2)


if __name__ == "__main__":
    main()
