"""Python components inside the engine, mixed with plugin connectors."""

from __future__ import annotations

import datetime as dt
import decimal
import threading
import time
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from conftest import config

from fastlane import ConfigError, Pipeline, PipelineError, Source, Target, Transform
from fastlane.source import SourceConfigSchema


class Numbers(Source):
    """Rows 0..total-1 in batches of `size`."""

    source_type = "numbers"

    @classmethod
    def configuration_schema(cls):
        return {
            "type": "object",
            "additionalProperties": False,
            "properties": {
                "total": {"type": "integer", "minimum": 0},
                "size": {"type": "integer", "minimum": 1},
                "offset": {},
                "concurrency": {"type": "integer"},
                "batch_rows": {"type": "integer"},
            },
            "required": ["total"],
        }

    def __init__(self, configuration):
        super().__init__(configuration)
        self.next = None
        self.finished = 0

    def extract(self):
        if self.next is None:  # the engine sets `offset` before the first call
            self.next = 0 if self.offset is None else int(self.offset) + 1
        total = self.configuration["total"]
        size = self.configuration.get("size", 1000)
        if self.next >= total:
            return []
        end = min(total, self.next + size)
        rows = [{"id": i, "name": f"n{i}", "half": i / 2} for i in range(self.next, end)]
        self.next = end
        return rows

    def finish(self):
        self.finished += 1


class Collect(Target):
    """Keeps every frame it is given."""

    target_type = "collect"

    def __init__(self, configuration):
        super().__init__(configuration)
        self.frames = []
        self.lock = threading.Lock()
        self.events = []

    def load(self, df):
        with self.lock:
            self.frames.append(df)

    def get_offset(self):
        return self.configuration.get("stored_max")

    def commit(self):
        self.events.append("commit")

    def abort(self):
        self.events.append("abort")

    def finish(self):
        self.events.append("finish")

    @classmethod
    def configuration_schema(cls):
        from fastlane.target import json_schema

        return json_schema({"stored_max": {"type": "integer"}, "label": {"type": "string"}})

    def rows(self):
        import pandas as pd

        if not self.frames:
            return pd.DataFrame()
        return pd.concat(self.frames, ignore_index=True)


def parquet_rows(folder: Path) -> pa.Table:
    files = sorted(folder.rglob("*.parquet"))
    assert files, f"no Parquet files under {folder}"
    return pa.concat_tables([pq.read_table(f) for f in files])


def test_python_source_to_parquet(tmp_path):
    out = tmp_path / "out"
    p = Pipeline(
        source=Numbers,
        target="file",
        configuration=config(
            {"numbers": {"total": 25_000, "size": 10_000}},
            {"file": {"path": str(out), "format": "parquet"}},
            transform={"add_op_fields": False},
        ),
        progress="off",
    )
    summary = p.run()
    assert summary["rows_loaded"] == 25_000
    assert summary["status"] == "succeeded"
    assert p.source.finished == 1
    table = parquet_rows(out).sort_by("id")
    assert table.column_names == ["id", "name", "half"]
    assert table.schema.field("id").type == pa.int64()
    assert table.schema.field("half").type == pa.float64()
    assert table.column("id").to_pylist() == list(range(25_000))
    assert table.column("name")[12345].as_py() == "n12345"


class AllTypes(Source):
    source_type = "all_types"

    def __init__(self, configuration):
        super().__init__(configuration)
        self.done = False

    def extract(self):
        if self.done:
            return []
        self.done = True
        utc = dt.timezone.utc
        plus2 = dt.timezone(dt.timedelta(hours=2))
        return [
            {
                "i": 1, "f": 1.5, "s": "héllo 🚀", "b": True, "raw": b"\x00\xff",
                "d": dt.date(2024, 2, 29), "ts": dt.datetime(2024, 2, 29, 23, 59, 59, 123456),
                "tz": dt.datetime(2024, 1, 1, 2, 0, tzinfo=plus2),
                "dec": decimal.Decimal("12345.678"), "nested": {"a": [1, 2]}, "none": None,
            },
            {
                "i": -(2**63), "f": 2, "s": None, "b": False, "raw": None,
                "d": dt.date(1969, 12, 31), "ts": dt.datetime(1900, 1, 1),
                "tz": dt.datetime(2024, 1, 1, 0, 0, tzinfo=utc),
                "dec": decimal.Decimal("-0.5"), "nested": [1, "x"], "none": None,
            },
        ]


