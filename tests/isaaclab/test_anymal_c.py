"""ANYmal-C built from ANYbotics' URDF (meow_isaac.robots.anymal_c) on the real velocity tasks.

The URDF is read out of the genesis-world wheel in the description-wheel folder
(``scripts/setup.sh`` fetches it). Without that wheel the tests are skipped, unless
``MEOW_REQUIRE_ISAACLAB=1`` (set by CI), which makes that an error. The tasks run one after
the other in this process, each closed before the next is created.
"""

from __future__ import annotations

import os
import subprocess
import sys

import numpy as np
import pytest
import torch
from test_isaac_env_adapter import _check_step
from test_isaac_offline import _offline_env

# NVIDIA's anymal_c.usd (docs/ISAACLAB.md, "ANYmal and Allegro offline"): mass, and for base the
# centre of mass and principal moments of inertia.
PUBLISHED_MASS = {"base": 26.37317, "HIP": 2.781, "THIGH": 3.071, "SHANK": 0.33842, "FOOT": 0.25}
BASE_COM = (-0.017794, -0.000178, 0.008504)
BASE_INERTIA = (0.21451, 1.78522, 1.83585)
STEPS_PER_SECOND = 50  # the velocity tasks' 0.005 s physics step, decimation 4


@pytest.fixture(scope="module")
def urdf() -> str:
    """The URDF text from the wheel; skipped without the wheel unless MEOW_REQUIRE_ISAACLAB=1."""
    from meow_isaac import descriptions
    from meow_isaac.assets import AssetError
    from meow_isaac.robots import anymal_c

    try:
        return descriptions.read(anymal_c.SOURCE, anymal_c.URDF).decode()
    except AssetError as err:
        if os.environ.get("MEOW_REQUIRE_ISAACLAB") == "1":
            raise
        pytest.skip(str(err))


def _part(name: str) -> str:
    return name if name == "base" else name.split("_")[1]


def test_merged_bodies_have_the_published_masses_and_inertias(urdf):
    from meow_isaac.robots.anymal_c import BODIES, JOINTS, merge

    bodies, joints = merge(urdf)
    assert [b.name for b in bodies] == list(BODIES) and len(bodies) == 17
    for body in bodies:
        assert body.mass == pytest.approx(PUBLISHED_MASS[_part(body.name)], rel=1e-4), body.name
    base = bodies[0]
    np.testing.assert_allclose(base.com, BASE_COM, rtol=1e-4, atol=1e-6)
    np.testing.assert_allclose(np.linalg.eigvalsh(base.inertia), BASE_INERTIA, rtol=1e-4)
    # colliders on base, THIGH (knee drive), SHANK and FOOT; none on HIP
    assert {_part(b.name) for b in bodies if b.shapes} == {"base", "THIGH", "SHANK", "FOOT"}
    assert all(s.kind == "sphere" for b in bodies if b.name.endswith("FOOT") for s in b.shapes)

    revolute = {j.name: (j.parent, j.child) for j in joints if j.kind == "revolute"}
    assert sorted(revolute) == sorted(JOINTS) and len(revolute) == 12
    for leg in ("LF", "LH", "RF", "RH"):
        assert revolute[f"{leg}_HAA"] == ("base", f"{leg}_HIP")
        assert revolute[f"{leg}_HFE"] == (f"{leg}_HIP", f"{leg}_THIGH")
        assert revolute[f"{leg}_KFE"] == (f"{leg}_THIGH", f"{leg}_SHANK")
    fixed = sorted((j.parent, j.child) for j in joints if j.kind == "fixed")
    assert fixed == [(f"{leg}_SHANK", f"{leg}_FOOT") for leg in ("LF", "LH", "RF", "RH")]


def _init_angle(joint: str) -> float:
    """Isaac Lab's ANYmal init pose: HAA 0, HFE +-0.4, KFE -+0.8 (front/hind)."""
    leg, dof = joint.split("_")
    angle = {"HAA": 0.0, "HFE": 0.4, "KFE": -0.8}[dof]
    return angle if leg.endswith("F") else -angle


def test_in_isaac_labs_init_pose_the_feet_are_just_below_the_spawn_height(urdf):
    """Joint axes and frames: spawned at 0.6 m in the task's init pose, all four feet hang level,
    a little above the ground; a flipped axis or frame would bend a leg the other way."""
    from scipy.spatial.transform import Rotation

    from meow_isaac.robots.anymal_c import merge

    bodies, joints = merge(urdf)
    pose = {"base": np.eye(4)}
    for j in joints:  # parents first
        turn = np.eye(4)
        if j.kind == "revolute":
            turn[:3, :3] = Rotation.from_rotvec(j.axis * _init_angle(j.name)).as_matrix()
        pose[j.child] = pose[j.parent] @ j.frame @ turn
    bottoms = []
    for body in bodies:
        if body.name.endswith("FOOT"):
            (sphere,) = body.shapes
            bottoms.append((pose[body.name] @ sphere.frame)[2, 3] - sphere.size[0])
    np.testing.assert_allclose(bottoms, bottoms[0], atol=1e-6)
    assert -0.6 < bottoms[0] < -0.5, bottoms  # measured -0.549


