"""Python components with the MySQL plugin, against the real MariaDB on 127.0.0.1:3306."""

from __future__ import annotations

import decimal
import subprocess

import pytest
from conftest import config, needs_mariadb

from fastlane import Pipeline, Source, Target

pytestmark = needs_mariadb

DB = "fl_python"


def sql(statement: str) -> str:
    out = subprocess.run(
        ["mariadb", "-h127.0.0.1", "-P3306", "-uroot", "-N", "-B", "-e", statement],
        capture_output=True,
        text=True,
    )
    assert out.returncode == 0, out.stderr
    return out.stdout


@pytest.fixture
def db():
    sql(f"DROP DATABASE IF EXISTS {DB}; CREATE DATABASE {DB}")
    yield DB
    sql(f"DROP DATABASE IF EXISTS {DB}")


class Gather(Target):
    target_type = "gather"

    def __init__(self, configuration):
        super().__init__(configuration)
        self.frames = []

    def load(self, df):
        self.frames.append(df)


def test_mysql_plugin_into_a_python_target(db):
    sql(
        f"CREATE TABLE {db}.items (id INT PRIMARY KEY, price DECIMAL(10,2), name VARCHAR(20));"
        f"INSERT INTO {db}.items VALUES (1, 9.99, 'pen'), (2, 100.50, 'book'), (3, NULL, NULL)"
    )
    p = Pipeline(
        source="mysql",
        target=Gather,
        configuration=config(
            {"mysql": {"host": "127.0.0.1", "port": 3306, "username": "root", "password": "", "db": db, "table": "items", "key": "id", "batch_size": 2}},
            {"gather": {}},
            transform={"add_op_fields": False},
        ),
        progress="off",
    )
    assert p.run()["rows_loaded"] == 3
    import pandas as pd

    df = pd.concat(p.target.frames).sort_values("id")
    assert list(df["id"]) == [1, 2, 3]
    assert list(df["price"][:2]) == [decimal.Decimal("9.99"), decimal.Decimal("100.50")]
    assert pd.isna(df["name"].iloc[2])


class People(Source):
    source_type = "people"
    schema = {"id": "int64", "name": "string"}

    def __init__(self, configuration):
        super().__init__(configuration)
        self.sent = False

    def extract(self):
        if self.sent:
            return []
        self.sent = True
        return [{"id": i, "name": f"person {i}"} for i in range(1, 1001)]


def test_python_source_into_the_mysql_plugin(db):
    p = Pipeline(
        source=People,
        target="mysql",
        configuration=config(
            {"people": {}},
            {"mysql": {"host": "127.0.0.1", "port": 3306, "username": "root", "password": "", "db": db, "table": "people", "key": "id"}},
            transform={"add_op_fields": False},
        ),
        progress="off",
    )
    p.run()
    assert sql(f"SELECT COUNT(*), SUM(id), MAX(name) FROM {db}.people").split() == ["1000", "500500", "person", "999"]
