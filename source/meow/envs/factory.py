"""Builds the environment named by the ``env`` section of the config."""

from __future__ import annotations

from typing import Any

import torch

from meow.envs.protocol import VecEnv

ENV_KINDS = ("gymnasium", "multigoal")


def make_env(
    kind: str,
    env_id: str,
    num_envs: int,
    device: str | torch.device,
    kwargs: dict[str, Any] | None = None,
    render_mode: str | None = None,
) -> VecEnv:
    """Creates a vectorized environment.

    Args:
        kind: ``gymnasium`` (any registered Gymnasium id) or ``multigoal`` (the 2-D toy task).
        env_id: the environment id.
        num_envs: parallel copies.
        device: where observations, rewards and flags are returned.
        kwargs: extra constructor arguments.
        render_mode: ``rgb_array`` to record video (Gymnasium only).
    """
    kwargs = dict(kwargs or {})
    if kind == "gymnasium":
        from meow.envs.gymnasium_env import GymnasiumVecEnv

        return GymnasiumVecEnv(env_id, num_envs, device, render_mode=render_mode, **kwargs)
    if kind == "multigoal":
        from meow.envs.multigoal import MultiGoalEnv

        return MultiGoalEnv(num_envs, device, **kwargs)
    raise ValueError(f"unknown env.kind '{kind}'; valid: {', '.join(ENV_KINDS)}")
