"""Helpers kept from the original fastlane: ``classproperty`` and ``get_secret``."""

from __future__ import annotations

import json
from typing import Any, Callable, Generic, TypeVar

from .errors import FastlaneError

T = TypeVar("T")


class classproperty(Generic[T]):
    """A read-only property of the class: ``@classproperty def source_type(cls) -> str``."""

    def __init__(self, getter: Callable[[Any], T]):
        self.getter = getter
        self.__doc__ = getter.__doc__

    def __get__(self, instance: Any, owner: type | None = None) -> T:
        return self.getter(owner if owner is not None else type(instance))


def get_secret(name: str, region: str | None = None) -> dict[str, Any]:
    """Reads the AWS Secrets Manager secret ``name`` and returns its JSON object as a dict.

    The secret is read through the ``aws`` plugin, as connectors' ``secret`` settings are:
    the standard AWS credential chain, ``region`` (default: ``AWS_REGION`` or the profile's),
    and ``AWS_ENDPOINT_URL`` for a compatible service. Errors never quote the secret's value.
    """
    from . import _native

    try:
        text = _native.get_secret(name, region)
    except ValueError as e:
        raise FastlaneError(str(e)) from None
    value = json.loads(text)
    if not isinstance(value, dict):
        raise FastlaneError(f"the secret `{name}` is not a JSON object")
    return value
