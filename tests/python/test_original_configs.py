"""The original fastlane's example configurations (``examples/*_to_athena_example.json``) and
its MongoDB → MySQL integration configuration, in their own field layout, run through
``driver()`` against the local servers: MariaDB, BriskDB (MongoDB wire protocol), the BigQuery
emulator and moto (Secrets Manager, S3, Glue). Only what names a server changes: the secrets
hold loopback addresses, and ``AWS_ENDPOINT_URL`` points the AWS clients at moto."""

from __future__ import annotations

import io
import json
import os
import socket
import sqlite3
import urllib.request
import uuid

import boto3
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from conftest import needs_mariadb
from test_mysql_mixed import sql

from fastlane.run_pipeline import driver

AWS = os.environ.get("FASTLANE_TEST_AWS_ENDPOINT", "http://127.0.0.1:5000")
MONGO = ("127.0.0.1", 27017)
BIGQUERY_REST = "http://127.0.0.1:9050"
BIGQUERY_GRPC = "http://127.0.0.1:9060"


def answers(host: str, port: int) -> bool:
    try:
        with socket.create_connection((host, port), timeout=1):
            return True
    except OSError:
        return False


needs_moto = pytest.mark.skipif(not answers("127.0.0.1", 5000), reason="no moto server (tests/services.sh)")
needs_mongo = pytest.mark.skipif(not answers(*MONGO), reason="no MongoDB-wire server (tests/services.sh)")
needs_bigquery = pytest.mark.skipif(
    not answers("127.0.0.1", 9050), reason="no BigQuery emulator (tests/services.sh)"
)


@pytest.fixture
def aws(monkeypatch, tmp_path):
    for name, value in {
        "AWS_ENDPOINT_URL": AWS,
        "AWS_ACCESS_KEY_ID": "test",
        "AWS_SECRET_ACCESS_KEY": "test",
        "AWS_DEFAULT_REGION": "us-east-1",
        "AWS_EC2_METADATA_DISABLED": "true",
    }.items():
        monkeypatch.setenv(name, value)
    # Each test its own monitoring store, to read the pipeline ids back.
    monkeypatch.setenv("FASTLANE_STORE", str(tmp_path / "monitor.db"))
    yield


def client(service: str):
    return boto3.client(
        service,
        endpoint_url=AWS,
        region_name="us-east-1",
        aws_access_key_id="test",
        aws_secret_access_key="test",
    )


def put_secret(name: str, value: dict) -> None:
    secrets = client("secretsmanager")
    try:
        secrets.create_secret(Name=name, SecretString=json.dumps(value))
    except secrets.exceptions.ResourceExistsException:
        secrets.put_secret_value(SecretId=name, SecretString=json.dumps(value))


def fresh_bucket(name: str) -> None:
    s3 = client("s3")
    try:
        s3.create_bucket(Bucket=name)
    except (s3.exceptions.BucketAlreadyOwnedByYou, s3.exceptions.BucketAlreadyExists):
        pass
    for page in s3.get_paginator("list_objects_v2").paginate(Bucket=name):
        for obj in page.get("Contents", []):
            s3.delete_object(Bucket=name, Key=obj["Key"])


def fresh_glue_table(database: str, table: str, location: str | None) -> None:
    """Drops `database.table`; with a location, creates it there (the original's athena
    target found its bucket in the table's location)."""
    glue = client("glue")
    try:
        glue.create_database(DatabaseInput={"Name": database})
    except glue.exceptions.AlreadyExistsException:
        pass
    try:
        glue.delete_table(DatabaseName=database, Name=table)
    except glue.exceptions.EntityNotFoundException:
        pass
    if location:
        glue.create_table(
            DatabaseName=database,
            TableInput={
                "Name": table,
                "TableType": "EXTERNAL_TABLE",
                "StorageDescriptor": {"Columns": [], "Location": location},
            },
        )


def published(bucket: str, folder: str) -> pa.Table:
    """The rows of the runs the manifests under `folder` list (the current ones: from the last
    FULL_TABLE run on)."""
    s3 = client("s3")
    listed = s3.list_objects_v2(Bucket=bucket, Prefix=f"{folder}/_fastlane/manifests/")
    manifests = [json.loads(s3.get_object(Bucket=bucket, Key=o["Key"])["Body"].read()) for o in
                 sorted(listed.get("Contents", []), key=lambda o: o["Key"])]
    assert manifests, f"no run published under s3://{bucket}/{folder}/"
    start = max((i for i, m in enumerate(manifests) if m["mode"] == "FULL_TABLE"), default=0)
    tables = []
    for manifest in manifests[start:]:
        for obj in manifest["objects"]:
            body = s3.get_object(Bucket=bucket, Key=obj["key"])["Body"].read()
            tables.append(pq.read_table(io.BytesIO(body)))
    return pa.concat_tables(tables, promote_options="default")


def pipeline_ids() -> list[str]:
    with sqlite3.connect(os.environ["FASTLANE_STORE"]) as db:
        return [row[0] for row in db.execute("SELECT id FROM pipeline ORDER BY id")]


