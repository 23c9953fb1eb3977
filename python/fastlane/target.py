"""Targets: where data goes. Subclass :class:`Target` to load into anything from Python."""

from __future__ import annotations

import abc
from typing import Any, ClassVar

from . import _component, _frames
from .utils import classproperty

#: The properties every target configuration may have, as JSON Schema.
BASE_PROPERTIES: dict[str, Any] = {
    "batch_size": {"type": "integer", "minimum": 1, "description": "The fewest rows per load(df) call."},
    "concurrency": {"type": "integer", "minimum": 1, "description": "Target workers calling load(df)."},
    "secret": {"type": "string", "description": "An AWS Secrets Manager secret with connection fields."},
    "secret_region": {"type": "string", "description": "The secret's region."},
}

if _component.HAS_MARSHMALLOW:
    import marshmallow as _mm

    class TargetConfigSchema(_mm.Schema):
        """The marshmallow schema of the fields every target accepts; extend it with yours."""

        class Meta:
            unknown = _mm.RAISE

        batch_size = _mm.fields.Integer(validate=_mm.validate.Range(min=1))
        concurrency = _mm.fields.Integer(validate=_mm.validate.Range(min=1))
        secret = _mm.fields.String()
        secret_region = _mm.fields.String()

else:  # pragma: no cover

    class TargetConfigSchema:  # type: ignore[no-redef]
        """Needs marshmallow; without it, return a JSON Schema dict (see :func:`json_schema`)."""

        def __init__(self, *args: Any, **kwargs: Any) -> None:
            raise ImportError("TargetConfigSchema needs marshmallow (pip install marshmallow)")


def json_schema(properties: dict[str, Any], required: tuple[str, ...] | list[str] = ()) -> dict[str, Any]:
    """A JSON Schema for a target's configuration: the base fields plus ``properties``."""
    return _component.json_schema(BASE_PROPERTIES, properties, required)


class Target(abc.ABC):
    """A target implemented in Python, fed by the engine's target workers.

    Contract:

    - ``load(df)`` stores one DataFrame (``frame_type``: ``"pandas"`` by default, ``"polars"``
      or ``"pyarrow"``). Batches are gathered until they hold at least ``batch_size`` rows
      (from the configuration), then loaded; the last load may be smaller. ``concurrency``
      workers call it from several threads.
    - ``get_offset()`` returns the largest replication key already stored (INCREMENTAL runs),
      or ``None``.
    - ``commit()`` runs after every batch was loaded and every stage succeeded; ``abort()``
      when the run failed or was stopped. Then ``finish()`` runs in both cases.
    - ``target_type`` names it; ``target_id(configuration)`` identifies the destination.
    - ``self.run_id`` holds the run's id once the run has started.
    """

    frame_type: ClassVar[str] = "pandas"

    def __init__(self, configuration: dict[str, Any]):
        self.configuration = configuration
        self.batch_size: int = int(configuration.get("batch_size", 1))
        self.concurrency: int = int(configuration.get("concurrency", 1))
        self.run_id: str | None = None

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        _component.check_method(cls, "load", (1,), "load(self, df)")
        _component.check_method(cls, "get_offset", (0,), "get_offset(self)")
        for name in ("commit", "abort", "finish"):
            _component.check_method(cls, name, (0,), f"{name}(self)")
        if cls.frame_type not in _frames.FRAME_TYPES:
            raise TypeError(
                f"{cls.__qualname__}.frame_type must be one of {', '.join(_frames.FRAME_TYPES)}, "
                f"not {cls.frame_type!r}"
            )
        _component.register("target", cls, "target_type")

    @abc.abstractmethod
    def load(self, df: Any) -> None:
        """Stores one DataFrame."""

    def get_offset(self) -> Any:
        """The largest replication key already stored, or ``None``."""
        return None

    def commit(self) -> None:
        """Makes the run's loads visible (called once, after the last load)."""

    def abort(self) -> None:
        """Undoes or abandons the run's loads (called once, when the run failed)."""

    def finish(self) -> None:
        """Releases what the target holds. Called once, after commit() or abort()."""

    @classproperty
    def target_type(cls) -> str:
        """The target's type name."""
        raise NotImplementedError

    @classmethod
    def target_id(cls, configuration: dict[str, Any]) -> str:
        """A unique id of the destination (``<database>.<table>``, say)."""
        return cls.target_type

    @classmethod
    def configuration_schema(cls) -> Any:
        """The schema of this target's configuration section."""
        if _component.HAS_MARSHMALLOW:
            return TargetConfigSchema
        return json_schema({})
