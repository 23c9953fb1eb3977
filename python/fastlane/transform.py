"""Transforms: change each batch on its way from the source to the target."""

from __future__ import annotations

import abc
from typing import Any, ClassVar

from . import _component, _frames
from .utils import classproperty

#: The properties every transform configuration may have, as JSON Schema.
BASE_PROPERTIES: dict[str, Any] = {
    "add_op_fields": {
        "type": "boolean",
        "description": "Add `_op_type` (\"i\") and `_op_timestamp` (epoch ms) before transform(df).",
    },
    "concurrency": {"type": "integer", "minimum": 1, "description": "Transform workers."},
}

if _component.HAS_MARSHMALLOW:
    import marshmallow as _mm

    class TransformConfigSchema(_mm.Schema):
        """The marshmallow schema of the fields every transform accepts; extend it with yours."""

        class Meta:
            unknown = _mm.RAISE

        add_op_fields = _mm.fields.Boolean()
        concurrency = _mm.fields.Integer(validate=_mm.validate.Range(min=1))

else:  # pragma: no cover

    class TransformConfigSchema:  # type: ignore[no-redef]
        """Needs marshmallow; without it, return a JSON Schema dict (see :func:`json_schema`)."""

        def __init__(self, *args: Any, **kwargs: Any) -> None:
            raise ImportError("TransformConfigSchema needs marshmallow (pip install marshmallow)")


def json_schema(properties: dict[str, Any], required: tuple[str, ...] | list[str] = ()) -> dict[str, Any]:
    """A JSON Schema for a transform's configuration: the base fields plus ``properties``."""
    return _component.json_schema(BASE_PROPERTIES, properties, required)


class Transform(abc.ABC):
    """A transform implemented in Python, run by the engine's transform workers.

    Contract:

    - ``transform(df)`` receives one batch as a DataFrame and returns the transformed one.
      A batch from a Python source holds the rows of one or more ``extract`` calls (see the
      source's ``batch_rows``).
      ``frame_type`` chooses the kind: ``"pandas"`` (the default, as in the original),
      ``"polars"`` or ``"pyarrow"`` (a ``pyarrow.Table``). Data crosses through the Arrow
      PyCapsule interface. Columns that keep their name get their Arrow type back when the
      frame library changed it losslessly (pandas makes ints with nulls floats).
    - With ``add_op_fields`` (default true, as in the original) the batch gets
      ``_op_type = "i"`` and ``_op_timestamp`` (epoch milliseconds) before ``transform``.
    - ``concurrency`` workers call ``transform`` from several threads; each call holds the GIL.
    - ``transform_type`` names it; its section is ``{"transform": {...}}`` or
      ``{"transform": {"<transform_type>": {...}}}``.
    """

    frame_type: ClassVar[str] = "pandas"

    def __init__(self, configuration: dict[str, Any]):
        self.configuration = configuration
        self.add_op_fields: bool = bool(configuration.get("add_op_fields", True))
        self.concurrency: int = int(configuration.get("concurrency", 1))

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        _component.check_method(cls, "transform", (1,), "transform(self, df)")
        if cls.frame_type not in _frames.FRAME_TYPES:
            raise TypeError(
                f"{cls.__qualname__}.frame_type must be one of {', '.join(_frames.FRAME_TYPES)}, "
                f"not {cls.frame_type!r}"
            )
        _component.register("transform", cls, "transform_type")

    @abc.abstractmethod
    def transform(self, df: Any) -> Any:
        """Returns the transformed DataFrame."""

    @classproperty
    def transform_type(cls) -> str:
        """The transform's type name."""
        raise NotImplementedError

    @classmethod
    def configuration_schema(cls) -> Any:
        """The schema of this transform's configuration section."""
        if _component.HAS_MARSHMALLOW:
            return TransformConfigSchema
        return json_schema({})
