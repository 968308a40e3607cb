"""Builds the environment named by the ``env`` section of the config."""

from __future__ import annotations

from typing import Any

import torch

from meow.envs.protocol import VecEnv

ENV_KINDS = ("gymnasium", "multigoal", "isaaclab")


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
        kind: ``gymnasium`` (any registered Gymnasium id), ``multigoal`` (the 2-D toy task) or
            ``isaaclab`` (an Isaac Lab task; needs the ``meow_isaac`` extension and Isaac Lab 3).
        env_id: the environment id.
        num_envs: parallel copies.
        device: where observations, rewards and flags are returned.
        kwargs: extra constructor arguments.
        render_mode: ``rgb_array`` to record video (Gymnasium and Isaac Lab).
    """
    kwargs = dict(kwargs or {})
    if kind == "gymnasium":
        from meow.envs.gymnasium_env import GymnasiumVecEnv

        return GymnasiumVecEnv(env_id, num_envs, device, render_mode=render_mode, **kwargs)
    if kind == "multigoal":
        from meow.envs.multigoal import MultiGoalEnv

        return MultiGoalEnv(num_envs, device, **kwargs)
    if kind == "isaaclab":
        try:
            from meow_isaac.env import make_isaaclab_env, require_isaaclab
        except ImportError:
            raise ImportError(
                "env.kind=isaaclab needs the meow_isaac extension: pip install -e exts/meow_isaac "
                "(bash scripts/setup.sh does it with Python 3.12)"
            ) from None
        require_isaaclab()
        return make_isaaclab_env(env_id, num_envs, device, render_mode=render_mode, **kwargs)
    raise ValueError(f"unknown env.kind '{kind}'; valid: {', '.join(ENV_KINDS)}")


def make_env_from_config(
    cfg, num_envs: int, render_mode: str | None = None, video: dict[str, Any] | None = None
) -> VecEnv:
    """The environment of a run config (``cfg.env``) with ``num_envs`` copies on ``cfg.device``.

    ``video`` (Isaac Lab only): ``{"dir", "interval", "length"}`` records training videos.
    """
    e = cfg.env
    kwargs = dict(e.kwargs)
    if e.kind == "isaaclab":
        kwargs.update(overrides=list(e.isaaclab_overrides), seed=cfg.seed, video=video)
    elif video is not None:
        raise ValueError(f"training videos are recorded for Isaac Lab tasks only, not env.kind={e.kind}")
    return make_env(e.kind, e.id, num_envs, cfg.device, kwargs, render_mode=render_mode)
