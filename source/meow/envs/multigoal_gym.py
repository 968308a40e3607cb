"""A single-environment Gymnasium view of the multi-goal point mass, for libraries such as SB3.

The dynamics, reward, goal termination and time limit are those of
:class:`meow.envs.multigoal.MultiGoalEnv`: this class holds one of them and only converts
between numpy and torch.
"""

from __future__ import annotations

from typing import Any, ClassVar

import gymnasium as gym
import numpy as np
import torch

from meow.envs.multigoal import MultiGoalEnv


class MultiGoalGymEnv(gym.Env):
    """One multi-goal point mass behind Gymnasium's ``reset``/``step`` interface.

    Observations are float32 positions in ``[-bound, bound]^2``, actions velocities in
    ``[-1, 1]^2``. An episode ends with ``terminated`` at a goal and with ``truncated`` at the
    core env's ``horizon`` (the time limit lives in the core env, so no ``TimeLimit`` wrapper
    is needed). The observation returned by the step that ends an episode is the final
    position; the next :meth:`reset` without a seed starts from the start position that the
    core env drew when the episode ended, so a run of this view sees exactly the observations
    and rewards of ``MultiGoalEnv(1)`` under the same seed and actions.

    Args:
        **kwargs: constructor arguments of :class:`~meow.envs.multigoal.MultiGoalEnv`
            (``horizon``, ``goal_reward``, ...), except ``num_envs`` and ``device``.
    """

    metadata: ClassVar[dict[str, Any]] = {"render_modes": []}

    def __init__(self, **kwargs: Any) -> None:
        self.core = MultiGoalEnv(1, "cpu", **kwargs)
        bound = np.float32(self.core.bound)
        self.observation_space = gym.spaces.Box(-bound, bound, shape=(2,), dtype=np.float32)
        self.action_space = gym.spaces.Box(-1.0, 1.0, shape=(2,), dtype=np.float32)
        self._fresh = False
        """True when the core env has already drawn the next episode's start (an episode ended)."""
        self._started = False

    def reset(self, *, seed: int | None = None, options: dict | None = None) -> tuple[np.ndarray, dict]:
        super().reset(seed=seed)
        if seed is not None or not self._started or not self._fresh:
            obs = self.core.reset(seed=seed)
        else:
            obs = self.core.position.clone()
        self._started, self._fresh = True, False
        return self._numpy(obs), {}

    def step(self, action: np.ndarray) -> tuple[np.ndarray, float, bool, bool, dict]:
        if not self._started:
            raise RuntimeError("call reset() before step()")
        actions = torch.as_tensor(np.asarray(action, dtype=np.float32).reshape(1, 2))
        result = self.core.step(actions)
        terminated, truncated = bool(result.terminated[0]), bool(result.truncated[0])
        self._fresh = terminated or truncated
        return self._numpy(result.next_obs), float(result.rewards[0]), terminated, truncated, {}

    @staticmethod
    def _numpy(obs: torch.Tensor) -> np.ndarray:
        return obs[0].numpy().astype(np.float32)
