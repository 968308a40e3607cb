"""The Allegro hand and its cube for ``Isaac-Reorient-Cube-Allegro``, built from Wonik's URDF.

NVIDIA's ``allegro_hand_instanceable.usd`` is not on the package index; Wonik's right-hand
description is: ``example-robot-data`` 6.0.0 (BSD-3-Clause) ships it with the box and sphere
colliders of ROS's ``allegro_hand_description`` (``mani-skill`` 3.0.1, a 30 MB smaller wheel, has
a reworked copy: fingertip meshes, some masses changed). :func:`build_usda` reads the URDF out
of the wheel (:mod:`meow_isaac.descriptions`) and writes a flat USDA file with Isaac Lab's
names: the bodies ``palm_link`` and ``{index,middle,ring,thumb}_link_{0..3}`` (the task reads the
fingertips :data:`FINGERTIPS`) as children of the robot prim, the 16 revolute joints of
:data:`JOINT_NAMES` (Wonik's ``joint_0.0`` to ``joint_15.0``: index, middle, ring, thumb), the palm
fixed to the world. :func:`cube_usda` writes the 6 cm DexCube the task scales by 1.2. Both texts
are deterministic. :func:`meow_isaac.assets.build_local_asset_root` writes them where Isaac
Lab's configs read them (:data:`PATHS`); :func:`write` writes both under a given root.

Deviations from NVIDIA's asset:

- collision shapes: primitives, not NVIDIA's meshes: the URDF's box for the palm and its 12 mm
  fingertip spheres; each finger link's box becomes a capsule as long as the box, of its mean
  half width (a sphere for the short knuckle links). With the URDF's boxes, MuJoCo Warp's
  box-box contacts between the fingers turned the whole state NaN within 1 s of random actions
  (8 envs, 2 of 3 seeds); with capsules none did. No visual meshes (a viewer shows the colliders);
- self-collisions on (as the config asks) except between a body and its grandparent: the thumb's
  second link overlaps the palm's box, which jammed the thumb at its lower limits;
- masses and inertias: the URDF's, each fingertip link welded onto its ``*_link_3`` (fixed
  joint); the palm keeps the URDF's placeholder inertia (1e-4 kg m^2) and centre of mass (it is
  fixed, so neither matters);
- frame: the root body is Wonik's palm frame turned by :data:`ROOT_ROTATION` and moved by
  :data:`ROOT_OFFSET`, found by simulation so that at the task's start pose the palm faces up,
  the fingers point along -y, and the cube dropped from its start pose comes to rest on the palm
  where the task puts the goal (0.52 m high). NVIDIA's root is not known exactly: the fingertip
  positions the policy observes may differ from NVIDIA's by a few centimetres;
- actuators: no drives, velocity or effort limits, damping or friction in the file (Isaac Lab's
  implicit actuator sets stiffness 3, damping 0.1, effort 0.5, friction 0.01 itself); the joint
  limits are the URDF's;
- cube: a plain box mesh of density 400 kg/m^3 (Isaac Lab 2.x's value), no texture or material.
"""

from __future__ import annotations

import math
import os
import re
import xml.etree.ElementTree as ET
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from meow_isaac import descriptions
from meow_isaac.descriptions import AssetError

ALLEGRO = "Isaac/Robots/WonikRobotics/AllegroHand/allegro_hand_instanceable.usd"
CUBE = "Isaac/Props/Blocks/DexCube/dex_cube_instanceable.usd"
PATHS = (ALLEGRO, CUBE)
"""Where Isaac Lab's Allegro configs read the hand and the cube, relative to the asset root."""
"""The asset-root files of the Allegro task (paths relative to the root)."""

SOURCE = descriptions.EXAMPLE_ROBOT_DATA
URDF = "cmeel.prefix/share/example-robot-data/robots/allegro_hand_description/urdf/allegro_right_hand.urdf"
"""Wonik's right hand inside :data:`SOURCE`'s wheel."""

