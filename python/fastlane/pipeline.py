"""The :class:`Pipeline`: a source, a transform and a target run by the fastlane engine."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any, Sequence, Union

from . import _component, _native
from .source import DEFAULT_BATCH_ROWS, Source
from .target import Target
from .transform import Transform

ComponentSpec = Union[str, type, object, None]

_KINDS = {
    "source": (Source, "source_type"),
    "transform": (Transform, "transform_type"),
    "target": (Target, "target_type"),
}


def _plugin_dirs(extra: Sequence[str | os.PathLike[str]]) -> list[str]:
    return [os.fspath(p) for p in extra]


class _Resolved:
    """A component as given: a plugin id, or a Python class (and maybe an instance)."""

    def __init__(self, kind: str, spec: ComponentSpec):
        base, attribute = _KINDS[kind]
        self.kind = kind
        self.cls: type | None = None
        self.instance: Any = None
        if isinstance(spec, str):
            self.id: str | None = spec
            self.cls = _component.REGISTRY[kind].get(spec)
        elif spec is None:
            self.id = None
        elif isinstance(spec, type):
            if not issubclass(spec, base):
                raise TypeError(f"{kind} must be a {base.__name__} subclass or a plugin id, not {spec.__qualname__}")
            self.cls = spec
            self.id = self._name(spec, attribute)
        elif isinstance(spec, base):
            self.instance = spec
            self.cls = type(spec)
            self.id = self._name(type(spec), attribute)
        else:
            raise TypeError(
                f"{kind} must be a plugin id (str), a {base.__name__} subclass or instance, "
                f"not {type(spec).__name__}"
            )

    @staticmethod
    def _name(cls: type, attribute: str) -> str:
        name = _component.type_name(cls, attribute)
        if name is None:
            raise TypeError(f"{cls.__qualname__} does not define `{attribute}`")
        return name

    def python_entry(self) -> tuple[str, str, str, str | None] | None:
        if self.cls is None:
            return None
        schema, validator = _component.schema_for(self.cls)
        self.validator = validator
        doc = (self.cls.__doc__ or "").strip().splitlines()
        return (self.kind, self.id or "", doc[0] if doc else self.cls.__qualname__, schema)


class Pipeline:
    """Moves data from a source through a transform into a target on the fastlane engine.

    ``source``, ``transform`` and ``target`` are each a plugin id (``"mysql"``, ``"file"``),
    a Python subclass of :class:`~fastlane.source.Source` / :class:`~fastlane.transform.Transform`
    / :class:`~fastlane.target.Target` (instantiated with its configuration section), or an
    instance of one. A string that names a Python subclass defined in this process selects it
    (as the original's type names did); otherwise it names a plugin. ``transform=None`` uses
    the built-in ``default`` transform.

    ``configuration`` is the pipeline configuration (the original's layout) as a dict, or the
    path of a JSON file. It is validated at once against every component's schema; every
    problem is reported together in a :class:`~fastlane.errors.ConfigError`. Components given
    as classes are then created, in the order source, transform, target.

    ``plugin_dirs`` are searched for plugins before ``FASTLANE_PLUGIN_PATH`` and the plugins
    shipped with the package. ``progress`` is ``"auto"``, ``"bar"``, ``"log"`` or ``"off"``.
    """

    def __init__(
        self,
        source: ComponentSpec,
        transform: ComponentSpec = None,
        target: ComponentSpec = None,
        configuration: dict[str, Any] | str | os.PathLike[str] | None = None,
        *,
        plugin_dirs: Sequence[str | os.PathLike[str]] = (),
        progress: str = "auto",
        **kwargs: Any,
    ):
        if target is None:
            raise TypeError("Pipeline needs a target")
        if configuration is None:
            raise TypeError("Pipeline needs a configuration (a dict or the path of a JSON file)")
        self.options = kwargs
        self.progress = progress
        if isinstance(configuration, dict):
            text = json.dumps(configuration)
            file = "<configuration>"
        else:
            path = Path(configuration)
            text = path.read_text()
            file = str(path)
        resolved = {
            "source": _Resolved("source", source),
            "transform": _Resolved("transform", transform),
            "target": _Resolved("target", target),
        }
        python = [e for e in (r.python_entry() for r in resolved.values()) if e is not None]
        validators = {
            (r.kind, r.id): r.validator
            for r in resolved.values()
            if r.cls is not None and r.validator is not None
        }

        def validate(kind: str, id: str, section: Any, path: str) -> list[tuple[str, str]]:
            check = validators.get((kind, id))
            if check is None:
                return []
            if not isinstance(section, dict):
                return [(path, "must be an object")]
            return check(section, path)

        self._config = _native.load_config(
            text,
            file,
            source=resolved["source"].id,
            transform=resolved["transform"].id,
            target=resolved["target"].id,
            python=python,
            validator=validate,
            plugin_dirs=_plugin_dirs(plugin_dirs),
        )
        self.replication_mode: str = self._config.replication_mode
        self.name: str | None = self._config.name
        sections = self._config.sections()
        self._resolved = resolved
        self.source = self._create(resolved["source"], sections["source"])
        self.transform = self._create(resolved["transform"], sections["transform"])
        self.target = self._create(resolved["target"], sections["target"])
        self.summary: dict[str, Any] | None = None

    @staticmethod
    def _create(r: _Resolved, section: tuple[str, Any]) -> Any:
        _, config = section
        if r.instance is not None:
            return r.instance
        if r.cls is not None:
            return r.cls(configuration=config)
        return section[0]

    @property
    def pipeline_id(self) -> str:
        """``<target_id>.<source_type>.<target_type>``, as the original named pipelines."""
        target = self._resolved["target"]
        if target.cls is not None:
            tid = target.cls.target_id(getattr(self.target, "configuration", {}))
        else:
            tid = self.name or "pipeline"
        return f"{tid}.{self._resolved['source'].id}.{target.id}"

    def run(self) -> dict[str, Any]:
        """Runs the pipeline to the end and returns the run summary (rows, bytes, duration,
        rows/s and busy time per stage, queue peaks, peak memory).

        Raises :class:`~fastlane.errors.PipelineError` when a stage fails (the target is
        aborted); a Python exception raised by a component is its ``__cause__``. Ctrl-C stops
        the run cleanly (the target is aborted) and raises ``KeyboardInterrupt``.
        """
        src, tr, tg = (self._resolved[k] for k in ("source", "transform", "target"))
        source = None
        if src.cls is not None:
            with_index = _component.check_method(type(self.source), "extract", (0, 1), "") == 1
            source = (
                self.source,
                {
                    "with_index": with_index,
                    "partitions": getattr(self.source, "concurrency", 1),
                    "batch_size": getattr(self.source, "batch_rows", DEFAULT_BATCH_ROWS),
                    "schema": _arrow_schema(type(self.source).schema),
                },
            )
        transform = None
        if tr.cls is not None:
            transform = (
                self.transform,
                {
                    "frame": type(self.transform).frame_type,
                    "add_op_fields": getattr(self.transform, "add_op_fields", True),
                },
            )
        target = None
        if tg.cls is not None:
            target = (
                self.target,
                {
                    "frame": type(self.target).frame_type,
                    "batch_size": getattr(self.target, "batch_size", 1),
                },
            )
        self.summary = self._config.run(source, transform, target, progress=self.progress)
        return self.summary


def _arrow_schema(spec: Any) -> Any:
    """A declared source schema as an object with ``__arrow_c_schema__``."""
    if spec is None or hasattr(spec, "__arrow_c_schema__"):
        return spec
    if isinstance(spec, dict):
        import pyarrow as pa

        fields = []
        for name, t in spec.items():
            if isinstance(t, str):
                try:
                    t = pa.type_for_alias(t)
                except ValueError as e:
                    raise TypeError(f"schema: column `{name}` has the unknown type name {t!r}") from e
            fields.append(pa.field(name, t))
        return pa.schema(fields)
    raise TypeError(f"Source.schema must be a pyarrow.Schema or a dict, not {type(spec).__name__}")
