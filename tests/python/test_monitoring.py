"""Python runs report themselves to the monitor like any other run."""

from __future__ import annotations

import os
import sqlite3

from fastlane import Pipeline, Source


class Numbers(Source):
    source_type = "numbers_for_monitoring"
    schema = {"n": "int64"}

    def __init__(self, configuration):
        super().__init__(configuration)
        self.left = 3

    def extract(self):
        if self.left == 0:
            return []
        self.left -= 1
        return [{"n": i} for i in range(1000)]


def test_a_python_run_is_recorded_in_the_store(tmp_path):
    summary = Pipeline(
        source=Numbers,
        target="file",
        configuration={
            "name": "python-monitoring",
            "replication_mode": "FULL_TABLE",
            "source": {"numbers_for_monitoring": {}},
            "target": {"file": {"path": str(tmp_path / "out"), "format": "parquet"}},
        },
        progress="off",
    ).run()
    db = sqlite3.connect(os.environ["FASTLANE_STORE"])
    row = db.execute(
        "SELECT r.status, r.rows_loaded, r.run_key, p.source_type FROM pipeline_run r "
        "JOIN pipeline p ON p.id = r.pipeline_id WHERE p.id = 'python-monitoring'"
    ).fetchone()
    assert row == ("completed", 3000, summary["run_id"], "numbers_for_monitoring")
