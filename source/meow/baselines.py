"""Baselines from the real libraries, started by ``scripts/train.py --algo sac|ppo``.

- ``--algo sac`` on Gymnasium tasks: Stable-Baselines3's SAC (its defaults: [256, 256] networks,
  lr 3e-4, buffer 1e6, learned temperature), logging MEow's metric names live.
- ``--algo sac`` on Isaac tasks: rl-games' SAC through Isaac Lab's own ``isaaclab train
  --rl_library rl_games`` with ``meow_isaac/agents/rl_games_sac.yaml``.
- ``--algo ppo`` on Isaac tasks: rsl-rl-lib's PPO through Isaac Lab's own ``isaaclab train
  --rl_library rsl_rl`` with the task's rsl_rl settings.

The Isaac baselines write their libraries' own log layout (``logs/rsl_rl/...``,
``logs/rl_games/...``); when they end, the return and throughput they logged are also written
under MEow's names (``charts/episodic_return``, ``charts/SPS``, x axis in env steps) into the same
folder, so ``scripts/compare.py`` reads every run alike.
"""

from __future__ import annotations

import math
import os
import shutil
import subprocess
import sys
import time
from datetime import datetime
from pathlib import Path

BASELINE_ALGOS = ("sac", "ppo")


class BaselineError(ValueError):
    """A baseline that does not exist for this task, or a library run that failed."""


def write_scalars(log_dir: Path, scalars: dict[str, list[tuple[int, float]]]) -> None:
    """Writes ``{tag: [(env step, value)]}`` as one new TensorBoard events file in ``log_dir``."""
    from torch.utils.tensorboard import SummaryWriter

    writer = SummaryWriter(str(log_dir), filename_suffix=".meow_metrics")
    for tag, points in scalars.items():
        for step, value in points:
            writer.add_scalar(tag, value, step)
    writer.close()


def _read(log_dir: Path, tag: str) -> list[tuple[int, float]]:
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    events = EventAccumulator(str(log_dir), size_guidance={"scalars": 0})
    events.Reload()
    if tag not in events.Tags()["scalars"]:
        return []
    return [(e.step, e.value) for e in events.Scalars(tag)]


def translate(log_dir: Path, names: dict[str, str], env_steps_per_point: int | None = None) -> list[str]:
    """Re-writes a library's scalars under MEow's names in ``log_dir``; returns the tags written.

    ``env_steps_per_point``: the library logs per iteration (rsl_rl); point ``i`` is then at
    ``(i + 1) x env_steps_per_point`` env steps. None: its steps are env steps already.
    """
    scalars = {}
    for theirs, ours in names.items():
        points = _read(log_dir, theirs)
        if env_steps_per_point is not None:
            points = [((step + 1) * env_steps_per_point, value) for step, value in points]
        if points:
            scalars[ours] = points
    if scalars:
        write_scalars(log_dir, scalars)
    return list(scalars)


# ------------------------------------------------------------------ Gymnasium: SB3 SAC
def train_sb3_sac(cfg, run_dir: Path) -> Path:
    """SB3 SAC on ``cfg.env.id`` for ``runner.total_steps``; returns the saved model path."""
    import gymnasium as gym
    import numpy as np
    import torch
    from stable_baselines3 import SAC
    from stable_baselines3.common.callbacks import BaseCallback
    from torch.utils.tensorboard import SummaryWriter

    r = cfg.runner
    run_dir.mkdir(parents=True, exist_ok=True)
    writer = SummaryWriter(str(run_dir))
    env = gym.wrappers.RecordEpisodeStatistics(gym.make(cfg.env.id, **cfg.env.kwargs))
    eval_env = gym.make(cfg.env.id, **cfg.env.kwargs) if cfg.env.eval_envs > 0 else None

    class Metrics(BaseCallback):
        """Logs MEow's names: training return, env-steps/s, deterministic evaluation."""

        def _on_training_start(self) -> None:
            self.t, self.steps, self.returns, self.evals = time.perf_counter(), 0, [], 0

        def _on_step(self) -> bool:
            step = self.num_timesteps
            for info in self.locals.get("infos", []):
                if "episode" in info:
                    self.returns.append(float(info["episode"]["r"]))
            if step % r.log_interval == 0:
                now = time.perf_counter()
                writer.add_scalar("charts/SPS", (step - self.steps) / max(now - self.t, 1e-9), step)
                self.t, self.steps = now, step
                if self.returns:
                    writer.add_scalar("charts/episodic_return", float(np.mean(self.returns)), step)
                    self.returns.clear()
            if eval_env is not None and step % r.eval_interval == 0:
                returns = []
                for k in range(cfg.env.eval_envs):
                    obs, _ = eval_env.reset(seed=cfg.seed + 10_000 + self.evals * 1000 + k)
                    total, done = 0.0, False
                    while not done:
                        action, _ = self.model.predict(obs, deterministic=True)
                        obs, reward, terminated, truncated, _ = eval_env.step(action)
                        total, done = total + float(reward), terminated or truncated
                    returns.append(total)
                self.evals += 1
                writer.add_scalar("eval/return_mean", float(np.mean(returns)), step)
                writer.add_scalar("eval/return_std", float(np.std(returns)), step)
            return True

    torch.manual_seed(cfg.seed)
    model = SAC("MlpPolicy", env, learning_starts=r.warmup_steps, seed=cfg.seed, device=cfg.device, verbose=0)
    model.learn(total_timesteps=r.total_steps, callback=Metrics())
    writer.close()
    env.close()
    path = run_dir / "model.zip"
    model.save(str(path))
    return path