def test_the_usda_is_deterministic_flat_and_floating(urdf):
    from pxr import Sdf, Usd, UsdPhysics

    from meow_isaac.robots.anymal_c import BODIES, build_usda

    text = build_usda()
    assert text == build_usda()
    layer = Sdf.Layer.CreateAnonymous(".usda")
    layer.ImportFromString(text)
    stage = Usd.Stage.Open(layer)
    robot = stage.GetDefaultPrim()
    bodies = [p for p in robot.GetChildren() if p.HasAPI(UsdPhysics.RigidBodyAPI)]
    assert [p.GetName() for p in bodies] == list(BODIES)
    roots = [p.GetName() for p in stage.Traverse() if p.HasAPI(UsdPhysics.ArticulationRootAPI)]
    assert roots == ["base"]
    joints = [p for p in stage.Traverse() if p.IsA(UsdPhysics.Joint)]
    revolute = [p for p in joints if p.IsA(UsdPhysics.RevoluteJoint)]
    assert len(revolute) == 12 and len(joints) == 16  # + 4 FOOT-to-SHANK fixed joints
    assert all(UsdPhysics.Joint(p).GetBody0Rel().GetTargets() for p in joints)  # none to the world
    mass = {p.GetName(): UsdPhysics.MassAPI(p).GetMassAttr().Get() for p in bodies}
    assert mass["base"] == pytest.approx(PUBLISHED_MASS["base"], rel=1e-6)


def test_the_actuator_network_is_used_when_its_file_exists(urdf, tmp_path):
    from isaaclab.actuators import ActuatorNetLSTMCfg, DCMotorCfg
    from isaaclab.utils import replace
    from isaaclab_assets.robots.anymal import ANYDRIVE_3_LSTM_ACTUATOR_CFG

    from meow_isaac.env import resolve_env_cfg
    from meow_isaac.robots.anymal_c import ACTUATOR_NET, SWAPPED, use_available_actuator

    cfg = resolve_env_cfg("Isaac-Velocity-Flat-Anymal-C-v0", 2, "cpu")
    # No network file under the test's asset root: Isaac Lab's ANYMAL_C_CFG itself was switched
    # when meow_isaac.tasks was loaded, so every process that loads the package (Isaac Lab's own
    # `isaaclab train` for the baselines too) creates the task with the DC motor.
    assert isinstance(cfg.scene.robot.actuators["legs"], DCMotorCfg) and len(SWAPPED) == 1
    robot = cfg.scene.robot
    net = tmp_path / ACTUATOR_NET
    net.parent.mkdir(parents=True)
    net.write_bytes(b"")
    robot.actuators["legs"] = replace(ANYDRIVE_3_LSTM_ACTUATOR_CFG, network_file=str(net))
    assert use_available_actuator(robot) is None
    assert isinstance(robot.actuators["legs"], ActuatorNetLSTMCfg)

    net.unlink()
    line = use_available_actuator(robot)
    assert "\n" not in line and str(net) in line and "ANYDRIVE_3_SIMPLE_ACTUATOR_CFG" in line
    legs = robot.actuators["legs"]
    assert isinstance(legs, DCMotorCfg) and (legs.stiffness, legs.damping) == ({".*": 40.0}, {".*": 5.0})
    assert use_available_actuator(robot) is None  # already the DC motor


OFFLINE_PROVIDE = """
import os, sys
from meow_isaac.assets import AssetError
from meow_isaac.env import resolve_env_cfg
from meow_isaac.offline import choose_asset_root
task = "Isaac-Velocity-Flat-Anymal-C-v0"
offline = choose_asset_root()
cfg = resolve_env_cfg(task, 2, "cpu")
wheels, os.environ["MEOW_ISAAC_WHEELS"] = os.environ["MEOW_ISAAC_WHEELS"], sys.argv[1]
try:
    offline.provide(cfg, task)
except AssetError as err:
    print(f"error: {err}")
    print(f"written: {offline.root.exists()}")
os.environ["MEOW_ISAAC_WHEELS"] = wheels
offline.provide(cfg, task)
"""


def test_offline_anymal_c_is_a_one_line_error_without_its_wheel_and_built_with_it(urdf, tmp_path):
    from meow_isaac.assets import ANYMAL_C
    from meow_isaac.descriptions import WHEELS_ENV, wheel_dir

    env = {**_offline_env(tmp_path), WHEELS_ENV: str(wheel_dir())}
    cmd = [sys.executable, "-c", OFFLINE_PROVIDE, str(tmp_path / "no-wheels")]
    out = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=600)
    assert out.returncode == 0, out.stderr[-2000:]
    (error,) = [line for line in out.stdout.splitlines() if line.startswith("error: ")]
    assert f"Isaac-Velocity-Flat-Anymal-C-v0 needs {ANYMAL_C}" in error and "genesis-world==1.4.5" in error
    assert "pip download --no-deps" in error and "written: False" in out.stdout
    (built,) = [line for line in out.stdout.splitlines() if "built the local asset root" in line]
    assert "ANYmal-C" in built and (tmp_path / "cache" / ANYMAL_C).is_file()