FINGERS = ("index", "middle", "ring", "thumb")
JOINT_NAMES = tuple(f"{finger}_joint_{i}" for finger in FINGERS for i in range(4))
FINGERTIPS = tuple(f"{finger}_link_3" for finger in FINGERS)
ROBOT_PRIM = "allegro"

ROOT_ROTATION = (0.38268343236509, 0.0, 0.0, -0.923879532511287)
"""Wonik's palm axes in the root body's frame (w, x, y, z): -135 degrees about the finger axis z,
which turns the palm's normal (+x, where the fingers curl) up at the task's start pose."""
ROOT_OFFSET = (-0.0111, 0.0, 0.1936)
"""Wonik's palm origin (the knuckles) from the root, metres along Wonik's palm axes: the root
lies on the palm's surface plane (x 0.0111), 19.4 cm behind the knuckles along the fingers."""

CUBE_SIZE = 0.06
CUBE_DENSITY = 400.0


@dataclass
class Link:
    """A rigid body: mass properties and colliders in its own frame, its pose in the root frame."""

    name: str
    mass: float
    com: np.ndarray
    inertia: np.ndarray  # 3x3 about the centre of mass, link axes
    shapes: list[tuple[str, np.ndarray, tuple[float, ...]]]  # (box | sphere, 4x4 pose, size | radius)
    pose: np.ndarray  # 4x4, set once the joints are known


@dataclass
class Joint:
    """A URDF joint; ``origin`` is the child's frame in the parent's at zero angle."""

    name: str
    kind: str
    parent: str
    child: str
    origin: np.ndarray
    axis: np.ndarray
    lower: float
    upper: float


def _floats(text: str | None, default: str = "0 0 0") -> list[float]:
    return [float(v) for v in (text or default).split()]


def _rpy(roll: float, pitch: float, yaw: float) -> np.ndarray:
    cr, sr, cp, sp, cy, sy = (f(a) for a in (roll, pitch, yaw) for f in (math.cos, math.sin))
    rx = np.array([[1, 0, 0], [0, cr, -sr], [0, sr, cr]])
    ry = np.array([[cp, 0, sp], [0, 1, 0], [-sp, 0, cp]])
    rz = np.array([[cy, -sy, 0], [sy, cy, 0], [0, 0, 1]])
    return rz @ ry @ rx


def _origin(elem: ET.Element | None) -> np.ndarray:
    """The 4x4 transform of a URDF ``<origin>`` (identity when absent)."""
    t = np.eye(4)
    if elem is not None:
        t[:3, :3] = _rpy(*_floats(elem.get("rpy")))
        t[:3, 3] = _floats(elem.get("xyz"))
    return t


def _quat(m: np.ndarray) -> tuple[float, float, float, float]:
    """A rotation matrix as a unit quaternion (w, x, y, z), w >= 0 (Shepperd's method: stable at 180 deg)."""
    trace = m[0, 0] + m[1, 1] + m[2, 2]
    k = int(np.argmax([trace, m[0, 0], m[1, 1], m[2, 2]]))
    if k == 0:
        s = 2 * math.sqrt(1 + trace)
        q = [s / 4, (m[2, 1] - m[1, 2]) / s, (m[0, 2] - m[2, 0]) / s, (m[1, 0] - m[0, 1]) / s]
    else:
        i, j, n = k - 1, k % 3, (k + 1) % 3
        s = 2 * math.sqrt(1 + m[i, i] - m[j, j] - m[n, n])
        q = [(m[n, j] - m[j, n]) / s, 0.0, 0.0, 0.0]
        q[1 + i], q[1 + j], q[1 + n] = s / 4, (m[j, i] + m[i, j]) / s, (m[n, i] + m[i, n]) / s
    q = np.array(q) * (1 if q[0] >= 0 else -1)
    return tuple(float(v) for v in q / np.linalg.norm(q))