def test_types_are_inferred_from_python_values(tmp_path):
    out = tmp_path / "out"
    Pipeline(
        source=AllTypes,
        target="file",
        configuration=config({"all_types": {}}, {"file": {"path": str(out)}}, transform={"add_op_fields": False}),
        progress="off",
    ).run()
    t = parquet_rows(out)
    s = t.schema
    assert s.field("i").type == pa.int64()
    assert s.field("f").type == pa.float64()
    assert s.field("s").type == pa.string()
    assert s.field("b").type == pa.bool_()
    assert s.field("raw").type == pa.binary()
    assert s.field("d").type == pa.date32()
    assert s.field("ts").type == pa.timestamp("us")
    assert s.field("tz").type == pa.timestamp("us", tz="UTC")
    assert s.field("dec").type == pa.decimal128(38, 3)
    rows = t.to_pylist()
    assert rows[0]["s"] == "héllo 🚀"
    assert rows[0]["raw"] == b"\x00\xff"
    assert rows[1]["i"] == -(2**63)
    assert rows[1]["f"] == 2.0
    assert rows[0]["d"] == dt.date(2024, 2, 29)
    assert rows[1]["d"] == dt.date(1969, 12, 31)
    assert rows[0]["ts"] == dt.datetime(2024, 2, 29, 23, 59, 59, 123456)
    assert rows[1]["ts"] == dt.datetime(1900, 1, 1)
    assert rows[0]["tz"] == dt.datetime(2024, 1, 1, 0, 0, tzinfo=dt.timezone.utc)
    assert rows[0]["dec"] == decimal.Decimal("12345.678")
    assert rows[1]["dec"] == decimal.Decimal("-0.500")
    assert rows[0]["nested"] == '{"a": [1, 2]}'
    assert rows[1]["nested"] == '[1, "x"]'
    assert rows[0]["none"] is None


class Declared(Source):
    source_type = "declared"
    schema = {"id": "int32", "name": "string", "score": "float32", "when": pa.timestamp("ms", tz="UTC")}

    def __init__(self, configuration):
        super().__init__(configuration)
        self.batches = [
            [{"id": 1, "name": "a", "score": 0.5, "when": dt.datetime(2024, 5, 1, 12, 0, 0, 1000)}, {"id": 2}],
            [],
        ]

    def extract(self):
        return self.batches.pop(0)


def test_declared_schema_sets_the_types(tmp_path):
    out = tmp_path / "out"
    Pipeline(
        source=Declared,
        target="file",
        configuration=config({"declared": {}}, {"file": {"path": str(out)}}, transform={"add_op_fields": False}),
        progress="off",
    ).run()
    t = parquet_rows(out)
    assert t.schema.field("id").type == pa.int32()
    assert t.schema.field("score").type == pa.float32()
    assert t.schema.field("when").type == pa.timestamp("ms", tz="UTC")
    assert t.to_pylist()[1] == {"id": 2, "name": None, "score": None, "when": None}


class Doubler(Transform):
    transform_type = "doubler"

    def transform(self, df):
        df["twice"] = df["id"] * 2
        return df


def test_parquet_through_a_pandas_transform_into_a_python_target(tmp_path):
    data = tmp_path / "in.parquet"
    pq.write_table(pa.table({"id": pa.array(range(5000), pa.int64()), "v": pa.array([None, 1.5] * 2500)}), data)
    p = Pipeline(
        source="file",
        transform=Doubler,
        target=Collect,
        configuration=config(
            {"file": {"path": str(data), "batch_size": 1000}},
            {"collect": {"batch_size": 2500}},
            transform={"doubler": {"add_op_fields": True}},
        ),
        progress="off",
    )
    summary = p.run()
    assert summary["rows_loaded"] == 5000
    frames = p.target.frames
    assert all(len(f) >= 2500 for f in frames[:-1])
    df = p.target.rows().sort_values("id")
    assert list(df["twice"]) == [2 * i for i in range(5000)]
    assert set(df["_op_type"]) == {"i"}
    assert df["_op_timestamp"].min() > 1_600_000_000_000
    assert p.target.events == ["commit", "finish"]


class PolarsUpper(Transform):
    transform_type = "polars_upper"
    frame_type = "polars"

    def transform(self, df):
        import polars as pl

        return df.with_columns(pl.col("name").str.to_uppercase())


class ArrowTarget(Collect):
    target_type = "arrow_collect"
    frame_type = "pyarrow"


def test_polars_transform_and_pyarrow_target(tmp_path):
    p = Pipeline(
        source=Numbers,
        transform=PolarsUpper,
        target=ArrowTarget,
        configuration=config(
            {"numbers": {"total": 300, "size": 100}},
            {"arrow_collect": {}},
            transform={"add_op_fields": False},
        ),
        progress="off",
    )
    p.run()
    tables = p.target.frames
    assert all(isinstance(t, pa.Table) for t in tables)
    names = sorted(pa.concat_tables(tables).column("name").to_pylist(), key=lambda s: int(s[1:]))
    assert names[:3] == ["N0", "N1", "N2"]
    assert pa.concat_tables(tables).schema.field("id").type == pa.int64()