def test_the_asset_root_command_skips_anymal_c_without_its_wheel_in_one_line(tmp_path):
    from meow_isaac.assets import ANYMAL_C, GROUND
    from meow_isaac.descriptions import WHEELS_ENV

    cmd = [sys.executable, "-m", "meow_isaac.assets", str(tmp_path / "root")]
    env = {**os.environ, WHEELS_ENV: str(tmp_path / "no-wheels")}
    out = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=600)
    assert out.returncode == 0, out.stderr[-2000:]
    (skipped,) = [line for line in out.stderr.splitlines() if line.startswith("skipped ANYmal-C: ")]
    assert "genesis-world==1.4.5" in skipped and "ANYmal-C" not in out.stdout
    assert (tmp_path / "root" / GROUND).is_file() and not (tmp_path / "root" / ANYMAL_C).exists()


def test_setup_reads_the_description_wheels_to_fetch_from_the_package():
    cmd = [sys.executable, "-m", "meow_isaac.descriptions", "--pip-args"]
    out = subprocess.run(cmd, capture_output=True, text=True, timeout=600)
    assert out.returncode == 0 and "genesis-world==1.4.5" in out.stdout.split(), out.stderr[-2000:]


def _touching(env) -> list[set[str]]:
    """Per env, the bodies whose contact force exceeds 1 N."""
    sensor = env.unwrapped.scene["contact_forces"]
    force = sensor.data.net_forces_w.norm(dim=-1)
    return [{name for name, f in zip(sensor.body_names, row, strict=True) if f > 1.0} for row in force]


def test_flat_task_stands_on_its_four_feet_with_the_dc_motor_fallback(urdf, capsys):
    from meow_isaac.env import make_isaaclab_env
    from meow_isaac.robots.anymal_c import BODIES, JOINTS

    env = make_isaaclab_env("Isaac-Velocity-Flat-Anymal-C-v0", 4, "cpu", seed=0)
    try:
        out = capsys.readouterr().out
        assert "anydrive_3_lstm_jit.pt does not exist: the legs run Isaac Lab's DC-motor model" in out
        robot = env.unwrapped.scene["robot"]
        (legs,) = robot.actuators.values()
        assert type(legs.drive).__name__ == "DrivePD"
        assert "ClampingDCMotor" in [type(c).__name__ for c in legs.clamping]
        assert (env.obs_dim, env.action_dim) == (48, 12)
        assert list(robot.body_names) == list(BODIES) and sorted(robot.joint_names) == sorted(JOINTS)
        masses = robot.data.default_mass[0].tolist()  # base's is randomised by the task (+-5 kg)
        for name, mass in list(zip(BODIES, masses, strict=True))[1:]:
            assert mass == pytest.approx(PUBLISHED_MASS[_part(name)], rel=1e-4), name

        env.reset(seed=0)
        heights = []
        for _ in range(STEPS_PER_SECOND):  # 1 s holding the default joint angles
            r = env.step(torch.zeros(4, 12))
            _check_step(env, r)
            assert not (r.terminated | r.truncated).any()  # base_contact would end the episode
            heights.append(robot.data.root_pos_w[:, 2].clone())
        # Rigid legs in the init pose would hold the base at 0.55 m (the test above); the DC
        # motor's stiffness 40 lets the knees give 0.4-0.6 rad under the randomised 21-31 kg base:
        # measured 0.42-0.47 m after 1 s, within 1.3 cm of the height at 0.5 s. On its knees or
        # belly, or sinking through the ground, the base would be far lower or still moving.
        height = heights[-1]
        assert ((height > 0.38) & (height < 0.56)).all(), height
        assert (height - heights[STEPS_PER_SECOND // 2]).abs().max() < 0.03
        feet = {f"{leg}_FOOT" for leg in ("LF", "LH", "RF", "RH")}
        assert _touching(env) == [feet] * 4

        for _ in range(10):
            _check_step(env, env.step(torch.rand(4, 12) * 2 - 1))
    finally:
        env.close()


def test_rough_task_runs_its_terrain_and_height_scanner(urdf):
    from meow_isaac.env import make_isaaclab_env

    env = make_isaaclab_env("Isaac-Velocity-Rough-Anymal-C-v0", 2, "cpu", seed=0)
    try:
        assert (env.obs_dim, env.action_dim) == (235, 12)
        env.reset(seed=0)
        for _ in range(10):
            r = env.step(torch.zeros(2, 12))
            _check_step(env, r)
        scan = r.obs[:, 48:]  # 187 heights: base height above each ray's hit, less 0.5, clipped to +-1
        assert scan.shape == (2, 187)
        assert (scan.abs() < 0.99).float().mean() > 0.9, scan  # rays hit the terrain: not clipped
        for _ in range(5):
            _check_step(env, env.step(torch.rand(2, 12) * 2 - 1))
    finally:
        env.close()
