"""The user's commands on a real Isaac task, through ./isaaclab.sh: train, resume, play, export."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

ROOT = Path(__file__).resolve().parents[2]
TRAIN = [
    "--task",
    "Isaac-Ant-v0",
    "--algo",
    "meow",
    "--device",
    "cpu",
    "--num_envs",
    "8",
    "--headless",
    "env.episode_length_s=0.5",  # Isaac Lab's env config: 30-step episodes, so some finish
    "agent.runner.warmup_steps=80",  # MEow's settings, Isaac Lab style
    "algo.batch_size=64",
    "runner.log_interval=80",
    "runner.progress=false",
    "torch_threads=1",
]


def _launch(*args: str, cwd: Path) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    env.pop("VIRTUAL_ENV", None)
    env["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{env['PATH']}"
    return subprocess.run(
        [str(ROOT / "isaaclab.sh"), "-p", *args],
        cwd=cwd,
        env=env,
        capture_output=True,
        text=True,
        timeout=900,
    )


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """One short Isaac-Ant training run (40 vectorized steps of 8 envs)."""
    work = tmp_path_factory.mktemp("isaac_run")
    proc = _launch(str(ROOT / "scripts" / "train.py"), *TRAIN, "--max_iterations", "40", cwd=work)
    assert proc.returncode == 0, proc.stderr[-3000:]
    (run,) = (work / "logs" / "meow" / "Isaac-Ant").iterdir()
    return work, run, proc.stdout


def test_train_writes_events_checkpoint_and_params(trained):
    from omegaconf import OmegaConf
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    _, run, out = trained
    assert "320 env steps" in out
    assert (run / "model_320.pt").is_file() and (run / "replay_buffer.pt").is_file()
    events = EventAccumulator(str(run))
    events.Reload()
    tags = set(events.Tags()["scalars"])
    assert {"losses/loss", "charts/SPS", "charts/episodic_return", "policy/entropy"} <= tags
    assert any(t.startswith("Episode_Reward/") for t in tags)  # Isaac Lab's per-term episode sums
    assert events.Scalars("charts/SPS")[-1].step == 320

    import yaml

    # Isaac Lab's own dump (python tags for tuples), read back the way Isaac Lab writes it
    env_yaml = yaml.unsafe_load((run / "params" / "env.yaml").read_text())
    assert env_yaml["scene"]["num_envs"] == 8 and env_yaml["episode_length_s"] == 0.5
    assert env_yaml["sim"]["device"] == "cpu" and env_yaml["compute_final_obs"] is True
    agent = OmegaConf.load(run / "params" / "agent.yaml")
    assert agent.env.id == "Isaac-Ant" and agent.algo.batch_size == 64 and agent.runner.warmup_steps == 80
    assert agent.algo.alpha == 0.00125 and agent.buffer.capacity == 15000 * 8
    assert "physics=newton_mjwarp" in agent.env.sim_overrides
    assert "env.episode_length_s=0.5" in agent.env.sim_overrides


def test_resume_continues_into_a_new_run(trained):
    work, run, _ = trained
    before = sorted(p.name for p in run.iterdir())
    proc = _launch(
        str(ROOT / "scripts" / "train.py"), "--checkpoint", str(run), "--max_iterations", "45", cwd=work
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "resumed" in proc.stdout
    assert sorted(p.name for p in run.iterdir()) == before
    runs = sorted((work / "logs" / "meow" / "Isaac-Ant").iterdir())
    assert len(runs) == 2 and (runs[1] / "model_360.pt").is_file()


def test_play_evaluates_and_exports_matching_policies(trained):
    import onnxruntime

    from meow.modules import build_policy
    from meow.runners import read_checkpoint

    work, run, _ = trained
    proc = _launch(
        str(ROOT / "scripts" / "play.py"), str(run / "model_320.pt"), "--episodes", "3", "--export", cwd=work
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "deterministic return" in proc.stdout and "over 3 episodes" in proc.stdout

    # PyTorch deterministic actions on real Ant observations from the run's replay buffer
    from meow.algorithms import MEow
    from meow.modules import EmpiricalNormalization

    ckpt = read_checkpoint(run / "model_320.pt")
    from meow.config import config_from_checkpoint

    cfg = config_from_checkpoint(ckpt["config"])
    alg = MEow(
        build_policy(cfg, 60, 8), EmpiricalNormalization(60), lr=1e-3, gamma=0.99, tau=0.005, grad_clip=1.0
    )
    alg.load_state_dict(ckpt["learner"])
    obs = torch.load(run / "replay_buffer.pt", weights_only=False)["obs"].reshape(-1, 60)[:64]
    expected = alg.act(obs, deterministic=True)
    assert expected.abs().max() > 1e-3  # a trained, non-trivial policy

    scripted = torch.jit.load(str(run / "exported" / "policy.pt"))
    torch.testing.assert_close(scripted(obs), expected)
    session = onnxruntime.InferenceSession(str(run / "exported" / "policy.onnx"))
    (onnx_actions,) = session.run(None, {"obs": obs.numpy()})
    np.testing.assert_allclose(onnx_actions, expected.numpy(), atol=1e-5, rtol=1e-4)


def test_training_video(tmp_path):
    proc = _launch(
        str(ROOT / "scripts" / "train.py"),
        *TRAIN,
        "--max_iterations",
        "4",
        "--video",
        "--video_length",
        "3",
        cwd=tmp_path,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    (clip,) = (tmp_path / "logs" / "meow" / "Isaac-Ant").glob("*/videos/train/*.mp4")
    assert clip.stat().st_size > 1000


def test_missing_asset_and_bad_task_are_one_line_errors(tmp_path):
    proc = _launch(
        str(ROOT / "scripts" / "train.py"),
        "--task",
        "Isaac-Velocity-Flat-Anymal-D-v0",
        "--num_envs",
        "2",
        cwd=tmp_path,
    )
    assert proc.returncode == 2
    (line,) = proc.stderr.strip().splitlines()[-1:]
    assert (
        line.startswith("error: Isaac-Velocity-Flat-AnymalD needs ")
        and ".usd" in line
        and "ISAACSIM_ASSET_ROOT" in line
    )
    assert not (tmp_path / "logs").exists()

    proc = _launch(str(ROOT / "scripts" / "train.py"), "--task", "Isaac-Antt-v0", cwd=tmp_path)
    assert proc.returncode == 2
    assert "unknown task 'Isaac-Antt-v0'; did you mean Isaac-Ant-v0" in proc.stderr
