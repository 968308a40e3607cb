"""Isaac Lab 3.0 tests: real tasks on the kit-less Newton engine on CPU.

Isaac Lab reads ``ISAACSIM_ASSET_ROOT`` when it is first imported, so the local asset root
(the ground and every robot :mod:`meow_isaac.assets` can build) is built and exported here,
before any test module imports Isaac Lab. Without Isaac Lab in this Python the tests are
skipped, unless ``MEOW_REQUIRE_ISAACLAB=1`` (set by CI), which makes that an error.
"""

from __future__ import annotations

import importlib.util
import os
import tempfile
from pathlib import Path

import pytest

HAVE_ISAACLAB = all(
    importlib.util.find_spec(m) is not None for m in ("isaaclab", "isaaclab_tasks", "meow_isaac")
)
if not HAVE_ISAACLAB and os.environ.get("MEOW_REQUIRE_ISAACLAB") == "1":
    raise RuntimeError(
        "MEOW_REQUIRE_ISAACLAB=1 but isaaclab, isaaclab_tasks or meow_isaac is not importable; "
        "run bash scripts/setup.sh with Python 3.12"
    )

if HAVE_ISAACLAB:
    from meow_isaac.assets import build_local_asset_root

    ASSET_ROOT = build_local_asset_root(Path(tempfile.gettempdir()) / f"meow-isaac-assets-{os.getuid()}")
    os.environ["ISAACSIM_ASSET_ROOT"] = str(ASSET_ROOT)


def pytest_collection_modifyitems(config, items):
    if HAVE_ISAACLAB:
        return
    skip = pytest.mark.skip(reason="Isaac Lab 3 and meow_isaac are not installed in this Python")
    for item in items:
        if "tests/isaaclab" in str(item.path).replace(os.sep, "/"):
            item.add_marker(skip)
