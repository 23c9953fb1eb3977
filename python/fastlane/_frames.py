"""Conversions between the engine's Arrow batches and the frames Python code works with."""

from __future__ import annotations

import datetime as _dt
import decimal as _decimal
import json as _json
from typing import Any

FRAME_TYPES = ("pandas", "polars", "pyarrow")


def to_frame(batch: Any, kind: str) -> Any:
    """Turns a batch (any object with ``__arrow_c_array__``) into a frame of ``kind``."""
    import pyarrow as pa

    rb = pa.record_batch(batch)
    if kind == "pyarrow":
        return pa.Table.from_batches([rb])
    if kind == "polars":
        import polars as pl

        return pl.from_arrow(rb)
    if kind == "pandas":
        # The engine runs several workers already; pyarrow's own thread pool only adds
        # start-up cost per batch (several times the conversion itself at 10k rows).
        return rb.to_pandas(use_threads=False)
    raise ValueError(f"unknown frame type {kind!r}; expected one of {', '.join(FRAME_TYPES)}")


def _is_pandas(obj: Any) -> bool:
    module = type(obj).__module__
    return module.startswith("pandas") and type(obj).__name__ == "DataFrame"


def as_arrow(obj: Any, like: Any = None) -> Any:
    """Turns a frame (pandas, polars, pyarrow, or anything with ``__arrow_c_stream__``) into a
    ``pyarrow.Table``. With ``like`` (a batch), columns that kept their name get their original
    Arrow type back when a lossless cast allows it (pandas turns ints with nulls into floats)."""
    import pyarrow as pa

    if isinstance(obj, pa.Table):
        table = obj
    elif isinstance(obj, pa.RecordBatch):
        table = pa.Table.from_batches([obj])
    elif _is_pandas(obj):
        import pandas as pd

        keep_index = not (isinstance(obj.index, pd.RangeIndex) or all(n is None for n in obj.index.names))
        table = pa.Table.from_pandas(obj, preserve_index=keep_index, nthreads=1)
    elif hasattr(obj, "__arrow_c_stream__"):
        table = pa.table(obj)
    else:
        raise TypeError(
            f"expected a DataFrame (pandas or polars) or a pyarrow Table, got {type(obj).__name__}"
        )
    table = table.replace_schema_metadata(None)
    if like is None:
        return table
    original = pa.record_batch(like).schema
    columns = []
    fields = []
    for field, column in zip(table.schema, table.columns):
        i = original.get_field_index(field.name)
        if i >= 0:
            want = original.field(i)
            if want.type != field.type:
                try:
                    column = column.cast(want.type, safe=True)
                    field = want
                except (pa.ArrowInvalid, pa.ArrowNotImplementedError, pa.ArrowTypeError):
                    pass
            elif want.metadata:
                field = field.with_metadata(want.metadata)
        columns.append(column)
        fields.append(field)
    return pa.Table.from_arrays(columns, schema=pa.schema(fields))


def _default(value: Any) -> Any:
    if isinstance(value, (_dt.datetime, _dt.date, _dt.time)):
        return value.isoformat()
    if isinstance(value, _decimal.Decimal):
        return str(value)
    if hasattr(value, "__index__"):
        return value.__index__()
    if hasattr(value, "__float__"):
        return float(value)
    if isinstance(value, bytes):
        return value.decode("utf-8", "replace")
    return str(value)


def to_json(value: Any) -> str:
    """JSON text of an offset (datetimes as ISO text, Decimals as text, numpy numbers as numbers)."""
    return _json.dumps(value, default=_default)
