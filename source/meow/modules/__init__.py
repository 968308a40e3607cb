"""Neural network modules: the flow policy (and :func:`build_policy`, which builds it from a config)
the observation normalizer and the reward scale."""

from __future__ import annotations

from meow.modules.flow_policy import FlowPolicy, build_policy
from meow.modules.normalizer import EmpiricalNormalization, RewardScale

__all__ = ["EmpiricalNormalization", "FlowPolicy", "RewardScale", "build_policy"]