def _matrix(q: tuple[float, float, float, float]) -> np.ndarray:
    w, x, y, z = q
    return np.array(
        [
            [1 - 2 * (y * y + z * z), 2 * (x * y - w * z), 2 * (x * z + w * y)],
            [2 * (x * y + w * z), 1 - 2 * (x * x + z * z), 2 * (y * z - w * x)],
            [2 * (x * z - w * y), 2 * (y * z + w * x), 1 - 2 * (x * x + y * y)],
        ]
    )


def _shape(link: str, collision: ET.Element) -> tuple[str, np.ndarray, tuple[float, ...]]:
    geometry, pose = collision.find("geometry"), _origin(collision.find("origin"))
    if geometry.find("box") is not None:
        return "box", pose, tuple(_floats(geometry.find("box").get("size"), ""))
    if geometry.find("sphere") is not None:
        return "sphere", pose, (float(geometry.find("sphere").get("radius")),)
    raise AssetError(f"the Allegro URDF's link {link} has a collider that is neither a box nor a sphere")


def _link(elem: ET.Element) -> Link:
    name, inertial = elem.get("name"), elem.find("inertial")
    if inertial is None or inertial.find("inertia") is None or inertial.find("mass") is None:
        raise AssetError(f"the Allegro URDF's link {name} has no complete <inertial>")
    i = {k: float(v) for k, v in inertial.find("inertia").attrib.items()}
    tensor = np.array(
        [[i["ixx"], i["ixy"], i["ixz"]], [i["ixy"], i["iyy"], i["iyz"]], [i["ixz"], i["iyz"], i["izz"]]]
    )
    frame = _origin(inertial.find("origin"))
    r = frame[:3, :3]
    shapes = [_shape(name, c) for c in elem.findall("collision")]
    return Link(
        name, float(inertial.find("mass").get("value")), frame[:3, 3], r @ tensor @ r.T, shapes, np.eye(4)
    )


def _joint(elem: ET.Element) -> Joint:
    limit, axis = elem.find("limit"), elem.find("axis")
    return Joint(
        elem.get("name"),
        elem.get("type"),
        elem.find("parent").get("link"),
        elem.find("child").get("link"),
        _origin(elem.find("origin")),
        np.array(_floats(None if axis is None else axis.get("xyz"), "1 0 0")),
        0.0 if limit is None else float(limit.get("lower", 0)),
        0.0 if limit is None else float(limit.get("upper", 0)),
    )


def _weld(parent: Link, child: Link, t: np.ndarray) -> None:
    """Merges ``child`` (at ``t`` in ``parent``'s frame) into ``parent``: mass, inertia, colliders."""
    r, p = t[:3, :3], t[:3, :3] @ child.com + t[:3, 3]
    mass = parent.mass + child.mass
    com = (parent.mass * parent.com + child.mass * p) / mass

    def about_com(m: float, inertia: np.ndarray, c: np.ndarray) -> np.ndarray:
        d = c - com
        return inertia + m * (d @ d * np.eye(3) - np.outer(d, d))

    child_inertia = about_com(child.mass, r @ child.inertia @ r.T, p)
    parent.inertia = about_com(parent.mass, parent.inertia, parent.com) + child_inertia
    parent.mass, parent.com = mass, com
    parent.shapes += [(kind, t @ pose, size) for kind, pose, size in child.shapes]


def _capsule(shape: tuple[str, np.ndarray, tuple[float, ...]]) -> tuple[str, np.ndarray, tuple[float, ...]]:
    """A finger box as a capsule along its z axis (a sphere if shorter than wide): radius the mean
    half width, as long as the box."""
    kind, pose, size = shape
    if kind != "box":
        return shape
    radius = (size[0] + size[1]) / 4
    return (
        ("capsule", pose, (radius, size[2] - 2 * radius))
        if size[2] > 2 * radius
        else ("sphere", pose, (radius,))
    )


