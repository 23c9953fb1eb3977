"""What the Source, Transform and Target base classes share: configuration schemas (marshmallow
or JSON Schema), signature checks on subclasses, and the registry of subclasses by type name."""

from __future__ import annotations

import inspect
import json
from typing import Any, Callable

try:  # marshmallow is optional, as a way to write configuration schemas
    import marshmallow as _marshmallow
except ImportError:  # pragma: no cover - exercised when marshmallow is absent
    _marshmallow = None

HAS_MARSHMALLOW = _marshmallow is not None

#: Python subclasses by kind and type name, so that ``driver("mysource", ...)`` finds them.
REGISTRY: dict[str, dict[str, type]] = {"source": {}, "transform": {}, "target": {}}


def positional_arity(cls: type, name: str) -> tuple[int, int] | None:
    """(required, maximum) positional parameters of method ``name`` after ``self``;
    maximum is -1 with ``*args``. ``None`` when the class does not define it."""
    fn = inspect.getattr_static(cls, name, None)
    if fn is None:
        return None
    if isinstance(fn, (staticmethod, classmethod)):
        raise TypeError(f"{cls.__qualname__}.{name} must be a plain method, not a {type(fn).__name__}")
    if not callable(fn):
        raise TypeError(f"{cls.__qualname__}.{name} must be a method, not {type(fn).__name__}")
    sig = inspect.signature(fn)
    params = list(sig.parameters.values())[1:]
    required = 0
    maximum = 0
    for p in params:
        if p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD):
            maximum += 1
            if p.default is p.empty:
                required += 1
        elif p.kind is p.VAR_POSITIONAL:
            maximum = -1
        elif p.kind is p.KEYWORD_ONLY and p.default is p.empty:
            raise TypeError(
                f"{cls.__qualname__}.{name} has the required keyword-only parameter `{p.name}`, "
                "which fastlane cannot pass"
            )
    return required, maximum


def check_method(cls: type, name: str, allowed: tuple[int, ...], usage: str) -> int | None:
    """Checks that ``cls.name`` can be called with one of ``allowed`` positional argument counts;
    returns the count fastlane will use (the largest allowed), or ``None`` if not defined here."""
    arity = positional_arity(cls, name)
    if arity is None:
        return None
    required, maximum = arity
    for n in sorted(allowed, reverse=True):
        if required <= n and (maximum == -1 or n <= maximum):
            return n
    raise TypeError(
        f"{cls.__qualname__}.{name} has the wrong signature {name}"
        f"{inspect.signature(inspect.getattr_static(cls, name))}; expected {usage}"
    )


def type_name(cls: type, attribute: str) -> str | None:
    """The type name a subclass declares (``source_type``…), or ``None``."""
    try:
        value = getattr(cls, attribute)
    except NotImplementedError:
        return None
    if value is None or isinstance(value, property):
        return None
    if not isinstance(value, str) or not value:
        raise TypeError(f"{cls.__qualname__}.{attribute} must be a non-empty str, not {value!r}")
    return value


def register(kind: str, cls: type, attribute: str) -> None:
    name = type_name(cls, attribute)
    if name is not None and not inspect.isabstract(cls):
        REGISTRY[kind][name] = cls


def is_marshmallow(schema: Any) -> bool:
    if not HAS_MARSHMALLOW:
        return False
    Schema = _marshmallow.Schema
    return isinstance(schema, Schema) or (isinstance(schema, type) and issubclass(schema, Schema))


def schema_for(cls: type) -> tuple[str | None, Callable[[dict, str], list[tuple[str, str]]] | None]:
    """(JSON Schema text, None) or (None, validator) for a component class."""
    schema = cls.configuration_schema()
    if schema is None:
        return json.dumps({"type": "object"}), None
    if isinstance(schema, dict):
        return json.dumps(schema), None
    if is_marshmallow(schema):
        instance = schema() if isinstance(schema, type) else schema

        def validate(section: dict, path: str) -> list[tuple[str, str]]:
            return flatten_errors(instance.validate(section), path)

        return None, validate
    raise TypeError(
        f"{cls.__qualname__}.configuration_schema() must return a marshmallow schema or a JSON "
        f"Schema dict, not {type(schema).__name__}"
    )


def flatten_errors(errors: Any, path: str) -> list[tuple[str, str]]:
    """marshmallow's nested error dict as ``(dotted path, message)`` pairs."""
    out: list[tuple[str, str]] = []
    if isinstance(errors, dict):
        for key, value in errors.items():
            if key == "_schema":
                out.extend(flatten_errors(value, path))
            elif isinstance(key, int):
                out.extend(flatten_errors(value, f"{path}[{key}]"))
            else:
                out.extend(flatten_errors(value, f"{path}.{key}" if path else str(key)))
    elif isinstance(errors, (list, tuple)):
        for item in errors:
            out.extend(flatten_errors(item, path))
    else:
        out.append((path, str(errors)))
    return out


def json_schema(base: dict[str, Any], properties: dict[str, Any], required: tuple[str, ...] | list[str]) -> dict[str, Any]:
    """A JSON Schema object with ``base`` properties plus ``properties``, rejecting others."""
    props = dict(base)
    props.update(properties)
    return {
        "type": "object",
        "additionalProperties": False,
        "properties": props,
        "required": list(required),
    }