# ---------------------------------------------------------- Isaac Lab: rsl_rl PPO, rl-games SAC
def isaaclab_cli() -> str:
    """Path of Isaac Lab's ``isaaclab`` command beside this Python (or on PATH)."""
    search = os.pathsep.join([str(Path(sys.executable).parent), os.environ.get("PATH", "")])
    cli = shutil.which("isaaclab", path=search)
    if cli is None:
        raise BaselineError("Isaac Lab's 'isaaclab' command is not installed beside this Python")
    return cli


def _newest_run(root: Path, before: set[Path]) -> Path:
    runs = [p for p in root.glob("*/*") if p.is_dir() and p not in before]
    if not runs:
        raise BaselineError(f"the library wrote no run under {root}")
    return max(runs, key=lambda p: p.stat().st_mtime)


def train_isaaclab_baseline(algo: str, cfg, max_iterations: int | None, cwd: Path) -> Path:
    """rsl_rl PPO (``ppo``) or rl-games SAC (``sac``) through Isaac Lab's CLI; returns the run dir."""
    from isaaclab_tasks.utils.parse_cfg import load_cfg_from_registry

    import meow_isaac.tasks  # noqa: F401  (the 2.x ids and the SAC agent entry point)

    task, n = cfg.env.id, cfg.env.num_envs
    library = {"ppo": "rsl_rl", "sac": "rl_games"}[algo]
    cmd = [isaaclab_cli(), "train", "--rl_library", library, "--task", task, "--num_envs", str(n)]
    cmd += ["--device", cfg.device, "--seed", str(cfg.seed), *cfg.env.isaaclab_overrides]
    if algo == "ppo":
        steps_per_iteration = load_cfg_from_registry(task, "rsl_rl_cfg_entry_point").num_steps_per_env * n
        cmd += [f"agent.device={cfg.device}"]
    else:
        steps_per_iteration = n  # rl_games_sac.yaml: one vectorized step per epoch
        cmd += ["--agent", "rl_games_sac_cfg_entry_point", f"agent.params.config.name={task}"]
        cmd += [f"agent.params.config.device={cfg.device}", f"agent.params.config.num_actors={n}"]
    iterations = max_iterations or max(1, math.ceil(cfg.runner.total_steps / steps_per_iteration))
    cmd += ["--max_iterations", str(iterations)]
    root = cwd / "logs" / library
    before = set(root.glob("*/*"))
    print(f"[meow] baseline: {' '.join(cmd[1:])}", flush=True)
    status = subprocess.run(cmd, cwd=cwd).returncode
    if status != 0:
        raise BaselineError(f"isaaclab train --rl_library {library} failed with exit status {status}")
    run = _newest_run(root, before)
    if algo == "ppo":
        translate(
            run,
            {"Train/mean_reward": "charts/episodic_return", "Perf/total_fps": "charts/SPS"},
            steps_per_iteration,
        )
    else:
        names = {
            "rewards/step": "charts/episodic_return",
            "performance/step_inference_rl_update_fps": "charts/SPS",
        }
        translate(run / "summaries", names)
    return run


def run_baseline(algo: str, cfg, max_iterations: int | None = None) -> Path:
    """Trains baseline ``algo`` on the task of ``cfg``; returns its run directory or model."""
    kind = cfg.env.kind
    if kind == "gymnasium" and algo == "sac":
        stamp = datetime.now().strftime("%Y-%m-%d_%H-%M-%S")
        if max_iterations is not None:
            cfg.runner.total_steps = max_iterations
        return train_sb3_sac(cfg, Path(cfg.runner.log_dir) / "sac" / cfg.env.id / stamp).parent
    if kind == "isaaclab":
        # Isaac Lab's CLI writes into <cwd>/logs/<library>/...
        log_dir = Path(cfg.runner.log_dir).resolve()
        if log_dir.name != "logs":
            print(f"[meow] note: Isaac Lab writes baseline runs to {log_dir.parent / 'logs'}, not {log_dir}")
        return train_isaaclab_baseline(algo, cfg, max_iterations, log_dir.parent)
    valid = "sac (Gymnasium and Isaac tasks), ppo (Isaac tasks)"
    raise BaselineError(f"--algo {algo} is not available for {cfg.env.id} ({kind} task); valid: {valid}")
