"""./isaaclab.sh and the split of command-line overrides between MEow and Isaac Lab."""

from __future__ import annotations

import importlib.util
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from script_loader import load_script

ROOT = Path(__file__).resolve().parents[2]


def test_overrides_are_split_between_meow_and_isaaclab():
    from meow.envs import get_kind

    ours, isaac = get_kind("isaaclab").split_overrides(
        [
            "algo.lr=3e-4",
            "agent.algo.alpha=0.1",
            "env.num_envs=16",
            "env.kwargs.action_scale=2.0",
            "env.episode_length_s=5",
            "env.scene.env_spacing=4",
            "physics=newton_mjwarp",
            "presets=rough",
        ]
    )
    assert ours == ["algo.lr=3e-4", "algo.alpha=0.1", "env.num_envs=16", "env.kwargs.action_scale=2.0"]
    assert isaac == [
        "env.episode_length_s=5",
        "env.scene.env_spacing=4",
        "physics=newton_mjwarp",
        "presets=rough",
    ]


def test_isaaclab_overrides_on_a_mujoco_task_are_an_error(capsys):
    train = load_script("train")
    assert train.main(["--task", "Hopper-v5", "env.episode_length_s=5"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: unknown key 'env.episode_length_s'") and err.count("\n") == 1


def test_default_physics_is_kitless_newton_without_isaac_sim():
    from meow_isaac.env import with_default_physics

    has_isaac_sim = importlib.util.find_spec("isaacsim") is not None
    assert with_default_physics(["env.x=1"]) == (
        ["env.x=1"] if has_isaac_sim else ["env.x=1", "physics=newton_mjwarp"]
    )
    assert with_default_physics(["physics=physx"]) == ["physics=physx"]


def _copy_launcher(tmp_path: Path) -> Path:
    script = tmp_path / "isaaclab.sh"
    shutil.copy(ROOT / "isaaclab.sh", script)
    return script


def test_launcher_uses_the_python_that_has_isaaclab(tmp_path):
    script = _copy_launcher(tmp_path)  # away from the repository's .venv
    venv_bin = Path(sys.executable).parent
    env = {"PATH": f"{venv_bin}:/usr/bin:/bin", "HOME": os.environ.get("HOME", "/tmp")}
    proc = subprocess.run(
        [str(script), "-p", "-c", "import isaaclab, sys; print(sys.executable)"],
        env=env,
        capture_output=True,
        text=True,
    )
    assert proc.returncode == 0, proc.stderr
    assert Path(proc.stdout.strip()).parent == venv_bin


def test_launcher_prefers_an_isaaclab_install_launcher(tmp_path):
    script = _copy_launcher(tmp_path)
    install = tmp_path / "IsaacLab"
    install.mkdir()
    (install / "isaaclab.sh").write_text('#!/usr/bin/env bash\necho "install launcher: $*"\n')
    (install / "isaaclab.sh").chmod(0o755)
    env = {"PATH": "/usr/bin:/bin", "ISAACLAB_PATH": str(install)}
    proc = subprocess.run(
        [str(script), "-p", "scripts/train.py", "--task", "Isaac-Ant-v0"],
        env=env,
        capture_output=True,
        text=True,
    )
    assert (
        proc.returncode == 0
        and proc.stdout.strip() == "install launcher: -p scripts/train.py --task Isaac-Ant-v0"
    )


@pytest.mark.parametrize("args", [[], ["scripts/train.py"], ["-x", "scripts/train.py"]])
def test_launcher_usage_and_missing_isaaclab_errors(tmp_path, args):
    script = _copy_launcher(tmp_path)
    proc = subprocess.run([str(script), *args], env={"PATH": "/usr/bin:/bin"}, capture_output=True, text=True)
    assert proc.returncode == 2 and proc.stderr.startswith("usage: ./isaaclab.sh -p SCRIPT.py")

    if (
        shutil.which("python3", path="/usr/bin:/bin")
        and subprocess.run(
            ["/usr/bin/env", "python3", "-c", "import isaaclab"],
            env={"PATH": "/usr/bin:/bin"},
            capture_output=True,
        ).returncode
        == 0
    ):
        pytest.skip("the system python3 has Isaac Lab")
    proc = subprocess.run(
        [str(script), "-p", "x.py"], env={"PATH": "/usr/bin:/bin"}, capture_output=True, text=True
    )
    assert proc.returncode == 1
    assert (
        proc.stderr.startswith("error: no Python with Isaac Lab found (tried:")
        and "ISAACLAB_PATH=unset" in proc.stderr
    )
