"""A simulator package in miniature, plugged into MEow through the ``meow.envs`` entry points.

``ToySimKind`` ships one task file (``ToySim``) and creates a 1-D point mass that must move to
the origin; :data:`BASELINES` (entry point group ``meow.baselines``) adds ``--algo ppo`` on it.
``env.kwargs.nan_at=K`` makes the env return a NaN reward from its K-th vectorized step on, for
the tests of what training does with a broken environment.
"""

from __future__ import annotations

from pathlib import Path

import torch

from meow.envs import EnvKind, StepResult

TASK_FILE = """\
env:
  id: ToySim
  kind: toysim
  num_envs: 4
  eval_envs: 0
algo:
  batch_size: 32
  coupling_hidden: [16]
  scale_hidden: [16]
  shift_hidden: [16]
buffer:
  capacity: 4000
runner:
  total_steps: 400
  warmup_steps: 40
  log_interval: 40
  checkpoint_interval: 80
  progress: false
"""


class ToySimEnv:
    """``num_envs`` point masses on a line; reward ``-|x|``, episodes of 20 steps."""

    def __init__(self, num_envs: int, device: str, nan_at: int = 0) -> None:
        self.num_envs, self.obs_dim, self.action_dim = num_envs, 1, 1
        self.device = torch.device(device)
        self.nan_at, self.steps = nan_at, 0
        self.x = torch.zeros(num_envs, 1, device=self.device)
        self.t = torch.zeros(num_envs, device=self.device)

    def reset(self, seed: int | None = None) -> torch.Tensor:
        self.x = torch.ones(self.num_envs, 1, device=self.device)
        self.t.zero_()
        return self.x.clone()

    def step(self, actions: torch.Tensor) -> StepResult:
        self.steps += 1
        self.x = self.x + 0.1 * actions
        self.t += 1
        rewards = -self.x.abs().squeeze(-1)
        if self.nan_at and self.steps >= self.nan_at:
            rewards = torch.full_like(rewards, float("nan"))
        truncated = self.t >= 20
        next_obs = self.x.clone()
        self.x[truncated] = 1.0
        self.t[truncated] = 0
        terminated = torch.zeros_like(truncated)
        return StepResult(self.x.clone(), rewards, terminated, truncated, next_obs)

    def close(self) -> None:
        pass


class ToySimKind(EnvKind):
    """``env.kind: toysim``."""

    name = "toysim"
    task_dir: Path | None = None
    """Set by the test fixture: where the task file is written."""

    def make_env(
        self, env_id, num_envs, device, kwargs, render_mode=None, *, seed=None, sim_overrides=(), video=None
    ):
        return ToySimEnv(num_envs, str(device), **kwargs)

    def task_dirs(self) -> list[Path]:
        return [self.task_dir] if self.task_dir is not None else []


def train_toy_ppo(cfg, max_iterations, deadline) -> Path:
    """A baseline as a package adds one: writes what it was called with to its run directory."""
    run = Path(cfg.runner.log_dir) / "ppo" / cfg.env.id
    run.mkdir(parents=True)
    (run / "called.txt").write_text(f"{cfg.runner.total_steps} {max_iterations} {deadline is None}")
    return run


BASELINES = {"ppo": train_toy_ppo}
"""``--algo`` values on ToySim tasks (:data:`meow_baselines.registry.Trainer`)."""
