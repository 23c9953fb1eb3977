"""A Python source and a pandas transform inside the fastlane engine, writing Parquet.

    pip install .            # from the repository root
    python examples/python_pipeline.py out/python_orders

The source yields orders as lists of dicts (the original fastlane contract); the transform
adds a column with pandas; the `file` plugin that ships with the package writes Parquet.
"""

from __future__ import annotations

import datetime as dt
import random
import sys

from fastlane import Pipeline, Source, Transform
from fastlane.source import json_schema


class Orders(Source):
    """Random orders, `batch_size` per call, `total` in all."""

    source_type = "orders"
    schema = {"id": "int64", "customer": "string", "amount": "float64", "placed": "timestamp[us]"}

    @classmethod
    def configuration_schema(cls):
        return json_schema(
            {"total": {"type": "integer", "minimum": 0}, "batch_size": {"type": "integer", "minimum": 1}},
            required=["total"],
        )

    def __init__(self, configuration):
        super().__init__(configuration)
        self.next_id = 0
        self.random = random.Random(7)

    def extract(self):
        total = self.configuration["total"]
        size = self.configuration.get("batch_size", 10_000)
        if self.next_id >= total:
            return []
        start = self.next_id
        self.next_id = min(total, start + size)
        epoch = dt.datetime(2024, 1, 1)
        return [
            {
                "id": i,
                "customer": f"c{self.random.randrange(1000)}",
                "amount": round(self.random.uniform(1, 500), 2),
                "placed": epoch + dt.timedelta(minutes=i),
            }
            for i in range(start, self.next_id)
        ]


class WithTax(Transform):
    """Adds `amount_with_tax` (20 %)."""

    transform_type = "with_tax"

    def transform(self, df):
        df["amount_with_tax"] = (df["amount"] * 1.2).round(2)
        return df


def main(out: str) -> None:
    pipeline = Pipeline(
        source=Orders,
        transform=WithTax,
        target="file",
        configuration={
            "replication_mode": "FULL_TABLE",
            "source": {"orders": {"total": 100_000}},
            "transform": {"add_op_fields": False},
            "target": {"file": {"path": out, "format": "parquet", "compression": "zstd"}},
        },
    )
    summary = pipeline.run()
    print(f"loaded {summary['rows_loaded']} rows into {out} in {summary['duration_secs']:.2f} s")


if __name__ == "__main__":
    main(sys.argv[1] if len(sys.argv) > 1 else "out/python_orders")
