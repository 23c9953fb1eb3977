"""fastlane: move data from a source through a transform into a target, fast.

The engine is written in Rust (``fastlane._native``); connectors are plugins found at run time,
and Python subclasses of :class:`Source`, :class:`Transform` and :class:`Target` run inside the
same engine::

    from fastlane import Pipeline
    Pipeline(source=MySource, target="file", configuration=config).run()
"""

from __future__ import annotations

from pathlib import Path

from . import _native

_native.set_package_plugin_dir(str(Path(__file__).resolve().parent / "plugins"))

from .errors import ConfigError, FastlaneError, PipelineError  # noqa: E402
from .pipeline import Pipeline  # noqa: E402
from .run_pipeline import driver  # noqa: E402
from .source import Source, SourceConfigSchema  # noqa: E402
from .target import Target, TargetConfigSchema  # noqa: E402
from .transform import Transform, TransformConfigSchema  # noqa: E402

__version__: str = _native.__version__

__all__ = [
    "ConfigError",
    "FastlaneError",
    "Pipeline",
    "PipelineError",
    "Source",
    "SourceConfigSchema",
    "Target",
    "TargetConfigSchema",
    "Transform",
    "TransformConfigSchema",
    "__version__",
    "driver",
]