class SizeRecorder(Transform):
    """Passes frames through, noting their lengths."""

    transform_type = "size_recorder"

    def __init__(self, configuration):
        super().__init__(configuration)
        self.sizes = []

    def transform(self, df):
        self.sizes.append(len(df))
        return df


def recording_sizes(source, section):
    """A pipeline from `source` (configured by `section`) through SizeRecorder into Collect."""
    return Pipeline(
        source=source,
        transform=SizeRecorder,
        target=Collect,
        configuration=config({source.source_type: section}, {"collect": {}}, transform={"add_op_fields": False}),
        progress="off",
    )


@pytest.mark.parametrize(
    ("batch_rows", "sizes"),
    [(None, [1000]), (250, [300, 300, 300, 100]), (100, [100] * 10), (1, [100] * 10)],
)
def test_rows_of_small_extract_calls_are_gathered_up_to_batch_rows(batch_rows, sizes):
    section = {"total": 1000, "size": 100}
    if batch_rows is not None:
        section["batch_rows"] = batch_rows
    p = recording_sizes(Numbers, section)
    assert p.run()["rows_loaded"] == 1000
    assert p.transform.sizes == sizes
    df = p.target.rows()
    assert list(df["id"]) == list(range(1000))
    assert list(df["name"]) == [f"n{i}" for i in range(1000)]


def test_frames_returned_by_extract_are_gathered_too():
    p = recording_sizes(FrameSource, {})
    assert p.run()["rows_loaded"] == 4
    assert p.transform.sizes == [4]


class Trickle(Source):
    """One row every 0.1 s, six rows in all: a source that waits on something slow."""

    source_type = "trickle"

    def __init__(self, configuration):
        super().__init__(configuration)
        self.sent = 0

    def extract(self):
        if self.sent == 6:
            return []
        time.sleep(0.1)
        self.sent += 1
        return [{"id": self.sent}]


def test_a_slow_source_hands_its_rows_on_before_batch_rows_are_gathered():
    p = recording_sizes(Trickle, {})
    assert p.run()["rows_loaded"] == 6
    # Gathering stops after 250 ms: batches of about three rows, never all six at once.
    assert sum(p.transform.sizes) == 6
    assert len(p.transform.sizes) >= 2, p.transform.sizes
    assert list(p.target.rows()["id"]) == [1, 2, 3, 4, 5, 6]


class Boom(Source):
    source_type = "boom"

    def extract(self):
        raise ValueError("the source broke")


def test_exception_in_extract_surfaces_with_context_and_cause(tmp_path):
    p = Pipeline(source=Boom, target=Collect, configuration=config({"boom": {}}, {"collect": {}}), progress="off")
    with pytest.raises(PipelineError) as info:
        p.run()
    err = info.value
    assert err.stage == "source"
    assert err.component == "boom"
    assert isinstance(err.__cause__, ValueError)
    assert str(err.__cause__) == "the source broke"
    assert "extract() raised ValueError: the source broke" in str(err)
    assert "test_pipeline.py" in str(err)
    assert p.target.events == ["abort", "finish"]


class BadTransform(Transform):
    transform_type = "bad_transform"

    def transform(self, df):
        return df["missing_column"]


def test_exception_in_transform_names_the_stage(tmp_path):
    p = Pipeline(
        source=Numbers,
        transform=BadTransform,
        target=Collect,
        configuration=config({"numbers": {"total": 10}}, {"collect": {}}, transform={}),
        progress="off",
    )
    with pytest.raises(PipelineError) as info:
        p.run()
    assert info.value.stage == "transform"
    assert info.value.component == "bad_transform"
    assert isinstance(info.value.__cause__, KeyError)


class FailingLoad(Collect):
    target_type = "failing_load"

    def load(self, df):
        raise RuntimeError("disk full")


def test_exception_in_load_aborts_the_target():
    p = Pipeline(source=Numbers, target=FailingLoad, configuration=config({"numbers": {"total": 10}}, {"failing_load": {}}), progress="off")
    with pytest.raises(PipelineError, match="load\\(df\\) raised RuntimeError: disk full") as info:
        p.run()
    assert info.value.stage == "target"
    assert isinstance(info.value.__cause__, RuntimeError)
    assert info.value.summary["status"] == "failed"
    assert p.target.events == ["abort", "finish"]


class Ragged(Source):
    source_type = "ragged"

    def __init__(self, configuration):
        super().__init__(configuration)
        self.batches = [[{"a": 1}], [{"a": 2, "b": "new"}], []]

    def extract(self):
        return self.batches.pop(0)


def test_a_key_missing_from_the_first_batch_is_an_error_not_a_silent_drop():
    p = Pipeline(source=Ragged, target=Collect, configuration=config({"ragged": {}}, {"collect": {}}), progress="off")
    with pytest.raises(PipelineError, match="batch 2: row 0 has the key `b`, which the first batch did not have"):
        p.run()


