"""Robot and ground assets without NVIDIA's asset server.

Isaac Lab reads every USD file from the asset root named by ``ISAACSIM_ASSET_ROOT`` (NVIDIA's
server by default). An offline machine needs a local root holding the same relative paths.
:func:`build_local_asset_root` writes one: the ground, Ant and Humanoid from the ``newton``
package's example assets, and the robots of :mod:`meow_isaac.robots` (ANYmal-C, the Allegro
hand) from robot descriptions in wheels of the package index (:mod:`meow_isaac.descriptions`)
when those wheels are there, with the Allegro task's DexCube. :func:`missing_assets` lists what
a task would still fail to find, so the error comes before the simulator starts.

    python -m meow_isaac.assets /data/isaac_assets     # then: export ISAACSIM_ASSET_ROOT=/data/isaac_assets
"""

from __future__ import annotations

import os
import re
import sys
from pathlib import Path
from typing import Any

from meow_isaac.descriptions import AssetError, find_wheel
from meow_isaac.robots import allegro, anymal_c
from meow_isaac.robots.allegro import ALLEGRO
from meow_isaac.robots.allegro import CUBE as DEX_CUBE
from meow_isaac.robots.anymal_c import USD as ANYMAL_C

GROUND = "Isaac/IsaacLab/Environments/Grid/default_ground_plane_checker_v1/default_ground_plane.usda"
ANT = "Isaac/Robots/IsaacSim/Ant/ant_instanceable.usd"
HUMANOID = "Isaac/Robots/IsaacSim/Humanoid/humanoid_instanceable.usd"
ARROW = "Isaac/Props/UIElements/arrow_x.usd"

_GROUND_USDA = """#usda 1.0
(
    defaultPrim = "GroundPlane"
    metersPerUnit = 1
    upAxis = "Z"
)

def Xform "GroundPlane"
{
    def Plane "CollisionPlane" (
        prepend apiSchemas = ["PhysicsCollisionAPI"]
    )
    {
        uniform token axis = "Z"
        double length = 1000
        double width = 1000
    }
}
"""

# The marker of the velocity tasks' commands (visual only): a shaft and a head along +X.
_ARROW_USDA = """#usda 1.0
(
    defaultPrim = "arrow"
    metersPerUnit = 1
    upAxis = "Z"
)

def Xform "arrow"
{
    def Cylinder "shaft"
    {
        uniform token axis = "X"
        double height = 0.8
        double radius = 0.05
        double3 xformOp:translate = (0.4, 0, 0)
        uniform token[] xformOpOrder = ["xformOp:translate"]
    }

    def Cone "head"
    {
        uniform token axis = "X"
        double height = 0.2
        double radius = 0.1
        double3 xformOp:translate = (0.9, 0, 0)
        uniform token[] xformOpOrder = ["xformOp:translate"]
    }
}
"""

# newton's humanoid names five joints after the child link's parent; Isaac Lab's Humanoid
# config matches joints by the names in NVIDIA's own file.
_HUMANOID_JOINT_RENAMES = {
    "abdomen_x": "pelvis",
    "left_knee": "left_shin",
    "right_knee": "right_shin",
    "left_elbow": "left_lower_arm",
    "right_elbow": "right_lower_arm",
}


LABELS = {
    GROUND: "ground",
    ARROW: "command arrow",
    ANT: "Ant",
    HUMANOID: "Humanoid",
    ANYMAL_C: "ANYmal-C",
    ALLEGRO: "Allegro hand",
    DEX_CUBE: "DexCube",
}
"""What each asset-root file :func:`build_local_asset_root` can write holds."""
BUILDABLE = tuple(LABELS)
"""The asset-root files :func:`build_local_asset_root` can write (paths relative to the root)."""


def _newton_assets() -> Path:
    try:
        import newton.examples
    except ImportError:
        raise AssetError("building assets needs the 'newton' package (installed with isaaclab 3.0)") from None
    return Path(newton.examples.__file__).parent / "assets"


def _humanoid_usda(text: str) -> str:
    for old, new in _HUMANOID_JOINT_RENAMES.items():
        text, count = re.subn(rf'def PhysicsRevoluteJoint "{old}"', f'def PhysicsRevoluteJoint "{new}"', text)
        if count != 1:
            raise AssetError(f"newton's humanoid.usda has {count} joints named '{old}', expected 1")
    # Collision groups put every capsule in a group of its own under Newton: only the head
    # then touches the ground. Drop them; the file's closing brace follows the last one.
    start = text.find('def PhysicsCollisionGroup "')
    if start >= 0:
        head = text[:start].rstrip()
        text = head + "\n}\n" if head.count("{") > head.count("}") else head + "\n"
    return text


