"""Sources: where data comes from. Subclass :class:`Source` to read from anything in Python."""

from __future__ import annotations

import abc
from typing import Any, ClassVar

from . import _component
from .utils import classproperty

#: Rows per batch handed on by default (see ``batch_rows``).
DEFAULT_BATCH_ROWS = 65_536

#: The properties every source configuration may have, as JSON Schema.
BASE_PROPERTIES: dict[str, Any] = {
    "offset": {"description": "The key to start after (FULL_TABLE), or the first offset."},
    "concurrency": {"type": "integer", "minimum": 1, "description": "Workers calling extract(i)."},
    "batch_rows": {
        "type": "integer",
        "minimum": 1,
        "description": "Rows per batch handed on: the rows of consecutive extract() calls are gathered up to it, for at most 250 ms (default 65536; 1 hands on each call's rows alone).",
    },
    "secret": {"type": "string", "description": "An AWS Secrets Manager secret with connection fields."},
    "secret_region": {"type": "string", "description": "The secret's region."},
}

if _component.HAS_MARSHMALLOW:
    import marshmallow as _mm

    class SourceConfigSchema(_mm.Schema):
        """The marshmallow schema of the fields every source accepts; extend it with yours."""

        class Meta:
            unknown = _mm.RAISE

        offset = _mm.fields.Raw(allow_none=True)
        concurrency = _mm.fields.Integer(validate=_mm.validate.Range(min=1))
        batch_rows = _mm.fields.Integer(validate=_mm.validate.Range(min=1))
        secret = _mm.fields.String()
        secret_region = _mm.fields.String()

else:  # pragma: no cover - without marshmallow, schemas are JSON Schema dicts

    class SourceConfigSchema:  # type: ignore[no-redef]
        """Needs marshmallow; without it, return a JSON Schema dict (see :func:`json_schema`)."""

        def __init__(self, *args: Any, **kwargs: Any) -> None:
            raise ImportError("SourceConfigSchema needs marshmallow (pip install marshmallow)")


def json_schema(properties: dict[str, Any], required: tuple[str, ...] | list[str] = ()) -> dict[str, Any]:
    """A JSON Schema for a source's configuration: the base fields plus ``properties``."""
    return _component.json_schema(BASE_PROPERTIES, properties, required)


class Source(abc.ABC):
    """A source implemented in Python, run inside the fastlane engine.

    Contract:

    - ``extract()`` (or ``extract(i)``, ``i`` being the worker index when ``concurrency`` > 1)
      returns the next batch as a list of dicts, or a DataFrame (pandas, polars) or pyarrow
      Table. An empty list (or frame) ends the source. It is called repeatedly from an engine
      worker thread, holding the GIL only during the call.
    - ``source_type`` names the source (a class attribute or a ``classproperty``); it is the
      key of its section in the configuration: ``{"source": {"<source_type>": {...}}}``.
    - ``configuration_schema()`` returns a marshmallow schema (derived from
      :class:`SourceConfigSchema`) or a JSON Schema dict (see :func:`json_schema`) that
      validates that section.
    - ``schema`` (optional) declares the Arrow schema of the rows: a ``pyarrow.Schema`` or a
      dict of column name to type (``{"id": "int64", "name": "string"}``). Without it the
      schema is inferred from the first batch.
    - The rows of consecutive ``extract`` calls are gathered into batches of ``batch_rows``
      rows (from the configuration; default 65,536) before they move on, so transforms and
      targets see fewer, larger batches. Gathering lasts at most 250 ms, so the rows of a slow
      source still move on (and a stop is seen) that often; the last batch may be smaller.
    - ``finish()`` is called once when the source has ended, or when the run stopped.
    - In INCREMENTAL runs ``self.offset`` is set to the target's offset before the first
      ``extract`` call: read strictly after it.
    """

    schema: ClassVar[Any] = None

    def __init__(self, configuration: dict[str, Any]):
        self.configuration = configuration
        self.offset: Any = configuration.get("offset")
        self.concurrency: int = int(configuration.get("concurrency", 1))
        self.batch_rows: int = int(configuration.get("batch_rows", DEFAULT_BATCH_ROWS))

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        _component.check_method(cls, "extract", (0, 1), "extract(self) or extract(self, i)")
        _component.check_method(cls, "finish", (0,), "finish(self)")
        _component.register("source", cls, "source_type")

    @abc.abstractmethod
    def extract(self, *args: Any) -> Any:
        """Returns the next batch: a list of dicts (``[]`` at the end) or a frame."""

    def finish(self) -> None:
        """Releases what the source holds (connections, files). Called once."""

    @classproperty
    def source_type(cls) -> str:
        """The source's type name, as used in the configuration and on the command line."""
        raise NotImplementedError

    @classmethod
    def configuration_schema(cls) -> Any:
        """The schema of this source's configuration section."""
        if _component.HAS_MARSHMALLOW:
            return SourceConfigSchema
        return json_schema({})
