"""Environments that speak the batched-tensor protocol of :class:`meow.envs.VecEnv`."""

from __future__ import annotations

from meow.envs.factory import make_env, make_env_from_config
from meow.envs.protocol import StepResult, VecEnv
from meow.envs.registry import EnvKind, EnvKindError, get_kind, kind_names, register_kind

__all__ = [
    "EnvKind",
    "EnvKindError",
    "StepResult",
    "VecEnv",
    "get_kind",
    "kind_names",
    "make_env",
    "make_env_from_config",
    "register_kind",
]
