"""Environments that speak the batched-tensor protocol of :class:`meow.envs.VecEnv`."""

from __future__ import annotations

from meow.envs.factory import make_env, make_env_from_config
from meow.envs.protocol import StepResult, VecEnv

__all__ = ["StepResult", "VecEnv", "make_env", "make_env_from_config"]
