"""Shared fixtures of the Python tests. They run against the installed package."""

from __future__ import annotations

import os
import socket
import tempfile
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]

# Runs report into a store of the test session's own, not the user's.
_STORE_DIR = tempfile.mkdtemp(prefix="fastlane-monitor-")
os.environ["FASTLANE_STORE"] = os.path.join(_STORE_DIR, "monitor.db")
os.environ.pop("FASTLANE_MONITOR_URL", None)


def mariadb_available() -> bool:
    try:
        with socket.create_connection(("127.0.0.1", 3306), timeout=1):
            return True
    except OSError:
        return False


needs_mariadb = pytest.mark.skipif(
    not mariadb_available(), reason="no MariaDB on 127.0.0.1:3306 (tests/services.sh starts one)"
)


@pytest.fixture
def repo() -> Path:
    return REPO


def config(source: dict, target: dict, transform: dict | None = None, mode: str = "FULL_TABLE", **top) -> dict:
    """A pipeline configuration in the original's layout."""
    doc = {"replication_mode": mode, "source": source, "target": target}
    if transform is not None:
        doc["transform"] = transform
    doc.update(top)
    return doc
