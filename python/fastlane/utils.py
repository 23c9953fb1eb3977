"""Helpers kept from the original fastlane: ``classproperty`` and ``get_secret``."""

from __future__ import annotations

import base64
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


def get_secret(name: str, region: str) -> dict[str, Any]:
    """Reads the AWS Secrets Manager secret ``name`` in ``region`` and returns its JSON as a dict.

    Uses boto3 and the default AWS credential chain, as the original did. ``SecretString`` is
    parsed as JSON; ``SecretBinary`` is base64-decoded first.
    """
    try:
        import boto3  # type: ignore[import-not-found]
    except ImportError as e:
        raise FastlaneError(
            "get_secret needs boto3 (pip install boto3) to reach AWS Secrets Manager"
        ) from e
    client = boto3.client("secretsmanager", region_name=region)
    response = client.get_secret_value(SecretId=name)
    if "SecretString" in response:
        text = response["SecretString"]
    else:
        text = base64.b64decode(response["SecretBinary"]).decode("utf-8")
    try:
        value = json.loads(text)
    except json.JSONDecodeError as e:
        raise FastlaneError(f"the secret `{name}` is not a JSON document") from e
    if not isinstance(value, dict):
        raise FastlaneError(f"the secret `{name}` is not a JSON object")
    return value