class WrongType(Source):
    source_type = "wrong_type"

    def __init__(self, configuration):
        super().__init__(configuration)
        self.batches = [[{"a": 1}, {"a": "two"}], []]

    def extract(self):
        return self.batches.pop(0)


def test_mixed_types_in_a_column_are_an_error():
    p = Pipeline(source=WrongType, target=Collect, configuration=config({"wrong_type": {}}, {"collect": {}}), progress="off")
    with pytest.raises(PipelineError, match="column `a` holds both int and str values"):
        p.run()


class ReturnsNone(Source):
    source_type = "returns_none"

    def extract(self):
        pass


def test_extract_returning_none_is_an_error():
    p = Pipeline(source=ReturnsNone, target=Collect, configuration=config({"returns_none": {}}, {"collect": {}}), progress="off")
    with pytest.raises(PipelineError, match="extract\\(\\) returned None"):
        p.run()


class FrameSource(Source):
    source_type = "frame_source"

    def __init__(self, configuration):
        super().__init__(configuration)
        import pandas as pd

        self.frames = [pd.DataFrame({"x": [1, 2, 3]}), pd.DataFrame({"x": [4]}), pd.DataFrame({"x": []})]

    def extract(self):
        return self.frames.pop(0)


def test_extract_may_return_dataframes():
    p = Pipeline(source=FrameSource, target=Collect, configuration=config({"frame_source": {}}, {"collect": {}}), progress="off")
    assert p.run()["rows_loaded"] == 4
    assert sorted(p.target.rows()["x"]) == [1, 2, 3, 4]


class Striped(Source):
    source_type = "striped"

    def __init__(self, configuration):
        super().__init__(configuration)
        self.sent = set()
        self.lock = threading.Lock()

    def extract(self, i):
        with self.lock:
            if i in self.sent:
                return []
            self.sent.add(i)
        return [{"worker": i, "n": k} for k in range(100)]


def test_concurrent_source_workers_get_their_index():
    p = Pipeline(
        source=Striped,
        target=Collect,
        configuration=config({"striped": {"concurrency": 3}}, {"collect": {}}),
        progress="off",
    )
    assert p.run()["rows_loaded"] == 300
    assert sorted(set(p.target.rows()["worker"])) == [0, 1, 2]


def test_incremental_runs_start_after_the_target_offset():
    p = Pipeline(
        source=Numbers,
        target=Collect,
        configuration=config({"numbers": {"total": 100}}, {"collect": {"stored_max": 89}}, mode="INCREMENTAL"),
        progress="off",
    )
    p.run()
    assert sorted(p.target.rows()["id"]) == list(range(90, 100))


class Marsh(Source):
    source_type = "marsh"

    @classmethod
    def configuration_schema(cls):
        import marshmallow as mm

        class Schema(SourceConfigSchema):
            table = mm.fields.String(required=True)
            batch_size = mm.fields.Integer(strict=True)

        return Schema

    def extract(self):
        return []


def test_config_problems_are_all_reported_with_paths():
    with pytest.raises(ConfigError) as info:
        Pipeline(
            source=Marsh,
            target="file",
            configuration={
                "replication_mode": "SOMETIMES",
                "source": {"marsh": {"batch_size": "10", "colour": "red"}},
                "target": {"file": {"format": "parquet"}},
            },
        )
    paths = [p for p, _ in info.value.problems]
    assert "replication_mode" in paths
    assert "source.marsh.table" in paths
    assert "source.marsh.batch_size" in paths
    assert "source.marsh.colour" in paths
    assert "target.file" in paths or any(p.startswith("target.file") for p in paths)
    assert "source.marsh.table" in str(info.value)


def test_json_schema_of_a_python_component_is_checked_by_the_engine():
    with pytest.raises(ConfigError) as info:
        Pipeline(source=Numbers, target=Collect, configuration=config({"numbers": {"total": -1}}, {"collect": {}}))
    assert [p for p, _ in info.value.problems] == ["source.numbers.total"]


def test_unknown_plugin_lists_the_available_ones():
    with pytest.raises(ConfigError, match="no plugin provides the target `nowhere`"):
        Pipeline(source=Numbers, target="nowhere", configuration=config({"numbers": {"total": 1}}, {"nowhere": {}}))


def test_env_interpolation_reaches_python_components(monkeypatch):
    monkeypatch.setenv("FL_TEST_LABEL", "nightly")
    p = Pipeline(
        source=Numbers,
        target=Collect,
        configuration=config({"numbers": {"total": 3}}, {"collect": {"label": "${FL_TEST_LABEL}"}}),
        progress="off",
    )
    assert p.target.configuration == {"label": "nightly"}
