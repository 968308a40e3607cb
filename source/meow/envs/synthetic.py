"""A GPU-resident environment whose step costs almost nothing: the learner's own ceiling."""

from __future__ import annotations

import torch
from torch import Tensor

from meow.envs.protocol import StepResult


class SyntheticVecEnv:
    """Linear dynamics with a quadratic reward, a handful of element-wise kernels per step.

    ``s' = 0.9 s + 0.1 tanh(W a)``, ``r = -|s'|^2 / obs_dim - 0.1 |a|^2``; each env is cut by
    a time limit after ``horizon`` steps (staggered, so that some end at every step) and
    terminates when ``|s'|`` leaves a ball. Meant for measuring the training pipeline at an
    Isaac task's shapes (``benchmarks/benchmark_update.py``), not for learning anything.

    Args:
        num_envs: parallel environments.
        obs_dim: observation size.
        action_dim: action size.
        device: where every tensor lives.
        horizon: time limit in steps.
    """

    def __init__(
        self,
        num_envs: int,
        obs_dim: int = 60,
        action_dim: int = 8,
        device: str | torch.device = "cpu",
        horizon: int = 1000,
    ) -> None:
        self.num_envs, self.obs_dim, self.action_dim = num_envs, obs_dim, action_dim
        self.device = torch.device(device)
        self.horizon = horizon
        g = torch.Generator(device="cpu").manual_seed(0)
        self._mix = (torch.randn(action_dim, obs_dim, generator=g) / action_dim**0.5).to(self.device)
        self._state = torch.zeros(num_envs, obs_dim, device=self.device)
        self._time = torch.zeros(num_envs, dtype=torch.long, device=self.device)

    def reset(self, seed: int | None = None) -> Tensor:
        """Starts every env at a small random state; episode clocks are staggered."""
        g = torch.Generator(device=self.device)
        g.manual_seed(0 if seed is None else seed)
        self._state = 0.1 * torch.randn(self.num_envs, self.obs_dim, device=self.device, generator=g)
        self._time = torch.arange(self.num_envs, device=self.device) % self.horizon
        return self._state.clone()

    def step(self, actions: Tensor) -> StepResult:
        """One step of every env; finished envs restart at the zero state."""
        next_obs = 0.9 * self._state + 0.1 * torch.tanh(actions @ self._mix)
        rewards = -next_obs.square().mean(1) - 0.1 * actions.square().sum(1)
        self._time += 1
        terminated = next_obs.square().sum(1) > 4.0 * self.obs_dim
        truncated = (self._time >= self.horizon) & ~terminated
        done = terminated | truncated
        self._time.masked_fill_(done, 0)
        self._state = torch.where(done[:, None], torch.zeros_like(next_obs), next_obs)
        return StepResult(self._state.clone(), rewards, terminated, truncated, next_obs)

    def close(self) -> None:
        """Nothing to release."""
