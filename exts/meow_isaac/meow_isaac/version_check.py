"""Whether this Python has an Isaac Lab that meow_isaac can drive (3.x), checked without importing it.

A module of its own because both the task registration (:mod:`meow_isaac.tasks`) and the
environment adapter (:mod:`meow_isaac.env`) check it first, and the adapter imports the
registration: kept in either, the two would import each other.
"""

from __future__ import annotations

import importlib.util
import sys
from importlib.metadata import PackageNotFoundError, version


def isaaclab_version() -> str | None:
    """The installed Isaac Lab version, or None."""
    try:
        return version("isaaclab")
    except PackageNotFoundError:
        return None


def require_isaaclab() -> None:
    """Raises a one-line error when Isaac Lab 3.x is not importable in this Python."""
    ver = isaaclab_version()
    if ver is None or importlib.util.find_spec("isaaclab_tasks") is None:
        raise ImportError(
            "Isaac Lab is not installed in this Python "
            f"({sys.executable}); Isaac tasks need isaaclab>=3.0 "
            "(bash scripts/setup.sh installs it with Python 3.12, or use the container: docs/CONTAINER.md)"
        )
    if int(ver.split(".")[0]) < 3:
        raise ImportError(
            f"Isaac Lab {ver} is installed; meow_isaac needs Isaac Lab 3.x (its kit-less launch and task API)"
        )