def _reroot(palm: Link, joints: list[Joint]) -> None:
    """Moves the palm's contents into the root body's frame (:data:`ROOT_ROTATION`, :data:`ROOT_OFFSET`)."""
    t = np.eye(4)
    t[:3, :3] = _matrix(ROOT_ROTATION)
    t[:3, 3] = t[:3, :3] @ np.asarray(ROOT_OFFSET)
    palm.com = t[:3, :3] @ palm.com + t[:3, 3]
    palm.inertia = t[:3, :3] @ palm.inertia @ t[:3, :3].T
    palm.shapes = [(kind, t @ pose, size) for kind, pose, size in palm.shapes]
    for j in joints:
        if j.parent == palm.name:
            j.origin = t @ j.origin


def _rename(wonik: str) -> str:
    """``link_13.0`` -> ``thumb_link_1``, ``joint_4.0`` -> ``middle_joint_0``; other names stay."""
    found = re.fullmatch(r"(link|joint)_(\d+)\.0", wonik)
    if found is None or int(found[2]) >= 16:
        return wonik
    n = int(found[2])
    return f"{FINGERS[n // 4]}_{found[1]}_{n % 4}"


def load(urdf: bytes) -> tuple[dict[str, Link], list[Joint]]:
    """The hand's 17 bodies (fingertips welded on, Isaac Lab's names, poses in the root frame) and
    its 16 revolute joints, parents first; :class:`AssetError` for a URDF of another shape."""
    robot = ET.fromstring(urdf)
    links = {e.get("name"): _link(e) for e in robot.findall("link")}
    joints = [_joint(e) for e in robot.findall("joint")]
    if "palm_link" not in links or any(j.parent not in links or j.child not in links for j in joints):
        raise AssetError("the Allegro URDF has no palm_link, or a joint between links it does not define")
    for j in joints:
        if j.kind == "fixed":
            _weld(links[j.parent], links.pop(j.child), j.origin)
    revolute = [j for j in joints if j.kind != "fixed"]
    if sorted(_rename(j.name) for j in revolute) != sorted(JOINT_NAMES):
        raise AssetError(
            f"the Allegro URDF's movable joints are {[j.name for j in revolute]}, not Wonik's 16"
        )
    _reroot(links["palm_link"], revolute)
    for link in links.values():
        if link.name != "palm_link":
            link.shapes = [_capsule(shape) for shape in link.shapes]
    for j in revolute:  # Wonik's file lists each finger from the palm outwards
        links[j.child].pose = links[j.parent].pose @ j.origin
    for link in links.values():
        link.name = _rename(link.name)
    for j in revolute:
        j.name, j.parent, j.child = _rename(j.name), _rename(j.parent), _rename(j.child)
    return {link.name: link for link in links.values()}, revolute


def _num(v: float) -> str:
    return "0" if abs(v) < 1e-12 else f"{float(v):.9g}"


def _vec(values) -> str:
    return "(" + ", ".join(_num(v) for v in values) + ")"


def _principal(inertia: np.ndarray) -> tuple[np.ndarray, tuple[float, float, float, float]]:
    """Principal moments and axes (w, x, y, z) of an inertia tensor, signs fixed for determinism."""
    moments, axes = np.linalg.eigh((inertia + inertia.T) / 2)
    for k in range(3):
        if axes[np.argmax(np.abs(axes[:, k])), k] < 0:
            axes[:, k] = -axes[:, k]
    if np.linalg.det(axes) < 0:
        axes[:, 2] = -axes[:, 2]
    return moments, _quat(axes)


def _xform(pose: np.ndarray, indent: str, scale: tuple[float, ...] | None = None) -> list[str]:
    ops = '"xformOp:translate", "xformOp:orient"' + (', "xformOp:scale"' if scale else "")
    lines = [f"quatd xformOp:orient = {_vec(_quat(pose[:3, :3]))}"]
    lines += [f"double3 xformOp:scale = {_vec(scale)}"] if scale else []
    lines += [f"double3 xformOp:translate = {_vec(pose[:3, 3])}", f"uniform token[] xformOpOrder = [{ops}]"]
    return [indent + line for line in lines]


