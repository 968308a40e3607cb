"""ANYmal-C for Isaac Lab's velocity tasks, built from ANYbotics' URDF instead of NVIDIA's USD.

:func:`build_usda` reads ``anymal_c.urdf`` out of the ``genesis-world`` wheel
(:mod:`meow_isaac.descriptions`), merges every link hanging on a fixed joint into the body it
hangs on (masses, centres of mass and inertias combined exactly) and writes a flat USDA file:
the 17 bodies of :data:`BODIES` as direct children of the robot prim, the articulation root on
``base`` with a floating base, the 12 revolute joints of :data:`JOINTS` and each FOOT fixed to
its SHANK. The merged masses, centres of mass and inertias are those of NVIDIA's
``anymal_c.usd``. :func:`meow_isaac.assets.build_local_asset_root` writes the file where Isaac
Lab's ``ANYMAL_C_CFG`` reads it (:data:`USD`); :func:`use_available_actuator`
runs the legs on Isaac Lab's DC-motor model when the actuator network file is not there.

Deviations from NVIDIA's ``anymal_c.usd``:

- actuator: without ``ActuatorNets/ANYbotics/anydrive_3_lstm_jit.pt`` under the asset root the
  legs run Isaac Lab's ``ANYDRIVE_3_SIMPLE_ACTUATOR_CFG`` (DC motor, stiffness 40, damping 5,
  saturation 120, effort limit 80, velocity limit 7.5 as the network's), not the LSTM network;
- collisions: the URDF's own primitives (a cylinder on ``base``, the knee-drive cylinder on each
  THIGH, a cylinder on each SHANK, a sphere on each FOOT); they were not compared shape by
  shape with NVIDIA's file;
- no visual meshes: a viewer shows the collision primitives;
- the sensor and shell links (cameras, lidar, IMU, shells, handle, battery) are merged into
  ``base``: their masses count, their frames are not in the file;
- joints: no limits (as in the URDF), no drives, armature, friction or damping authored;
  Isaac Lab's actuator config sets gains and effort/velocity limits;
- no physics material on the robot's colliders (the ground's material applies);
- the velocity tasks' command marker (``Props/UIElements/arrow_x.usd``, visual only) is a plain
  cylinder and cone written by :mod:`meow_isaac.assets`.
"""

from __future__ import annotations

import math
import os
import xml.etree.ElementTree as ET
from dataclasses import dataclass
from typing import Any

import numpy as np

from meow_isaac import descriptions
from meow_isaac.descriptions import AssetError

SOURCE = descriptions.GENESIS_WORLD
USD = "Isaac/IsaacLab/Robots/ANYbotics/ANYmal-C/anymal_c.usd"
"""Where Isaac Lab's ``ANYMAL_C_CFG`` reads the robot, relative to the asset root."""
URDF = "genesis/assets/urdf/anymal_c/urdf/anymal_c.urdf"
"""ANYbotics' ANYmal-C description inside :data:`SOURCE`'s wheel."""
ACTUATOR_NET = "ActuatorNets/ANYbotics/anydrive_3_lstm_jit.pt"
"""The end of the LSTM actuator network's path in Isaac Lab's ANYdrive config."""

LEGS = ("LF", "LH", "RF", "RH")
BODIES = ("base", *(f"{leg}_{part}" for leg in LEGS for part in ("HIP", "THIGH", "SHANK", "FOOT")))
"""The bodies Isaac Lab's ANYmal-C tasks read; every other URDF link is merged into one of them."""
JOINTS = tuple(f"{leg}_{dof}" for leg in LEGS for dof in ("HAA", "HFE", "KFE"))
"""The revolute joints, named as in NVIDIA's file (the URDF's own names)."""
ROBOT_PRIM = "anymal_c"


@dataclass(frozen=True)
class Shape:
    """A collision primitive: ``kind`` ``cylinder`` (``size`` = radius, length) or ``sphere`` (radius)."""

    kind: str
    size: tuple[float, ...]
    frame: np.ndarray  # 4x4 pose in the body frame


