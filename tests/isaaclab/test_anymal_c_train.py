"""ANYmal-C flat, built offline, trained by the user's commands: MEow on the core runner and on
rl-games, each ending with a checkpoint that ``scripts/play.py`` loads and evaluates."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from meow.runners import read_checkpoint

ROOT = Path(__file__).resolve().parents[2]
TASK = "Isaac-Velocity-Flat-Anymal-C-v0"
SHORT = [
    "--task",
    TASK,
    "--device",
    "cpu",
    "--num_envs",
    "4",
    "--headless",
    "env.episode_length_s=0.4",  # Isaac Lab's env config: 20-step episodes, so some finish
    "runner.warmup_steps=40",
    "algo.batch_size=32",
    "runner.log_interval=40",
    "runner.progress=false",
    "torch_threads=1",
]


@pytest.fixture(scope="module", autouse=True)
def _wheel():
    """Skipped without the description wheel, unless MEOW_REQUIRE_ISAACLAB=1 (as test_anymal_c)."""
    from meow_isaac import descriptions
    from meow_isaac.assets import AssetError
    from meow_isaac.robots import anymal_c

    try:
        descriptions.find_wheel(anymal_c.SOURCE)
    except AssetError as err:
        if os.environ.get("MEOW_REQUIRE_ISAACLAB") == "1":
            raise
        pytest.skip(str(err))


def _run(script: str, *args: str, cwd: Path) -> subprocess.CompletedProcess:
    proc = subprocess.run(
        [sys.executable, str(ROOT / "scripts" / script), *args],
        cwd=cwd,
        env={**os.environ, "PYTHONUNBUFFERED": "1"},
        capture_output=True,
        text=True,
        timeout=900,
    )
    assert proc.returncode == 0, (proc.stdout[-2000:], proc.stderr[-3000:])
    return proc


def _plays(checkpoint: Path, cwd: Path) -> None:
    proc = _run("play.py", str(checkpoint), "--episodes", "2", "--eval_mode", "deterministic", cwd=cwd)
    assert "deterministic return" in proc.stdout and "over 2 episodes" in proc.stdout, proc.stdout


@pytest.mark.parametrize("runner", ["core", "rl_games"])
def test_meow_trains_on_anymal_c_flat_and_play_loads_its_checkpoint(tmp_path, runner):
    proc = _run("train.py", *SHORT, "--runner", runner, "--max_iterations", "30", cwd=tmp_path)
    assert "ANYDRIVE_3_SIMPLE_ACTUATOR_CFG" in proc.stdout + proc.stderr  # the fallback, said at start
    if runner == "core":
        (checkpoint,) = (tmp_path / "logs" / "meow").glob("*/*/model_120.pt")
    else:  # rl-games names its files after the task's Isaac Lab 3.0 id
        (checkpoint,) = (tmp_path / "logs" / "rl_games").glob("*/*/nn/*AnymalC.pth")
    ckpt = read_checkpoint(checkpoint)
    assert ckpt["global_step"] == 120 and (ckpt["obs_dim"], ckpt["action_dim"]) == (48, 12)
    assert ckpt["num_updates"] > 0
    _plays(checkpoint, tmp_path)