def _shape_usda(index: int, kind: str, pose: np.ndarray, size: tuple[float, ...]) -> list[str]:
    head = [
        f'        def {kind.capitalize() if kind != "box" else "Cube"} "collision_{index}" (',
        '            prepend apiSchemas = ["PhysicsCollisionAPI"]',
        "        )",
        "        {",
    ]
    if kind == "box":  # a unit cube scaled to the box
        body = [
            "            float3[] extent = [(-0.5, -0.5, -0.5), (0.5, 0.5, 0.5)]",
            "            double size = 1",
        ]
        body += _xform(pose, " " * 12, scale=size)
    elif kind == "capsule":
        r, h = size
        body = [
            f"            float3[] extent = [{_vec([-r, -r, -h / 2 - r])}, {_vec([r, r, h / 2 + r])}]",
            f"            double height = {_num(h)}",
            f"            double radius = {_num(r)}",
            '            uniform token axis = "Z"',
        ]
        body += _xform(pose, " " * 12)
    else:
        r = size[0]
        body = [
            f"            float3[] extent = [{_vec([-r] * 3)}, {_vec([r] * 3)}]",
            f"            double radius = {_num(r)}",
        ]
        body += _xform(pose, " " * 12)
    return head + body + ["        }"]


def _link_usda(link: Link, no_collision: list[str]) -> list[str]:
    """A body prim; it does not collide with the bodies named in ``no_collision``."""
    schemas = '"PhysicsRigidBodyAPI", "PhysicsMassAPI"' + (
        ', "PhysicsFilteredPairsAPI"' if no_collision else ""
    )
    moments, axes = _principal(link.inertia)
    lines = [f'    def Xform "{link.name}" (', f"        prepend apiSchemas = [{schemas}]", "    )", "    {"]
    if no_collision:
        targets = ", ".join(f"</{ROBOT_PRIM}/{name}>" for name in no_collision)
        lines.append(f"        rel physics:filteredPairs = [{targets}]")
    lines += [
        f"        point3f physics:centerOfMass = {_vec(link.com)}",
        f"        float3 physics:diagonalInertia = {_vec(moments)}",
        f"        float physics:mass = {_num(link.mass)}",
        f"        quatf physics:principalAxes = {_vec(axes)}",
    ]
    lines += _xform(link.pose, " " * 8)
    for index, (kind, pose, size) in enumerate(link.shapes):
        lines += ["", *_shape_usda(index, kind, pose, size)]
    return [*lines, "    }"]


def _axis_frame(joint: Joint) -> tuple[str, np.ndarray]:
    """USD's axis token for ``joint`` and the rotation that turns that axis onto the URDF's signed one."""
    k = int(np.argmax(np.abs(joint.axis)))
    if not np.allclose(np.abs(joint.axis), np.eye(3)[k]):
        raise AssetError(
            f"the Allegro URDF's joint {joint.name} turns about {joint.axis.tolist()}, not an axis"
        )
    flip = np.eye(3) if joint.axis[k] > 0 else _rpy(*([0, 0, math.pi] if k != 2 else [math.pi, 0, 0]))
    return "XYZ"[k], flip


def _joint_usda(joint: Joint) -> list[str]:
    token, flip = _axis_frame(joint)
    return [
        f'    def PhysicsRevoluteJoint "{joint.name}"',
        "    {",
        f'        uniform token physics:axis = "{token}"',
        f"        rel physics:body0 = </{ROBOT_PRIM}/{joint.parent}>",
        f"        rel physics:body1 = </{ROBOT_PRIM}/{joint.child}>",
        f"        point3f physics:localPos0 = {_vec(joint.origin[:3, 3])}",
        "        point3f physics:localPos1 = (0, 0, 0)",
        f"        quatf physics:localRot0 = {_vec(_quat(joint.origin[:3, :3] @ flip))}",
        f"        quatf physics:localRot1 = {_vec(_quat(flip))}",
        f"        float physics:lowerLimit = {_num(math.degrees(joint.lower))}",
        f"        float physics:upperLimit = {_num(math.degrees(joint.upper))}",
        "    }",
    ]


