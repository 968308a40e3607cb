"""The environment protocol the learner consumes: batched torch tensors on one device."""

from __future__ import annotations

from typing import NamedTuple, Protocol, runtime_checkable

import torch
from torch import Tensor


class StepResult(NamedTuple):
    """What one vectorized step returns. Every field has ``num_envs`` as its first dimension."""

    obs: Tensor
    """Observation to act on next: for an env whose episode just ended, the first one of the new episode."""
    rewards: Tensor
    """float32 rewards, shape ``(num_envs,)``."""
    terminated: Tensor
    """bool, the episode reached a terminal state (no bootstrap)."""
    truncated: Tensor
    """bool, the episode was cut by a time limit and not terminated (bootstrap)."""
    next_obs: Tensor
    """The true observation after the action: equals ``obs`` except for finished envs, where it
    holds the final observation of the episode that ended (not the reset one)."""


@runtime_checkable
class VecEnv(Protocol):
    """A batch of ``num_envs`` environments stepped together on ``device``.

    Actions are float32 in ``[-1, 1]^action_dim``: the environment maps them onto its own
    action range. Finished environments reset themselves inside :meth:`step`.
    """

    num_envs: int
    obs_dim: int
    action_dim: int
    device: torch.device

    def reset(self, seed: int | None = None) -> Tensor:
        """Resets every env; returns the observations ``(num_envs, obs_dim)``."""
        ...

    def step(self, actions: Tensor) -> StepResult:
        """Applies ``actions`` ``(num_envs, action_dim)`` in ``[-1, 1]``."""
        ...

    def close(self) -> None:
        """Releases the simulator."""
        ...
