"""Baselines from the real libraries, started by ``scripts/train.py --algo sac|ppo``.

- ``--algo sac`` on Gymnasium tasks: Stable-Baselines3's SAC (its defaults: [256, 256] networks,
  lr 3e-4, buffer 1e6, learned temperature), logging MEow's metric names live.
- other env kinds bring their own (:attr:`meow.envs.EnvKind.baselines`); the Isaac Lab extension
  runs rl-games' SAC and rsl_rl's PPO (``meow_isaac.baselines``).

Baselines that write their library's own log layout also write the return and throughput they
logged under MEow's names (``charts/episodic_return``, ``charts/SPS``, x axis in env steps) with
:func:`translate`, so ``scripts/compare.py`` reads every run alike.
"""

from __future__ import annotations

import time
from pathlib import Path


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


def run_baseline(algo: str, cfg, max_iterations: int | None = None) -> Path:
    """Trains baseline ``algo`` on the task of ``cfg`` through its env kind; returns its run directory."""
    from meow.envs.registry import get_kind, kind_names

    kind = get_kind(cfg.env.kind)
    if algo not in kind.baselines:
        offered = []
        for name in kind_names():
            try:
                offered += [f"{a} ({name} tasks)" for a in get_kind(name).baselines]
            except ValueError:
                continue
        raise BaselineError(
            f"--algo {algo} is not available for {cfg.env.id} ({cfg.env.kind} task); "
            f"valid: {', '.join(offered) or 'none installed'}"
        )
    return kind.run_baseline(algo, cfg, max_iterations)
