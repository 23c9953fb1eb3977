"""The original fastlane's integration test (MySQL → MySQL of the planets table, through
``driver()``), rewritten for the new connectors: the `mysql` plugin on both sides, with the
original's configuration shape (`examples/mysql_to_mysql.json`), then the same source into a
Python target and into Parquet."""

from __future__ import annotations

import random

import pyarrow.parquet as pq
import pytest
from conftest import needs_mariadb
from test_mysql_mixed import Gather, sql

from fastlane.run_pipeline import driver

pytestmark = needs_mariadb

SOURCE = "fl_py_planets_src"
TARGET = "fl_py_planets_dst"
COLUMNS = "rowid, pl_discmethod, pl_pnum, pl_orbper, pl_msinij, st_dist, pl_disc"


@pytest.fixture
def planets(monkeypatch, tmp_path):
    sql(
        f"DROP DATABASE IF EXISTS {SOURCE}; DROP DATABASE IF EXISTS {TARGET};"
        f"CREATE DATABASE {SOURCE}; CREATE DATABASE {TARGET};"
        f"CREATE TABLE {SOURCE}.planets (rowid INT PRIMARY KEY, pl_discmethod VARCHAR(40), pl_pnum INT,"
        " pl_orbper DOUBLE, pl_msinij DOUBLE, st_dist DOUBLE, pl_disc INT)"
    )
    rnd = random.Random(1034)
    methods = ["Radial Velocity", "Transit", "Imaging", "Microlensing", "Pulsar Timing"]
    values = []
    for rowid in range(1, 1035):
        msini = "NULL" if rnd.random() < 0.6 else f"{rnd.uniform(0.01, 30):.4f}"
        values.append(
            f"({rowid}, '{rnd.choice(methods)}', {rnd.randint(1, 8)}, {rnd.uniform(0.1, 7e5):.5f},"
            f" {msini}, {rnd.uniform(1, 8500):.2f}, {rnd.randint(1989, 2016)})"
        )
    sql(f"INSERT INTO {SOURCE}.planets VALUES {','.join(values)}")
    monkeypatch.setenv("SOURCE_DB", SOURCE)
    monkeypatch.setenv("TARGET_DB", TARGET)
    monkeypatch.setenv("LOG_DIR", str(tmp_path))
    yield
    sql(f"DROP DATABASE IF EXISTS {SOURCE}; DROP DATABASE IF EXISTS {TARGET}")


def checksum(db: str) -> str:
    return sql(f"CHECKSUM TABLE {db}.planets").split()[-1]


def test_mysql_to_mysql_like_the_original_integration_test(planets, repo):
    summary = driver("mysql", "default", "mysql", repo / "examples/mysql_to_mysql.json", progress="off")
    assert summary["rows_loaded"] == 1034
    ordered = f"SELECT {COLUMNS} FROM {{}}.planets ORDER BY rowid"
    assert sql(ordered.format(TARGET)) == sql(ordered.format(SOURCE))
    assert checksum(TARGET) == checksum(SOURCE)
    # Rerunning a FULL_TABLE load replaces the table: still exactly the source rows.
    driver("mysql", "default", "mysql", repo / "examples/mysql_to_mysql.json", progress="off")
    assert sql(f"SELECT COUNT(*) FROM {TARGET}.planets").strip() == "1034"


def test_the_same_source_into_a_python_target_and_into_parquet(planets, repo, tmp_path):
    import json

    config = json.loads((repo / "examples/mysql_to_mysql.json").read_text())
    config["target"] = {"gather": {"batch_size": 500}}
    path = tmp_path / "pipeline.json"
    path.write_text(json.dumps(config))
    from fastlane import Pipeline

    p = Pipeline(source="mysql", target=Gather, configuration=path, progress="off")
    p.run()
    assert sum(len(f) for f in p.target.frames) == 1034
    assert all(len(f) >= 500 for f in p.target.frames[:-1])

    config["target"] = {"file": {"path": str(tmp_path / "parquet"), "format": "parquet"}}
    path.write_text(json.dumps(config))
    driver("mysql", "default", "file", path, progress="off")
    rows = sum(pq.read_metadata(f).num_rows for f in (tmp_path / "parquet").rglob("*.parquet"))
    assert rows == 1034
