"""The build backend of the fastlane package: maturin, plus the built-in plugins.

maturin builds the extension module ``fastlane._native``; the connectors are separate plugin
libraries (``libfastlane_plugin_*.so``) that the package ships in ``fastlane/plugins``. This
backend builds them with cargo, copies them into the package, then hands over to maturin.

To build a wheel with ``maturin build`` directly, first place the plugins with
``python python/build_backend/fastlane_build.py [--profile release]``.

The cargo profile is ``release`` unless ``FASTLANE_BUILD_PROFILE`` (or the config setting
``profile``) says otherwise; ``dev`` shares the build of ``cargo build``, which the test
command uses.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[2]
PLUGINS = ("file", "sqlite", "mysql", "postgres", "aws", "influxdb", "mongodb", "bigquery")

if __name__ != "__main__":
    import maturin

    get_requires_for_build_wheel = maturin.get_requires_for_build_wheel
    get_requires_for_build_sdist = maturin.get_requires_for_build_sdist
    prepare_metadata_for_build_wheel = maturin.prepare_metadata_for_build_wheel
    build_sdist = maturin.build_sdist
    if hasattr(maturin, "get_requires_for_build_editable"):
        get_requires_for_build_editable = maturin.get_requires_for_build_editable
    if hasattr(maturin, "prepare_metadata_for_build_editable"):
        prepare_metadata_for_build_editable = maturin.prepare_metadata_for_build_editable


def _profile(config_settings: dict[str, Any] | None) -> str:
    profile = (config_settings or {}).get("profile") or os.environ.get("FASTLANE_BUILD_PROFILE")
    return str(profile or "release")


def _build_plugins(profile: str) -> None:
    cargo = os.environ.get("CARGO", "cargo")
    cmd = [cargo, "build", "--profile", profile]
    for name in PLUGINS:
        cmd += ["-p", f"fastlane-plugin-{name}"]
    # Built together with the extension module's crate, the plugins' dependencies (arrow,
    # tokio, serde, ...) get the same features as the extension's, so maturin's build that
    # follows reuses them instead of compiling them a second time.
    cmd += ["-p", "fastlane-python"]
    print(f"fastlane: building the plugins: {' '.join(cmd)}", file=sys.stderr)
    subprocess.run(cmd, cwd=ROOT, check=True, stdout=sys.stderr)
    target = Path(os.environ.get("CARGO_TARGET_DIR") or ROOT / "target")
    if not target.is_absolute():
        target = ROOT / target
    out = target / ("debug" if profile == "dev" else profile)
    dest = ROOT / "python" / "fastlane" / "plugins"
    dest.mkdir(exist_ok=True)
    for old in dest.glob("libfastlane_plugin_*.so"):
        old.unlink()
    for name in PLUGINS:
        shutil.copy2(out / f"libfastlane_plugin_{name}.so", dest)


def _prepare(config_settings: dict[str, Any] | None) -> None:
    profile = _profile(config_settings)
    _build_plugins(profile)
    if profile != "release":
        args = os.environ.get("MATURIN_PEP517_ARGS", "")
        if "--profile" not in args:
            os.environ["MATURIN_PEP517_ARGS"] = f"{args} --profile {profile}".strip()


def build_wheel(wheel_directory: str, config_settings: dict[str, Any] | None = None, metadata_directory: str | None = None) -> str:
    _prepare(config_settings)
    return maturin.build_wheel(wheel_directory, config_settings, metadata_directory)


def build_editable(wheel_directory: str, config_settings: dict[str, Any] | None = None, metadata_directory: str | None = None) -> str:
    _prepare(config_settings)
    return maturin.build_editable(wheel_directory, config_settings, metadata_directory)


if __name__ == "__main__":
    import argparse

    parser = argparse.ArgumentParser(description="Build the plugins and place them in python/fastlane/plugins.")
    parser.add_argument("--profile", default=None, help="cargo profile (default: release)")
    _build_plugins(_profile({"profile": parser.parse_args().profile}))