@dataclass
class Body:
    """A merged rigid body: mass properties in its own frame, its pose at zero joint angles."""

    name: str
    mass: float
    com: np.ndarray
    inertia: np.ndarray  # 3x3 about the centre of mass, body axes
    pose: np.ndarray  # 4x4 in the robot frame
    shapes: list[Shape]


@dataclass(frozen=True)
class Joint:
    """A joint between two merged bodies; ``frame`` is the joint's pose in ``parent``'s frame."""

    name: str
    kind: str  # "revolute" or "fixed"
    parent: str
    child: str
    frame: np.ndarray
    axis: np.ndarray  # unit vector in the joint frame (revolute only)


def _floats(text: str | None, default: str) -> np.ndarray:
    return np.array([float(v) for v in (text or default).split()])


def _rpy(roll: float, pitch: float, yaw: float) -> np.ndarray:
    """URDF's fixed-axis roll, pitch, yaw: ``Rz(yaw) @ Ry(pitch) @ Rx(roll)``."""
    cr, sr, cp, sp, cy, sy = (f(a) for a in (roll, pitch, yaw) for f in (math.cos, math.sin))
    return np.array(
        [
            [cy * cp, cy * sp * sr - sy * cr, cy * sp * cr + sy * sr],
            [sy * cp, sy * sp * sr + cy * cr, sy * sp * cr - cy * sr],
            [-sp, cp * sr, cp * cr],
        ]
    )


def _origin(elem: ET.Element | None) -> np.ndarray:
    """The 4x4 transform of an element's ``<origin>`` (identity when absent)."""
    origin = None if elem is None else elem.find("origin")
    t = np.eye(4)
    if origin is not None:
        t[:3, :3] = _rpy(*_floats(origin.get("rpy"), "0 0 0"))
        t[:3, 3] = _floats(origin.get("xyz"), "0 0 0")
    return t


def _shape(link: str, collision: ET.Element) -> Shape:
    geometry = collision.find("geometry")
    geom = geometry[0] if geometry is not None and len(geometry) else None
    if geom is not None and geom.tag == "cylinder":
        return Shape("cylinder", (float(geom.get("radius")), float(geom.get("length"))), _origin(collision))
    if geom is not None and geom.tag == "sphere":
        return Shape("sphere", (float(geom.get("radius")),), _origin(collision))
    tag = "none" if geom is None else geom.tag
    raise AssetError(
        f"{URDF}: link {link} has a '{tag}' collision; this builder writes cylinders and spheres"
    )


def _anchor(link: str, parent_joint: dict[str, ET.Element]) -> tuple[str, np.ndarray]:
    """The body ``link`` is merged into and the link's pose in that body's frame."""
    t = np.eye(4)
    while link not in BODIES:
        joint = parent_joint.get(link)
        if joint is None or joint.get("type") != "fixed":
            kind = "no" if joint is None else f"a {joint.get('type')}"
            raise AssetError(f"{URDF}: link {link} hangs on {kind} joint, so it cannot be merged into a body")
        t = _origin(joint) @ t
        link = joint.find("parent").get("link")
    return link, t


def _combine(parts: list[tuple[float, np.ndarray, np.ndarray]]) -> tuple[float, np.ndarray, np.ndarray]:
    """Mass, centre of mass and inertia (about it) of rigidly joined ``(mass, com, inertia)`` parts."""
    mass = sum(m for m, _, _ in parts)
    com = sum(m * c for m, c, _ in parts) / mass
    inertia = np.zeros((3, 3))
    for m, c, i in parts:
        d = c - com
        inertia += i + m * (d @ d * np.eye(3) - np.outer(d, d))  # parallel-axis theorem
    return mass, com, inertia


def _inertial(elem: ET.Element, to_body: np.ndarray) -> tuple[float, np.ndarray, np.ndarray]:
    """A link's ``<inertial>`` as ``(mass, com, inertia about com)`` in its body's frame."""
    frame = to_body @ _origin(elem)
    i = elem.find("inertia")
    ixx, ixy, ixz, iyy, iyz, izz = (float(i.get(k)) for k in ("ixx", "ixy", "ixz", "iyy", "iyz", "izz"))
    local = np.array([[ixx, ixy, ixz], [ixy, iyy, iyz], [ixz, iyz, izz]])
    rot = frame[:3, :3]
    return float(elem.find("mass").get("value")), frame[:3, 3], rot @ local @ rot.T


