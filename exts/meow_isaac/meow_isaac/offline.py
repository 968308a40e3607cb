"""Offline-first start: when Isaac Lab's asset server cannot be reached, use a local asset root.

Isaac Lab reads every USD file from ``ISAACSIM_ASSET_ROOT`` (NVIDIA's server by default). Before
a task is created, :func:`choose_asset_root` decides, in a few seconds at most:

- ``ISAACSIM_ASSET_ROOT`` set, or the server answers: nothing changes;
- otherwise the local asset root in the cache directory (``MEOW_ISAAC_ASSET_CACHE``, default
  ``~/.cache/meow_isaac/assets``) becomes the asset root. Once the task's config is resolved,
  :meth:`OfflineRoot.provide` builds the files :mod:`meow_isaac.assets` can build (ground, Ant,
  Humanoid; ANYmal-C and the Allegro hand from their description wheels) there the first time
  and reuses them afterwards, each time saying so in one line; a task that needs any other file
  (ANYmal-D), or a robot whose description wheel is absent, is a one-line error, with nothing written.
"""

from __future__ import annotations

import importlib
import os
import sys
import threading
import time
import urllib.error
import urllib.request
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from meow_isaac.assets import (
    BUILDABLE,
    AssetError,
    build_local_asset_root,
    buildable_now,
    description_missing,
    labels,
    missing_assets,
)

CACHE_ENV = "MEOW_ISAAC_ASSET_CACHE"
"""Environment variable naming the directory of the local asset root built for offline runs."""
PROBE_TIMEOUT_S = 3.0
PROBE_FILE = "Isaac/IsaacLab/Environments/Grid/default_ground_plane_checker_v1/default_ground_plane.usda"


def cache_dir() -> Path:
    """Where the offline asset root is built: ``$MEOW_ISAAC_ASSET_CACHE``, else the user cache."""
    if os.environ.get(CACHE_ENV):
        return Path(os.environ[CACHE_ENV]).expanduser()
    base = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache")
    return base / "meow_isaac" / "assets"


def server_reachable(root: str, timeout: float = PROBE_TIMEOUT_S) -> bool:
    """Whether the asset server at URL ``root`` answers within ``timeout`` seconds (any HTTP status).

    Runs in a thread, so that a name lookup that hangs (no timeout of its own) cannot hold the start.
    """
    answer: list[bool] = []

    def probe() -> None:
        request = urllib.request.Request(f"{root.rstrip('/')}/{PROBE_FILE}", method="HEAD")
        try:
            urllib.request.urlopen(request, timeout=timeout).close()
            answer.append(True)
        except urllib.error.HTTPError:
            answer.append(True)  # the server answered, if only to refuse this file
        except (OSError, ValueError):
            answer.append(False)

    thread = threading.Thread(target=probe, daemon=True)
    thread.start()
    thread.join(timeout)
    return bool(answer and answer[0])


@dataclass
class OfflineRoot:
    """The local asset root chosen because ``server`` cannot be reached."""

    root: Path
    server: str
    probe_s: float

    def provide(self, env_cfg: Any, task: str) -> None:
        """Builds the files ``task`` needs under :attr:`root` (first time) or reuses them; raises
        :class:`AssetError` (nothing written) when it needs a file that cannot be built here:
        not in :data:`~meow_isaac.assets.BUILDABLE`, or a robot whose description wheel is absent."""
        missing = [os.path.relpath(p, self.root) for p in missing_assets(env_cfg)]
        foreign = [p for p in missing if p not in BUILDABLE]
        if foreign:
            more = f" (and {len(foreign) - 1} more)" if len(foreign) > 1 else ""
            raise AssetError(
                f"{task} needs {foreign[0]}{more} from Isaac Lab's asset server {self.server}, which "
                f"cannot be reached, and ISAACSIM_ASSET_ROOT is unset; copy NVIDIA's Isaac assets to a "
                "directory and set ISAACSIM_ASSET_ROOT to it (docs/ISAACLAB.md, 'Offline machines'); "
                f"offline, meow_isaac builds only {labels(BUILDABLE)} itself"
            )
        for rel in missing:
            if err := description_missing(rel):
                raise AssetError(f"{task} needs {rel}, built offline from a robot description: {err}")
        t = time.perf_counter()
        built = buildable_now()
        if missing or any(not (self.root / rel).is_file() for rel in built):
            build_local_asset_root(self.root)
            took = time.perf_counter() - t
            what = f"built the local asset root {self.root} ({labels(built)}) in {took:.1f} s"
        else:
            what = f"using the local asset root {self.root}, built earlier"
        print(
            f"[meow] Isaac Lab's asset server cannot be reached ({self.probe_s:.1f} s) and "
            f"ISAACSIM_ASSET_ROOT is unset: {what} ({CACHE_ENV} moves it)",
            flush=True,
        )


def choose_asset_root(server: str | None = None) -> OfflineRoot | None:
    """Points Isaac Lab at the local asset root when its server cannot be reached; None when
    nothing changes (``ISAACSIM_ASSET_ROOT`` set, a local or non-HTTP root, or the server answers).

    Must run before Isaac Lab's task configs are imported: they copy the asset root into their
    file paths when they are. Writes nothing; :meth:`OfflineRoot.provide` does, once the task is known.

    Args:
        server: the asset root URL to probe (default: the one Isaac Lab would use).
    """
    if os.environ.get("ISAACSIM_ASSET_ROOT"):
        return None
    import isaaclab.utils.assets as isaac_assets

    server = server or isaac_assets.NUCLEUS_ASSET_ROOT_DIR
    if not server.startswith(("http://", "https://")):
        return None
    t = time.perf_counter()
    if server_reachable(server):
        return None
    if any(name in sys.modules for name in ("isaaclab_tasks", "isaaclab_assets")):
        return None  # too late: their configs hold the server's paths already
    root = cache_dir().resolve()
    os.environ["ISAACSIM_ASSET_ROOT"] = str(root)  # also for the processes this one starts
    importlib.reload(isaac_assets)  # recomputes ISAAC_NUCLEUS_DIR & co. from the variable
    return OfflineRoot(root, server, time.perf_counter() - t)