def write_config(tmp_path, document: dict):
    path = tmp_path / "pipeline.json"
    path.write_text(json.dumps(document, indent=2))
    return path


@needs_mariadb
@needs_moto
def test_the_mysql_to_athena_example_finds_its_bucket_in_the_glue_tables_location(aws, tmp_path):
    sql(
        "DROP DATABASE IF EXISTS db; CREATE DATABASE db;"
        "CREATE TABLE db.my_table (id INT PRIMARY KEY, name VARCHAR(20), amount DOUBLE)"
    )
    sql("INSERT INTO db.my_table VALUES " + ",".join(f"({i}, 'n{i}', {i * 1.5})" for i in range(0, 2500)))
    put_secret("mysql-ssm", {"host": "127.0.0.1", "port": 3306, "username": "root", "password": ""})
    bucket = f"orig-{uuid.uuid4().hex[:10]}"
    fresh_bucket(bucket)
    fresh_glue_table("my-bucket", "my_table", f"s3://{bucket}/warehouse/my_table/")
    # examples/mysql_to_athena_example.json of the original, as it is.
    path = write_config(tmp_path, {
        "ssm": {"region": "us-east-1"},
        "source": {"mysql": {"secret": "mysql-ssm", "db": "db", "table": "my_table", "key": "id",
                             "batch_size": 100000, "offset": 0}},
        "target": {"athena": {"table": "my_table", "database": "my-bucket", "batch_size": 100000,
                              "concurrency": 8}},
        "replication_mode": "FULL_TABLE",
        "max_buffered_batches": 8,
    })
    try:
        summary = driver("mysql", "default", "athena", path, progress="off")
        # `offset: 0` starts after key 0, as the original's keyset paging did.
        assert summary["rows_loaded"] == 2499
        rows = published(bucket, "warehouse/my_table")
        assert sorted(rows.column("id").to_pylist()) == list(range(1, 2500))
        versions = set(rows.column("_table_version").to_pylist())
        assert len(versions) == 1, versions
        columns = client("glue").get_table(DatabaseName="my-bucket", Name="my_table")["Table"][
            "StorageDescriptor"]["Columns"]
        assert [c["Name"] for c in columns] == ["id", "name", "amount", "_op_type", "_op_timestamp", "_table_version"]
        assert pipeline_ids() == ["my-bucket.my_table.mysql.athena"]
    finally:
        sql("DROP DATABASE IF EXISTS db")


def mongo():
    import pymongo

    return pymongo.MongoClient(*MONGO, directConnection=True, serverSelectionTimeoutMS=5000)


def example_docs(first: int, last: int) -> list[dict]:
    return [
        {"rowid": i, "test1": {"field": {"number_field": i % 100, "string_field": "hi" if i % 3 else "ho"}}}
        for i in range(first, last)
    ]


@needs_mongo
@needs_moto
def test_the_mongodb_to_athena_example_filters_and_continues_incrementally(aws, tmp_path):
    name = f"orig_{uuid.uuid4().hex[:8]}"
    collection = mongo()[name]["mongo_database_collection"]
    collection.insert_many(example_docs(0, 600))
    put_secret("mongodb-ssm-secret", {"host": MONGO[0], "port": MONGO[1], "direct_connection": True})
    fresh_bucket("my-bucket")
    fresh_glue_table("default", "mongo_example", None)
    # examples/mongodb_to_athena_example.json of the original (its database named for the test).
    document = {
        "ssm": {"region": "us-east-1"},
        "source": {"mongodb": {
            "secret": "mongodb-ssm-secret", "batch_size": 10000, "replication_key": "_id",
            "database": name, "collection": "mongo_database_collection",
            "filter_fields": [
                ["test1.field.number_field", "$gt", 49, 0],
                ["test1.field.string_field", "hi", "None", 0],
            ],
        }},
        "target": {"athena": {"table": "mongo_example", "bucket": "my-bucket", "batch_size": 100000,
                              "concurrency": 4}},
        "replication_mode": "INCREMENTAL",
        "max_buffered_batches": 8,
    }
    path = write_config(tmp_path, document)
    wanted = lambda docs: sorted(  # noqa: E731
        d["rowid"] for d in docs
        if d["test1"]["field"]["number_field"] > 49 and d["test1"]["field"]["string_field"] == "hi"
    )
    try:
        first = driver("mongodb", "default", "athena", path, progress="off")
        assert first["rows_loaded"] == len(wanted(example_docs(0, 600)))
        # New documents: the next run reads only those after the largest `_id` published.
        collection.insert_many(example_docs(600, 900))
        second = driver("mongodb", "default", "athena", path, progress="off")
        assert second["rows_loaded"] == len(wanted(example_docs(600, 900)))
        rows = published("my-bucket", "mongo_example")
        assert sorted(rows.column("rowid").to_pylist()) == wanted(example_docs(0, 900))
        versions = sorted(set(rows.column("_table_version").to_pylist()))
        assert len(versions) == 2 and versions[0] < versions[1], versions
        assert pipeline_ids() == ["mongo_example.mongodb.athena"]
    finally:
        mongo().drop_database(name)