def described_robots() -> dict[str, Any]:
    """``{asset-root file: module}`` of the robots built from description wheels; each module
    has ``SOURCE`` (a :class:`meow_isaac.descriptions.Source`) and ``build_usda() -> str``."""
    return {ANYMAL_C: anymal_c, ALLEGRO: allegro}


def description_missing(rel: str) -> AssetError | None:
    """Why ``rel`` cannot be built here (its robot's description wheel is absent), or None."""
    robot = described_robots().get(rel)
    if robot is None:
        return None
    try:
        find_wheel(robot.SOURCE)
    except AssetError as err:
        return err
    return None


def buildable_now() -> list[str]:
    """The files of :data:`BUILDABLE` this machine can write (robots only with their wheel)."""
    return [rel for rel in BUILDABLE if description_missing(rel) is None]


def build_local_asset_root(root: str | Path) -> Path:
    """Writes the files of :func:`buildable_now` under ``root`` in Isaac Lab's layout.

    Existing files are left as they are. Returns ``root`` (point ``ISAACSIM_ASSET_ROOT`` at it).
    """
    root = Path(root).resolve()
    src = _newton_assets()
    files = {
        GROUND: lambda: _GROUND_USDA,
        ARROW: lambda: _ARROW_USDA,
        ANT: lambda: (src / "ant.usda").read_text(),
        HUMANOID: lambda: _humanoid_usda((src / "humanoid.usda").read_text()),
    }
    files.update({rel: robot.build_usda for rel, robot in described_robots().items()})
    files[DEX_CUBE] = described_robots()[ALLEGRO].cube_usda
    for rel in buildable_now():
        path = root / rel
        if not path.is_file():
            path.parent.mkdir(parents=True, exist_ok=True)
            tmp = path.with_name(path.name + ".tmp")
            tmp.write_text(files[rel]())
            os.replace(tmp, path)
    return root


def _usd_paths(node: Any, seen: set[int] | None = None) -> list[str]:
    """Every ``usd_path`` string in a config tree (spawners of robots, objects and the ground)."""
    seen = set() if seen is None else seen
    if id(node) in seen or node is None or isinstance(node, (str, bytes, int, float, bool)):
        return []
    seen.add(id(node))
    found: list[str] = []
    if isinstance(node, dict):
        items = node.items()
    elif isinstance(node, (list, tuple)):
        items = enumerate(node)
    elif hasattr(node, "__dict__"):
        items = vars(node).items()
    else:
        return []
    for key, value in items:
        if key == "usd_path" and isinstance(value, str):
            found.append(value)
        else:
            found += _usd_paths(value, seen)
    return found


def missing_assets(env_cfg: Any) -> list[str]:
    """Local USD files named in ``env_cfg`` that do not exist (remote URLs are not checked)."""
    missing = []
    for path in dict.fromkeys(_usd_paths(env_cfg)):
        if "://" not in path and not os.path.exists(path):
            missing.append(path)
    return missing


def check_assets(env_cfg: Any, task: str) -> None:
    """Raises :class:`AssetError` naming the first missing USD file and how to provide it."""
    missing = missing_assets(env_cfg)
    if missing:
        root = os.environ.get("ISAACSIM_ASSET_ROOT", "<unset>")
        raise AssetError(
            f"{task} needs {missing[0]}, which does not exist"
            + (f" (and {len(missing) - 1} more)" if len(missing) > 1 else "")
            + f"; ISAACSIM_ASSET_ROOT={root}. Point ISAACSIM_ASSET_ROOT at a local copy of NVIDIA's "
            "Isaac assets (see docs/ISAACLAB.md, 'Offline machines'); "
            f"`python -m meow_isaac.assets DIR` builds one with {labels(BUILDABLE)}"
        )


def labels(rels: list[str] | tuple[str, ...]) -> str:
    """``ground, Ant and Humanoid``: what the asset-root files ``rels`` hold."""
    names = [LABELS[rel] for rel in rels]
    return ", ".join(names[:-1]) + " and " + names[-1] if len(names) > 1 else "".join(names)


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if len(argv) != 1 or argv[0].startswith("-"):
        print("usage: python -m meow_isaac.assets DIR", file=sys.stderr)
        return 2
    root = build_local_asset_root(argv[0])
    for rel in BUILDABLE:
        if err := description_missing(rel):
            print(f"skipped {LABELS[rel]}: {err}", file=sys.stderr)
    print(f"wrote {labels(buildable_now())} under {root}\nexport ISAACSIM_ASSET_ROOT={root}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
