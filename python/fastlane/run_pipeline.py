"""The ``fastlane`` command and the programmatic ``driver()``, as in the original."""

from __future__ import annotations

import os
import signal
import sys
from pathlib import Path
from typing import Any, Sequence

from . import _native
from .pipeline import ComponentSpec, Pipeline


def main(argv: Sequence[str] | None = None) -> None:
    """The ``fastlane`` command: the same command line as the Rust binary, on the same engine."""
    args = list(sys.argv[1:] if argv is None else argv)
    # The engine runs without the GIL: let Ctrl-C end the command as it ends the binary.
    if hasattr(signal, "SIGINT"):
        signal.signal(signal.SIGINT, signal.SIG_DFL)
    sys.stdout.flush()
    code = _native.cli_main(["fastlane", *args])
    sys.exit(code)


def driver(
    source_type: ComponentSpec,
    transform_type: ComponentSpec,
    target_type: ComponentSpec,
    configuration_file: str | os.PathLike[str],
    **kwargs: Any,
) -> dict[str, Any]:
    """Runs a pipeline from a JSON configuration file, as the original ``driver()`` did.

    Each type is a plugin id or the type name of a Python subclass defined in this process, or
    the class itself. Returns the run summary; raises ``ConfigError`` or ``PipelineError``.
    """
    pipeline = Pipeline(
        source=source_type,
        transform=transform_type,
        target=target_type,
        configuration=Path(configuration_file),
        **kwargs,
    )
    return pipeline.run()


if __name__ == "__main__":  # pragma: no cover
    main()