def bigquery(method: str, path: str, body: dict | None = None, project: str = "my_project"):
    request = urllib.request.Request(
        f"{BIGQUERY_REST}/bigquery/v2/projects/{project}{path}",
        data=None if body is None else json.dumps(body).encode(),
        method=method,
        headers={"Content-Type": "application/json"},
    )
    with urllib.request.urlopen(request, timeout=30) as answer:
        text = answer.read()
        return json.loads(text) if text else None


@needs_bigquery
@needs_moto
def test_the_bigquery_to_athena_example_reads_its_table(aws, tmp_path):
    try:
        bigquery("DELETE", "/datasets/analytics?deleteContents=true")
    except urllib.error.HTTPError:
        pass
    bigquery("POST", "/datasets", {"datasetReference": {"projectId": "my_project", "datasetId": "analytics"}})
    bigquery("POST", "/datasets/analytics/tables", {
        "tableReference": {"projectId": "my_project", "datasetId": "analytics", "tableId": "events"},
        "schema": {"fields": [{"name": "event_id", "type": "INT64"}, {"name": "kind", "type": "STRING"}]},
    })
    rows = [{"json": {"event_id": i, "kind": ["open", "tap", "close"][i % 3]}} for i in range(1500)]
    answer = bigquery("POST", "/datasets/analytics/tables/events/insertAll", {"rows": rows})
    assert not answer.get("insertErrors"), answer
    # The secret holds what reaches the emulator instead of a service account key.
    put_secret("gcp-bigquery", {"auth": "none", "endpoint": BIGQUERY_REST, "storage_endpoint": BIGQUERY_GRPC})
    fresh_bucket("my-bucket")
    fresh_glue_table("default", "ios_app_events", None)
    # examples/bigquery_to_athena_example.json of the original, as it is.
    path = write_config(tmp_path, {
        "ssm": {"region": "us-east-1"},
        "source": {"bigquery": {"secret": "gcp-bigquery", "gcp_project": "my_project",
                                "dataset_id": "analytics", "table_id": "events"}},
        "target": {"athena": {"table": "ios_app_events", "bucket": "my-bucket", "batch_size": 10000,
                              "concurrency": 8}},
        "replication_mode": "FULL_TABLE",
        "max_buffered_batches": 8,
    })
    summary = driver("bigquery", "default", "athena", path, progress="off")
    assert summary["rows_loaded"] == 1500
    table = published("my-bucket", "ios_app_events")
    assert sorted(table.column("event_id").to_pylist()) == list(range(1500))
    assert pipeline_ids() == ["ios_app_events.bigquery.athena"]


@needs_mariadb
@needs_mongo
def test_the_mongodb_to_mysql_integration_configuration(aws, tmp_path):
    name = f"orig_{uuid.uuid4().hex[:8]}"
    methods = ["Radial Velocity", "Transit", "Imaging", "Microlensing"]
    mongo()[name]["planets"].insert_many([
        {"rowid": i, "pl_discmethod": methods[i % 4], "pl_pnum": i % 7 + 1, "pl_orbper": i * 1.25,
         "pl_disc": 1989 + i % 28}
        for i in range(1, 1035)
    ])
    sql("DROP DATABASE IF EXISTS target; CREATE DATABASE target")
    # integration_mongodb_mysql/config.json of the original, its hosts pointed at the local
    # servers (BriskDB takes no credentials, so none are given).
    path = write_config(tmp_path, {
        "logs": {"log_file": str(tmp_path / "target.planets.mysql.mongodb.log"),
                 "log_to_cloudwatch": False, "error_log_to_slack": False},
        "ssm": {"region": "us-east-1"},
        "source": {"mongodb": {"batch_size": 200, "replication_key": "rowid", "database": name,
                               "collection": "planets", "host": MONGO[0], "port": MONGO[1],
                               "offset": -1}},
        "transform": {"add_op_fields": False},
        "target": {"mysql": {"db": "target", "table": "planets", "key": "rowid", "host": "127.0.0.1",
                             "port": 3306, "username": "root", "password": "", "batch_size": 200,
                             "concurrency": 1}},
        "replication_mode": "FULL_TABLE",
        "max_buffered_batches": 8,
    })
    try:
        summary = driver("mongodb", "default", "mysql", path, progress="off")
        assert summary["rows_loaded"] == 1034
        assert sql("SELECT COUNT(*), MIN(rowid), MAX(rowid), SUM(pl_pnum) FROM target.planets").split() == [
            "1034", "1", "1034", str(sum(i % 7 + 1 for i in range(1, 1035)))]
        assert pipeline_ids() == ["target.planets.mongodb.mysql"]
        log = (tmp_path / "target.planets.mysql.mongodb.log").read_text()
        assert "source `mongodb`" in log, log
    finally:
        mongo().drop_database(name)
        sql("DROP DATABASE IF EXISTS target")