def _joints(robot: ET.Element, parent_joint: dict[str, ET.Element]) -> list[Joint]:
    joints = []
    for elem in robot.findall("joint"):
        child = elem.find("child").get("link")
        if child not in BODIES:
            continue  # merged into its parent
        kind = elem.get("type")
        if kind not in ("revolute", "fixed"):
            raise AssetError(f"{URDF}: joint {elem.get('name')} is {kind}; expected revolute or fixed")
        parent, to_parent = _anchor(elem.find("parent").get("link"), parent_joint)
        axis = elem.find("axis")
        axis = _floats(None if axis is None else axis.get("xyz"), "1 0 0")
        frame = to_parent @ _origin(elem)
        joints.append(Joint(elem.get("name"), kind, parent, child, frame, axis / np.linalg.norm(axis)))
    revolute = sorted(j.name for j in joints if j.kind == "revolute")
    if revolute != sorted(JOINTS):
        raise AssetError(f"{URDF}: revolute joints {revolute}, expected {sorted(JOINTS)}")
    return sorted(joints, key=lambda j: (BODIES.index(j.child), j.name))


def merge(urdf: str) -> tuple[list[Body], list[Joint]]:
    """The bodies of :data:`BODIES` (fixed links merged in) and the joints between them."""
    robot = ET.fromstring(urdf)
    links = {link.get("name"): link for link in robot.findall("link")}
    missing = [name for name in BODIES if name not in links]
    if missing:
        raise AssetError(f"{URDF} has no link {missing[0]}; expected ANYbotics' ANYmal-C description")
    parent_joint = {j.find("child").get("link"): j for j in robot.findall("joint")}
    parts: dict[str, list] = {name: [] for name in BODIES}
    shapes: dict[str, list[Shape]] = {name: [] for name in BODIES}
    for name, link in links.items():
        body, to_body = _anchor(name, parent_joint)
        if link.find("inertial") is not None:
            parts[body].append(_inertial(link.find("inertial"), to_body))
        for collision in link.findall("collision"):
            shape = _shape(name, collision)
            shapes[body].append(Shape(shape.kind, shape.size, to_body @ shape.frame))
    joints = _joints(robot, parent_joint)
    poses = {"base": np.eye(4)}
    for joint in joints:  # sorted parents first: BODIES lists each leg from the hip down
        poses[joint.child] = poses[joint.parent] @ joint.frame
    return [Body(n, *_combine(parts[n]), poses[n], shapes[n]) for n in BODIES], joints


def _quat(rot: np.ndarray) -> tuple[float, float, float, float]:
    """``(w, x, y, z)`` of a rotation matrix (Shepperd's method), ``w >= 0``."""
    (m00, m01, m02), (m10, m11, m12), (m20, m21, m22) = rot
    if m00 + m11 + m22 > 0:
        s = 2 * math.sqrt(1 + m00 + m11 + m22)
        q = (s / 4, (m21 - m12) / s, (m02 - m20) / s, (m10 - m01) / s)
    elif m00 > m11 and m00 > m22:
        s = 2 * math.sqrt(1 + m00 - m11 - m22)
        q = ((m21 - m12) / s, s / 4, (m01 + m10) / s, (m02 + m20) / s)
    elif m11 > m22:
        s = 2 * math.sqrt(1 + m11 - m00 - m22)
        q = ((m02 - m20) / s, (m01 + m10) / s, s / 4, (m12 + m21) / s)
    else:
        s = 2 * math.sqrt(1 + m22 - m00 - m11)
        q = ((m10 - m01) / s, (m02 + m20) / s, (m12 + m21) / s, s / 4)
    q = np.array(q) * (1 if q[0] >= 0 else -1)
    return tuple(float(v) for v in q / np.linalg.norm(q))


