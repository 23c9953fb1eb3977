"""Exceptions raised by fastlane."""

from __future__ import annotations

from typing import Any


class FastlaneError(Exception):
    """Base class of every fastlane error."""


class ConfigError(FastlaneError, ValueError):
    """The configuration is invalid.

    ``problems`` lists every problem found, each as ``(path, message)`` where ``path`` is a
    dotted path into the configuration (``source.mysql.port``) or a flag (``--source``).
    """

    def __init__(self, message: str, problems: list[tuple[str, str]], file: str = "<inline>"):
        super().__init__(message)
        self.problems = [tuple(p) for p in problems]
        self.file = file


class PipelineError(FastlaneError, RuntimeError):
    """A run failed, or a component could not be created.

    ``stage`` is ``source``, ``transform`` or ``target``; ``component`` the component's id;
    ``during`` what it was doing. When the failure is an exception raised by Python code
    (``extract``, ``transform``, ``load``…), that exception is this error's ``__cause__``.
    ``summary`` holds what the run did before it stopped (rows, timings), when it started.
    """

    def __init__(
        self,
        message: str,
        stage: str,
        component: str,
        during: str,
        run_id: str | None = None,
        summary: dict[str, Any] | None = None,
    ):
        super().__init__(message)
        self.stage = stage
        self.component = component
        self.during = during
        self.run_id = run_id
        self.summary = summary
