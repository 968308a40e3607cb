"""Gymnasium vector environments (MuJoCo tasks) behind the batched-tensor protocol."""

from __future__ import annotations

import gymnasium as gym
import numpy as np
import torch
from torch import Tensor

from meow.envs.protocol import StepResult


class GymnasiumVecEnv:
    """Runs ``num_envs`` copies of a Gymnasium task in one process and speaks torch.

    Uses Gymnasium's same-step autoreset, so a finished env is reset inside the step that
    ended it and its true final observation is returned as ``next_obs``.

    Args:
        env_id: a registered Gymnasium id, e.g. ``Hopper-v5``.
        num_envs: number of copies.
        device: where the returned tensors live.
        render_mode: passed to ``gym.make`` (``rgb_array`` for video).
        kwargs: passed to ``gym.make``.
    """

    def __init__(
        self,
        env_id: str,
        num_envs: int = 1,
        device: str | torch.device = "cpu",
        render_mode: str | None = None,
        **kwargs,
    ) -> None:
        if env_id not in gym.registry:
            raise ValueError(f"'{env_id}' is not a registered Gymnasium environment")
        self.env = gym.make_vec(
            env_id,
            num_envs=num_envs,
            vectorization_mode="sync",
            vector_kwargs={"autoreset_mode": gym.vector.AutoresetMode.SAME_STEP},
            render_mode=render_mode,
            **kwargs,
        )
        space = self.env.single_action_space
        if not isinstance(space, gym.spaces.Box) or len(space.shape) != 1:
            raise ValueError(f"'{env_id}' has action space {space}; MEow needs a 1-D continuous Box")
        if not (np.isfinite(space.low).all() and np.isfinite(space.high).all()):
            raise ValueError(f"'{env_id}' has an unbounded action space; MEow needs finite bounds")
        self.env_id = env_id
        self.num_envs = num_envs
        self.device = torch.device(device)
        self.obs_dim = int(np.prod(self.env.single_observation_space.shape))
        self.action_dim = int(space.shape[0])
        self._low = space.low.astype(np.float64)
        self._half_range = 0.5 * (space.high - space.low).astype(np.float64)

    def _tensor(self, x: np.ndarray, dtype: torch.dtype = torch.float32) -> Tensor:
        return torch.as_tensor(np.asarray(x), dtype=dtype).to(self.device)

    def reset(self, seed: int | None = None) -> Tensor:
        obs, _ = self.env.reset(seed=seed)
        return self._tensor(obs.reshape(self.num_envs, -1))

    def step(self, actions: Tensor) -> StepResult:
        a = actions.detach().to("cpu", torch.float64).numpy().clip(-1.0, 1.0)
        obs, rewards, terminated, truncated, info = self.env.step(self._low + (a + 1.0) * self._half_range)
        obs = obs.reshape(self.num_envs, -1)
        next_obs = obs.copy()
        done = np.logical_or(terminated, truncated)
        if done.any():
            mask = info["_final_obs"]
            next_obs[mask] = np.stack([np.asarray(o).reshape(-1) for o in info["final_obs"][mask]])
        return StepResult(
            obs=self._tensor(obs),
            rewards=self._tensor(rewards),
            terminated=self._tensor(terminated, torch.bool),
            truncated=self._tensor(np.logical_and(truncated, ~terminated), torch.bool),
            next_obs=self._tensor(next_obs),
        )

    def render(self) -> np.ndarray | None:
        """Frames of the first env, when created with ``render_mode='rgb_array'``."""
        frames = self.env.render()
        return None if frames is None else np.asarray(frames[0])

    def close(self) -> None:
        self.env.close()