def _header(default_prim: str) -> list[str]:
    meta = [f'defaultPrim = "{default_prim}"', "metersPerUnit = 1", "kilogramsPerUnit = 1", 'upAxis = "Z"']
    return ["#usda 1.0", "(", *(f"    {line}" for line in meta), ")", ""]


def usda(urdf: bytes) -> str:
    """The hand's USDA text from the bytes of Wonik's right-hand URDF."""
    links, joints = load(urdf)
    parent = {j.child: j.parent for j in joints}
    lines = [
        *_header(ROBOT_PRIM),
        f"# Written by meow_isaac.robots.allegro from {SOURCE.package} {SOURCE.version} ({SOURCE.licence})",
        f'def Xform "{ROBOT_PRIM}" (',
        '    prepend apiSchemas = ["PhysicsArticulationRootAPI"]',
        ")",
        "{",
    ]
    for name, link in links.items():
        grandparent = parent.get(parent.get(name, ""))
        lines += [*_link_usda(link, [grandparent] if grandparent else []), ""]
    lines += ['    def PhysicsFixedJoint "root_joint"', "    {"]
    lines += [f"        rel physics:body1 = </{ROBOT_PRIM}/palm_link>", "    }"]
    for j in joints:
        lines += ["", *_joint_usda(j)]
    return "\n".join([*lines, "}", ""])


def cube_usda() -> str:
    """The DexCube: a rigid body of density :data:`CUBE_DENSITY`, its collider a box ``UsdGeom.Mesh``."""
    h = CUBE_SIZE / 2
    corners = [(x, y, z) for x in (-h, h) for y in (-h, h) for z in (-h, h)]  # index 4x + 2y + z
    faces = [(0, 1, 3, 2), (4, 6, 7, 5), (0, 4, 5, 1), (2, 3, 7, 6), (0, 2, 6, 4), (1, 5, 7, 3)]  # outwards
    return "\n".join(
        [
            *_header("DexCube"),
            'def Xform "DexCube" (',
            '    prepend apiSchemas = ["PhysicsRigidBodyAPI", "PhysicsMassAPI"]',
            ")",
            "{",
            f"    float physics:density = {_num(CUBE_DENSITY)}",
            "",
            '    def Mesh "collision" (',
            '        prepend apiSchemas = ["PhysicsCollisionAPI", "PhysicsMeshCollisionAPI"]',
            "    )",
            "    {",
            f"        float3[] extent = [{_vec([-h] * 3)}, {_vec([h] * 3)}]",
            f"        int[] faceVertexCounts = [{', '.join('4' for _ in faces)}]",
            f"        int[] faceVertexIndices = [{', '.join(str(i) for face in faces for i in face)}]",
            '        uniform token physics:approximation = "convexHull"',
            f"        point3f[] points = [{', '.join(_vec(c) for c in corners)}]",
            '        uniform token subdivisionScheme = "none"',
            "    }",
            "}",
            "",
        ]
    )


def build_usda() -> str:
    """The hand's USDA text from the URDF in :data:`SOURCE`'s wheel (:class:`AssetError` without it)."""
    return usda(descriptions.read(SOURCE, URDF))


def write(root: str | Path) -> None:
    """Writes the hand and the cube under the asset root ``root``, replacing what is there."""
    for rel, text in {ALLEGRO: build_usda(), CUBE: cube_usda()}.items():
        path = Path(root) / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(path.name + ".tmp")
        tmp.write_text(text)
        os.replace(tmp, path)