def _x_to(axis: np.ndarray) -> np.ndarray:
    """A rotation taking the x axis onto the unit vector ``axis`` (USD revolute joints turn about X)."""
    x = np.array([1.0, 0.0, 0.0])
    if np.allclose(axis, -x):
        return np.diag([-1.0, -1.0, 1.0])  # half a turn about z
    v, c = np.cross(x, axis), float(x @ axis)
    k = np.array([[0, -v[2], v[1]], [v[2], 0, -v[0]], [-v[1], v[0], 0]])
    return np.eye(3) + k + k @ k / (1 + c)


def _principal(inertia: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Principal moments and a right-handed frame of their axes (columns), signs fixed."""
    moments, axes = np.linalg.eigh(inertia)
    for k in range(3):
        if axes[np.argmax(np.abs(axes[:, k])), k] < 0:
            axes[:, k] = -axes[:, k]
    if np.linalg.det(axes) < 0:
        axes[:, 2] = -axes[:, 2]
    return moments, axes


def _num(v: float) -> str:
    """``v`` to 9 significant digits; rounding noise below 1e-12 (as in ``cos(pi/2)``) is written 0."""
    return "0" if abs(v) < 1e-12 else f"{float(v):.9g}"


def _vec(values) -> str:
    return "(" + ", ".join(_num(v) for v in values) + ")"


def _xform(t: np.ndarray, indent: str) -> list[str]:
    return [
        f"{indent}double3 xformOp:translate = {_vec(t[:3, 3])}",
        f"{indent}quatd xformOp:orient = {_vec(_quat(t[:3, :3]))}",
        f'{indent}uniform token[] xformOpOrder = ["xformOp:translate", "xformOp:orient"]',
    ]


def _shape_usda(shape: Shape, index: int) -> list[str]:
    prim = {"cylinder": "Cylinder", "sphere": "Sphere"}[shape.kind]
    lines = [
        f'        def {prim} "collision_{index}" (',
        '            prepend apiSchemas = ["PhysicsCollisionAPI"]',
        "        )",
        "        {",
    ]
    if shape.kind == "cylinder":
        lines += [
            '            uniform token axis = "Z"',
            f"            double height = {_num(shape.size[1])}",
        ]
    lines += [
        f"            double radius = {_num(shape.size[0])}",
        *_xform(shape.frame, "            "),
        "        }",
    ]
    return lines


def _body_usda(body: Body) -> list[str]:
    schemas = ["PhysicsRigidBodyAPI", "PhysicsMassAPI"] + (
        ["PhysicsArticulationRootAPI"] if body.name == "base" else []
    )
    moments, axes = _principal(body.inertia)
    lines = [
        f'    def Xform "{body.name}" (',
        "        prepend apiSchemas = [" + ", ".join(f'"{s}"' for s in schemas) + "]",
        "    )",
        "    {",
        f"        float physics:mass = {_num(body.mass)}",
        f"        point3f physics:centerOfMass = {_vec(body.com)}",
        f"        float3 physics:diagonalInertia = {_vec(moments)}",
        f"        quatf physics:principalAxes = {_vec(_quat(axes))}",
        *_xform(body.pose, "        "),
    ]
    for k, shape in enumerate(body.shapes):
        lines += ["", *_shape_usda(shape, k)]
    return [*lines, "    }", ""]


def _joint_usda(joint: Joint) -> list[str]:
    turn = _x_to(joint.axis) if joint.kind == "revolute" else np.eye(3)
    prim = "PhysicsRevoluteJoint" if joint.kind == "revolute" else "PhysicsFixedJoint"
    lines = [f'        def {prim} "{joint.name}"', "        {"]
    if joint.kind == "revolute":
        lines.append('            uniform token physics:axis = "X"')
    return [
        *lines,
        f"            rel physics:body0 = </{ROBOT_PRIM}/{joint.parent}>",
        f"            rel physics:body1 = </{ROBOT_PRIM}/{joint.child}>",
        f"            point3f physics:localPos0 = {_vec(joint.frame[:3, 3])}",
        "            point3f physics:localPos1 = (0, 0, 0)",
        f"            quatf physics:localRot0 = {_vec(_quat(joint.frame[:3, :3] @ turn))}",
        f"            quatf physics:localRot1 = {_vec(_quat(turn))}",
        "        }",
    ]


def usda(bodies: list[Body], joints: list[Joint]) -> str:
    """The robot as USDA text: bodies as children of ``/anymal_c``, joints under ``/anymal_c/joints``."""
    lines = [
        "#usda 1.0",
        "(",
        f'    defaultPrim = "{ROBOT_PRIM}"',
        "    metersPerUnit = 1",
        '    upAxis = "Z"',
        ")",
        "",
        f'def Xform "{ROBOT_PRIM}"',
        "{",
    ]
    for body in bodies:
        lines += _body_usda(body)
    lines += ['    def Scope "joints"', "    {"]
    for k, joint in enumerate(joints):
        lines += ([""] if k else []) + _joint_usda(joint)
    return "\n".join([*lines, "    }", "}", ""])


def build_usda() -> str:
    """ANYmal-C as USDA text, from the URDF in :data:`SOURCE`'s wheel (:class:`AssetError` without it)."""
    return usda(*merge(descriptions.read(SOURCE, URDF).decode()))


SWAPPED: list[str] = []
"""The line :func:`use_available_actuator` said, once it ran Isaac Lab's own ``ANYMAL_C_CFG`` on
the DC motor (at most one entry)."""


def use_available_actuator(robot: Any) -> str | None:
    """Runs the ANYdrive LSTM actuators of an articulation config (``env_cfg.scene.robot``, or
    Isaac Lab's ``ANYMAL_C_CFG`` itself) on Isaac Lab's DC-motor model
    (``ANYDRIVE_3_SIMPLE_ACTUATOR_CFG``) when the network file does not exist locally.

    Returns the line saying so, or None when nothing changed (no such actuator, the file exists,
    or it is read from a server).
    """
    actuators = getattr(robot, "actuators", None) or {}
    absent = {
        name: cfg
        for name, cfg in actuators.items()
        if str(getattr(cfg, "network_file", "")).endswith(ACTUATOR_NET)
        and "://" not in cfg.network_file
        and not os.path.exists(cfg.network_file)
    }
    if not absent:
        return None
    from isaaclab.utils import replace
    from isaaclab_assets.robots.anymal import ANYDRIVE_3_SIMPLE_ACTUATOR_CFG

    for name, cfg in absent.items():
        actuators[name] = replace(ANYDRIVE_3_SIMPLE_ACTUATOR_CFG, joint_names_expr=list(cfg.joint_names_expr))
    first = next(iter(absent.values())).network_file
    return (
        f"[meow] ANYmal's actuator network {first} does not exist: the legs run Isaac Lab's DC-motor model "
        "ANYDRIVE_3_SIMPLE_ACTUATOR_CFG (stiffness 40, damping 5) instead"
    )


def use_available_actuator_everywhere() -> None:
    """:func:`use_available_actuator` on Isaac Lab's ``ANYMAL_C_CFG``, which the ANYmal-C tasks copy
    when their config is created: so every process that loads this package (``scripts/train.py``,
    ``play.py``, Isaac Lab's own ``isaaclab train`` that the PPO and SAC baselines run) gets the
    same actuator. Called by :mod:`meow_isaac.tasks` at import; the line is kept in :data:`SWAPPED`."""
    from isaaclab_assets.robots.anymal import ANYMAL_C_CFG

    note = use_available_actuator(ANYMAL_C_CFG)
    if note and not SWAPPED:
        SWAPPED.append(note)


def actuator_note(env_cfg: Any) -> str | None:
    """The line to say at the start of a task whose robot runs on the DC motor instead of the
    network: its own swap, or the one :func:`use_available_actuator_everywhere` made for ANYmal-C."""
    robot = getattr(getattr(env_cfg, "scene", None), "robot", None)
    note = use_available_actuator(robot)
    if note is None and SWAPPED and str(getattr(robot.spawn, "usd_path", "")).endswith("anymal_c.usd"):
        note = SWAPPED[0]
    return note
