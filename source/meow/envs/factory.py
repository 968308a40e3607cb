"""Builds the environment named by the ``env`` section of the config."""

from __future__ import annotations

from typing import Any

import torch

from meow.envs.protocol import VecEnv
from meow.envs.registry import get_kind


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
        kind: an env kind (:func:`meow.envs.registry.kind_names`): ``gymnasium`` (any registered
            Gymnasium id), ``multigoal`` (the 2-D toy task), or one an installed package adds.
        env_id: the environment id.
        num_envs: parallel copies.
        device: where observations, rewards and flags are returned.
        kwargs: extra constructor arguments.
        render_mode: ``rgb_array`` to record video.
    """
    return get_kind(kind).make_env(env_id, num_envs, device, dict(kwargs or {}), render_mode)


def make_env_from_config(
    cfg, num_envs: int, render_mode: str | None = None, video: dict[str, Any] | None = None
) -> VecEnv:
    """The environment of a run config (``cfg.env``) with ``num_envs`` copies on ``cfg.device``.

    ``video`` (kinds that record training clips): ``{"dir", "subdir", "interval", "length"}``.
    """
    e = cfg.env
    return get_kind(e.kind).make_env(
        e.id,
        num_envs,
        cfg.device,
        dict(e.kwargs),
        render_mode,
        seed=cfg.seed,
        sim_overrides=list(e.sim_overrides),
        video=video,
    )
